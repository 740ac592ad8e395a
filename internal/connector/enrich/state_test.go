package enrich

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state/statetest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// statusAPI answers every session with the status the test set, and counts the calls.
type statusAPI struct {
	mu     sync.Mutex
	status map[string]idnow.SessionStatus
	calls  int
}

func (a *statusAPI) GetSession(_ context.Context, id string) (*idnow.Session, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	st, ok := a.status[id]
	if !ok {
		st = idnow.StatusCompleted
	}
	return &idnow.Session{SessionID: id, Status: st, Outcome: "ACCEPTED"}, nil
}

func (a *statusAPI) GetDataBlocks(context.Context, string) ([]idnow.DataBlock, error) {
	return nil, nil
}

func newStateCodec(t testing.TB) *serde.Codec {
	t.Helper()
	c, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startStatefulEnricher starts an enricher with the state store on.
func startStatefulEnricher(t testing.TB, brokers []string, api SessionAPI, cfg Config) *running {
	t.Helper()
	return runEnricher(t, brokers, cfg, Deps{API: api, Log: testLog(t),
		State: newStateCodec(t), StateOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
}

func ev(session, id, status string) sentEvent {
	st := status
	return sentEvent{ev: &schemas.SessionEvent{EventID: id, EventName: "session.x", SessionID: session, SessionStatus: &st,
		ReceivedAt: time.Now(), DeliveryVariant: schemas.DeliveryJWTBody, Origin: schemas.OriginWebhook}}
}

// TestStateSkipsAndFlagsAcrossRestart: a redelivered event id is skipped within a run and after
// the enricher restarted (its state restored from topics.state); an event announcing a status
// below the enriched one is enriched with outOfOrder and leaves the latest status alone; a
// reconciliation event for a terminal status already enriched is skipped.
func TestStateSkipsAndFlagsAcrossRestart(t *testing.T) {
	brokers := newCluster(t)
	api := &statusAPI{status: map[string]idnow.SessionStatus{}}
	cfg := testConfig("state-1")

	produceEvents(t, brokers, []sentEvent{
		ev("s1", "e1", "CREATED"), ev("s1", "e2", "COMPLETED"), ev("s1", "e1", "CREATED"),
		ev("s2", "f1", "CREATED"),
	})
	first := startStatefulEnricher(t, brokers, api, cfg)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if got := testutil.ToFloat64(first.e.sm.skipped.WithLabelValues(state.SkipAlreadyEnriched)); got != 1 {
		t.Errorf("first run skipped %v events as already enriched, want 1 (e1 twice in the log)", got)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	// After the restart: e2 again (an IDnow redelivery), a late RUNNING event, the reconciler's
	// COMPLETED event for s1, and a new event for s2.
	produceEvents(t, brokers, []sentEvent{
		ev("s1", "e2", "COMPLETED"), ev("s1", "e3", "RUNNING"),
		ev("s1", state.ReconcileEventID("s1", "COMPLETED"), "COMPLETED"), ev("s2", "f2", "RUNNING"),
	})
	second := startStatefulEnricher(t, brokers, api, cfg)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if got := testutil.ToFloat64(second.e.sm.skipped.WithLabelValues(state.SkipAlreadyEnriched)); got != 1 {
		t.Errorf("after restart skipped %v events as already enriched, want 1 (e2)", got)
	}
	if got := testutil.ToFloat64(second.e.sm.skipped.WithLabelValues(state.SkipStatusEnriched)); got != 1 {
		t.Errorf("after restart skipped %v events as status already enriched, want 1 (the reconciliation event)", got)
	}
	if got := testutil.ToFloat64(second.e.sm.outOfOrder); got != 1 {
		t.Errorf("out-of-order events = %v, want 1 (e3)", got)
	}

	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	count := map[string]int{}
	for _, es := range got {
		count[es.Event.EventID]++
		if wantOOO := es.Event.EventID == "e3"; es.OutOfOrder != wantOOO {
			t.Errorf("event %s: outOfOrder = %v, want %v", es.Event.EventID, es.OutOfOrder, wantOOO)
		}
	}
	for _, id := range []string{"e1", "e2", "e3", "f1", "f2"} {
		if count[id] != 1 {
			t.Errorf("event %s enriched %d times, want exactly once (all: %v)", id, count[id], count)
		}
	}
	if len(count) != 5 {
		t.Errorf("enriched event ids = %v, want e1 e2 e3 f1 f2", count)
	}

	states, err := state.ReadAll(t.Context(), []kgo.Opt{kgo.SeedBrokers(brokers...)}, testTopics.State, newStateCodec(t))
	if err != nil {
		t.Fatal(err)
	}
	s1 := states["s1"]
	if s1 == nil || s1.LatestStatus == nil || *s1.LatestStatus != "COMPLETED" {
		t.Fatalf("state of s1 = %+v, want latest status COMPLETED (the late RUNNING must not lower it)", s1)
	}
	if s1.Outcome == nil || *s1.Outcome != "accepted" {
		t.Errorf("state of s1 outcome = %v, want accepted", s1.Outcome)
	}
	if want := []string{"e1", "e2", "e3"}; len(s1.EnrichedEventIDs) != 3 || s1.EnrichedEventIDs[2] != "e3" {
		t.Errorf("state of s1 event ids = %v, want %v", s1.EnrichedEventIDs, want)
	}
	if s2 := states["s2"]; s2 == nil || s2.LatestStatus == nil || *s2.LatestStatus != "RUNNING" {
		t.Errorf("state of s2 = %+v, want latest status RUNNING", s2)
	}
	// State records sit in the partition of their session's events.
	evParts := map[string]int32{}
	for _, r := range readCommitted(t, brokers, testTopics.Sessions) {
		evParts[string(r.Key)] = r.Partition
	}
	for _, r := range readCommitted(t, brokers, testTopics.State) {
		if p, ok := evParts[string(r.Key)]; ok && p != r.Partition {
			t.Errorf("state of %s in partition %d, its events in %d", r.Key, r.Partition, p)
		}
	}
}

// TestStateKeepsNoDecodedStrings: the state kept for a session's lifetime holds copies of the
// event's strings, not the decoded ones, which share the Avro decoder's pooled slabs with other
// records (each kept id would pin its slab; a 1 000 000-event drain grew past 600 MiB). It walks
// every string the session's state.Session holds, whatever its layout.
func TestStateKeepsNoDecodedStrings(t *testing.T) {
	events, _ := newCodecs(t)
	sent := ev("ses-1", "evt-1", "completed").ev
	b, err := events.Encode(sent)
	if err != nil {
		t.Fatal(err)
	}
	stateCodec := newStateCodec(t)
	e := &Enricher{deps: Deps{Events: events, State: stateCodec, Topics: testTopics}, store: state.NewStore()}
	e.deps.Topics.State = e.deps.Topics.StateTopic()
	rec := &kgo.Record{Topic: testTopics.Sessions, Value: b}
	var ks keyState
	decoded, d := e.gate(t.Context(), &ks, rec)
	if decoded == nil || d.Skip != "" {
		t.Fatalf("gate: %+v, %+v", decoded, d)
	}
	res, err := e.withState(&ks, rec, decoded, Result{sessionOutcome: strings.Clone("custom-outcome")})
	if err != nil {
		t.Fatal(err)
	}
	if res.state == nil {
		t.Fatal("no state update")
	}
	var written schemas.SessionState
	if err := stateCodec.Decode(t.Context(), res.Records[len(res.Records)-1].Value, &written); err != nil {
		t.Fatal(err)
	}
	if written.SessionID != "ses-1" || len(written.EnrichedEventIDs) != 1 || written.EnrichedEventIDs[0] != "evt-1" ||
		written.LatestStatus == nil || *written.LatestStatus != "COMPLETED" || written.Outcome == nil || *written.Outcome != "custom-outcome" {
		t.Fatalf("state record %+v", written)
	}
	decodedStrings := []string{decoded.SessionID, decoded.EventID, *decoded.SessionStatus, res.sessionOutcome}
	for _, held := range statetest.HeldStrings(res.state.st) {
		for _, src := range decodedStrings {
			if statetest.Overlaps(held, src) {
				t.Errorf("the state holds %q inside the decoded or caller's string %q, not a copy", held, src)
			}
		}
	}
}
