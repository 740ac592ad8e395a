package enrich

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// countingAPI counts API calls per session, so a test can prove nothing was fetched twice.
// gate, when set, holds every GetSession call after the first `free` until it is closed.
type countingAPI struct {
	api SessionAPI

	mu       sync.Mutex
	sessions map[string]int
	blocks   map[string]int
	free     int
	gate     chan struct{}
}

func newCountingAPI(api SessionAPI) *countingAPI {
	return &countingAPI{api: api, sessions: map[string]int{}, blocks: map[string]int{}}
}

func (c *countingAPI) GetSession(ctx context.Context, id string) (*idnow.Session, error) {
	c.mu.Lock()
	c.sessions[id]++
	gate := c.gate
	held := gate != nil && c.total() > c.free
	c.mu.Unlock()
	if held {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.api.GetSession(ctx, id)
}

func (c *countingAPI) GetDataBlocks(ctx context.Context, id string) ([]idnow.DataBlock, error) {
	c.mu.Lock()
	c.blocks[id]++
	c.mu.Unlock()
	return c.api.GetDataBlocks(ctx, id)
}

// total is the number of GetSession calls; c.mu must be held.
func (c *countingAPI) total() int {
	n := 0
	for _, v := range c.sessions {
		n += v
	}
	return n
}

func (c *countingAPI) counts() (sessions, blocks map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sessions, blocks = map[string]int{}, map[string]int{}
	for k, v := range c.sessions {
		sessions[k] = v
	}
	for k, v := range c.blocks {
		blocks[k] = v
	}
	return sessions, blocks
}

// safeAPI makes fakeAPI safe for the enricher's parallel handlers.
type safeAPI struct {
	mu  sync.Mutex
	api *fakeAPI
}

func (s *safeAPI) GetSession(ctx context.Context, id string) (*idnow.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.GetSession(ctx, id)
}

func (s *safeAPI) GetDataBlocks(ctx context.Context, id string) ([]idnow.DataBlock, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.api.GetDataBlocks(ctx, id)
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startEnricherLogged is startEnricher with the logs (warnings and above) also kept in logs.
func startEnricherLogged(t *testing.T, brokers []string, api SessionAPI, cfg Config, logs *syncBuffer) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return runEnricher(t, brokers, cfg, Deps{API: api, Log: log})
}

// eventually polls cond every 20ms until it holds or timeout passes; then it fails with what
// describe says.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not reached within %s: %s", what, timeout, describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lagSum(r *running) float64 {
	var sum float64
	for p := range int32(testPartitions) {
		sum += testutil.ToFloat64(r.e.m.lag.WithLabelValues(strconv.Itoa(int(p))))
	}
	return sum
}

// committedTotal is the sum of the group's committed offsets on topics.sessions.
func committedTotal(t *testing.T, brokers []string, group string) int64 {
	t.Helper()
	cl := newProducer(t, brokers)
	offs, err := kadm.NewClient(cl).FetchOffsets(t.Context(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0 // nothing committed yet
	}
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == testTopics.Sessions && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n
}

// TestOversizedSessionAmongNormalOnes reproduces problem 1 of issue 9: one session whose data
// blocks make the EnrichedSession larger than the output topic's max.message.bytes used to abort
// every transaction of its batch, forever, re-fetching the whole batch from IDnow each time. Now
// the big session is shortened and marked, every other event is enriched exactly once, every
// session is fetched once per event, no transaction aborts and nothing stalls.
func TestOversizedSessionAmongNormalOnes(t *testing.T) {
	brokers := newCluster(t)
	// A small limit on the output topic, as a broker with a tighter max.message.bytes has.
	adm := kadm.NewClient(newProducer(t, brokers))
	limit := "65536"
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, testTopics.Enriched); err != nil {
		t.Fatal(err)
	}
	sim := startSim(t, 40, func(c *idnowsim.Config) {
		c.HugeDataBlocks = idnowsim.HugeDataBlocks{Every: 20, Blocks: 5000}
	})
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	huge := map[string]bool{}
	for _, s := range sim.Sessions() {
		if s.PaddingBlocks > 0 {
			huge[s.SessionID] = true
		}
	}
	if len(huge) != 2 {
		t.Fatalf("%d padded sessions, want 2", len(huge))
	}

	api := newCountingAPI(newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3))
	cfg := testConfig("a")
	policy := DataBlocksConfig{OnStatus: []string{"COMPLETED", "ABORTED", "EXPIRED", "ERROR"}, Content: ContentFull}
	cfg.DataBlocks = policy
	cfg.LagInterval = 50 * time.Millisecond
	// Well above what one batch takes here (under -race on a loaded machine), so a stall would
	// mean a loop, not a slow batch.
	cfg.StallAfter = 30 * time.Second
	r := startEnricher(t, brokers, api, cfg)
	waitConsumed(t, brokers, cfg.Group, 60*time.Second)
	eventually(t, 5*time.Second, "no stall", func() bool { return testutil.ToFloat64(r.e.m.stalled) == 0 },
		func() string { return "stalled stays 1 after everything was consumed" })
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	var normal []*schemas.EnrichedSession
	var normalSent []sentEvent
	truncated := 0
	for _, es := range got {
		if !huge[es.Session.SessionID] {
			normal = append(normal, es)
			if es.Enrichment.Truncation != nil {
				t.Errorf("normal session %s marked %s", es.Session.SessionID, *es.Enrichment.Truncation)
			}
			continue
		}
		if es.DataBlocksFetched {
			truncated++
			if deref(es.Enrichment.Truncation) != schemas.TruncationMetadataOnly || len(es.DataBlocks) != 0 {
				t.Errorf("big session %s: truncation %v with %d blocks, want metadata_only and none", es.Session.SessionID, deref(es.Enrichment.Truncation), len(es.DataBlocks))
			}
		}
	}
	for _, s := range sent {
		if !huge[s.ev.SessionID] {
			normalSent = append(normalSent, s)
		}
	}
	checkExactlyOnce(t, normalSent, normal, policy, false)
	if len(got)-len(normal) != len(sent)-len(normalSent) {
		t.Errorf("%d records for the big sessions, want one per event (%d)", len(got)-len(normal), len(sent)-len(normalSent))
	}
	if dlq := readCommitted(t, brokers, testTopics.DLQ); len(dlq) != 0 {
		t.Errorf("%d records in the DLQ, want none (the big sessions fit with metadata only)", len(dlq))
	}
	if truncated == 0 {
		t.Fatal("no big session was enriched with its data blocks fetched: the test does not exercise truncation")
	}
	if n := testutil.ToFloat64(r.e.m.truncated.WithLabelValues(TruncatedMetadata)); int(n) != truncated {
		t.Errorf("records_truncated_total{level=metadata} = %v, want %d", n, truncated)
	}
	// The old behaviour aborted the batch every few milliseconds here, forever. A rebalance on
	// a loaded machine may abort one batch; the API counts below prove it was not re-fetched.
	if n := testutil.ToFloat64(r.e.m.transactions.WithLabelValues("aborted")); n > 2 {
		t.Errorf("%v transactions aborted: the oversized session keeps aborting its batch", n)
	}
	// No re-fetch loop: every session was read once per event, its blocks at most once per event.
	perSession := map[string]int{}
	for _, s := range sent {
		perSession[s.ev.SessionID]++
	}
	sessions, blocks := api.counts()
	for id, n := range perSession {
		if sessions[id] != n || blocks[id] > n {
			t.Errorf("session %s (%d events): %d session reads, %d data-block reads", id, n, sessions[id], blocks[id])
		}
	}
}

// TestBrokerRefusesRecordForGood: the output topic's limit is lowered after the enricher read
// it, so the broker answers MESSAGE_TOO_LARGE. The record too large by itself is dead-lettered
// with record_too_large; records refused only because franz-go batched them together are
// produced alone and enriched; the batch commits without asking the API again.
func TestBrokerRefusesRecordForGood(t *testing.T) {
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) { testBrokerRefuses(t, delivery) })
	}
}

func testBrokerRefuses(t *testing.T, delivery string) {
	brokers := newCluster(t)
	fake := bigSessionAPI("ses-big", 20) // about 9 KB enriched
	for i := range 30 {
		id := fmt.Sprintf("ses-small-%02d", i)
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
	}
	api := newCountingAPI(&safeAPI{api: fake})
	cfg := testConfig("a")
	cfg.Delivery = delivery
	cfg.LagInterval = 50 * time.Millisecond
	cfg.MaxPollRecords = 100
	logs := &syncBuffer{}
	r := startEnricherLogged(t, brokers, api, cfg, logs)
	eventually(t, 20*time.Second, "joined", r.e.joined.Load, func() string { return "not joined" })
	waitLimitsResolved(t, r)

	adm := kadm.NewClient(newProducer(t, brokers))
	limit := "3000"
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, testTopics.Enriched); err != nil {
		t.Fatal(err)
	}
	var sent []sentEvent
	for id := range fake.sessions {
		status := "RUNNING"
		if id == "ses-big" {
			status = "COMPLETED"
		}
		sent = append(sent, sentEvent{ev: testEvent(id, status)})
	}
	produceEvents(t, brokers, sent)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	seen := map[string]int{}
	for _, es := range got {
		seen[es.Session.SessionID]++
	}
	for id := range fake.sessions {
		want := 1
		if id == "ses-big" {
			want = 0
		}
		if seen[id] != want {
			t.Errorf("session %s: %d enriched records, want %d", id, seen[id], want)
		}
	}
	dlq := readCommitted(t, brokers, testTopics.DLQ)
	if len(dlq) != 1 || string(dlq[0].Key) != "ses-big" || kafka.Header(dlq[0], HeaderDLQErrorClass) != ClassRecordTooLarge {
		t.Fatalf("DLQ holds %d records, want the big session's with class %s", len(dlq), ClassRecordTooLarge)
	}
	if !strings.Contains(kafka.Header(dlq[0], HeaderDLQError), "MESSAGE_TOO_LARGE") {
		t.Errorf("DLQ error header %q does not name the broker's answer", kafka.Header(dlq[0], HeaderDLQError))
	}
	if n := testutil.ToFloat64(r.e.m.dlq.WithLabelValues(ClassRecordTooLarge)); n != 1 {
		t.Errorf("dlq_records_total{reason=record_too_large} = %v, want 1", n)
	}
	sessions, _ := api.counts()
	for id, n := range sessions {
		if n != 1 {
			t.Errorf("session %s read %d times from the API across the aborted attempts, want 1", id, n)
		}
	}
	if !strings.Contains(logs.String(), "output record refused for good by the broker") {
		t.Errorf("the broker's refusal was not exercised:\n%s", logs.String())
	}
	if delivery != DeliveryExactlyOnce {
		return
	}
	if n := testutil.ToFloat64(r.e.m.transactions.WithLabelValues("aborted")); n < 1 {
		t.Errorf("no aborted transaction: the broker's refusal was not exercised")
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"transaction aborted") || !strings.Contains(logs.String(), "cause=") {
		t.Errorf("aborted transactions are not logged at WARN with their cause:\n%s", logs.String())
	}
}

// TestLagAndStallWithBacklog reproduces the lag half of problem 8: 200 events wait, the API lets
// only the first batch through. The lag metric is the group's view (end offsets minus committed
// offsets, 200 minus what committed), where the old high-watermark-at-last-poll number covered
// only the partitions of the last polled records and read about a tenth of it. With nothing
// committing, the watchdog reports a stall (gauge and readiness); once the API answers, the
// backlog drains, lag reaches 0 and the stall clears.
func TestLagAndStallWithBacklog(t *testing.T) {
	const n = 200
	brokers := newCluster(t)
	fake := &fakeAPI{sessions: map[string]*idnow.Session{}}
	var sent []sentEvent
	for i := range n {
		id := fmt.Sprintf("ses-%03d", i)
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
		sent = append(sent, sentEvent{ev: testEvent(id, "RUNNING")})
	}
	produceEvents(t, brokers, sent)
	api := newCountingAPI(&safeAPI{api: fake})
	api.free, api.gate = 10, make(chan struct{})
	cfg := testConfig("a")
	cfg.MaxPollRecords = 10
	// Only the first ten events in flight, so the ten free API calls go to them (the enricher
	// polls ahead: with room for more, the calls went to events all over the partitions and no
	// partition's prefix finished, so nothing committed).
	cfg.MaxInFlight = 10
	cfg.LagInterval = 50 * time.Millisecond
	cfg.StallAfter = time.Second
	r := startEnricher(t, brokers, api, cfg)
	released := false
	release := func() {
		if !released {
			released = true
			close(api.gate)
		}
	}
	t.Cleanup(release)

	// The first batch commits, the second waits on the API.
	eventually(t, 20*time.Second, "first batch committed", func() bool { return committedTotal(t, brokers, cfg.Group) >= 10 },
		func() string { return "nothing committed" })
	committed := committedTotal(t, brokers, cfg.Group)
	if committed >= n/2 {
		t.Fatalf("%d of %d committed although the API holds every call after the 10th", committed, n)
	}
	eventually(t, 10*time.Second, "lag = end offsets - committed offsets", func() bool { return lagSum(r) == float64(n-committed) },
		func() string {
			return fmt.Sprintf("lag sums to %v, want %d (%d produced, %d committed)", lagSum(r), n-committed, n, committed)
		})

	eventually(t, 10*time.Second, "stalled", func() bool { return testutil.ToFloat64(r.e.m.stalled) == 1 },
		func() string { return "stalled gauge stays 0" })
	if err := r.e.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("Ready while stalled = %v, want an error saying stalled", err)
	}

	release()
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	eventually(t, 10*time.Second, "lag 0 and no stall", func() bool { return lagSum(r) == 0 && testutil.ToFloat64(r.e.m.stalled) == 0 },
		func() string { return fmt.Sprintf("lag %v, stalled %v", lagSum(r), testutil.ToFloat64(r.e.m.stalled)) })
	if err := r.e.Ready(t.Context()); err != nil {
		t.Errorf("Ready after draining: %v", err)
	}
	if last := testutil.ToFloat64(r.e.m.lastCommit); last == 0 {
		t.Error("last_commit_timestamp_seconds never set")
	}
}

// TestHangingTransactionOnInput reproduces the fetch half of problem 10 on kfake: another
// producer leaves a transaction open on an input partition, so the last stable offset stays
// behind the end offset and read_committed fetches cannot pass it. Past
// enrich.transaction_timeout the enricher logs "hanging transaction" at ERROR naming the
// partition, sets hanging_transactions and blocked, and fails readiness; when the transaction
// ends, all of it clears and the events behind it are enriched.
func TestHangingTransactionOnInput(t *testing.T) {
	brokers := newCluster(t)
	fake := &fakeAPI{sessions: map[string]*idnow.Session{}}
	for _, id := range []string{"ses-a", "ses-b"} {
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
	}
	cfg := testConfig("a")
	cfg.TransactionTimeout = time.Second
	cfg.LagInterval = 50 * time.Millisecond
	logs := &syncBuffer{}
	r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, logs)

	// The open transaction: one event, produced and flushed, never committed or aborted (the
	// producer's own timeout is far away).
	codec, _ := newCodecs(t)
	v, err := codec.Encode(testEvent("ses-a", "RUNNING"))
	if err != nil {
		t.Fatal(err)
	}
	txn := newProducer(t, brokers, kgo.TransactionalID("someone-else"), kgo.TransactionTimeout(10*time.Minute),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.Sessions, Partition: 1, Key: []byte("ses-a"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// An ordinary event behind it on the same partition waits too.
	plain := newProducer(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	vb, _ := codec.Encode(testEvent("ses-b", "RUNNING"))
	if err := plain.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.Sessions, Partition: 1, Key: []byte("ses-b"), Value: vb}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	eventually(t, 15*time.Second, "hanging transaction detected", func() bool { return testutil.ToFloat64(r.e.m.hanging) == 1 },
		func() string { return fmt.Sprintf("hanging_transactions = %v", testutil.ToFloat64(r.e.m.hanging)) })
	if v := testutil.ToFloat64(r.e.m.blocked); v != 1 {
		t.Errorf("blocked = %v during a hanging transaction, want 1", v)
	}
	err = r.e.Ready(t.Context())
	if err == nil || !strings.Contains(err.Error(), "hanging transaction") || !strings.Contains(err.Error(), testTopics.Sessions+"/1") {
		t.Errorf("Ready = %v, want the hanging transaction on %s/1", err, testTopics.Sessions)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR msg=\"hanging transaction") || !strings.Contains(l, testTopics.Sessions+"/1") {
		t.Errorf("no ERROR log naming the hanging transaction and its partition:\n%s", l)
	}

	if err := txn.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// Not waitConsumed: the commit marker takes an offset no consumer commits past, so the
	// group stays one offset short of the end on that partition (kafka-consumer-groups.sh shows
	// the same lag of 1).
	eventually(t, 20*time.Second, "both events committed", func() bool { return committedTotal(t, brokers, cfg.Group) >= 2 },
		func() string { return fmt.Sprintf("%d committed", committedTotal(t, brokers, cfg.Group)) })
	eventually(t, 10*time.Second, "hanging cleared", func() bool {
		return testutil.ToFloat64(r.e.m.hanging) == 0 && testutil.ToFloat64(r.e.m.blocked) == 0 && r.e.Ready(t.Context()) == nil
	}, func() string {
		return fmt.Sprintf("hanging %v blocked %v ready %v", testutil.ToFloat64(r.e.m.hanging), testutil.ToFloat64(r.e.m.blocked), r.e.Ready(t.Context()))
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	if len(got) != 2 {
		t.Errorf("%d enriched records after the transaction ended, want 2", len(got))
	}
}

// TestHangingTransactionUnstableOffsets reproduces the group half of problem 10: the group's
// offset fetch with require_stable answers UNSTABLE_OFFSET_COMMIT for good (a transaction whose
// markers the broker never wrote). kfake resolves its own transactions, so the test makes it
// answer as the broken broker did. The enricher cannot start consuming; past
// enrich.transaction_timeout it reports the hanging transaction on every input partition and
// recovers once the offsets are stable again.
func TestHangingTransactionUnstableOffsets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(testPartitions, testTopics.Sessions, testTopics.Enriched, testTopics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	tds, err := kadm.NewClient(newProducer(t, brokers)).ListTopics(t.Context(), testTopics.Sessions)
	if err != nil {
		t.Fatal(err)
	}
	sessionsID := tds[testTopics.Sessions].ID
	var mu sync.Mutex
	unstable := true
	c.ControlKey(int16(kmsg.OffsetFetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.OffsetFetchRequest)
		mu.Lock()
		hang := unstable
		mu.Unlock()
		if !hang || len(req.Groups) == 0 || !req.RequireStable {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		sg := kmsg.NewOffsetFetchResponseGroup()
		sg.Group = req.Groups[0].Group
		// Answer what was asked (members ask for their partitions), or every input partition
		// when the whole group was asked (kadm.FetchOffsets).
		asked := req.Groups[0].Topics
		if asked == nil {
			rt := kmsg.NewOffsetFetchRequestGroupTopic()
			rt.Topic, rt.TopicID = testTopics.Sessions, sessionsID
			for p := range int32(testPartitions) {
				rt.Partitions = append(rt.Partitions, p)
			}
			asked = append(asked, rt)
		}
		for _, rt := range asked {
			st := kmsg.NewOffsetFetchResponseGroupTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, p := range rt.Partitions {
				sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				sp.Partition, sp.Offset, sp.LeaderEpoch = p, -1, -1
				sp.ErrorCode = kerr.UnstableOffsetCommit.Code
				st.Partitions = append(st.Partitions, sp)
			}
			sg.Topics = append(sg.Topics, st)
		}
		resp.Groups = append(resp.Groups, sg)
		return resp, nil, true
	})

	fake := &fakeAPI{sessions: map[string]*idnow.Session{"ses-a": {SessionID: "ses-a", Status: idnow.StatusRunning}}}
	produceEvents(t, brokers, []sentEvent{{ev: testEvent("ses-a", "RUNNING")}})
	cfg := testConfig("a")
	cfg.TransactionTimeout = time.Second
	cfg.LagInterval = 50 * time.Millisecond
	logs := &syncBuffer{}
	r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, logs)

	eventually(t, 15*time.Second, "hanging transaction detected", func() bool { return testutil.ToFloat64(r.e.m.hanging) == testPartitions },
		func() string { return fmt.Sprintf("hanging_transactions = %v", testutil.ToFloat64(r.e.m.hanging)) })
	if err := r.e.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "group offsets unstable") {
		t.Errorf("Ready = %v, want the unstable offsets named", err)
	}
	if l := logs.String(); !strings.Contains(l, "hanging transaction") || !strings.Contains(l, testTopics.Sessions+"/0,"+testTopics.Sessions+"/1") {
		t.Errorf("no ERROR log naming the partitions:\n%s", l)
	}
	if committedTotal(t, brokers, cfg.Group) != 0 {
		t.Fatal("the group committed although its offsets were unstable")
	}

	mu.Lock()
	unstable = false
	mu.Unlock()
	waitConsumed(t, brokers, cfg.Group, 20*time.Second)
	eventually(t, 10*time.Second, "hanging cleared", func() bool { return testutil.ToFloat64(r.e.m.hanging) == 0 && r.e.Ready(t.Context()) == nil },
		func() string {
			return fmt.Sprintf("hanging %v ready %v", testutil.ToFloat64(r.e.m.hanging), r.e.Ready(t.Context()))
		})
}

// TestCountersPreCreated: every series an alert reads exists at 0 before the first event, so
// an increase() alert fires on the first record of each kind (problem 8).
func TestCountersPreCreated(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				have[mf.GetName()+"{"+l.GetName()+"="+l.GetValue()+"}"] = true
			}
		}
	}
	var want []string
	for _, c := range permanentClasses {
		want = append(want, "idnow_connector_enrich_dlq_records_total{reason="+c+"}")
	}
	for _, c := range retryableClasses {
		want = append(want, "idnow_connector_enrich_retries_total{class="+c+"}")
	}
	want = append(want,
		"idnow_connector_enrich_dlq_records_total{reason=record_too_large}",
		"idnow_connector_enrich_transactions_total{result=committed}",
		"idnow_connector_enrich_transactions_total{result=aborted}",
		"idnow_connector_enrich_records_truncated_total{level=content}",
		"idnow_connector_enrich_records_truncated_total{level=metadata}")
	for _, w := range want {
		if !have[w] {
			t.Errorf("series %s is not pre-created", w)
		}
	}
	// Every class Classify can return is pre-created.
	for _, c := range []string{ClassUndecodable, ClassSessionNotFound, ClassForbidden, ClassAPIRejected, ClassAPIResponse,
		ClassSchemaMismatch, ClassInternal, ClassRecordTooLarge, ClassOutputRejected} {
		if !have["idnow_connector_enrich_dlq_records_total{reason="+c+"}"] {
			t.Errorf("DLQ reason %s is not pre-created", c)
		}
	}
}

// waitLimitsResolved waits until the enricher has read the output topics' size limits. A test
// that lowers a limit afterwards then meets the broker's refusal, not a limit the enricher
// already knew (joining the group and reading the limits race at start-up).
func waitLimitsResolved(t *testing.T, r *running) {
	t.Helper()
	resolved := func() bool {
		r.e.limits.mu.Lock()
		defer r.e.limits.mu.Unlock()
		_, ok := r.e.limits.topics[testTopics.Enriched]
		return ok
	}
	eventually(t, 20*time.Second, "output limits read", resolved, func() string { return "limits not read" })
}
