package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
)

// EraseOptions are the `erase` subcommand's flags.
type EraseOptions struct {
	Subject, Session string
	Reason           string
	// Actor is who asks; empty = the OS user @ the host name.
	Actor   string
	Brokers []string
	// Settle is how long to wait before the second pass over the keys topic (a key made by an
	// enricher transaction open during the first pass); 0 = no second pass.
	Settle time.Duration
}

// ToolPrivacy returns privacy.* as a command-line tool uses it: against the embedded
// development broker (no kafka.brokers), the development KEK and pepper `run` created.
func ToolPrivacy(cfg Config) privacy.Config {
	if cfg.Kafka.UsesEmbedded() {
		cfg.devPrivacyFiles()
	}
	return cfg.Privacy
}

// openPepper opens the KEK and the pepper privacy.* names.
func openPepper(ctx context.Context, pc privacy.Config) (*privacy.KEK, *privacy.Pepper, error) {
	kek, err := privacy.OpenKEK(ctx, pc)
	if err != nil {
		return nil, nil, err
	}
	if pc.PepperFile == "" {
		_ = kek.Close()
		return nil, nil, errors.New("privacy.pepper_file is not set: the key references are HMACs under it")
	}
	p, err := privacy.LoadPepper(pc.PepperFile, kek)
	if err != nil {
		_ = kek.Close()
		return nil, nil, err
	}
	return kek, p, nil
}

// Erase runs `idnow-connector erase`: crypto-shreds a subject's or a session's data keys,
// tombstones the session's compacted records and writes the audit record, printed to out as
// JSON.
func Erase(ctx context.Context, cfg Config, opts EraseOptions, version string, out io.Writer) error {
	if (opts.Subject == "") == (opts.Session == "") {
		return errors.New("erase: give exactly one of --subject SUBJECT_ID and --session SESSION_ID")
	}
	if opts.Settle < 0 {
		return fmt.Errorf("erase: --settle %s is negative: give a wait such as 10s, or 0 for one pass", opts.Settle)
	}
	if opts.Actor == "" {
		opts.Actor = defaultActor()
	}
	kek, pepper, err := openPepper(ctx, ToolPrivacy(cfg))
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	defer kek.Close()
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(opts.Brokers)
	base, err := newKafkaOpts(kc, "erase")
	if err != nil {
		return err
	}
	rec, err := privacy.Erase(ctx, privacy.EraseDeps{Opts: base, Topics: cfg.Topics, Pepper: pepper, Version: version,
		Settle: opts.Settle, MaxTransaction: cfg.Enrich.TransactionTimeout},
		privacy.EraseRequest{Subject: opts.Subject, Session: opts.Session, Reason: opts.Reason, Actor: opts.Actor})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rec); err != nil {
		return fmt.Errorf("erase: print the audit record: %w", err)
	}
	if len(rec.KeysErased) == 0 {
		what := "subject"
		if opts.Session != "" {
			what = "session (under privacy.key_scope subject a session with a subjectId is encrypted under its subject's key: erase the subject)"
		}
		fmt.Fprintf(out, "note: no data key found for this %s in %s; nothing to shred (never encrypted, or erased already). The request is in the audit trail.\n", what, cfg.Topics.Keys)
	}
	return nil
}

func defaultActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}
