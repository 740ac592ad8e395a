package app

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/commands"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/ingress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
)

// Config is the root configuration: one section per component, each owning its keys, defaults
// and validation. config.yaml documents every key.
type Config struct {
	Log            LogConfig          `koanf:"log"`
	Kafka          kafka.Config       `koanf:"kafka"`
	Topics         kafka.TopicsConfig `koanf:"topics"`
	SchemaRegistry serde.Config       `koanf:"schema_registry"`
	Admin          admin.Config       `koanf:"admin"`
	Ingress        ingress.Config     `koanf:"ingress"`
	Webhook        webhook.Config     `koanf:"webhook"`
	IDnow          idnow.Config       `koanf:"idnow"`
	Enrich         enrich.Config      `koanf:"enrich"`
	Simulator      idnowsim.Config    `koanf:"simulator"`
	Reconcile      reconcile.Config   `koanf:"reconcile"`
	Commands       commands.Config    `koanf:"commands"`
	Privacy        privacy.Config     `koanf:"privacy"`
	Archive        archive.Config     `koanf:"archive"`
}

// LogConfig is the `log.*` section.
type LogConfig struct {
	Level  string `koanf:"level"`  // debug, info, warn, error
	Format string `koanf:"format"` // json or text
	// Progress says when the status line is written to stderr: auto (only when stderr is a
	// terminal), always, or never.
	Progress string `koanf:"progress"`
	// ProgressInterval is the status line's period; 0 disables it.
	ProgressInterval time.Duration `koanf:"progress_interval"`
}

// SecretKeys are the keys holding secrets whose names do not say so; `config print` redacts
// them as it does every *secret*, *password* and *token* key.
var SecretKeys = []string{"webhook.static_header.value", "simulator.webhook_headers", "privacy.kek_url", "archive.bucket_url"}

// DefaultConfig returns every section's documented defaults.
func DefaultConfig() Config {
	return Config{
		Log:            LogConfig{Level: "info", Format: "json", Progress: ProgressAuto, ProgressInterval: 10 * time.Second},
		Kafka:          kafka.DefaultConfig(),
		Topics:         kafka.DefaultTopicsConfig(),
		SchemaRegistry: serde.DefaultConfig(),
		Admin:          admin.DefaultConfig(),
		Ingress:        ingress.DefaultConfig(),
		Webhook:        webhook.DefaultConfig(),
		IDnow:          idnow.DefaultConfig(),
		Enrich:         enrich.DefaultConfig(),
		Simulator:      idnowsim.DefaultConfig(),
		Reconcile:      reconcile.DefaultConfig(),
		Commands:       commands.DefaultConfig(),
		Privacy:        privacy.DefaultConfig(),
		Archive:        archive.DefaultConfig(),
	}
}

// Mode is what a process runs.
type Mode string

// The process modes, one per subcommand.
const (
	ModeIngress  Mode = "ingress"
	ModeEnricher Mode = "enricher"
	ModeRun      Mode = "run"
	// ModeReconciler runs the reconciler only (one active per reconcile.group).
	ModeReconciler Mode = "reconciler"
	// ModeCommands runs the commands role only (CreateSessionCommand -> IDnow session -> reply).
	ModeCommands Mode = "commands"
	// ModeArchiver runs the archiver only.
	ModeArchiver Mode = "archiver"
)

func (m Mode) runsIngress() bool  { return m == ModeIngress || m == ModeRun }
func (m Mode) runsEnricher() bool { return m == ModeEnricher || m == ModeRun }

// runsReconciler: the reconciler role always, `run` when reconcile.enabled (default true).
func (m Mode) runsReconciler(c Config) bool {
	return m == ModeReconciler || (m == ModeRun && c.Reconcile.Enabled)
}

// runsCommands: the commands role always, `run` when commands.enabled (default true).
func (m Mode) runsCommands(c Config) bool {
	return m == ModeCommands || (m == ModeRun && c.Commands.Enabled)
}

// runsArchiver: the archiver role always, `run` when archive.enabled.
func (m Mode) runsArchiver(c Config) bool {
	return m == ModeArchiver || (m == ModeRun && c.Archive.Enabled)
}

// Validate checks the sections mode uses. Keys the simulator fills in (webhook and idnow
// endpoints) are checked after it started.
func (c Config) Validate(mode Mode) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.resolveInsecureHTTP()
	add(c.Log.validate())
	add(c.Kafka.Validate())
	if mode != ModeRun {
		// Only `run`, the development mode, may fall back to the embedded broker silently.
		add(c.Kafka.RequireBrokers(string(mode)))
	}
	add(c.Topics.Validate())
	add(c.SchemaRegistry.Validate())
	add(c.Admin.Validate())
	if c.Simulator.Enabled {
		add(c.Simulator.Validate())
	}
	if mode.runsIngress() {
		add(c.Ingress.Validate())
		if !c.Simulator.Enabled {
			add(c.Webhook.Validate())
		}
	}
	if mode.runsEnricher() {
		add(c.Enrich.Validate())
		c.resolvePrivacyDev(mode)
		add(c.Privacy.Validate())
		if !c.Simulator.Enabled {
			add(c.IDnow.Validate())
		}
	}
	if mode.runsArchiver(c) {
		add(c.Archive.Validate())
		if c.Topics.Archived == "" {
			add(errors.New("topics.archived is empty; the archiver writes its ArchivedSession records there (default idnow.sessions.archived)"))
		}
		if c.Archive.BucketURL == "" && mode != ModeRun {
			add(errors.New("archive.bucket_url is empty; the archiver role needs an object store: s3://bucket?region=..., gs://bucket, azblob://container or file:///path (only `run` defaults to file://<data/archive>)"))
		}
		if !c.Simulator.Enabled && !mode.runsEnricher() {
			add(c.IDnow.Validate())
		}
		if !mode.runsEnricher() {
			// privacy.mode encrypt: the archiver encrypts the evidence under the data keys, so
			// it needs the KEK and the pepper as the enricher does.
			add(c.Privacy.Validate())
		}
	}
	if mode.runsReconciler(c) {
		add(c.Reconcile.Validate())
		if !c.Simulator.Enabled && !mode.runsEnricher() {
			add(c.IDnow.Validate())
		}
	}
	if mode.runsCommands(c) {
		add(c.Commands.Validate())
		add(c.Topics.ValidateCommands())
		if !c.Simulator.Enabled && !mode.runsEnricher() && !mode.runsReconciler(c) {
			add(c.IDnow.Validate())
		}
		if c.IDnow.RateLimit > 0 && c.Commands.RateLimit >= c.IDnow.RateLimit {
			add(fmt.Errorf("commands.rate_limit (%g/s) must be below idnow.rate_limit (%g/s): the commands role's calls are part of that budget, and the rest is what enrichment keeps under a burst of commands",
				c.Commands.RateLimit, c.IDnow.RateLimit))
		}
	}
	return errors.Join(errs...)
}

// resolveInsecureHTTP derives the settings that follow from others: the simulator serves plain
// http only, so enabling it allows http IDnow URLs; the webhook verifier's JWKS fetch follows
// idnow.allow_insecure_http (both talk to IDnow, one switch for both).
func (c *Config) resolveInsecureHTTP() {
	if c.Simulator.Enabled {
		c.IDnow.AllowInsecureHTTP = true
	}
	c.Webhook.AllowInsecureHTTP = c.IDnow.AllowInsecureHTTP
}

func (l LogConfig) validate() error {
	if _, err := l.level(); err != nil {
		return err
	}
	if l.Format != "json" && l.Format != "text" {
		return fmt.Errorf("log.format %q must be json or text", l.Format)
	}
	switch l.Progress {
	case ProgressAuto, ProgressAlways, ProgressNever:
	default:
		return fmt.Errorf("log.progress %q must be auto (status line when stderr is a terminal), always or never", l.Progress)
	}
	if l.ProgressInterval < 0 {
		return fmt.Errorf("log.progress_interval %s must be 0 (no status line) or positive, e.g. 10s", l.ProgressInterval)
	}
	return nil
}

func (l LogConfig) level() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(l.Level))); err != nil {
		return 0, fmt.Errorf("log.level %q must be debug, info, warn or error", l.Level)
	}
	return lv, nil
}

// NewLogger builds the process logger from the `log.*` section.
func NewLogger(l LogConfig, w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	lv, err := l.level()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: durationsAsText}
	// With tracing on, lines logged under a span carry its trace_id and span_id; without it no
	// context carries a span and lines are unchanged.
	if l.Format == "text" {
		return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts))), nil
	}
	return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts))), nil
}

// durationsAsText writes time.Duration values the way config.yaml spells them ("1m30s"):
// slog's JSON handler would print them as integer nanoseconds, which nobody reads correctly at
// 3 a.m. The text handler already does this; applying it to both keeps them identical.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
