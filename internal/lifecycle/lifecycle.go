// Package lifecycle runs the long-lived parts of a process with one shape: every part is a
// `Run(ctx) error` that returns when ctx ends (a clean stop: nil) or when the part fails. A
// Group starts its parts in order, and when the process is told to stop or any part returns,
// stops them in reverse order, one at a time, each within its own budget, then runs the
// cleanup functions registered with Defer (last in, first out). Errors are joined and each one
// names the part it came from, so "which part failed" is always in the exit message.
//
// The shape follows Alertmanager's app/lifecycle.go and Benthos' stream lifecycle: intake is
// added last so it is stopped first, the admin server is added first so probes see the whole
// shutdown.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// RunFunc is a long-lived part: it blocks until ctx ends or the part fails. A part that stops
// on its own with a nil error before ctx ended is treated as a failure ("stopped unexpectedly"):
// nothing in a connector process is supposed to finish by itself.
type RunFunc func(ctx context.Context) error

// Part is one registered long-lived part.
type Part struct {
	// Name appears in logs and errors ("ingress", "enricher", "admin").
	Name string
	// Run is the part itself.
	Run RunFunc
	// StopTimeout bounds how long the Group waits for Run to return after its context was
	// cancelled; past it the Group gives up on the part, records an error and goes on.
	StopTimeout time.Duration
	// Release, when set, frees what the part holds before Run (a bound listener) if the Group
	// is abandoned without running; Run itself releases everything when it returns.
	Release func() error
}

type cleanup struct {
	name string
	fn   func(ctx context.Context) error
}

// Group is a set of parts run together. Build it with Add and Defer, then call Run once.
type Group struct {
	log      *slog.Logger
	parts    []Part
	cleanups []cleanup
}

// New returns an empty Group logging to log; a nil log discards the lines, as everywhere in the
// project.
func New(log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Group{log: log}
}

// Add registers a part; parts start in the order they are added and stop in reverse.
func (g *Group) Add(p Part) { g.parts = append(g.parts, p) }

// Defer registers a cleanup (closing a client, flushing a producer) run after every part has
// stopped, last registered first, whatever happened before.
func (g *Group) Defer(name string, fn func(ctx context.Context) error) {
	g.cleanups = append(g.cleanups, cleanup{name: name, fn: fn})
}

// Budget is the longest a shutdown can take: the sum of the parts' stop timeouts plus the
// cleanups' bound. It is derived from the parts' own settings, so no part (for example an
// enricher with a long enrich.shutdown_timeout) is cut off by a budget chosen for another.
func (g *Group) Budget() time.Duration {
	total := CleanupTimeout
	for _, p := range g.parts {
		total += p.StopTimeout
	}
	return total
}

// Abandon releases every part that was added but never run, in reverse order, then runs the
// cleanups: for a start-up that failed half-way.
func (g *Group) Abandon(ctx context.Context) error {
	var errs []error
	for i := len(g.parts) - 1; i >= 0; i-- {
		if p := g.parts[i]; p.Release != nil {
			if err := p.Release(); err != nil {
				errs = append(errs, fmt.Errorf("%s: release: %w", p.Name, err))
			}
		}
	}
	return errors.Join(append(errs, g.runCleanups(ctx))...)
}

func (g *Group) runCleanups(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(g.cleanups) - 1; i >= 0; i-- {
		c := g.cleanups[i]
		if err := c.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

type running struct {
	part   Part
	cancel context.CancelFunc
	done   chan struct{}
	err    error // written before done is closed
}

// Failure is the error of a part that stopped on its own while the Group was running.
type Failure struct {
	Part string
	Err  error
}

func (f *Failure) Error() string {
	if f.Err == nil {
		return f.Part + ": stopped unexpectedly"
	}
	return f.Part + ": " + f.Err.Error()
}

func (f *Failure) Unwrap() error { return f.Err }

// Run starts every part, waits until ctx ends or a part returns, then stops every part in
// reverse order and runs the cleanups. It returns nil after a clean stop requested through ctx,
// and otherwise the joined errors, the first of them a *Failure naming the part that ended the
// run.
func (g *Group) Run(ctx context.Context) error {
	parts := make([]*running, 0, len(g.parts))
	ended := make(chan *running, len(g.parts))
	for _, p := range g.parts {
		// Each part gets its own context, detached from ctx, so the Group decides the order
		// in which they see the stop.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r := &running{part: p, cancel: cancel, done: make(chan struct{})}
		parts = append(parts, r)
		go func() {
			defer close(r.done)
			r.err = p.Run(pctx)
			ended <- r
		}()
	}

	var errs []error
	select {
	case <-ctx.Done():
		g.log.Info("shutting down")
	case r := <-ended:
		f := &Failure{Part: r.part.Name, Err: r.err}
		g.log.Error("a part stopped; shutting down", slog.String("part", r.part.Name), slog.Any("err", f))
		errs = append(errs, f)
	}

	for i := len(parts) - 1; i >= 0; i-- {
		r := parts[i]
		r.cancel()
		timer := time.NewTimer(r.part.StopTimeout)
		select {
		case <-r.done:
			timer.Stop()
			if r.err != nil && !alreadyReported(errs, r) {
				errs = append(errs, fmt.Errorf("%s: stop: %w", r.part.Name, r.err))
			}
		case <-timer.C:
			errs = append(errs, fmt.Errorf("%s: did not stop within %s", r.part.Name, r.part.StopTimeout))
		}
	}

	return errors.Join(append(errs, g.runCleanups(ctx))...)
}

// CleanupTimeout bounds the cleanups together: flushing a producer and closing clients.
const CleanupTimeout = 15 * time.Second

// alreadyReported tells whether r's error is the Failure that ended the run.
func alreadyReported(errs []error, r *running) bool {
	for _, e := range errs {
		var f *Failure
		if errors.As(e, &f) && f.Part == r.part.Name {
			return true
		}
	}
	return false
}
