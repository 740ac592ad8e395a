package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing/tracingtest"
)

// TestErrorLogThrottled: a collector that stays down is one warning, not one per batch; the next
// warning says how many failures it left out.
func TestErrorLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	l := newErrorLog(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond, "http://collector:4318")
	for range 5 {
		l.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "exporting spans failed"); n != 1 {
		t.Fatalf("%d warnings for 5 failures at once, want 1:\n%s", n, buf.String())
	}
	// The warning says where spans go and what to check.
	for _, want := range []string{"endpoint=http://collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER=none"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("warning lacks %q:\n%s", want, buf.String())
		}
	}
	time.Sleep(60 * time.Millisecond)
	l.Handle(errors.New("connection refused"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "failures_not_logged_since_last=4") {
		t.Fatalf("lines:\n%s", buf.String())
	}
}

// TestRedactEndpoint: a password in the endpoint URL is not logged.
func TestRedactEndpoint(t *testing.T) {
	if got := redactEndpoint("https://user:s3cret@collector:4318"); strings.Contains(got, "s3cret") || !strings.Contains(got, "collector:4318") {
		t.Errorf("redacted endpoint %q", got)
	}
	if got := redactEndpoint("http://collector:4318"); got != "http://collector:4318" {
		t.Errorf("endpoint without credentials changed: %q", got)
	}
}

// TestShutdownCollectorNotAnswering: a collector that accepts the connection but never answers
// costs the queued spans and a warning at shutdown, not a failed shutdown held for the whole
// cleanup budget.
func TestShutdownCollectorNotAnswering(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	// The exporter goroutine outlives Shutdown here and reports its failure through the
	// global error handler into the same log: a buffer safe for concurrent use.
	logs := &tracingtest.LogBuffer{}
	endpoint := "http://" + ln.Addr().String()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint) // the exporter reads it in New
	p, err := New(t.Context(), Config{Exporter: ExporterOTLP, Protocol: ProtocolHTTP, Endpoint: endpoint}, Deps{Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	p.flushTimeout = 200 * time.Millisecond
	_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "s")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v, want nil (lost spans are not a failed shutdown)", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Shutdown used the caller's whole budget instead of its flush timeout")
	}
	if !strings.Contains(logs.String(), "did not take the last spans in time") || !strings.Contains(logs.String(), "endpoint="+endpoint) {
		t.Fatalf("no warning naming the endpoint:\n%s", logs.String())
	}
}
