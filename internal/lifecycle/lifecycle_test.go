package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder notes the order in which parts start, stop and clean up.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// blocking is a well-behaved part: runs until ctx ends, then returns nil.
func blocking(rec *recorder, name string, started chan<- struct{}) RunFunc {
	return func(ctx context.Context) error {
		rec.add("start " + name)
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		rec.add("stop " + name)
		return nil
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestCleanStopIsReverseOrderThenCleanupsLIFO(t *testing.T) {
	rec := &recorder{}
	started := make(chan struct{}, 3)
	g := New(quiet())
	for _, n := range []string{"admin", "enricher", "ingress"} {
		g.Add(Part{Name: n, Run: blocking(rec, n, started), StopTimeout: time.Second})
	}
	g.Defer("close client", func(context.Context) error { rec.add("cleanup client"); return nil })
	g.Defer("flush producer", func(context.Context) error { rec.add("cleanup producer"); return nil })

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	for range 3 {
		<-started
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	got := rec.get()[3:] // start order is concurrent; stop order is not
	want := []string{"stop ingress", "stop enricher", "stop admin", "cleanup producer", "cleanup client"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stop order = %v, want %v", got, want)
	}
}

func TestFailingPartEndsTheRunAndIsNamed(t *testing.T) {
	rec := &recorder{}
	boom := errors.New("listener closed: use of closed network connection")
	g := New(quiet())
	g.Add(Part{Name: "admin", Run: blocking(rec, "admin", nil), StopTimeout: time.Second})
	g.Add(Part{Name: "ingress", Run: func(context.Context) error { return boom }, StopTimeout: time.Second})
	g.Add(Part{Name: "enricher", Run: blocking(rec, "enricher", nil), StopTimeout: time.Second})

	err := g.Run(t.Context())
	var f *Failure
	if !errors.As(err, &f) || f.Part != "ingress" || !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want a Failure naming ingress wrapping %v", err, boom)
	}
	if !strings.Contains(err.Error(), "ingress: listener closed") {
		t.Fatalf("error %q does not name the part", err)
	}
	if strings.Count(err.Error(), "listener closed") != 1 {
		t.Fatalf("the failure is reported twice: %q", err)
	}
	got := rec.get()
	if !contains(got, "stop enricher") || !contains(got, "stop admin") {
		t.Fatalf("the other parts were not stopped: %v", got)
	}
}

func TestPartReturningNilOnItsOwnIsAFailure(t *testing.T) {
	g := New(quiet())
	g.Add(Part{Name: "admin", Run: func(context.Context) error { return nil }, StopTimeout: time.Second})
	err := g.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "admin: stopped unexpectedly") {
		t.Fatalf("Run = %v, want admin: stopped unexpectedly", err)
	}
}

func TestStuckPartIsAbandonedAfterItsStopTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stuck := func(ctx context.Context) error {
		<-ctx.Done()
		<-release // ignores the stop
		return nil
	}
	var cleaned bool
	g := New(quiet())
	g.Add(Part{Name: "enricher", Run: stuck, StopTimeout: 50 * time.Millisecond})
	g.Defer("close", func(context.Context) error { cleaned = true; return nil })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := g.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "enricher: did not stop within 50ms") {
		t.Fatalf("Run = %v, want the stuck part named", err)
	}
	if !cleaned {
		t.Fatal("cleanups must run even when a part is stuck")
	}
}

func TestStopAndCleanupErrorsAreJoined(t *testing.T) {
	g := New(quiet())
	g.Add(Part{Name: "enricher", Run: func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("abort transaction: broker gone")
	}, StopTimeout: time.Second})
	g.Defer("ingress producer", func(context.Context) error { return errors.New("flush: timed out") })
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := g.Run(ctx)
	for _, want := range []string{"enricher: stop: abort transaction", "ingress producer: flush: timed out"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v, want it to contain %q", err, want)
		}
	}
}

func TestBudgetIsTheSumOfStopTimeoutsPlusCleanup(t *testing.T) {
	g := New(quiet())
	g.Add(Part{Name: "a", StopTimeout: 10 * time.Second})
	g.Add(Part{Name: "b", StopTimeout: 60 * time.Second})
	if got, want := g.Budget(), 70*time.Second+CleanupTimeout; got != want {
		t.Fatalf("Budget = %s, want %s", got, want)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestAbandonReleasesPartsInReverseThenCleansUp(t *testing.T) {
	rec := &recorder{}
	g := New(quiet())
	g.Add(Part{Name: "admin", Release: func() error { rec.add("release admin"); return nil }})
	g.Add(Part{Name: "simulator"}) // nothing to release
	g.Add(Part{Name: "ingress", Release: func() error { rec.add("release ingress"); return errors.New("close: bad fd") }})
	g.Defer("embedded broker", func(context.Context) error { rec.add("cleanup broker"); return nil })
	err := g.Abandon(t.Context())
	if err == nil || !strings.Contains(err.Error(), "ingress: release: close: bad fd") {
		t.Fatalf("Abandon = %v, want the release error named", err)
	}
	want := "release ingress,release admin,cleanup broker"
	if got := strings.Join(rec.get(), ","); got != want {
		t.Fatalf("order = %s, want %s", got, want)
	}
}

// TestNilLogDiscards: a nil logger is the project's "discard", not a panic when a part fails
// and the Group logs it.
func TestNilLogDiscards(t *testing.T) {
	g := New(nil)
	g.Add(Part{Name: "broken", Run: func(context.Context) error { return errors.New("socket closed") }, StopTimeout: time.Second})
	if err := g.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("Run = %v, want the failure naming the part", err)
	}
}
