package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// API is what a pass needs from the IDnow API; *idnow.Client satisfies it.
type API interface {
	ListFlows(ctx context.Context) ([]idnow.Flow, error)
	ListFlowSessions(ctx context.Context, flowID string, page idnow.ListPage) (*idnow.SessionPage, error)
}

// Encoder encodes SessionEvent values; *serde.Codec for the SessionEvent schema satisfies it.
type Encoder interface {
	Encode(v any) ([]byte, error)
	Schema() schemas.Schema
}

// Deps are what a pass needs.
type Deps struct {
	API API
	// Events encodes the synthetic SessionEvents.
	Events Encoder
	// States decodes topics.state records.
	States state.Decoder
	// Producer writes to topics.sessions (acks=all, idempotent: the shared client options).
	Producer *kgo.Client
	// StateOpts are client options (without metric hooks) for reading topics.state.
	StateOpts []kgo.Opt
	// SessionsTopic and StateTopic are topics.sessions and topics.state.
	SessionsTopic, StateTopic string
	// Environment is idnow.environment, written into the events.
	Environment string
	Log         *slog.Logger
	// Tracer, when set, makes each pass a span (its IDnow list calls become child spans) and
	// writes the pass's trace context into the repair events' headers, so their enrichment
	// joins the pass's trace; nil: no spans.
	Tracer trace.TracerProvider
}

// PassOptions is one pass's window and mode.
type PassOptions struct {
	// Since is the oldest createdAt listed.
	Since time.Time
	// Flows overrides the flows to list; empty means Config.Flows, else GET /flows.
	Flows []string
	// DryRun counts what would be written and writes nothing.
	DryRun bool
	// Progress, when set, is called after each listed page (never concurrently).
	Progress func(Progress)
}

// Progress reports a pass under way.
type Progress struct {
	Flow                  string
	FlowsDone, FlowsTotal int
	Summary               Summary
}

// Summary counts what a pass did.
type Summary struct {
	// Seen is the number of distinct sessions listed within the window.
	Seen int
	// Complete is how many of them had their current status enriched already.
	Complete int
	// Pending is how many changed within reconcile.grace and were left for the next pass.
	Pending int
	// Written is the number of events written (or, in a dry run, that would be), by status.
	Written map[string]int
	// Flows is the number of flows listed.
	Flows int
}

// WrittenTotal is the sum of Written.
func (s Summary) WrittenTotal() int {
	n := 0
	for _, v := range s.Written {
		n += v
	}
	return n
}

// passer runs passes; the Reconciler and the backfill command share it.
type passer struct {
	cfg     Config
	deps    Deps
	limiter *rate.Limiter
	m       *metrics // nil: no metrics (backfill)
	now     func() time.Time
	// view is topics.state as of the last pass; each pass reads only what was added since.
	view *state.View
	// tracer is nil when tracing is off.
	tracer trace.Tracer
}

func newPasser(cfg Config, deps Deps, m *metrics) (*passer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("reconcile config: %w", err)
	}
	if deps.API == nil || deps.Events == nil || deps.States == nil || deps.Producer == nil || deps.Log == nil || deps.SessionsTopic == "" || deps.StateTopic == "" {
		return nil, errors.New("reconcile: Deps.API, Events, States, Producer, Log, SessionsTopic and StateTopic are all required")
	}
	if len(deps.StateOpts) == 0 {
		return nil, errors.New("reconcile: Deps.StateOpts are required")
	}
	p := &passer{cfg: cfg, deps: deps, limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), 1), m: m, now: time.Now,
		view: state.NewView(deps.StateOpts, deps.StateTopic, deps.States)}
	if deps.Tracer != nil {
		p.tracer = deps.Tracer.Tracer("github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile")
	}
	return p, nil
}

// pass runs one reconciliation pass.
func (p *passer) pass(ctx context.Context, opts PassOptions) (sum Summary, err error) {
	sum = Summary{Written: map[string]int{}}
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "reconcile pass", trace.WithAttributes(
			attribute.String("idnow.reconcile.since", opts.Since.UTC().Format(time.RFC3339)),
			attribute.Bool("idnow.reconcile.dry_run", opts.DryRun)))
		defer func() {
			span.SetAttributes(attribute.Int("idnow.reconcile.flows", sum.Flows), attribute.Int("idnow.reconcile.seen", sum.Seen),
				attribute.Int("idnow.reconcile.written", sum.WrittenTotal()))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	// A session listed in the window was created in it, so its state was updated in it too;
	// the hour of margin covers clocks that disagree (IDnow's createdAt, the enricher's time).
	states, err := p.view.CatchUp(ctx, opts.Since.Add(-time.Hour))
	if err != nil {
		return sum, fmt.Errorf("read %s: %w", p.deps.StateTopic, err)
	}
	flows := opts.Flows
	if len(flows) == 0 {
		flows = p.cfg.Flows
	}
	if len(flows) == 0 {
		if err := p.limiter.Wait(ctx); err != nil {
			return sum, err
		}
		fs, err := p.deps.API.ListFlows(ctx)
		if err != nil {
			return sum, fmt.Errorf("list flows (set reconcile.flows to skip this call): %w", err)
		}
		for _, f := range fs {
			flows = append(flows, f.ID)
		}
	}
	sum.Flows = len(flows)

	var (
		mu       sync.Mutex
		seen     = map[string]bool{}
		firstErr error
		done     int
	)
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(p.cfg.Concurrency, max(len(flows), 1)) {
		wg.Go(func() {
			for flow := range work {
				err := p.flow(ctx, flow, opts, func(pageSum Summary) {
					mu.Lock()
					defer mu.Unlock()
					sum.Seen += pageSum.Seen
					sum.Complete += pageSum.Complete
					sum.Pending += pageSum.Pending
					for k, v := range pageSum.Written {
						sum.Written[k] += v
					}
					if opts.Progress != nil {
						opts.Progress(Progress{Flow: flow, FlowsDone: done, FlowsTotal: len(flows), Summary: sum.clone()})
					}
				}, &mu, seen, states)
				mu.Lock()
				done++
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("flow %s: %w", flow, err)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, f := range flows {
		select {
		case work <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return sum, firstErr
}

func (s Summary) clone() Summary {
	c := s
	c.Written = make(map[string]int, len(s.Written))
	for k, v := range s.Written {
		c.Written[k] = v
	}
	return c
}

// flow lists one flow's sessions newest first until one was created before opts.Since, and
// writes the repair events of each page before asking for the next.
func (p *passer) flow(ctx context.Context, flow string, opts PassOptions, report func(Summary), mu *sync.Mutex,
	seen map[string]bool, states map[string]*schemas.SessionState) error {
	for page := 1; ; page++ {
		if err := p.limiter.Wait(ctx); err != nil {
			return err
		}
		res, err := p.deps.API.ListFlowSessions(ctx, flow, idnow.ListPage{Page: page, Size: p.cfg.PageSize, SortBy: "createdAt", SortDesc: true})
		if err != nil {
			return fmt.Errorf("list sessions page %d: %w", page, err)
		}
		pageSum := Summary{Written: map[string]int{}}
		var recs []*kgo.Record
		older := false
		for i := range res.Sessions {
			s := &res.Sessions[i]
			if !s.CreatedAt.IsZero() && s.CreatedAt.Before(opts.Since) {
				older = true // sorted newest first: the rest of the flow is older still
				break
			}
			mu.Lock()
			dup := seen[s.SessionID]
			seen[s.SessionID] = true
			mu.Unlock()
			if dup || s.SessionID == "" {
				continue // a session pushed onto the next page by a newer one is counted once
			}
			pageSum.Seen++
			status := strings.ToUpper(string(s.Status))
			if status == "" || state.Complete(states[s.SessionID], status) {
				pageSum.Complete++
				continue
			}
			if !s.UpdatedAt.IsZero() && p.now().Sub(s.UpdatedAt) < p.cfg.Grace {
				pageSum.Pending++
				continue
			}
			pageSum.Written[status]++
			if opts.DryRun {
				continue
			}
			rec, err := p.record(s, flow, status)
			if err != nil {
				return err
			}
			if p.tracer != nil {
				tracing.InjectRecord(ctx, rec)
			}
			recs = append(recs, rec)
		}
		if len(recs) > 0 {
			if err := p.deps.Producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				return fmt.Errorf("write %d repair events to %s: %w", len(recs), p.deps.SessionsTopic, err)
			}
		}
		if p.m != nil {
			p.m.listed.Add(float64(pageSum.Seen))
			if !opts.DryRun {
				for st, n := range pageSum.Written {
					p.m.repaired.WithLabelValues(statusLabel(st)).Add(float64(n))
				}
			}
		}
		report(pageSum)
		if older || len(res.Sessions) == 0 || res.Page == nil || page >= res.Page.TotalPages {
			return nil
		}
	}
}

// record builds the synthetic SessionEvent of session s reaching status, as IDnow would have
// sent it, with the deterministic event id the enricher deduplicates on.
func (p *passer) record(s *idnow.Session, flow, status string) (*kgo.Record, error) {
	id := state.ReconcileEventID(s.SessionID, status)
	env := s.Environment
	if env == "" {
		env = p.deps.Environment
	}
	flowID := s.FlowID
	if flowID == "" {
		flowID = flow
	}
	ev := &schemas.SessionEvent{
		EventID: id, EventName: EventName(status), SessionID: s.SessionID, SessionStatus: &status,
		FlowID: &flowID, ReceivedAt: p.now().UTC().Truncate(time.Millisecond),
		DeliveryVariant: schemas.DeliveryReconciliation, Origin: schemas.OriginReconciliation,
	}
	if env != "" {
		ev.Environment = &env
	}
	if at := statusTime(s, status); !at.IsZero() {
		t := at.UTC().Truncate(time.Millisecond)
		ev.CreatedAt = &t
	}
	v, err := p.deps.Events.Encode(ev)
	if err != nil {
		return nil, fmt.Errorf("encode the repair event of session %s: %w", s.SessionID, err)
	}
	return &kgo.Record{Topic: p.deps.SessionsTopic, Key: []byte(s.SessionID), Value: v, Headers: []kgo.RecordHeader{
		{Key: serde.HeaderSchema, Value: []byte(p.deps.Events.Schema().FullName)},
		{Key: serde.HeaderEventID, Value: []byte(id)},
	}}, nil
}

// EventName is the eventName IDnow sends for a session reaching status: session.created,
// session.started (RUNNING), session.completed, session.aborted, session.expired,
// session.error; an unknown status becomes session.<status lower-cased>.
func EventName(status string) string {
	switch strings.ToUpper(status) {
	case "RUNNING":
		return "session.started"
	default:
		return "session." + strings.ToLower(status)
	}
}

// statusTime is when the session reached status, as far as the listing tells.
func statusTime(s *idnow.Session, status string) time.Time {
	switch {
	case status == "CREATED":
		return s.CreatedAt
	case status == "RUNNING" && s.StartedAt != nil:
		return *s.StartedAt
	case idnow.SessionStatus(status).IsTerminal() && s.CompletedAt != nil:
		return *s.CompletedAt
	}
	return s.UpdatedAt
}

// statusLabel bounds the status label of the repaired metric.
func statusLabel(s string) string {
	switch s {
	case "CREATED", "RUNNING", "COMPLETED", "ABORTED", "EXPIRED", "ERROR":
		return s
	}
	return "other"
}
