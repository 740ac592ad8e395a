// Package simtest starts the IDnow simulator inside a test: on a free 127.0.0.1 port, with fast
// timing, a fixed seed and its logs routed to the test log, closed automatically at cleanup.
// It lives apart from idnowsim so the production package does not import "testing".
package simtest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/prometheus/client_golang/prometheus"
)

// Config returns the simulator configuration Start uses before applying options: a free port,
// seed 1, 5 ms steps and 10 ms webhook retry backoff, so a session completes in tens of milliseconds.
func Config() idnowsim.Config {
	cfg := idnowsim.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Seed = 1
	cfg.StepDelay = 5 * time.Millisecond
	cfg.StepJitter = 5 * time.Millisecond
	cfg.WebhookRetryBackoff = 10 * time.Millisecond
	return cfg
}

// Start starts a simulator configured by Config and then opts, and closes it when the test
// ends. Metrics go to a private registry; use StartWithRegistry to inspect them.
func Start(tb testing.TB, opts ...func(*idnowsim.Config)) *idnowsim.Simulator {
	tb.Helper()
	return StartWithRegistry(tb, prometheus.NewRegistry(), opts...)
}

// StartWithRegistry is Start with metrics registered on reg.
func StartWithRegistry(tb testing.TB, reg prometheus.Registerer, opts ...func(*idnowsim.Config)) *idnowsim.Simulator {
	tb.Helper()
	cfg := Config()
	for _, o := range opts {
		o(&cfg)
	}
	log := slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sim, err := idnowsim.New(cfg, idnowsim.Deps{Registry: reg, Log: log})
	if err != nil {
		tb.Fatalf("simtest: %v", err)
	}
	if err := sim.Start(context.Background()); err != nil {
		tb.Fatalf("simtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := sim.Close(); err != nil {
			tb.Errorf("simtest: close simulator: %v", err)
		}
	})
	return sim
}

// WaitIdle waits until every session is terminal and every webhook delivered or given up,
// failing the test after timeout.
func WaitIdle(tb testing.TB, sim *idnowsim.Simulator, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := sim.WaitIdle(ctx); err != nil {
		tb.Fatalf("simtest: %v (stats %+v)", err, sim.Stats())
	}
}

// tbWriter forwards log lines to the test log. The simulator is closed (and its goroutines
// joined) in a cleanup, before the test ends, so nothing logs after the test finished.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
