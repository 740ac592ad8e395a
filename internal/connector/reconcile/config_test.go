package reconcile

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"interval", func(c *Config) { c.Interval = 0 }, "reconcile.interval"},
		{"lookback", func(c *Config) { c.Lookback = time.Second }, "reconcile.lookback"},
		{"flow with a slash", func(c *Config) { c.Flows = []string{"a/b"} }, "reconcile.flows"},
		{"empty flow", func(c *Config) { c.Flows = []string{" "} }, "reconcile.flows"},
		{"group", func(c *Config) { c.Group = "" }, "reconcile.group"},
		{"rate", func(c *Config) { c.RateLimit = 0 }, "reconcile.rate_limit"},
		{"concurrency", func(c *Config) { c.Concurrency = 0 }, "reconcile.concurrency"},
		{"page size", func(c *Config) { c.PageSize = 101 }, "reconcile.page_size"},
		{"pass timeout", func(c *Config) { c.PassTimeout = 0 }, "reconcile.pass_timeout"},
		{"grace", func(c *Config) { c.Grace = -time.Second }, "reconcile.grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestEventName(t *testing.T) {
	for status, want := range map[string]string{
		"CREATED": "session.created", "RUNNING": "session.started", "COMPLETED": "session.completed",
		"aborted": "session.aborted", "EXPIRED": "session.expired", "ERROR": "session.error", "ON_HOLD": "session.on_hold",
	} {
		if got := EventName(status); got != want {
			t.Errorf("EventName(%s) = %s, want %s", status, got, want)
		}
	}
}
