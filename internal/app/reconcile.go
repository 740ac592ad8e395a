package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	cliprogress "github.com/idnow-kafka-connector/idnow-kafka-connector/internal/progress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// reconcileDeps builds what a pass needs: the codecs, a producer for topics.sessions (checked
// to exist, with topics.state next to it) and the state-reading options. The producer is
// closed by the returned function.
func reconcileDeps(ctx context.Context, cfg Config, kc kafka.Config, api reconcile.API, log *slog.Logger) (reconcile.Deps, func(), error) {
	var d reconcile.Deps
	cfg.Topics.State = cfg.Topics.StateTopic()
	base, err := newKafkaOpts(kc, "reconciler")
	if err != nil {
		return d, nil, err
	}
	prod, err := kgo.NewClient(base...)
	if err != nil {
		return d, nil, fmt.Errorf("kafka client for the reconciler: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	adm := kadm.NewClient(prod)
	if err := kafka.EnsureTopics(sctx, adm, cfg.Topics, cfg.Topics.Sessions); err != nil {
		prod.Close()
		return d, nil, fmt.Errorf("reconciler start-up: %w", err)
	}
	if err := state.EnsureTopic(sctx, adm, cfg.Topics); err != nil {
		prod.Close()
		return d, nil, fmt.Errorf("reconciler start-up: %w", err)
	}
	rc, err := serde.NewRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		prod.Close()
		return d, nil, err
	}
	events, err := serde.NewCodec(sctx, serde.CodecConfig{Schema: schemas.SessionEventSchema(), Subject: cfg.Topics.Sessions + "-value", Register: cfg.SchemaRegistry.Register, Compatibility: cfg.SchemaRegistry.Compatibility}, rc)
	if err != nil {
		prod.Close()
		return d, nil, err
	}
	d = reconcile.Deps{
		API: api, Events: events, States: serde.NewDecoder(schemas.SessionStateSchema(), rc), Producer: prod,
		StateOpts: base, SessionsTopic: cfg.Topics.Sessions, StateTopic: cfg.Topics.State,
		Environment: cfg.IDnow.Environment, Log: log,
	}
	return d, prod.Close, nil
}

func (a *App) startReconciler(ctx context.Context) error {
	api, err := a.idnowClient(ctx)
	if err != nil {
		return err
	}
	kc := a.cfg.Kafka
	kc.Brokers = a.brokers
	deps, closeProducer, err := reconcileDeps(ctx, a.cfg, kc, api, a.log)
	if err != nil {
		return err
	}
	a.group.Defer("reconciler producer", func(context.Context) error { closeProducer(); return nil })
	deps.Tracer = a.tracer
	r, err := reconcile.New(a.cfg.Reconcile, deps, deps.StateOpts, a.reg)
	if err != nil {
		return err
	}
	a.group.Add(lifecycle.Part{Name: "reconciler", Run: r.Run, StopTimeout: r.StopTimeout()})
	return nil
}

// BackfillOptions are the `backfill` subcommand's flags.
type BackfillOptions struct {
	Since   time.Time
	Flows   []string
	DryRun  bool
	Brokers []string // empty: kafka.brokers, else the embedded broker's listen address
	// Progress receives the progress display (internal/progress): a bar when it is a terminal,
	// else a line per second at most. Nil: plain lines into out.
	Progress io.Writer
}

// Backfill runs one reconciliation pass over [Since, now] and prints progress lines and a
// summary to out. It is idempotent: the events it writes carry the deterministic id of their
// session and status, and a status already enriched is not written again.
func Backfill(ctx context.Context, cfg Config, opts BackfillOptions, out io.Writer, log *slog.Logger) (reconcile.Summary, error) {
	if opts.Since.IsZero() {
		return reconcile.Summary{}, fmt.Errorf("backfill: --since is required, e.g. --since %s", time.Now().UTC().Add(-72*time.Hour).Format(time.RFC3339))
	}
	if opts.Since.After(time.Now()) {
		return reconcile.Summary{}, fmt.Errorf("backfill: --since %s is in the future", opts.Since.Format(time.RFC3339))
	}
	if err := cfg.IDnow.Validate(); err != nil {
		return reconcile.Summary{}, err
	}
	kc := cfg.Kafka
	kc.Brokers = opts.Brokers
	if len(kc.Brokers) == 0 {
		kc.Brokers = cfg.Kafka.Brokers
	}
	if len(kc.Brokers) == 0 {
		kc.Brokers = []string{cfg.Kafka.Embedded.Listen}
	}
	pw := opts.Progress
	if pw == nil {
		pw = out
	}
	// A bar on a terminal; one line per second at most otherwise, so a long backfill stays
	// readable in a log. Log lines written meanwhile interrupt the bar instead of landing in it.
	bar := cliprogress.New(pw, cliprogress.Options{Name: "backfill", Unit: "flows"})
	log = slog.New(bar.LogHandler(log.Handler()))
	api, err := idnow.New(ctx, cfg.IDnow, idnow.Deps{Log: log.With("component", "idnow")})
	if err != nil {
		return reconcile.Summary{}, fmt.Errorf("IDnow API client: %w", err)
	}
	defer api.Close()
	deps, closeProducer, err := reconcileDeps(ctx, cfg, kc, api, log)
	if err != nil {
		return reconcile.Summary{}, err
	}
	defer closeProducer()
	mode := ""
	if opts.DryRun {
		mode = " (dry run: nothing is written)"
	}
	fmt.Fprintf(out, "backfill from %s to now%s\n", opts.Since.UTC().Format(time.RFC3339), mode)
	detail := func(s reconcile.Summary) string {
		return fmt.Sprintf("sessions seen %d, already complete %d, events written %d", s.Seen, s.Complete, s.WrittenTotal())
	}
	var flowsDone, flowsTotal int
	popts := reconcile.PassOptions{Since: opts.Since, Flows: opts.Flows, DryRun: opts.DryRun, Progress: func(p reconcile.Progress) {
		if p.FlowsTotal != flowsTotal {
			flowsTotal = p.FlowsTotal
			bar.SetTotal(int64(flowsTotal))
		}
		flowsDone = p.FlowsDone
		bar.Update(int64(p.FlowsDone), detail(p.Summary))
	}}
	sum, err := reconcile.Backfill(ctx, cfg.Reconcile, deps, popts)
	if err == nil {
		flowsDone = sum.Flows
		bar.SetTotal(int64(sum.Flows))
	}
	bar.Finish(int64(flowsDone), detail(sum))
	verb := "written"
	if opts.DryRun {
		verb = "to write"
	}
	fmt.Fprintf(out, "flows %d, sessions seen %d, already complete %d, events %s %d%s, changed within reconcile.grace (left for later) %d\n",
		sum.Flows, sum.Seen, sum.Complete, verb, sum.WrittenTotal(), byStatus(sum.Written), sum.Pending)
	if err != nil {
		return sum, fmt.Errorf("backfill: %w", err)
	}
	return sum, nil
}

func byStatus(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}
