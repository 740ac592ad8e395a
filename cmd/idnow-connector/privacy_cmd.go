package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/app"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
)

func erase(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.EraseOptions
	var brokers string
	fs.StringVar(&opts.Subject, "subject", "", "erase every session of this subjectId (its data keys)")
	fs.StringVar(&opts.Session, "session", "", "erase this session (its session-scoped data key and its compacted records)")
	fs.StringVar(&opts.Reason, "reason", "", "why, for the audit trail (a ticket number; no personal data)")
	fs.StringVar(&opts.Actor, "actor", "", "who asks, for the audit trail (default: OS user@host)")
	fs.DurationVar(&opts.Settle, "settle", 10*time.Second, "wait this long, then for open transactions on the keys topic, and erase keys committed meanwhile (0 = one pass)")
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	return app.Erase(ctx, cfg, opts, version, stdout)
}

// privacyCmd runs `privacy init` (create the development KEK keyset and the pepper when missing)
// and `privacy rotate-kek` (add a new primary key to the development KEK keyset).
func privacyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const help = "usage: idnow-connector privacy init|rotate-kek [--config FILE]\n" +
		"  init        create privacy.kek_keyset_file (development) and privacy.pepper_file when missing\n" +
		"  rotate-kek  add a new primary key to privacy.kek_keyset_file; data keys wrapped before stay readable\n"
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, help)
		if len(args) == 0 {
			return errors.New("privacy: missing subcommand init or rotate-kek")
		}
		return flag.ErrHelp
	}
	sub := args[0]
	fs := flag.NewFlagSet("privacy "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	pc := app.ToolPrivacy(cfg)
	switch sub {
	case "init":
		made, err := app.PrivacyInit(ctx, pc)
		for _, m := range made {
			fmt.Fprintln(stdout, m)
		}
		if err == nil && len(made) == 0 {
			fmt.Fprintln(stdout, "nothing to create: the key-encryption key and the pepper exist")
		}
		return err
	case "rotate-kek":
		if pc.KEKKeysetFile == "" {
			return errors.New("privacy rotate-kek rotates a development keyset file (privacy.kek_keyset_file); rotate a KMS key in the KMS (a new key version), nothing in the connector changes")
		}
		id, err := privacy.RotateKEKKeysetFile(pc.KEKKeysetFile)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: new primary key %d; earlier keys stay for unwrapping existing data keys\n", pc.KEKKeysetFile, id)
		return nil
	}
	fmt.Fprint(stderr, help)
	return fmt.Errorf("privacy: unknown subcommand %q", sub)
}
