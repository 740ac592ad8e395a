package reconcile_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const partitions = 3

var topics = func() kafka.TopicsConfig {
	t := kafka.DefaultTopicsConfig()
	t.Partitions = partitions
	return t
}()

// fakeIDnow lists sessions of two flows, newest first, and answers session details; it counts
// list calls so a test can see the lookback stop the listing.
type fakeIDnow struct {
	mu       sync.Mutex
	sessions map[string][]idnow.Session // by flow, newest first
	pages    int
}

func (f *fakeIDnow) ListFlows(context.Context) ([]idnow.Flow, error) {
	return []idnow.Flow{{ID: "flow-a"}, {ID: "flow-b"}}, nil
}

func (f *fakeIDnow) ListFlowSessions(_ context.Context, flow string, p idnow.ListPage) (*idnow.SessionPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pages++
	if p.SortBy != "createdAt" || !p.SortDesc {
		return nil, fmt.Errorf("want newest first by createdAt, got sortBy=%s sortDesc=%v", p.SortBy, p.SortDesc)
	}
	all := f.sessions[flow]
	from, to := min((p.Page-1)*p.Size, len(all)), min(p.Page*p.Size, len(all))
	return &idnow.SessionPage{Sessions: all[from:to], Page: &idnow.PageInfo{Size: p.Size, Number: p.Page, TotalElements: int64(len(all)), TotalPages: (len(all) + p.Size - 1) / p.Size}}, nil
}

func (f *fakeIDnow) GetSession(_ context.Context, id string) (*idnow.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ss := range f.sessions {
		for _, s := range ss {
			if s.SessionID == id {
				return &s, nil
			}
		}
	}
	return nil, &idnow.APIError{Op: idnow.EndpointGetSession, SessionID: id, StatusCode: 404, Err: idnow.ErrNotFound}
}

func (f *fakeIDnow) GetDataBlocks(context.Context, string) ([]idnow.DataBlock, error) {
	return nil, nil
}

type env struct {
	brokers []string
	api     *fakeIDnow
	events  *serde.Codec
	states  *serde.Codec
	prod    *kgo.Client
	log     *slog.Logger
}

func newEnv(t *testing.T, api *fakeIDnow) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(partitions, topics.Sessions, topics.Enriched, topics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &env{brokers: c.ListenAddrs(), api: api, log: slog.New(slog.DiscardHandler)}
	if e.events, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	if e.states, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	if e.prod, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.prod.Close)
	return e
}

func (e *env) deps() reconcile.Deps {
	return reconcile.Deps{API: e.api, Events: e.events, States: e.states, Producer: e.prod,
		StateOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, SessionsTopic: topics.Sessions, StateTopic: topics.StateTopic(),
		Environment: "live", Log: e.log}
}

// startEnricher runs the real enricher with the state store on; it also creates topics.state.
func (e *env) startEnricher(t *testing.T) {
	t.Helper()
	enriched, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := enrich.DefaultConfig()
	cfg.Group, cfg.InstanceID, cfg.MaxPollRecords = "enrich-reconcile-test", "r1", 50
	cfg.SessionTimeout, cfg.TransactionTimeout, cfg.ShutdownTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	en, err := enrich.New(cfg, enrich.Deps{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Topics: topics, API: e.api, Events: e.events, Enriched: enriched,
		Registry: prometheus.NewRegistry(), Log: e.log, Version: "test", State: e.states, StateOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- en.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("enricher: %v", err)
		}
	})
}

// produce writes webhook SessionEvents.
func (e *env) produce(t *testing.T, evs ...*schemas.SessionEvent) {
	t.Helper()
	for _, ev := range evs {
		v, err := e.events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.prod.ProduceSync(t.Context(), &kgo.Record{Topic: topics.Sessions, Key: []byte(ev.SessionID), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// enriched reads the committed EnrichedSessions until want are there (or the timeout).
func (e *env) enriched(t *testing.T, want int) []*schemas.EnrichedSession {
	t.Helper()
	enc, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topics.Enriched),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []*schemas.EnrichedSession
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d enriched records of %d expected before timing out", len(out), want)
		}
		for _, r := range fs.Records() {
			var es schemas.EnrichedSession
			if err := enc.Decode(t.Context(), r.Value, &es); err != nil {
				t.Fatal(err)
			}
			out = append(out, &es)
		}
	}
	// Anything beyond want would be a duplicate: give it a moment to show.
	short, cancelShort := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancelShort()
	for _, r := range cl.PollFetches(short).Records() {
		var es schemas.EnrichedSession
		if err := enc.Decode(t.Context(), r.Value, &es); err == nil {
			out = append(out, &es)
		}
	}
	return out
}

func webhook(s idnow.Session, id, status string) *schemas.SessionEvent {
	st := status
	return &schemas.SessionEvent{EventID: id, EventName: reconcile.EventName(status), SessionID: s.SessionID, SessionStatus: &st,
		ReceivedAt: time.Now(), DeliveryVariant: schemas.DeliveryJWTBody, Origin: schemas.OriginWebhook}
}

// TestRepairWithDroppedWebhooks: of 40 terminal sessions, webhooks of some never arrived (none,
// only CREATED, or all). One backfill pass writes the missing final statuses; afterwards every
// session has exactly one EnrichedSession for its final status, and a second pass writes nothing.
// Sessions older than the window are not listed past the first older one.
func TestRepairWithDroppedWebhooks(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	api := &fakeIDnow{sessions: map[string][]idnow.Session{}}
	final := map[string]string{}
	terminal := []idnow.SessionStatus{idnow.StatusCompleted, idnow.StatusAborted, idnow.StatusExpired, idnow.StatusError}
	for i := range 40 {
		flow := []string{"flow-a", "flow-b"}[i%2]
		st := terminal[i%4]
		id := fmt.Sprintf("ses-%02d", i)
		done := now.Add(-time.Duration(i) * time.Minute)
		api.sessions[flow] = append(api.sessions[flow], idnow.Session{SessionID: id, FlowID: flow, Status: st,
			CreatedAt: done.Add(-time.Minute), CompletedAt: &done, UpdatedAt: done, Outcome: "ACCEPTED"})
		final[id] = string(st)
	}
	// Older than the window: must not be repaired.
	old := now.Add(-100 * time.Hour)
	for i := range 5 {
		api.sessions["flow-a"] = append(api.sessions["flow-a"], idnow.Session{SessionID: fmt.Sprintf("old-%d", i), FlowID: "flow-a",
			Status: idnow.StatusCompleted, CreatedAt: old})
	}
	e := newEnv(t, api)
	e.startEnricher(t)

	// Webhooks: sessions 0-9 got nothing, 10-19 only CREATED, 20-39 CREATED and their final status.
	var evs []*schemas.SessionEvent
	want := 0
	for i := 10; i < 40; i++ {
		s := idnow.Session{SessionID: fmt.Sprintf("ses-%02d", i)}
		evs = append(evs, webhook(s, fmt.Sprintf("wh-%d-c", i), "CREATED"))
		want++
		if i >= 20 {
			evs = append(evs, webhook(s, fmt.Sprintf("wh-%d-f", i), final[s.SessionID]))
			want++
		}
	}
	e.produce(t, evs...)
	if got := len(e.enriched(t, want)); got != want {
		t.Fatalf("webhooks enriched %d records, want %d", got, want)
	}

	cfg := reconcile.DefaultConfig()
	cfg.PageSize = 7
	cfg.RateLimit = 1000
	since := now.Add(-72 * time.Hour)
	// With the default grace, the two sessions that ended within the last 2 minutes wait.
	sum, err := reconcile.Backfill(t.Context(), cfg, e.deps(), reconcile.PassOptions{Since: since, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Pending != 2 || sum.WrittenTotal() != 18 {
		t.Fatalf("dry run with grace %s: %+v, want ses-00 and ses-01 pending and 18 to write", cfg.Grace, sum)
	}
	cfg.Grace = 0
	sum, err = reconcile.Backfill(t.Context(), cfg, e.deps(), reconcile.PassOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seen != 40 || sum.Complete != 20 || sum.WrittenTotal() != 20 {
		t.Fatalf("first pass: %+v, want 40 seen, 20 complete, 20 written", sum)
	}
	all := e.enriched(t, want+20)
	perFinal := map[string]int{}
	ids := map[string]int{}
	for _, es := range all {
		ids[es.Event.EventID]++
		if es.Event.SessionStatus != nil && *es.Event.SessionStatus == final[es.Session.SessionID] {
			perFinal[es.Session.SessionID]++
			if n := es.Session.SessionID; n < "ses-20" && es.Event.Origin != schemas.OriginReconciliation {
				t.Errorf("%s: final status enriched from origin %q, want reconciliation", n, es.Event.Origin)
			}
		}
	}
	for id := range final {
		if perFinal[id] != 1 {
			t.Errorf("session %s has %d EnrichedSessions for its final status %s, want 1", id, perFinal[id], final[id])
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("event id %s enriched %d times", id, n)
		}
	}
	if id := state.ReconcileEventID("ses-00", final["ses-00"]); ids[id] != 1 {
		t.Errorf("the repair event of ses-00 does not carry the deterministic id %s", id)
	}

	// Idempotent: the state now covers every final status.
	sum, err = reconcile.Backfill(t.Context(), cfg, e.deps(), reconcile.PassOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if sum.WrittenTotal() != 0 || sum.Complete != 40 {
		t.Fatalf("second pass: %+v, want nothing written", sum)
	}
	// A dry run over a wider window counts the old sessions but writes nothing.
	sum, err = reconcile.Backfill(t.Context(), cfg, e.deps(), reconcile.PassOptions{Since: now.Add(-200 * time.Hour), DryRun: true, Flows: []string{"flow-a"}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Seen != 25 || sum.Written["COMPLETED"] != 5 || sum.WrittenTotal() != 5 {
		t.Fatalf("dry run over 200h of flow-a: %+v, want 25 seen and the 5 old sessions to write", sum)
	}
	if got := len(e.enriched(t, want+20)); got != want+20 {
		t.Fatalf("the dry run wrote events: %d enriched records, want %d", got, want+20)
	}
}

// TestOneLeader: two reconcilers of one group; exactly one is the leader, and when it stops the
// other takes over and runs a pass.
func TestOneLeader(t *testing.T) {
	api := &fakeIDnow{sessions: map[string][]idnow.Session{"flow-a": {{SessionID: "s1", Status: idnow.StatusCompleted, CreatedAt: time.Now()}}}}
	e := newEnv(t, api)
	e.startEnricher(t) // creates topics.state
	cfg := reconcile.DefaultConfig()
	cfg.Interval, cfg.RateLimit = time.Hour, 1000
	start := func() (*reconcile.Reconciler, *prometheus.Registry, context.CancelFunc, chan error) {
		reg := prometheus.NewRegistry()
		r, err := reconcile.New(cfg, e.deps(), []kgo.Opt{kgo.SeedBrokers(e.brokers...), kgo.SessionTimeout(time.Second), kgo.HeartbeatInterval(200 * time.Millisecond)}, reg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return r, reg, cancel, done
	}
	type member struct {
		r      *reconcile.Reconciler
		reg    *prometheus.Registry
		cancel context.CancelFunc
		done   chan error
	}
	var ms [2]member
	for i := range ms {
		r, reg, cancel, done := start()
		ms[i] = member{r, reg, cancel, done}
	}
	defer func() {
		for _, m := range ms {
			m.cancel()
			<-m.done
		}
	}()
	waitFor(t, "one leader", func() bool { return ms[0].r.Leader() != ms[1].r.Leader() })
	time.Sleep(time.Second) // a rebalance in flight would show two leaders or none
	if ms[0].r.Leader() == ms[1].r.Leader() {
		t.Fatalf("leaders: %v %v, want exactly one", ms[0].r.Leader(), ms[1].r.Leader())
	}
	leader, follower := ms[0], ms[1]
	if ms[1].r.Leader() {
		leader, follower = ms[1], ms[0]
	}
	const last = "idnow_connector_reconcile_last_success_timestamp_seconds"
	waitFor(t, "the leader's pass", func() bool { return gauge(t, leader.reg, last) > 0 })
	if gauge(t, follower.reg, last) != 0 {
		t.Fatal("the follower ran a pass")
	}
	leader.cancel()
	if err := <-leader.done; err != nil {
		t.Fatal(err)
	}
	leader.done <- nil // for the deferred stop
	waitFor(t, "the follower to take over and pass", func() bool {
		return follower.r.Leader() && gauge(t, follower.reg, last) > 0
	})
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) > 0 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	return 0
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
