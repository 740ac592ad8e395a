package tracing

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
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
