package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "things"})
	reg.MustRegister(c)
	c.Inc()
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	kafkaErr := errors.New("kafka: no broker answered")
	var kafkaDown = true
	s.AddCheck("kafka", func(context.Context) error {
		if kafkaDown {
			return kafkaErr
		}
		return nil
	})
	s.AddCheck("jwks", func(context.Context) error { return nil })
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run after stop = %v, want nil", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	base := "http://" + s.Addr()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "test_things_total 1") {
		t.Fatalf("/metrics = %d, missing counter in %q", code, body)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with kafka down = %d", code)
	}
	var r struct {
		Ready  bool
		Checks []struct {
			Name  string
			Ready bool
			Error string
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Ready || len(r.Checks) != 2 || r.Checks[1].Name != "kafka" || r.Checks[1].Error != kafkaErr.Error() {
		t.Fatalf("unexpected readiness body %s", body)
	}
	kafkaDown = false
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz with everything up = %d", code)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{Listen: "nope"}).Validate(); err == nil || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("want admin.listen error, got %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestRunFailsWhenTheListenerDies: a socket closed under the server ends Run with an error
// naming the address, so the process stops instead of running on without its probes.
func TestRunFailsWhenTheListenerDies(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context()) }()
	_ = s.ln.Close()
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "admin server: serve on "+s.Addr()) {
		t.Fatalf("Run = %v, want a serve error naming the address", err)
	}
}

func TestNewReportsATakenPort(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	_, err = New(Config{Listen: s.Addr()}, Deps{Gatherer: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "(admin.listen)") {
		t.Fatalf("New on a taken port = %v, want an error naming admin.listen", err)
	}
}

// TestNewDeps: the project's nil-logger rule (nil discards) holds, and a missing gatherer is a
// clear error instead of a panic on the first scrape.
func TestNewDeps(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New with a nil Log: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run with a nil Log: %v", err)
	}
	if _, err := New(Config{Listen: "127.0.0.1:0"}, Deps{}); err == nil || !strings.Contains(err.Error(), "Gatherer") {
		t.Errorf("New without a Gatherer = %v, want an error naming it", err)
	}
}
