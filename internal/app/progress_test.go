package app

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeMetrics registers the series the status line reads, under their real names.
type fakeMetrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	enriched *prometheus.CounterVec
	dlq      *prometheus.CounterVec
	lag      *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}

func newFakeMetrics(t *testing.T) *fakeMetrics {
	t.Helper()
	f := &fakeMetrics{
		reg:      prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricIngressRequests, Help: "h"}, []string{"result"}),
		enriched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricEnriched, Help: "h"}, []string{"status", "outcome"}),
		dlq:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricDLQ, Help: "h"}, []string{"reason"}),
		lag:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metricLag, Help: "h"}, []string{"partition"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricEnrichDuration, Help: "h", Buckets: []float64{0.01, 0.1, 1}}, []string{"result"}),
	}
	f.reg.MustRegister(f.requests, f.enriched, f.dlq, f.lag, f.duration)
	return f
}

// syncBuffer is written by the reporter's goroutine and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestProgressLine(t *testing.T) {
	f := newFakeMetrics(t)
	var out bytes.Buffer
	clock := time.Date(2026, 12, 1, 8, 0, 10, 0, time.UTC)
	p := &progress{g: f.reg, w: &out, interval: time.Second, now: func() time.Time { return clock }}
	p.prev = p.snapshot()

	f.requests.WithLabelValues("accepted").Add(10)
	f.requests.WithLabelValues("duplicate").Add(2)
	f.requests.WithLabelValues("unauthorized").Add(3)
	f.enriched.WithLabelValues("SUCCESS", "approved").Add(8)
	f.enriched.WithLabelValues("ABORTED", "aborted").Add(1)
	f.dlq.WithLabelValues("session_not_found").Add(2)
	f.lag.WithLabelValues("0").Set(4)
	f.lag.WithLabelValues("1").Set(1)
	for range 98 {
		f.duration.WithLabelValues("enriched").Observe(0.05) // (0.01, 0.1]
	}
	f.duration.WithLabelValues("dlq").Observe(0.5) // (0.1, 1]
	f.duration.WithLabelValues("dlq").Observe(0.5)
	p.tick()

	want := "08:00:10 | webhooks 12 (+12) accepted, 3 (+3) rejected | enriched 9 (+9), DLQ 2 (+2) | lag 5 | enrich p50 55.9ms p99 550ms"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("first line:\n got %q\nwant %q", got, want)
	}

	// Second line: deltas and percentiles cover only what happened since the first.
	out.Reset()
	clock = clock.Add(10 * time.Second)
	f.requests.WithLabelValues("accepted").Add(5)
	f.lag.WithLabelValues("0").Set(0)
	f.lag.WithLabelValues("1").Set(0)
	p.tick()
	want = "08:00:20 | webhooks 17 (+5) accepted, 3 (+0) rejected | enriched 9 (+0), DLQ 2 (+0) | lag 0 | enrich p50 - p99 -"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("second line:\n got %q\nwant %q", got, want)
	}
}

// TestProgressLeavesOutWhatDoesNotRun: an ingress-only process has no enricher metrics, and
// the line shows no enricher fields rather than zeros that suggest an idle enricher.
func TestProgressLeavesOutWhatDoesNotRun(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricIngressRequests, Help: "h"}, []string{"result"})
	reg.MustRegister(c)
	c.WithLabelValues("accepted").Inc()
	var out bytes.Buffer
	p := &progress{g: reg, w: &out, interval: time.Second, now: time.Now}
	p.tick()
	if got := out.String(); strings.Contains(got, "enrich") || strings.Contains(got, "lag") || !strings.Contains(got, "webhooks 1 (+1) accepted") {
		t.Fatalf("got %q", got)
	}
}

// TestProgressRunsAsLifecyclePart: under Run the reporter writes on every tick and once more
// when stopped, then returns nil (a clean stop).
func TestProgressRuns(t *testing.T) {
	f := newFakeMetrics(t)
	out := &syncBuffer{}
	p := &progress{g: f.reg, w: out, interval: 5 * time.Millisecond, now: time.Now}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(out.lines()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(out.lines()); n < 3 {
		t.Fatalf("want at least two ticks and a final line, got %d: %q", n, out.lines())
	}
}

func TestProgressEnabled(t *testing.T) {
	var buf bytes.Buffer
	devnull, err := os.Open(os.DevNull) // a character device, as a terminal is
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	file, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	on := LogConfig{Progress: ProgressAuto, ProgressInterval: 10 * time.Second}
	tests := []struct {
		name string
		cfg  func(*LogConfig)
		w    func() any
		want bool
	}{
		{"auto on a character device", func(*LogConfig) {}, func() any { return devnull }, true},
		{"auto into a file", func(*LogConfig) {}, func() any { return file }, false},
		{"auto into a buffer", func(*LogConfig) {}, func() any { return &buf }, false},
		{"always into a file", func(l *LogConfig) { l.Progress = ProgressAlways }, func() any { return file }, true},
		{"never on a terminal", func(l *LogConfig) { l.Progress = ProgressNever }, func() any { return devnull }, false},
		{"interval 0", func(l *LogConfig) { l.Progress, l.ProgressInterval = ProgressAlways, 0 }, func() any { return file }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := on
			tc.cfg(&l)
			w, _ := tc.w().(interface{ Write([]byte) (int, error) })
			if got := progressEnabled(l, w); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	if progressEnabled(on, nil) {
		t.Error("no writer must mean no status line")
	}
}

func TestProgressReconciler(t *testing.T) {
	reg := prometheus.NewRegistry()
	leader := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricReconcileLeader, Help: "h"})
	passes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricReconcilePasses, Help: "h"}, []string{"result"})
	last := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricReconcileLast, Help: "h"})
	repaired := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricReconcileFixed, Help: "h"}, []string{"status"})
	reg.MustRegister(leader, passes, last, repaired)
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	p := &progress{g: reg, w: &out, interval: time.Second, now: func() time.Time { return now }}
	p.tick()
	if got := strings.TrimSpace(out.String()); got != "08:00:00 | reconciler standby" {
		t.Fatalf("follower: got %q", got)
	}
	out.Reset()
	leader.Set(1)
	passes.WithLabelValues("success").Add(3)
	passes.WithLabelValues("failure").Inc()
	last.Set(float64(now.Add(-90 * time.Second).Unix()))
	repaired.WithLabelValues("COMPLETED").Add(2)
	p.tick()
	want := "08:00:00 | reconciler leader, last pass 1m30s ago, repaired 2 (+2), failed passes 1 (+1)"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("leader:\n got %q\nwant %q", got, want)
	}
}

// TestProgressCommands: the commands role's part counts created and failed replies.
func TestProgressCommands(t *testing.T) {
	reg := prometheus.NewRegistry()
	replies := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricCommandReplies, Help: "h"}, []string{"outcome", "reason"})
	reg.MustRegister(replies)
	replies.WithLabelValues("created", "none").Add(3)
	replies.WithLabelValues("failed", "unknown_flow").Inc()
	replies.WithLabelValues("failed", "unavailable").Inc()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	p := &progress{g: reg, w: &out, interval: time.Second, now: func() time.Time { return now }}
	p.tick()
	if got, want := strings.TrimSpace(out.String()), "08:00:00 | commands 3 (+3) created, 2 (+2) failed"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestProgressArchiver: the archiver's part counts archived (and redone) sessions, missing files
// and files in flight, with the change since the previous line.
func TestProgressArchiver(t *testing.T) {
	reg := prometheus.NewRegistry()
	sessions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricArchiveSessions, Help: "h"}, []string{"result"})
	missing := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricArchiveMissing, Help: "h"}, []string{"reason"})
	inFlight := prometheus.NewGauge(prometheus.GaugeOpts{Name: metricArchiveInFlight, Help: "h"})
	reg.MustRegister(sessions, missing, inFlight)
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	p := &progress{g: reg, w: &out, interval: time.Second, now: func() time.Time { return now }}
	sessions.WithLabelValues("archived").Add(3)
	p.tick()
	out.Reset()
	sessions.WithLabelValues("archived").Add(2)
	sessions.WithLabelValues("reused").Inc()
	sessions.WithLabelValues("skipped_status").Add(40)
	missing.WithLabelValues("not_found").Inc()
	inFlight.Set(2)
	p.tick()
	want := "08:00:00 | archived 6 (+3), files missing 1 (+1), 2 in flight"
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestQuantile(t *testing.T) {
	b := map[float64]float64{0.1: 50, 1: 100, math.Inf(1): 100}
	if got := quantile(0.5, b); got != 0.1 {
		t.Errorf("p50 = %v, want 0.1", got)
	}
	if got := quantile(0.75, b); math.Abs(got-0.55) > 1e-9 {
		t.Errorf("p75 = %v, want 0.55", got)
	}
	if got := quantile(0.99, map[float64]float64{1: 0, math.Inf(1): 10}); got != 1 {
		t.Errorf("all above the last bound: got %v, want 1", got)
	}
	if got := quantile(0.5, map[float64]float64{}); !math.IsNaN(got) {
		t.Errorf("no data: got %v, want NaN", got)
	}
}

func TestLogProgressValidate(t *testing.T) {
	l := DefaultConfig().Log
	l.Progress = "sometimes"
	if err := l.validate(); err == nil || !strings.Contains(err.Error(), `log.progress "sometimes"`) {
		t.Errorf("got %v", err)
	}
	l = DefaultConfig().Log
	l.ProgressInterval = -time.Second
	if err := l.validate(); err == nil || !strings.Contains(err.Error(), "log.progress_interval") {
		t.Errorf("got %v", err)
	}
}
