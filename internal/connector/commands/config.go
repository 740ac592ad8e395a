package commands

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

// Config is the `commands.*` config section.
type Config struct {
	// Enabled runs the role inside `run`; the `commands` role always runs it.
	Enabled bool `koanf:"enabled"`
	// Group is the consumer group on topics.commands, the same on every replica.
	Group string `koanf:"group"`
	// TransactionalID is the prefix of the transactional id, <prefix>-<instance_id>.
	TransactionalID string `koanf:"transactional_id"`
	// InstanceID is unique per live replica and stable across its restarts (so a restarted
	// replica fences its predecessor's open transaction at once); empty = host name.
	InstanceID string `koanf:"instance_id"`
	// Concurrency is how many commands of a batch are worked on at once.
	Concurrency int `koanf:"concurrency"`
	// MaxPollRecords bounds one batch (one reply transaction).
	MaxPollRecords int `koanf:"max_poll_records"`
	// RateLimit caps the role's own IDnow requests per second inside the shared
	// idnow.rate_limit, so a burst of commands leaves the rest of that budget to the enricher.
	RateLimit float64 `koanf:"rate_limit"`
	// RedirectAllowlist lists the URL prefixes a command's redirectUrl may start with (scheme,
	// host and port compared exactly, then the path as a prefix); empty refuses every redirectUrl.
	RedirectAllowlist []string `koanf:"redirect_allowlist"`
	// DedupeWindow is how long a command id's reply is kept to answer repeats; also the
	// retention.ms of topics.commands_state when the role creates it.
	DedupeWindow time.Duration `koanf:"dedupe_window"`
	// FlowCacheTTL is how long the flow list (for flowName) is used before it is read again.
	FlowCacheTTL time.Duration `koanf:"flow_cache_ttl"`
	// FlowRefreshInterval is the least time between two reads of the flow list caused by
	// unknown names, so a stream of commands naming a missing flow costs one call per interval.
	FlowRefreshInterval time.Duration `koanf:"flow_refresh_interval"`
	// LookupPages bounds how many pages (of 100) of a flow's newest sessions are read to find
	// the session of an ambiguous create.
	LookupPages int `koanf:"lookup_pages"`
	// LookupDelay is how old the latest create attempt must be before its session is looked
	// for: a request still being processed at IDnow must have finished.
	LookupDelay time.Duration `koanf:"lookup_delay"`
	// LookupClockSkew widens the lookup window (sessions created after the first attempt) for
	// the difference between this host's clock and IDnow's.
	LookupClockSkew time.Duration `koanf:"lookup_clock_skew"`
	// GiveUpAfter bounds the work on one command while IDnow keeps failing (5xx, timeouts,
	// 429); then it is answered CommandFailed reason unavailable.
	GiveUpAfter time.Duration `koanf:"give_up_after"`
	// Retry shapes the backoff between attempts on one command.
	Retry retry.Config `koanf:"retry"`
	// TransactionTimeout is the broker-side transaction timeout.
	TransactionTimeout time.Duration `koanf:"transaction_timeout"`
	// SessionTimeout is how long a crashed member keeps its partitions.
	SessionTimeout time.Duration `koanf:"session_timeout"`
	// ShutdownTimeout bounds ending the open transaction and leaving the group on stop.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
}

// DefaultConfig returns the documented defaults of `commands.*`.
func DefaultConfig() Config {
	return Config{
		Enabled: true, Group: "idnow-connector-commands", TransactionalID: "idnow-connector-commands",
		Concurrency: 8, MaxPollRecords: 500, RateLimit: 10,
		DedupeWindow: 24 * time.Hour, FlowCacheTTL: 5 * time.Minute, FlowRefreshInterval: 10 * time.Second,
		LookupPages: 10, LookupDelay: 15 * time.Second, LookupClockSkew: 2 * time.Minute, GiveUpAfter: 5 * time.Minute,
		Retry:              retry.Config{InitialBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, Jitter: 0.2},
		TransactionTimeout: time.Minute, SessionTimeout: 45 * time.Second, ShutdownTimeout: 30 * time.Second,
	}
}

// Validate reports every invalid setting by key.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Group == "" {
		bad("commands.group must not be empty (default idnow-connector-commands)")
	}
	if c.TransactionalID == "" {
		bad("commands.transactional_id must not be empty (default idnow-connector-commands)")
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		bad("commands.concurrency %d is out of range; set 1..256 (default 8)", c.Concurrency)
	}
	if c.MaxPollRecords < 1 {
		bad("commands.max_poll_records must be positive (default 500)")
	}
	if !(c.RateLimit > 0) {
		bad("commands.rate_limit must be positive requests/s, e.g. 10 (keep it below idnow.rate_limit so enrichment keeps the rest)")
	}
	for _, p := range c.RedirectAllowlist {
		if _, err := parseAllowed(p); err != nil {
			bad("commands.redirect_allowlist: %v", err)
		}
	}
	if c.DedupeWindow < time.Minute {
		bad("commands.dedupe_window %s is too short; set at least 1m (default 24h)", c.DedupeWindow)
	}
	if c.FlowCacheTTL <= 0 || c.FlowRefreshInterval < 0 {
		bad("commands.flow_cache_ttl must be positive and commands.flow_refresh_interval not negative (defaults 5m and 10s)")
	}
	if c.LookupPages < 1 || c.LookupPages > 1000 {
		bad("commands.lookup_pages %d is out of range; set 1..1000 (default 10)", c.LookupPages)
	}
	if c.LookupDelay < 0 || c.LookupClockSkew < 0 {
		bad("commands.lookup_delay and commands.lookup_clock_skew must not be negative (defaults 15s and 2m)")
	}
	if c.GiveUpAfter < time.Second {
		bad("commands.give_up_after %s is too short; set at least 1s (default 5m)", c.GiveUpAfter)
	}
	if err := c.Retry.Validate("commands.retry"); err != nil {
		errs = append(errs, err)
	}
	if c.TransactionTimeout < time.Second || c.SessionTimeout < time.Second || c.ShutdownTimeout < time.Second {
		bad("commands.transaction_timeout, session_timeout and shutdown_timeout must be at least 1s (defaults 1m, 45s, 30s)")
	}
	return errors.Join(errs...)
}

// StopTimeout is how long Run may take after its context ends.
func (c Config) StopTimeout() time.Duration { return c.ShutdownTimeout + 5*time.Second }

func (c Config) instanceID() (string, error) {
	if c.InstanceID != "" {
		return c.InstanceID, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("commands.instance_id is empty and the host name is unavailable (%w): set commands.instance_id", err)
	}
	if h == "" {
		return "", errors.New("commands.instance_id is empty and so is the host name: set commands.instance_id")
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, h), nil
}

// allowed is one parsed commands.redirect_allowlist entry.
type allowed struct {
	scheme, host, path string
}

func parseAllowed(p string) (allowed, error) {
	u, err := url.Parse(p)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return allowed{}, fmt.Errorf("%q must be an absolute http(s) URL prefix without user, query or fragment, e.g. https://onboarding.example.com/idnow/", p)
	}
	return allowed{scheme: u.Scheme, host: strings.ToLower(u.Host), path: u.EscapedPath()}, nil
}

// redirectAllowed reports whether raw starts with an allowlist entry: same scheme and host
// (port included), and the entry's path as a prefix of raw's.
func redirectAllowed(list []allowed, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Host == "" || strings.Contains(u.Path, "/..") || strings.Contains(u.Path, "\\") {
		// Dot segments would let a prefix-matching URL resolve outside the allowed path.
		return false
	}
	for _, a := range list {
		if u.Scheme == a.scheme && strings.ToLower(u.Host) == a.host && strings.HasPrefix(u.EscapedPath(), a.path) {
			return true
		}
	}
	return false
}
