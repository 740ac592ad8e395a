// Package retry is the project's one retry engine: a capped exponential backoff with jitter built
// from one Config, and Wait, the context-aware sleep between attempts. Retry loops are written
// plainly at the call site, as franz-go writes its own (pkg/kgo/client.go: shouldRetry, waitTries):
//
//	b := cfg.NewBackOff()
//	for attempt := 1; ; attempt++ {
//		err := call(ctx)
//		if err == nil || !shouldRetry(attempt, err) {
//			return err
//		}
//		if err := retry.Wait(ctx, b.NextAfter(retryAfter(err), maxRetryAfter)); err != nil {
//			return err
//		}
//	}
//
// Keeping the loop in view means the decisions (what is retryable, how many attempts, whether the
// caller's deadline allows another wait) read top to bottom instead of hiding in callbacks.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// DefaultMultiplier is the growth factor used when Config.Multiplier is 0.
const DefaultMultiplier = 2

// Config shapes a capped exponential backoff with jitter. The koanf keys are the ones every
// component's retry section already uses (initial_backoff, max_backoff); the growth factor and
// the jitter are a component's design choice rather than an operator's, so they carry no key.
type Config struct {
	// InitialBackoff is the first wait.
	InitialBackoff time.Duration `koanf:"initial_backoff"`
	// MaxBackoff caps the un-jittered wait; a jittered wait may exceed it by the Jitter fraction.
	MaxBackoff time.Duration `koanf:"max_backoff"`
	// Multiplier grows the wait after each retry; 0 means DefaultMultiplier.
	Multiplier float64 `koanf:"-"`
	// Jitter is the randomization factor: each wait d is drawn uniformly from
	// [d*(1-Jitter), d*(1+Jitter)], so replicas that failed together do not retry together.
	// 0 gives exact, deterministic waits.
	Jitter float64 `koanf:"-"`
}

// Validate reports every problem at once. section is the config path of the retry section
// (e.g. "idnow.retry"), so each message names the full key the operator must change.
func (c Config) Validate(section string) error {
	var errs []error
	if c.InitialBackoff <= 0 {
		errs = append(errs, fmt.Errorf("%s.initial_backoff must be a positive duration (e.g. 200ms), got %s", section, c.InitialBackoff))
	}
	if c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("%s.max_backoff (%s) must be at least %s.initial_backoff (%s): raise max_backoff (e.g. 30s) or lower initial_backoff",
			section, c.MaxBackoff, section, c.InitialBackoff))
	}
	if c.Multiplier != 0 && c.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("%s: multiplier %g would shrink the wait after each retry: use a value of at least 1, or 0 for %d", section, c.Multiplier, DefaultMultiplier))
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("%s: jitter %g is outside [0, 1): use e.g. 0.2 to spread waits by ±20%%, or 0 for none", section, c.Jitter))
	}
	return errors.Join(errs...)
}

// NewBackOff returns a backoff at its first interval. A BackOff is not safe for concurrent
// use: create one per retry loop.
func (c Config) NewBackOff() *BackOff {
	return c.newBackOff(rand.Float64)
}

// newBackOff takes the random source so tests can pin the jitter.
func (c Config) newBackOff(random func() float64) *BackOff {
	mult := c.Multiplier
	if mult == 0 {
		mult = DefaultMultiplier
	}
	b := &BackOff{initial: c.InitialBackoff, maxInterval: c.MaxBackoff, multiplier: mult, jitter: c.Jitter, random: random}
	b.Reset()
	return b
}

// BackOff hands out the waits of one retry loop. The formula is cenkalti/backoff's
// ExponentialBackOff (which the project used before), so waits are unchanged.
type BackOff struct {
	initial, maxInterval time.Duration
	multiplier, jitter   float64
	random               func() float64
	current              time.Duration
}

// Reset starts the sequence again from InitialBackoff, e.g. after the loop made progress.
func (b *BackOff) Reset() { b.current = b.initial }

// NextBackOff returns the next wait and grows the interval for the one after, up to MaxBackoff.
func (b *BackOff) NextBackOff() time.Duration {
	next := b.current
	if b.jitter > 0 {
		delta := b.jitter * float64(b.current)
		lo, hi := float64(b.current)-delta, float64(b.current)+delta
		// +1 so that hi itself can be drawn.
		next = time.Duration(lo + b.random()*(hi-lo+1))
		// MaxBackoff is a promise to the operator ("never wait longer than"): jitter spreads
		// waits below it, never above.
		next = min(next, b.maxInterval)
	}
	if float64(b.current) >= float64(b.maxInterval)/b.multiplier {
		// Checked before multiplying, so a large interval cannot overflow.
		b.current = b.maxInterval
	} else {
		b.current = time.Duration(float64(b.current) * b.multiplier)
	}
	return next
}

// NextAfter returns the next wait, lengthened to a server's Retry-After when that is longer.
// limit caps how far Retry-After can stretch it, so a bogus hint of hours cannot stall the
// loop; a retryAfter of 0 means none was given. The backoff advances either way, so a server
// that keeps sending short hints still meets a growing wait.
func (b *BackOff) NextAfter(retryAfter, limit time.Duration) time.Duration {
	next := b.NextBackOff()
	if retryAfter > 0 {
		next = max(next, min(retryAfter, limit))
	}
	return next
}

// Wait sleeps for d or until ctx is done, whichever comes first, and returns ctx's cause in
// the latter case. A ctx that is already done returns at once, even for d <= 0, so a loop
// never starts another attempt after its caller gave up.
func Wait(ctx context.Context, d time.Duration) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// FitsDeadline reports whether waiting d still leaves ctx's deadline ahead. A loop that would
// sleep past the caller's deadline should return the last error now instead: the caller gets
// a meaningful failure rather than a bare deadline error after a pointless wait.
func FitsDeadline(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) >= d
}
