// Command idnow-connector streams IDnow identity-verification outcomes into Kafka.
//
//	idnow-connector run       ingress + enricher in one process (embedded broker, simulator by config)
//	idnow-connector ingress   receive IDnow webhooks, write SessionEvents
//	idnow-connector enricher  enrich SessionEvents from the IDnow API, write EnrichedSessions
//	idnow-connector reconciler  repair sessions whose webhooks never arrived (one active per group)
//	idnow-connector archiver  archive the evidence files of completed sessions into object storage
//	idnow-connector archive verify  re-check one session's archived objects and manifest (--decrypt: the plaintext too)
//	idnow-connector archive get     fetch one archived file, decrypted and checked
//	idnow-connector backfill  one reconciliation pass over an explicit window
//	idnow-connector sim       run the local IDnow simulator
//	idnow-connector tail      print a topic's records as JSON lines
//	idnow-connector dlq-replay  write dead-lettered events back to the sessions topic
//	idnow-connector doctor    list (and with --abort, abort) hanging transactions
//	idnow-connector erase     crypto-shred a subject's or a session's personal data
//	idnow-connector privacy   create the development KEK and the pepper, rotate the KEK
//	idnow-connector config    print the effective configuration, or check it
//	idnow-connector version   print the version
//
// main only parses flags, wires signals and calls internal/app.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/app"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/config"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: idnow-connector <command> [flags]

commands:
  run        ingress and enricher in one process; with no kafka.brokers an embedded broker,
             with simulator.enabled the local IDnow simulator (what 'make run' starts)
  ingress    receive IDnow webhooks and write SessionEvents to topics.sessions
  enricher   enrich SessionEvents from the IDnow API into topics.enriched
             (both need kafka.brokers, or kafka.embedded.enabled: true for the embedded broker)
  reconciler every reconcile.interval, write the session statuses no webhook brought to
             topics.sessions (one active per reconcile.group; also part of run)
  commands   answer CreateSessionCommands from topics.commands with IDnow sessions on
             topics.replies (also part of run; docs/commands.md)
  create-session  send one CreateSessionCommand and print the reply's player URL
             (see 'idnow-connector create-session -h')
  archiver   archive every completed session's evidence files (documents, selfies, videos) into
             object storage (archive.bucket_url) and index them in topics.archived (also part
             of run when archive.enabled)
  archive    'archive verify --session ID [--decrypt]' re-reads a session's archived objects and
             manifest and reports every digest (exit 1 on any mismatch; an erased subject's files
             report ERASED); 'archive get --session ID --file F -o OUT' fetches one file, decrypted
  backfill   one reconciliation pass over an explicit window (see 'idnow-connector backfill -h')
  sim        run the local IDnow simulator (see 'idnow-connector sim -h')
  tail       print a topic's records as JSON lines (see 'idnow-connector tail -h')
  dlq-replay write dead-lettered events back to topics.sessions once their cause is fixed
             (see 'idnow-connector dlq-replay -h')
  doctor     list open and hanging transactions on the connector's topics; --abort aborts
             the hanging ones (see 'idnow-connector doctor -h')
  erase      crypto-shred a subject's or a session's personal data: --subject ID | --session ID
             [--reason TEXT] (privacy.mode encrypt; see 'idnow-connector erase -h', docs/privacy.md)
  privacy    'privacy init' creates the development key-encryption keyset and the pepper;
             'privacy rotate-kek' adds a new primary key to the development keyset
  config     'config print' shows the effective configuration and each value's source;
             'config check' lists every problem and exits 1 if there is any
  completion print a shell completion script: 'source <(idnow-connector completion bash)' (or zsh)
  version    print the version, Go version and commit (also --version)

Run 'idnow-connector <command> -h' for the command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the orderly shutdown; restoring the default handling then makes a
	// second Ctrl-C or SIGTERM end the process at once, as an operator expects of a stop that
	// takes too long.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "idnow-connector:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return serve(ctx, app.ModeRun, args, stderr)
	case "ingress":
		return serve(ctx, app.ModeIngress, args, stderr)
	case "enricher":
		return serve(ctx, app.ModeEnricher, args, stderr)
	case "reconciler":
		return serve(ctx, app.ModeReconciler, args, stderr)
	case "commands":
		return serve(ctx, app.ModeCommands, args, stderr)
	case "create-session":
		return createSession(ctx, args, stdout, stderr)
	case "archiver":
		return serve(ctx, app.ModeArchiver, args, stderr)
	case "archive":
		return archiveCmd(ctx, args, stdout, stderr)
	case "backfill":
		return backfill(ctx, args, stdout, stderr)
	case "sim":
		return idnowsim.RunCLI(ctx, args, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
	case "tail":
		return tail(ctx, args, stdout, stderr)
	case "dlq-replay":
		return replay(ctx, args, stdout, stderr)
	case "doctor":
		return doctor(ctx, args, stdout, stderr)
	case "erase":
		return erase(ctx, args, stdout, stderr)
	case "privacy":
		return privacyCmd(ctx, args, stdout, stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return nil
	case "config":
		return configCmd(args, stdout, stderr)
	case "completion":
		return completion(ctx, args, stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// loadConfig parses --config and loads the file and the environment onto the defaults.
func loadConfig(fs *flag.FlagSet, args []string) (app.Config, error) {
	path := fs.String("config", "config.yaml", "configuration file (environment variables "+config.EnvPrefix+"* override it)")
	if err := fs.Parse(args); err != nil {
		return app.Config{}, err
	}
	if fs.NArg() > 0 {
		return app.Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg := app.DefaultConfig()
	err := config.Load(config.Source{Path: *path, Required: explicit, Environ: os.Environ()}, &cfg)
	return cfg, err
}

func serve(ctx context.Context, mode app.Mode, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(string(mode), flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	log, err := app.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	a, err := app.New(cfg, mode, log, version)
	if err != nil {
		return err
	}
	a.SetProgressOutput(stderr)
	return a.Run(ctx)
}

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.TailOptions
	var brokers, since string
	follow := true
	fs.StringVar(&opts.Topic, "topic", "", "topic to read, e.g. idnow.sessions.enriched (required)")
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	fs.BoolVar(&opts.FromBeginning, "from-beginning", false, "start at the earliest offset instead of the end")
	fs.StringVar(&since, "since", "", "start at the first record at or after this time: a duration back from now (15m, 2h) or RFC 3339 (2026-12-01T08:00:00Z)")
	fs.BoolVar(&opts.UntilEnd, "until-end", false, "stop at the end offsets current at start (an empty topic ends at once)")
	fs.BoolVar(&follow, "follow", true, "keep printing new records until interrupted (the default; --follow=false is --until-end)")
	fs.StringVar(&opts.Key, "key", "", "print only the records with this key (the sessionId on the connector's topics)")
	fs.StringVar(&opts.Format, "format", app.TailFormatJSON, "json (one line a record) or pretty (indented)")
	fs.IntVar(&opts.Max, "max", 0, "exit after printing this many records (0 = no limit)")
	fs.BoolVar(&opts.Decrypt, "decrypt", false, "decrypt EnrichedSessions written with privacy.mode encrypt (needs the key manager of privacy.*); erased records print \"privacy\":\"erased\"")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	if since != "" {
		if opts.Since, err = app.ParseSince(since, time.Now()); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
	opts.UntilEnd = opts.UntilEnd || !follow
	return app.Tail(ctx, cfg, opts, stdout)
}

func createSession(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("create-session", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.CreateSessionOptions
	var brokers string
	fs.StringVar(&opts.FlowName, "flow", "", "the flow's name as GET /flows lists it, e.g. AutoIdent (or --flow-id)")
	fs.StringVar(&opts.FlowID, "flow-id", "", "the flow id instead of --flow")
	fs.StringVar(&opts.Subject, "subject", "", "the person's pseudonymous subject id: metadata.subjectId and the record key (required)")
	fs.StringVar(&opts.RedirectURL, "redirect-url", "", "where the player sends the person afterwards; must be on commands.redirect_allowlist")
	fs.StringVar(&opts.CommandID, "command-id", "", "the command id (default: a new UUID); the same id again is answered from the first reply")
	fs.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "how long to wait for the reply")
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	_, err = app.CreateSession(ctx, cfg, opts, stdout, stderr)
	return err
}

func replay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlq-replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.ReplayOptions
	var brokers string
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	fs.StringVar(&opts.Class, "class", "", "replay only records of this error class (header idnow.dlq.error_class, e.g. session_not_found); default all")
	fs.IntVar(&opts.Max, "max", 0, "replay at most this many records (0 = all)")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "list what would be replayed, produce nothing")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	opts.Progress = stderr // a bar on a terminal, lines otherwise; stdout keeps the replayed records
	res, err := app.ReplayDLQ(ctx, cfg, opts, stdout)
	fmt.Fprintf(stdout, "read %d, replayed %d, skipped %d (dry run: %v)\n", res.Read, res.Replayed, res.Skipped, opts.DryRun)
	return err
}

func doctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.DoctorOptions
	var brokers string
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	fs.DurationVar(&opts.TransactionTimeout, "transaction-timeout", 0, "threshold for a transaction whose producer timeout the coordinator does not report and whose leader's transaction.max.timeout.ms cannot be read; at least 1m (default: enrich.transaction_timeout, raised to 1m)")
	fs.BoolVar(&opts.Abort, "abort", false, "abort the hanging transactions, those the coordinator no longer holds (writes abort markers, as kafka-transactions.sh abort)")
	fs.BoolVar(&opts.Force, "force", false, "with --abort, also abort transactions the coordinator still holds (coordinator-stuck) and foreign ones on __consumer_offsets; may lose or duplicate events, see docs/operations.md")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	_, err = app.Doctor(ctx, cfg, opts, stdout)
	return err
}

// flowList collects repeated --flow flags.
type flowList []string

func (f *flowList) String() string     { return strings.Join(*f, ",") }
func (f *flowList) Set(v string) error { *f = append(*f, v); return nil }

func backfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opts app.BackfillOptions
	var since, brokers string
	var flows flowList
	fs.StringVar(&since, "since", "", "oldest session createdAt to list, RFC 3339, e.g. 2026-11-01T00:00:00Z (required)")
	fs.Var(&flows, "flow", "flow id to list (repeatable; default reconcile.flows, else every flow GET /flows returns)")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "count what would be written, write nothing")
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	cfg, err := loadConfig(fs, args)
	if err != nil {
		return err
	}
	if since == "" {
		return errors.New("backfill: --since is required, e.g. --since 2026-11-01T00:00:00Z")
	}
	if opts.Since, err = time.Parse(time.RFC3339, since); err != nil {
		return fmt.Errorf("backfill: --since %q is not RFC 3339 (e.g. 2026-11-01T00:00:00Z): %w", since, err)
	}
	opts.Flows = flows
	if brokers != "" {
		opts.Brokers = strings.Split(brokers, ",")
	}
	log, err := app.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	opts.Progress = stderr // a bar on a terminal, lines otherwise; stdout keeps the summary
	_, err = app.Backfill(ctx, cfg, opts, stdout, log)
	return err
}

func archiveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const usage = `usage: idnow-connector archive verify --session ID [--decrypt] [--public-key FILE] [--brokers B] [--config FILE]
       idnow-connector archive get --session ID --file VAULT_ENTRY_ID|KEY -o OUT|- [--brokers B] [--config FILE]`
	if len(args) == 0 || (args[0] != "verify" && args[0] != "get") {
		fmt.Fprintln(stderr, usage)
		return errors.New("archive: missing or unknown subcommand; use verify or get")
	}
	fs := flag.NewFlagSet("archive "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var session, brokers string
	fs.StringVar(&session, "session", "", "the IDnow session id (required)")
	fs.StringVar(&brokers, "brokers", "", "comma-separated seed brokers for reading topics.keys of an encrypted archive (default: kafka.brokers, else the embedded broker's kafka.embedded.listen)")
	split := func() []string {
		if brokers == "" {
			return nil
		}
		return strings.Split(brokers, ",")
	}
	if args[0] == "get" {
		var opts app.GetOptions
		fs.StringVar(&opts.File, "file", "", "the file: its vault entry id or its object key, as `archive verify` prints them (required)")
		fs.StringVar(&opts.Output, "o", "", "where to write the file, decrypted when the archive is encrypted; - for stdout (required)")
		cfg, err := loadConfig(fs, args[1:])
		if err != nil {
			return err
		}
		opts.SessionID, opts.Brokers = session, split()
		return app.GetArchived(ctx, cfg, opts, stdout)
	}
	var opts app.VerifyOptions
	fs.StringVar(&opts.PublicKeyFile, "public-key", "", "PEM Ed25519 public key to check the manifest signature with (default: the public half of archive.signing_key_file)")
	fs.BoolVar(&opts.Decrypt, "decrypt", false, "decrypt an encrypted archive and check the plaintext digests too (needs the key-encryption key and read access to topics.keys); an erased subject reports ERASED")
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	opts.SessionID, opts.Brokers = session, split()
	return app.VerifyArchive(ctx, cfg, opts, stdout)
}
