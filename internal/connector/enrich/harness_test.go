package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testPartitions = 4
	sentinelKey    = "__sentinel__"
)

var testTopics = kafka.TopicsConfig{
	Sessions: "idnow.sessions", Enriched: "idnow.sessions.enriched", DLQ: "idnow.sessions.dlq",
	State: "idnow.sessions.state", Create: true, Partitions: testPartitions, ReplicationFactor: -1,
}

// testLog writes warnings and errors to the test log, so a failing test shows why.
func testLog(t testing.TB) *slog.Logger {
	if os.Getenv("ENRICH_TEST_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newCluster starts a kfake broker with the three topics and a short minimum session timeout, so
// a crashed member is dropped from the group quickly.
func newCluster(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(testPartitions, testTopics.Sessions, testTopics.Enriched, testTopics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func newCodecs(t testing.TB) (events, enriched *serde.Codec) {
	t.Helper()
	var err error
	if events, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	if enriched, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	return events, enriched
}

// newSimAPI returns an IDnow client for the simulator with short waits, so injected faults cost
// milliseconds. maxAttempts bounds the client's own retries; the enricher's Retry does the rest.
func newSimAPI(t testing.TB, apiURL, tokenURL string, maxAttempts int) *idnow.Client {
	t.Helper()
	cfg := idnow.DefaultConfig()
	cfg.APIURL, cfg.TokenURL = apiURL, tokenURL
	cfg.ClientID, cfg.ClientSecret = "sim-client", "sim-secret"
	cfg.AllowInsecureHTTP = true // the simulator serves plain http
	cfg.RateLimit = 0
	cfg.Retry = idnow.RetryConfig{MaxAttempts: maxAttempts, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxRetryAfter: 50 * time.Millisecond}
	cl, err := idnow.New(t.Context(), cfg, idnow.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// testConfig is the enricher configuration the integration tests start from.
func testConfig(instance string) Config {
	cfg := DefaultConfig()
	cfg.Group = "enrich-test"
	cfg.InstanceID = instance
	cfg.Concurrency = 8
	cfg.MaxPollRecords = 25
	cfg.SessionTimeout = 2 * time.Second
	cfg.TransactionTimeout = 10 * time.Second
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.Retry = RetryConfig{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	return cfg
}

// running is an enricher started by startEnricher.
type running struct {
	e      *Enricher
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop cancels Run and returns its error; safe to call more than once.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

func startEnricher(t testing.TB, brokers []string, api SessionAPI, cfg Config) *running {
	t.Helper()
	return runEnricher(t, brokers, cfg, Deps{API: api, Log: testLog(t)})
}

// runEnricher builds an enricher on brokers with the test codecs, topics and a fresh registry
// filled into deps (deps brings the API, the logger and any state options), runs it until the
// test ends and fails the test if Run returns an error.
func runEnricher(t testing.TB, brokers []string, cfg Config, deps Deps) *running {
	t.Helper()
	events, enriched := newCodecs(t)
	reg := prometheus.NewRegistry()
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = brokers
	opts, err := kafka.ClientOpts(kcfg, "enricher", reg)
	if err != nil {
		t.Fatal(err)
	}
	deps.KafkaOpts, deps.Topics, deps.Events, deps.Enriched = opts, testTopics, events, enriched
	deps.Registry, deps.Version = reg, "test"
	e, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	r := &running{e: e, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("enricher Run: %v", err)
		}
	})
	return r
}

// sentEvent is a SessionEvent the test put on the sessions topic.
type sentEvent struct {
	ev   *schemas.SessionEvent
	snap idnowsim.SessionSnapshot // the session after the simulator went idle
}

// eventsFromSim turns every event of every simulator session into a SessionEvent, as the
// ingress would have.
func eventsFromSim(sim *idnowsim.Simulator) []sentEvent {
	var out []sentEvent
	for _, s := range sim.Sessions() {
		for _, e := range s.Events {
			seq := int64(e.EventSequence)
			status := e.SessionStatus
			env, flow := s.Environment, s.FlowID
			out = append(out, sentEvent{snap: s, ev: &schemas.SessionEvent{
				EventID: e.EventID, EventName: e.EventName, EventSequence: &seq, SessionID: s.SessionID,
				SessionStatus: &status, Environment: &env, FlowID: &flow,
				ReceivedAt: time.Now(), DeliveryVariant: schemas.DeliveryJWTBody,
			}})
		}
	}
	return out
}

func newProducer(t testing.TB, brokers []string, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceEvents writes the events to the sessions topic keyed by session id.
func produceEvents(t testing.TB, brokers []string, events []sentEvent) {
	t.Helper()
	codec, _ := newCodecs(t)
	cl := newProducer(t, brokers)
	var recs []*kgo.Record
	for _, s := range events {
		v, err := codec.Encode(s.ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: testTopics.Sessions, Key: []byte(s.ev.SessionID), Value: v,
			Headers: []kgo.RecordHeader{{Key: serde.HeaderSchema, Value: []byte(schemas.SessionEventName)}, {Key: serde.HeaderEventID, Value: []byte(s.ev.EventID)}}})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// produceRaw writes one record with arbitrary bytes to the sessions topic.
func produceRaw(t testing.TB, brokers []string, key, value []byte) {
	t.Helper()
	cl := newProducer(t, brokers)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.Sessions, Key: key, Value: value,
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// waitConsumed waits until the group's committed offsets reach the end of the sessions topic:
// every event there has its output committed. It fails the test after timeout.
func waitConsumed(t testing.TB, brokers []string, group string, timeout time.Duration) {
	t.Helper()
	if err := pollConsumed(brokers, group, timeout, 1); err != nil {
		t.Fatal(err)
	}
}

// pollConsumed waits until the committed share of the sessions topic reaches fraction.
func pollConsumed(brokers []string, group string, timeout time.Duration, fraction float64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		ends, err := adm.ListEndOffsets(ctx, testTopics.Sessions)
		if err == nil {
			var committed kadm.OffsetResponses
			committed, err = adm.FetchOffsets(ctx, group)
			if err == nil {
				var total, done int64
				ends.Each(func(o kadm.ListedOffset) {
					total += o.Offset
					if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil {
						done += min(c.At, o.Offset)
					}
				})
				last = fmt.Sprintf("%d of %d committed", done, total)
				if total > 0 && float64(done) >= fraction*float64(total) {
					return nil
				}
			}
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %s did not consume %.0f%% of %s in %s: %s", group, fraction*100, testTopics.Sessions, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readCommitted returns every record a read_committed consumer sees on topic. It first writes a
// non-transactional sentinel to each partition and reads until it has seen them all: everything
// committed before is then known to be read, without waiting on a quiet period.
func readCommitted(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	p := newProducer(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range int32(testPartitions) {
		if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Partition: i, Key: []byte(sentinelKey)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	seen := map[int32]int{}
	var out []*kgo.Record
	for len(seen) < testPartitions {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed reader of %s saw sentinels of %d of %d partitions before timing out", topic, len(seen), testPartitions)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == sentinelKey {
				seen[r.Partition]++
				return
			}
			out = append(out, r)
		})
	}
	return out
}

// decodeEnriched decodes the EnrichedSession records.
func decodeEnriched(t testing.TB, recs []*kgo.Record) []*schemas.EnrichedSession {
	t.Helper()
	_, codec := newCodecs(t)
	out := make([]*schemas.EnrichedSession, 0, len(recs))
	for _, r := range recs {
		var es schemas.EnrichedSession
		if err := codec.Decode(t.Context(), r.Value, &es); err != nil {
			t.Fatalf("enriched record at %d/%d does not decode: %v", r.Partition, r.Offset, err)
		}
		if string(r.Key) != es.Session.SessionID {
			t.Errorf("enriched record key %q is not its session id %q", r.Key, es.Session.SessionID)
		}
		if h := kafka.Header(r, serde.HeaderEventID); h != es.Event.EventID {
			t.Errorf("enriched record header %s = %q, want %q", serde.HeaderEventID, h, es.Event.EventID)
		}
		if h := kafka.Header(r, serde.HeaderSchema); h != schemas.EnrichedSessionName {
			t.Errorf("enriched record header %s = %q", serde.HeaderSchema, h)
		}
		out = append(out, &es)
	}
	return out
}

// checkExactlyOnce asserts one enriched record per sent event (at least one when dupsAllowed),
// none for anything else, and that each carries the session's final state: the events were
// produced after the simulator went idle, so the API answered with the final state.
func checkExactlyOnce(t testing.TB, sent []sentEvent, got []*schemas.EnrichedSession, policy DataBlocksConfig, dupsAllowed bool) {
	t.Helper()
	byEvent := map[string]int{}
	for _, es := range got {
		byEvent[es.Event.EventID]++
	}
	want := map[string]sentEvent{}
	for _, s := range sent {
		want[s.ev.EventID] = s
		switch n := byEvent[s.ev.EventID]; {
		case n == 0:
			t.Errorf("event %s (session %s, %s) has no enriched record: lost", s.ev.EventID, s.ev.SessionID, s.ev.EventName)
		case n > 1 && !dupsAllowed:
			t.Errorf("event %s has %d enriched records: duplicated", s.ev.EventID, n)
		}
	}
	for id := range byEvent {
		if _, ok := want[id]; !ok {
			t.Errorf("enriched record for event %s that was never sent", id)
		}
	}
	for _, es := range got {
		s, ok := want[es.Event.EventID]
		if !ok {
			continue
		}
		checkFinalState(t, s, es, policy)
	}
}

func checkFinalState(t testing.TB, s sentEvent, es *schemas.EnrichedSession, policy DataBlocksConfig) {
	t.Helper()
	snap := s.snap
	if es.Session.SessionID != snap.SessionID || es.Event.SessionStatus == nil || *es.Event.SessionStatus != *s.ev.SessionStatus {
		t.Errorf("event %s: enriched identity %s/%v does not match the event", s.ev.EventID, es.Session.SessionID, es.Event.SessionStatus)
	}
	if es.Session.Status != snap.Status {
		t.Errorf("event %s: session status %s, the simulator says %s", s.ev.EventID, es.Session.Status, snap.Status)
	}
	wantOutcome := idnow.NormalizeOutcome(snap.Outcome)
	if es.Session.Outcome == nil || *es.Session.Outcome != wantOutcome {
		t.Errorf("event %s: outcome %v, the simulator says %s", s.ev.EventID, deref(es.Session.Outcome), wantOutcome)
	}
	fetch := policy.fetchesBlocks(snap.Status)
	if es.DataBlocksFetched != fetch {
		t.Errorf("event %s: dataBlocksFetched %v for status %s", s.ev.EventID, es.DataBlocksFetched, snap.Status)
	}
	if !fetch {
		if len(es.DataBlocks) != 0 {
			t.Errorf("event %s: %d data blocks although none were fetched", s.ev.EventID, len(es.DataBlocks))
		}
		return
	}
	var wantTypes, gotTypes []string
	for _, typ := range snap.DataBlockTypes {
		if policy.includes(typ) {
			wantTypes = append(wantTypes, typ)
		}
	}
	for _, b := range es.DataBlocks {
		gotTypes = append(gotTypes, b.Type)
		if b.Status == idnow.DataBlockDeleted && b.Content != nil {
			t.Errorf("event %s: DELETED block %s carries content", s.ev.EventID, b.Type)
		}
		if policy.Content == ContentNone && (b.Content != nil || b.BasicIdentity != nil) {
			t.Errorf("event %s: content none, yet block %s carries content or identity", s.ev.EventID, b.Type)
		}
		if policy.Content == ContentFull && b.Status == idnow.DataBlockStored && b.Content == nil {
			t.Errorf("event %s: content full, yet stored block %s has none", s.ev.EventID, b.Type)
		}
	}
	if strings.Join(gotTypes, ",") != strings.Join(wantTypes, ",") {
		t.Errorf("event %s: data blocks %v, want %v (policy include %v)", s.ev.EventID, gotTypes, wantTypes, policy.Include)
	}
	if es.Enrichment.DataBlocksContent != policy.Content {
		t.Errorf("event %s: enrichment.dataBlocksContent %q, want %q", s.ev.EventID, es.Enrichment.DataBlocksContent, policy.Content)
	}
}

// startSim starts a simulator whose sessions all end within a few hundred milliseconds, runs n
// sessions to the end and returns it.
func startSim(t testing.TB, n int, opts ...func(*idnowsim.Config)) *idnowsim.Simulator {
	t.Helper()
	sim := simtest.Start(t, append([]func(*idnowsim.Config){func(c *idnowsim.Config) {
		// Every variant IDnow is known to send, and some deleted blocks.
		c.DataBlocksShape = idnowsim.VariantMixed
		c.LastStepVariant = idnowsim.VariantMixed
		c.OutcomeCase = idnowsim.VariantMixed
		c.DeletedBlockRate = 0.2
	}}, opts...)...)
	sim.CreateSessions(n)
	simtest.WaitIdle(t, sim, 30*time.Second)
	return sim
}
