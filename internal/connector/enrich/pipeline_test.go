package enrich

import (
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// TestDeliveryModes runs 30 simulated sessions through the enricher in both delivery modes and
// with two data-block policies: a read_committed reader sees exactly one EnrichedSession per
// SessionEvent, with the session's state, and completed sessions carry their blocks as the
// policy says.
func TestDeliveryModes(t *testing.T) {
	tests := []struct {
		name     string
		delivery string
		policy   DataBlocksConfig
	}{
		{"exactly_once full", DeliveryExactlyOnce, DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}},
		{"at_least_once none filtered", DeliveryAtLeastOnce, DataBlocksConfig{
			OnStatus: []string{"COMPLETED", "ABORTED"}, Include: []string{"documentData", "documentVerification"}, Content: ContentNone}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			brokers := newCluster(t)
			sim := startSim(t, 30)
			sent := eventsFromSim(sim)
			produceEvents(t, brokers, sent)

			cfg := testConfig("a")
			cfg.Delivery = tc.delivery
			cfg.DataBlocks = tc.policy
			r := startEnricher(t, brokers, newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3), cfg)
			waitConsumed(t, brokers, cfg.Group, 30*time.Second)
			if err := r.e.Ready(t.Context()); err != nil {
				t.Errorf("Ready after consuming: %v", err)
			}
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
			checkExactlyOnce(t, sent, got, tc.policy, false)
			if dlq := readCommitted(t, brokers, testTopics.DLQ); len(dlq) != 0 {
				t.Errorf("%d records in the DLQ, want none", len(dlq))
			}
			if n := testutil.ToFloat64(r.e.m.consumed); int(n) < len(sent) {
				t.Errorf("events_consumed_total = %v, want at least %d", n, len(sent))
			}
			checkRecordedOutcomes(t, r.e, tc.delivery)
			var enriched float64
			for _, st := range []string{"COMPLETED", "ABORTED", "EXPIRED", "ERROR"} {
				for _, o := range []string{"accepted", "rejected", "no_outcome"} {
					enriched += testutil.ToFloat64(r.e.m.enriched.WithLabelValues(st, o))
				}
			}
			if int(enriched) != len(sent) {
				t.Errorf("records_enriched_total sums to %v over terminal statuses, want %d", enriched, len(sent))
			}
		})
	}
}

// TestFaults makes the simulator answer 20 % 503 and 10 % 429: the result is the same, nothing
// lost or duplicated. An event for an unknown session and a record that does not decode land in
// the DLQ with their reasons, the original bytes and the source position.
func TestFaults(t *testing.T) {
	brokers := newCluster(t)
	sim := startSim(t, 30)
	if err := sim.SetFaults(idnowsim.Faults{Rate503: 0.2, Rate429: 0.1, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	sent := eventsFromSim(sim)
	ghost := eventsFromSim(sim)[0]
	ghostEvent := *ghost.ev
	ghostEvent.EventID, ghostEvent.SessionID = "evt-ghost", "ses-does-not-exist"
	produceEvents(t, brokers, sent[:len(sent)/2])
	produceEvents(t, brokers, []sentEvent{{ev: &ghostEvent}})
	garbage := []byte("not avro at all")
	produceRaw(t, brokers, []byte("ses-garbage"), garbage)
	produceEvents(t, brokers, sent[len(sent)/2:])

	cfg := testConfig("a")
	// Two client attempts per call: faults often outlast them, so the enricher's own Retry runs.
	r := startEnricher(t, brokers, newSimAPI(t, sim.APIURL(), sim.TokenURL(), 2), cfg)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	checkExactlyOnce(t, sent, got, cfg.DataBlocks, false)
	if st := sim.Stats(); st.Faults429+st.Faults503 == 0 {
		t.Fatal("the simulator injected no faults; the test proves nothing")
	}
	if testutil.ToFloat64(r.e.m.retries.WithLabelValues(ClassServerError))+testutil.ToFloat64(r.e.m.retries.WithLabelValues(ClassRateLimited)) == 0 {
		t.Error("retries_total shows no retried server errors or rate limits")
	}

	dlq := readCommitted(t, brokers, testTopics.DLQ)
	if len(dlq) != 2 {
		t.Fatalf("%d DLQ records, want 2 (unknown session, undecodable)", len(dlq))
	}
	byClass := map[string]bool{}
	for _, d := range dlq {
		class := kafka.Header(d, HeaderDLQErrorClass)
		byClass[class] = true
		if kafka.Header(d, HeaderDLQSourceTopic) != testTopics.Sessions || kafka.Header(d, HeaderDLQError) == "" {
			t.Errorf("DLQ record %s lacks its source topic or error: %v", class, d.Headers)
		}
		if _, err := strconv.ParseInt(kafka.Header(d, HeaderDLQSourceOffset), 10, 64); err != nil {
			t.Errorf("DLQ record %s: bad source offset header: %v", class, err)
		}
		if _, err := strconv.Atoi(kafka.Header(d, HeaderDLQSourcePartition)); err != nil {
			t.Errorf("DLQ record %s: bad source partition header: %v", class, err)
		}
		if n, err := strconv.Atoi(kafka.Header(d, HeaderDLQAttempts)); err != nil || n < 1 {
			t.Errorf("DLQ record %s: attempts header %q", class, kafka.Header(d, HeaderDLQAttempts))
		}
		switch class {
		case ClassUndecodable:
			if string(d.Value) != string(garbage) || string(d.Key) != "ses-garbage" || kafka.Header(d, "origin") != "test" {
				t.Errorf("undecodable DLQ record does not carry the original key, bytes and headers: %q %q", d.Key, d.Value)
			}
		case ClassSessionNotFound:
			if string(d.Key) != "ses-does-not-exist" || kafka.Header(d, "idnow.event_id") != "evt-ghost" {
				t.Errorf("unknown-session DLQ record does not carry the original key and headers: %q %v", d.Key, d.Headers)
			}
		}
	}
	if !byClass[ClassUndecodable] || !byClass[ClassSessionNotFound] {
		t.Errorf("DLQ classes %v, want %s and %s", byClass, ClassUndecodable, ClassSessionNotFound)
	}
	for _, c := range []string{ClassUndecodable, ClassSessionNotFound} {
		if n := testutil.ToFloat64(r.e.m.dlq.WithLabelValues(c)); n != 1 {
			t.Errorf("dlq_records_total{reason=%q} = %v, want 1", c, n)
		}
	}
}

// TestBlockedWhileAPIDown: with IDnow answering only 503, nothing is committed, nothing goes to
// the DLQ and the blocked gauge shows it; once IDnow recovers, every event is enriched once.
func TestBlockedWhileAPIDown(t *testing.T) {
	brokers := newCluster(t)
	sim := startSim(t, 5)
	if err := sim.SetFaults(idnowsim.Faults{Rate503: 1, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	cfg := testConfig("a")
	r := startEnricher(t, brokers, newSimAPI(t, sim.APIURL(), sim.TokenURL(), 1), cfg)

	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(r.e.m.blocked) != 1 || testutil.ToFloat64(r.e.m.retries.WithLabelValues(ClassServerError)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("blocked gauge never reached 1 while IDnow answered 503 (retries %v)", testutil.ToFloat64(r.e.m.retries.WithLabelValues(ClassServerError)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pollConsumed(brokers, cfg.Group, 10*time.Millisecond, 1e-9); err == nil {
		t.Fatal("offsets were committed while IDnow was down: events were skipped")
	}
	if err := sim.SetFaults(idnowsim.Faults{RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if testutil.ToFloat64(r.e.m.blocked) != 0 {
		t.Error("blocked gauge still 1 after IDnow recovered")
	}
	checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), cfg.DataBlocks, false)
	if dlq := readCommitted(t, brokers, testTopics.DLQ); len(dlq) != 0 {
		t.Errorf("%d DLQ records: a retryable outage must never send events to the DLQ", len(dlq))
	}
}

// TestRebalance runs two enrichers in the group and stops one mid-stream: the other takes over
// its partitions, and a read_committed reader sees every event exactly once (at least once under
// at_least_once).
func TestRebalance(t *testing.T) {
	// at_least_once shares the loop; its rebalances drop only the revoked partitions' work.
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) { testRebalance(t, delivery) })
	}
}

func testRebalance(t *testing.T, delivery string) {
	brokers := newCluster(t)
	sim := startSim(t, 40)
	// Slow answers keep the stream going long enough to stop a member in the middle of it.
	if err := sim.SetFaults(idnowsim.Faults{Latency: 15 * time.Millisecond, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)

	api := newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3)
	cfgA, cfgB := testConfig("a"), testConfig("b")
	cfgA.Concurrency, cfgB.Concurrency = 2, 2
	cfgA.MaxPollRecords, cfgB.MaxPollRecords = 8, 8
	cfgA.Delivery, cfgB.Delivery = delivery, delivery
	a := startEnricher(t, brokers, api, cfgA)
	b := startEnricher(t, brokers, api, cfgB)
	// Member b leaves once it has committed work of its own (not at a fixed share of the
	// stream: b joins after a, and under load its first commit could come after that share).
	eventually(t, 30*time.Second, "member b committed", func() bool {
		return testutil.ToFloat64(b.e.m.transactions.WithLabelValues("committed")) >= 1
	}, func() string { return "member b committed nothing" })
	if err := b.stop(); err != nil {
		t.Fatalf("member b Run: %v", err)
	}
	if err := pollConsumed(brokers, cfgA.Group, 10*time.Millisecond, 1); err == nil {
		t.Log("the stream finished before member b stopped; the rebalance happened at the end")
	}
	waitConsumed(t, brokers, cfgA.Group, 30*time.Second)
	if err := a.stop(); err != nil {
		t.Fatalf("member a Run: %v", err)
	}
	checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), cfgA.DataBlocks, delivery == DeliveryAtLeastOnce)
	committed := testutil.ToFloat64(a.e.m.transactions.WithLabelValues("committed")) + testutil.ToFloat64(b.e.m.transactions.WithLabelValues("committed"))
	if testutil.ToFloat64(b.e.m.transactions.WithLabelValues("committed")) == 0 || committed < 2 {
		t.Errorf("member b committed no batch before it stopped (a %v, b %v): the test did not share the stream",
			testutil.ToFloat64(a.e.m.transactions.WithLabelValues("committed")), testutil.ToFloat64(b.e.m.transactions.WithLabelValues("committed")))
	}
}

// checkRecordedOutcomes: under exactly_once every committed transaction's outcome is recorded
// as a commit under its own producer epoch (kfake bumps the epoch at each EndTxn, as transaction
// version 2 does), so a marker the broker skips could be written later (txnrepair.go); under
// at_least_once nothing is.
func checkRecordedOutcomes(t *testing.T, e *Enricher, delivery string) {
	t.Helper()
	e.outcomes.mu.Lock()
	defer e.outcomes.mu.Unlock()
	commits := 0
	for k, o := range e.outcomes.m {
		switch o.out {
		case outcomeCommit:
			commits++
		default:
			t.Errorf("producer %d epoch %d recorded as %d, want a commit (no transaction aborted or failed here)", k.pid, k.epoch, o.out)
		}
	}
	want := int(testutil.ToFloat64(e.m.transactions.WithLabelValues("committed")))
	if delivery == DeliveryAtLeastOnce {
		want = 0
	}
	if commits != want {
		t.Errorf("%d commits recorded, want %d (transactions committed under %s)", commits, want, delivery)
	}
}
