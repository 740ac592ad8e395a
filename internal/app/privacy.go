package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// keysRetryWait is how long a running enricher waits before following the keys topic again
// after a failure; it follows it continuously otherwise (erasures by `idnow-connector erase`, keys
// made by other members, its own keys committed).
const keysRetryWait = 5 * time.Second

// resolvePrivacyDev gives `run` (development) a local key-encryption keyset and pepper under the
// data folder when privacy needs keys and none are configured; they are created on start-up.
func (c *Config) resolvePrivacyDev(mode Mode) {
	if mode == ModeRun && c.Privacy.NeedsKeys() {
		c.devPrivacyFiles()
	}
}

// devPrivacyFiles fills empty privacy.kek_keyset_file (when no kek_url) and privacy.pepper_file
// with data/privacy/kek.json and pepper.json, beside the embedded broker's data folder.
func (c *Config) devPrivacyFiles() {
	p := &c.Privacy
	dir := filepath.Join("data", "privacy")
	if c.Kafka.Embedded.DataDir != "" {
		dir = filepath.Join(filepath.Dir(c.Kafka.Embedded.DataDir), "privacy")
	}
	if p.KEKURL == "" && p.KEKKeysetFile == "" {
		p.KEKKeysetFile = filepath.Join(dir, "kek.json")
	}
	if p.PepperFile == "" {
		p.PepperFile = filepath.Join(dir, "pepper.json")
	}
}

// PrivacyInit creates what privacy.* names and is missing: the development KEK keyset file
// (never a KMS key) and the pepper file, wrapped by the KEK. It returns one line per file
// created. Existing files are kept: replacing either makes existing data unreadable or changes
// every pseudonym.
func PrivacyInit(ctx context.Context, c privacy.Config) ([]string, error) {
	var made []string
	if c.KEKURL == "" && c.KEKKeysetFile == "" {
		return nil, errors.New("privacy init: set privacy.kek_url (a KMS key) or privacy.kek_keyset_file (development) first")
	}
	if c.KEKKeysetFile != "" {
		if _, err := os.Stat(c.KEKKeysetFile); errors.Is(err, os.ErrNotExist) {
			if err := privacy.NewKEKKeysetFile(c.KEKKeysetFile); err != nil {
				return made, err
			}
			made = append(made, "created development key-encryption keyset "+c.KEKKeysetFile+" (cleartext: for development only; use privacy.kek_url with a KMS in production)")
		}
	}
	if c.PepperFile == "" {
		return made, errors.New("privacy init: set privacy.pepper_file")
	}
	if _, err := os.Stat(c.PepperFile); errors.Is(err, os.ErrNotExist) {
		kek, err := privacy.OpenKEK(ctx, c)
		if err != nil {
			return made, err
		}
		defer kek.Close()
		if err := privacy.NewPepperFile(c.PepperFile, kek); err != nil {
			return made, err
		}
		made = append(made, "created pepper "+c.PepperFile+" (wrapped by the key-encryption key "+kek.Source+")")
	}
	return made, nil
}

// privacyParts holds what privacy.* built for the enricher.
type privacyParts struct {
	protector *privacy.Protector
	ring      *privacy.Keyring
}

// startPrivacy builds the enricher's Protector: opens the KEK and pepper, and in encrypt mode
// checks the keys topic, reads it to the end and registers its refresh as a part. In plain
// mode without pseudonyms it returns nil and warns that personal data is written in clear text.
func (a *App) startPrivacy(ctx context.Context, opts []kgo.Opt) (*privacyParts, error) {
	pc := a.cfg.Privacy
	if pc.Mode == schemas.PrivacyPlain {
		a.log.Warn("privacy.mode is plain: personal fields (names, birth dates, document numbers, data-block content) are written in clear text to "+a.cfg.Topics.Enriched+"; set privacy.mode: encrypt (docs/privacy.md)",
			slog.String("topic", a.cfg.Topics.Enriched))
	}
	if !pc.NeedsKeys() {
		if pc.Mode == schemas.PrivacyDrop {
			p, err := privacy.NewProtector(pc, privacy.ProtectorDeps{})
			if err != nil {
				return nil, err
			}
			return &privacyParts{protector: p}, nil
		}
		return nil, nil
	}
	if a.mode == ModeRun {
		made, err := PrivacyInit(ctx, pc)
		for _, m := range made {
			a.log.Warn(m)
		}
		if err != nil {
			return nil, err
		}
	}
	kek, err := privacy.OpenKEK(ctx, pc)
	if err != nil {
		return nil, err
	}
	a.group.Defer("key-encryption key", func(context.Context) error { return kek.Close() })
	pepper, err := privacy.LoadPepper(pc.PepperFile, kek)
	if err != nil {
		return nil, err
	}
	deps := privacy.ProtectorDeps{Pepper: pepper, KeysTopic: a.cfg.Topics.Keys}
	var ring *privacy.Keyring
	if pc.Mode == schemas.PrivacyEncrypt {
		if ring, err = privacy.NewKeyring(kek, pc.KeyCacheSize); err != nil {
			return nil, err
		}
		if err := ring.Instrument(a.reg); err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, startupTimeout)
		defer cancel()
		if err := ensureKeysTopic(sctx, opts, a.cfg.Topics); err != nil {
			return nil, err
		}
		kt := privacy.NewKeysTopic(opts, a.cfg.Topics.Keys, ring, a.log.With(slog.String("component", "privacy")))
		n, err := kt.CatchUp(sctx)
		if err != nil {
			return nil, fmt.Errorf("privacy start-up: %w", err)
		}
		a.log.Info("privacy: encrypting personal fields", slog.String("key_scope", pc.KeyScope), slog.String("kek", kek.Source),
			slog.String("topic", a.cfg.Topics.Keys), slog.Int("keys_records", n))
		a.group.Add(lifecycle.Part{Name: "privacy keys", Run: func(ctx context.Context) error { return kt.Run(ctx, keysRetryWait) }, StopTimeout: 2 * time.Second})
		deps.Ring = ring
	}
	p, err := privacy.NewProtector(pc, deps)
	if err != nil {
		return nil, err
	}
	return &privacyParts{protector: p, ring: ring}, nil
}

// ensureKeysTopic creates topics.keys (compacted) when missing, and refuses one whose
// cleanup.policy would delete keys by time: the records they encrypted would become unreadable
// without anyone asking for an erasure.
func ensureKeysTopic(ctx context.Context, opts []kgo.Opt, t kafka.TopicsConfig) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("keys topic: new client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, t, t.Keys); err != nil {
		return fmt.Errorf("ensure keys topic: %w", err)
	}
	rc, err := kafka.DescribeTopicConfig(ctx, adm, t.Keys)
	if err != nil {
		return fmt.Errorf("describe keys topic %q: %w", t.Keys, err)
	}
	if policies := kafka.CleanupPolicy(rc); policies != nil && (!slices.Contains(policies, "compact") || slices.Contains(policies, "delete")) {
		return fmt.Errorf("topics.keys %q has cleanup.policy=%s; it must be compact alone, or data keys expire and the records they encrypted become unreadable. Fix: kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact",
			t.Keys, strings.Join(policies, ","), t.Keys)
	}
	return nil
}
