package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Config is the `reconcile.*` config section.
type Config struct {
	// Enabled runs the reconciler inside `run` (the all-in-one mode). The `reconciler` role
	// always runs it; ingress and enricher never do.
	Enabled bool `koanf:"enabled"`
	// Interval is the time between the starts of two passes.
	Interval time.Duration `koanf:"interval"`
	// Lookback is how far back each pass lists sessions, by createdAt. IDnow sessions live 24 h
	// by default; a session created before the lookback is never repaired.
	Lookback time.Duration `koanf:"lookback"`
	// Flows lists the flow ids to reconcile; empty means every flow GET /flows returns.
	Flows []string `koanf:"flows"`
	// Group is the consumer group whose member owning partition 0 of topics.state is the one
	// active reconciler; every reconciler replica of a deployment uses the same group.
	Group string `koanf:"group"`
	// RateLimit bounds the reconciler's own IDnow API requests per second, below the client's
	// idnow.rate_limit, so a pass never starves the enricher.
	RateLimit float64 `koanf:"rate_limit"`
	// Concurrency is how many flows are listed at once.
	Concurrency int `koanf:"concurrency"`
	// PageSize is the list-sessions page size (IDnow caps it at 100).
	PageSize int `koanf:"page_size"`
	// PassTimeout bounds one pass; a pass that runs over is abandoned and counted as failed.
	PassTimeout time.Duration `koanf:"pass_timeout"`
	// Grace leaves sessions that changed (updatedAt) more recently than this to the next pass:
	// their webhook may still be on its way, and a reconciliation event racing it would double
	// a non-terminal status (terminal ones are deduplicated by the enricher anyway).
	Grace time.Duration `koanf:"grace"`
}

// DefaultConfig returns the documented defaults of `reconcile.*`.
func DefaultConfig() Config {
	return Config{
		Enabled: true, Interval: 5 * time.Minute, Lookback: 72 * time.Hour, Group: "idnow-connector-reconciler",
		RateLimit: 5, Concurrency: 2, PageSize: 100, PassTimeout: 4 * time.Minute, Grace: 2 * time.Minute,
	}
}

// Validate reports every invalid setting by key.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Interval < time.Second {
		bad("reconcile.interval %s is too short; set at least 1s (default 5m)", c.Interval)
	}
	if c.Lookback < time.Minute {
		bad("reconcile.lookback %s is too short; set at least 1m (default 72h: IDnow sessions live 24h, plus margin)", c.Lookback)
	}
	for _, f := range c.Flows {
		if strings.TrimSpace(f) == "" || strings.ContainsAny(f, "/?#") {
			bad("reconcile.flows: %q is not a flow id; list ids as GET /flows returns them, or leave the list empty for all flows", f)
		}
	}
	if c.Group == "" {
		bad("reconcile.group must not be empty (default idnow-connector-reconciler)")
	}
	if !(c.RateLimit > 0) {
		bad("reconcile.rate_limit must be positive requests/s, e.g. 5 (keep it well below idnow.rate_limit)")
	}
	if c.Concurrency < 1 || c.Concurrency > 32 {
		bad("reconcile.concurrency %d is out of range; set 1..32 (default 2)", c.Concurrency)
	}
	if c.PageSize < 1 || c.PageSize > 100 {
		bad("reconcile.page_size %d is out of range; set 1..100 (IDnow's maximum)", c.PageSize)
	}
	if c.PassTimeout < time.Second {
		bad("reconcile.pass_timeout %s is too short; set at least 1s (default 4m, below reconcile.interval)", c.PassTimeout)
	}
	if c.Grace < 0 || c.Grace >= c.Lookback {
		bad("reconcile.grace %s must be within 0..reconcile.lookback (default 2m)", c.Grace)
	}
	return errors.Join(errs...)
}
