package enrich

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
)

// stepper is an enrich function whose calls each wait until the test releases them.
type stepper struct {
	mu      sync.Mutex
	started []string
	release map[string]chan struct{}
}

func newStepper() *stepper { return &stepper{release: map[string]chan struct{}{}} }

func recName(r *kgo.Record) string { return fmt.Sprintf("%s@%d/%d", r.Key, r.Partition, r.Offset) }

func (s *stepper) gate(name string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.release[name]
	if c == nil {
		c = make(chan struct{})
		s.release[name] = c
	}
	return c
}

func (s *stepper) enrich(ctx context.Context, _ *keyState, r *kgo.Record) (Result, error) {
	name := recName(r)
	s.mu.Lock()
	s.started = append(s.started, name)
	s.mu.Unlock()
	select {
	case <-s.gate(name):
		return Result{Status: name}, nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (s *stepper) isStarted(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.started {
		if n == name {
			return true
		}
	}
	return false
}

func readyNames(f *flow) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, en := range f.ready {
		out = append(out, en.res.Status)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFlowOrder checks the rules the commit relies on: a session's records are enriched one
// after the other in log order, different sessions in parallel, and a record becomes ready for a
// commit only once every earlier record of its partition is ready.
func TestFlowOrder(t *testing.T) {
	s := newStepper()
	f := newFlow(t.Context(), 4, 100, s.enrich)
	defer f.stop(context.Canceled)
	rec := func(key string, p int32, off int64) *kgo.Record {
		return &kgo.Record{Topic: "in", Key: []byte(key), Partition: p, Offset: off}
	}
	f.add([]*kgo.Record{rec("a", 0, 0), rec("b", 0, 1), rec("a", 0, 2), rec("c", 1, 0)})
	waitFor(t, "a, b and c started", func() bool { return s.isStarted("a@0/0") && s.isStarted("b@0/1") && s.isStarted("c@1/0") })
	time.Sleep(20 * time.Millisecond)
	if s.isStarted("a@0/2") {
		t.Fatal("the second record of session a started while its first was being enriched")
	}
	close(s.gate("b@0/1"))
	time.Sleep(20 * time.Millisecond)
	if got := readyNames(f); len(got) != 0 {
		t.Fatalf("ready %v while the partition's first record is unfinished, want none", got)
	}
	close(s.gate("c@1/0"))
	waitFor(t, "c ready", func() bool { return len(readyNames(f)) == 1 })
	close(s.gate("a@0/0"))
	waitFor(t, "partition 0's prefix ready", func() bool { return len(readyNames(f)) == 3 })
	if got := readyNames(f); fmt.Sprint(got) != "[c@1/0 a@0/0 b@0/1]" {
		t.Fatalf("ready %v, want [c@1/0 a@0/0 b@0/1]", got)
	}
	waitFor(t, "a's second record started after its first", func() bool { return s.isStarted("a@0/2") })
	if due, _ := f.due(time.Now(), time.Hour); due {
		t.Error("due before the interval with fewer than max_batch_records ready")
	}
	if due, _ := f.due(time.Now().Add(time.Hour), time.Hour); !due {
		t.Error("not due once the oldest ready record waited the interval")
	}
	batch := f.take()
	f.release(batch)
	if n := f.uncommitted(); n != 1 {
		t.Fatalf("uncommitted %d after committing 3 of 4, want 1", n)
	}
	// at_least_once loses partition 0: its record in flight is dropped and never becomes ready.
	f.drop([]int32{0})
	if n := f.uncommitted(); n != 0 {
		t.Fatalf("uncommitted %d after dropping the partition, want 0", n)
	}
	time.Sleep(20 * time.Millisecond)
	if got := readyNames(f); len(got) != 0 {
		t.Fatalf("ready %v after the partition was dropped", got)
	}
}

// TestFlowSizeTrigger: max_batch_records ready records make the commit due at once, take
// hands out at most that many, and a handler failure breaks the flow with its error.
func TestFlowSizeTrigger(t *testing.T) {
	boom := errors.New("boom")
	f := newFlow(t.Context(), 2, 3, func(_ context.Context, _ *keyState, r *kgo.Record) (Result, error) {
		if string(r.Key) == "bad" {
			return Result{}, boom
		}
		return Result{}, nil
	})
	defer f.stop(context.Canceled)
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Offset: int64(i)})
	}
	f.add(recs)
	select {
	case <-f.kick:
	case <-time.After(5 * time.Second):
		t.Fatal("no kick with max_batch_records ready")
	}
	if due, _ := f.due(time.Now(), time.Hour); !due {
		t.Fatal("not due with max_batch_records ready")
	}
	if n := len(f.take()); n != 3 {
		t.Fatalf("took %d, want max_batch_records 3", n)
	}
	f.add([]*kgo.Record{{Key: []byte("bad"), Offset: 5}})
	waitFor(t, "the flow to break", func() bool { return f.broken() != nil })
	if !errors.Is(f.broken(), boom) {
		t.Fatalf("broken() = %v, want the handler's error", f.broken())
	}
}

// TestCommitOnly checks the rewrite of the session's TxnOffsetCommit: exactly the batch's
// offsets, partitions without finished records removed, and a missing partition refused.
func TestCommitOnly(t *testing.T) {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	topic := kmsg.NewTxnOffsetCommitRequestTopic()
	topic.Topic = "in"
	for p, off := range []int64{50, 60, 70} {
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset = int32(p), off
		topic.Partitions = append(topic.Partitions, rp)
	}
	req.Topics = append(req.Topics, topic)
	batch := []*kgo.Record{{Topic: "in", Partition: 0, Offset: 10}, {Topic: "in", Partition: 0, Offset: 11}, {Topic: "in", Partition: 2, Offset: 40, LeaderEpoch: 3}}
	if err := commitOnly(batchOffsets(batch))(req); err != nil {
		t.Fatal(err)
	}
	got := map[int32]int64{}
	for _, tp := range req.Topics {
		for _, p := range tp.Partitions {
			got[p.Partition] = p.Offset
			if p.Partition == 2 && p.LeaderEpoch != 3 {
				t.Errorf("partition 2 leader epoch %d, want the record's 3", p.LeaderEpoch)
			}
		}
	}
	if fmt.Sprint(got) != "map[0:12 2:41]" {
		t.Fatalf("committed offsets %v, want map[0:12 2:41] (partition 1 has nothing finished)", got)
	}
	missing := kmsg.NewPtrTxnOffsetCommitRequest()
	if err := commitOnly(batchOffsets(batch))(missing); !errors.Is(err, errCommitOffsets) {
		t.Fatalf("a request without the batch's partitions: err %v, want errCommitOffsets", err)
	}
}

// blockingAPI holds GetSession for one session until release is closed.
type blockingAPI struct {
	SessionAPI
	session string
	release chan struct{}
}

func (b *blockingAPI) GetSession(ctx context.Context, id string) (*idnow.Session, error) {
	if id == b.session {
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return b.SessionAPI.GetSession(ctx, id)
}

// TestPollAheadCommitsFinished: one session's API call hangs. The enricher keeps polling and
// enriching behind it and commits everything else (the old batch barrier held back every event
// of the hanging one's batch), never the hanging event's partition past it; once it answers,
// every event is enriched exactly once. Both delivery modes share the loop.
func TestPollAheadCommitsFinished(t *testing.T) {
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) {
			brokers := newCluster(t)
			sim := startSim(t, 30)
			sent := eventsFromSim(sim)
			produceEvents(t, brokers, sent)
			in := sessionPositions(t, brokers, len(sent))
			slow := sent[0].ev.SessionID
			first := in[slow][0]
			// What may commit while the slow session hangs: everything but its partition from
			// its first event on.
			var total, behind int64
			for _, ps := range in {
				for _, p := range ps {
					total++
					if p.Partition == first.Partition && p.Offset >= first.Offset {
						behind++
					}
				}
			}
			api := &blockingAPI{SessionAPI: newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3), session: slow, release: make(chan struct{})}
			cfg := testConfig("ahead")
			cfg.Delivery = delivery
			cfg.CommitInterval = 10 * time.Millisecond
			r := startEnricher(t, brokers, api, cfg)
			eventually(t, 30*time.Second, "every event but the hanging partition's tail committed",
				func() bool { return committedTotal(t, brokers, cfg.Group) == total-behind },
				func() string {
					return fmt.Sprintf("committed %d, want %d of %d", committedTotal(t, brokers, cfg.Group), total-behind, total)
				})
			time.Sleep(100 * time.Millisecond)
			if got := committedOffset(t, brokers, cfg.Group, first.Partition); got != first.Offset {
				t.Fatalf("partition %d committed at %d while its event at %d hangs", first.Partition, got, first.Offset)
			}
			close(api.release)
			waitConsumed(t, brokers, cfg.Group, 30*time.Second)
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), cfg.DataBlocks, false)
			if n := testutil.ToFloat64(r.e.m.transactions.WithLabelValues("aborted")); n != 0 {
				t.Errorf("%v aborted transactions, want 0", n)
			}
		})
	}
}

// TestMaxInFlight: with every API call hanging, the enricher polls no more than
// enrich.max_in_flight events (the old loop polled a whole max_poll_records batch), and the
// uncommitted gauge shows them.
func TestMaxInFlight(t *testing.T) {
	brokers := newCluster(t)
	sim := startSim(t, 30)
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	release := make(chan struct{})
	api := &hangAll{SessionAPI: newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3), release: release}
	cfg := testConfig("bounded")
	cfg.Concurrency = 2
	cfg.MaxInFlight = 7
	cfg.MaxPollRecords = 25
	r := startEnricher(t, brokers, api, cfg)
	eventually(t, 30*time.Second, "max_in_flight events polled", func() bool { return testutil.ToFloat64(r.e.m.uncommitted) == 7 },
		func() string { return fmt.Sprintf("uncommitted %v", testutil.ToFloat64(r.e.m.uncommitted)) })
	time.Sleep(300 * time.Millisecond)
	if n := testutil.ToFloat64(r.e.m.consumed); n != 7 {
		t.Fatalf("%v events polled while none could finish, want max_in_flight 7", n)
	}
	close(release)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), cfg.DataBlocks, false)
}

// hangAll holds every GetSession until release is closed.
type hangAll struct {
	SessionAPI
	release chan struct{}
}

func (h *hangAll) GetSession(ctx context.Context, id string) (*idnow.Session, error) {
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.SessionAPI.GetSession(ctx, id)
}

// sessionPositions reads the n records of topics.sessions and returns each session's
// positions in log order.
func sessionPositions(t *testing.T, brokers []string, n int) map[string][]*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(testTopics.Sessions),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out := map[string][]*kgo.Record{}
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d session events", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			out[string(r.Key)] = append(out[string(r.Key)], r)
			got++
		})
	}
	return out
}

// committedOffset is the group's committed offset of one partition of topics.sessions.
func committedOffset(t *testing.T, brokers []string, group string, partition int32) int64 {
	t.Helper()
	offs, err := kadm.NewClient(newProducer(t, brokers)).FetchOffsets(t.Context(), group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(testTopics.Sessions, partition)
	if !ok || o.Err != nil {
		return 0
	}
	return o.At
}
