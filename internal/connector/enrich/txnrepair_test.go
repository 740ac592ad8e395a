package enrich

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
)

// fakeTxnAdmin answers the repair's requests from fixed open transactions and records the
// markers written.
type fakeTxnAdmin struct {
	partitions map[string]int  // topic -> partition count
	denied     map[string]bool // topics answered TOPIC_AUTHORIZATION_FAILED
	open       []kadm.DescribedProducer
	refuse     error // the error every marker write answers with; nil = written
	described  kadm.TopicsSet
	written    []kadm.TxnMarkers
}

func (f *fakeTxnAdmin) ListTopics(_ context.Context, topics ...string) (kadm.TopicDetails, error) {
	out := kadm.TopicDetails{}
	for _, t := range topics {
		if f.denied[t] {
			// As kadm: the whole listing fails when one topic is not authorised.
			return nil, &kadm.AuthError{Err: kerr.TopicAuthorizationFailed}
		}
	}
	for _, t := range topics {
		n, ok := f.partitions[t]
		if !ok {
			out[t] = kadm.TopicDetail{Topic: t, Err: kerr.UnknownTopicOrPartition}
			continue
		}
		d := kadm.TopicDetail{Topic: t, Partitions: kadm.PartitionDetails{}}
		for p := range int32(n) {
			d.Partitions[p] = kadm.PartitionDetail{Topic: t, Partition: p}
		}
		out[t] = d
	}
	return out, nil
}

func (f *fakeTxnAdmin) DescribeProducers(_ context.Context, s kadm.TopicsSet) (kadm.DescribedProducersTopics, error) {
	f.described = s
	out := kadm.DescribedProducersTopics{}
	for t, ps := range s {
		dt := kadm.DescribedProducersTopic{Topic: t, Partitions: kadm.DescribedProducersPartitions{}}
		for p := range ps {
			dp := kadm.DescribedProducersPartition{Topic: t, Partition: p, ActiveProducers: kadm.DescribedProducers{}}
			for _, o := range f.open {
				if o.Topic == t && o.Partition == p {
					dp.ActiveProducers[o.ProducerID] = o
				}
			}
			dt.Partitions[p] = dp
		}
		out[t] = dt
	}
	return out, nil
}

func (f *fakeTxnAdmin) WriteTxnMarkers(_ context.Context, markers ...kadm.TxnMarkers) (kadm.TxnMarkersResponses, error) {
	out := kadm.TxnMarkersResponses{}
	for _, m := range markers {
		f.written = append(f.written, m)
		r, ok := out[m.ProducerID]
		if !ok {
			r = kadm.TxnMarkersResponse{ProducerID: m.ProducerID, Topics: kadm.TxnMarkersTopicResponses{}}
		}
		for t, ps := range m.Topics {
			tr, ok := r.Topics[t]
			if !ok {
				tr = kadm.TxnMarkersTopicResponse{ProducerID: m.ProducerID, Topic: t, Partitions: kadm.TxnMarkersPartitionResponses{}}
			}
			for p := range ps {
				tr.Partitions[p] = kadm.TxnMarkersPartitionResponse{ProducerID: m.ProducerID, Topic: t, Partition: p, Err: f.refuse}
			}
			r.Topics[t] = tr
		}
		out[m.ProducerID] = r
	}
	return out, nil
}

// TestRepairHanging: the enricher writes the marker it decided for its own ended transactions
// left open past the transaction timeout, and leaves alone the transaction in progress, one of
// another producer, one younger than the timeout and one whose outcome it does not know.
func TestRepairHanging(t *testing.T) {
	const (
		pid     = 7
		current = 20 // the producer's epoch now
	)
	now := time.Unix(10_000, 0)
	old := now.Add(-time.Minute).UnixMilli()
	group := "g"
	offsetsPart := kafka.GroupOffsetsPartition(group, 10)
	open := func(topic string, part int32, pid int64, epoch int16, last int64) kadm.DescribedProducer {
		return kadm.DescribedProducer{Topic: topic, Partition: part, ProducerID: pid, ProducerEpoch: epoch,
			LastTimestamp: last, CoordinatorEpoch: 4, CurrentTxnStartOffset: 22}
	}
	st := testTopics.StateTopic()
	adm := &fakeTxnAdmin{
		partitions: map[string]int{testTopics.Enriched: 3, testTopics.DLQ: 3, st: 3, kafka.ConsumerOffsetsTopic: 10},
		open: []kadm.DescribedProducer{
			open(testTopics.Enriched, 0, pid, 17, old),                            // committed, skipped: commit
			open(kafka.ConsumerOffsetsTopic, offsetsPart, pid, 17, old),           // its offsets: commit
			open(st, 1, pid, 18, old),                                             // aborted, skipped: abort
			open(testTopics.Enriched, 1, pid, current, old),                       // in progress: never
			open(testTopics.Enriched, 2, 99, 17, old),                             // another producer
			open(testTopics.DLQ, 0, pid, 19, now.Add(-5*time.Second).UnixMilli()), // younger than the timeout
			open(testTopics.DLQ, 1, pid, 16, old),                                 // outcome not recorded
			open(testTopics.DLQ, 2, pid, 15, old),                                 // two transactions ended at epoch 15
			open(testTopics.Enriched, 3, pid, 14, old),                            // outcome uncertain
		},
	}
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: testTopics}, m: testMetrics(t), log: discardLog(), progress: newProgress()}
	e.cfg.Group = group
	e.cfg.TransactionTimeout = 20 * time.Second
	rec := func(epoch int16, out txnOutcome) { e.outcomes.record(pid, epoch, out, now, time.Hour) }
	rec(17, outcomeCommit)
	rec(18, outcomeAbort)
	rec(19, outcomeCommit)
	rec(current, outcomeCommit) // an outcome for the current epoch must not matter
	rec(15, outcomeCommit)      // two transactions under one epoch: unknown
	rec(15, outcomeCommit)
	rec(14, outcomeUnknown)

	adm.partitions[testTopics.Enriched] = 4
	r := newTxnRepair(adm, func(context.Context) (int64, int16, error) { return pid, current, nil })
	if n := e.repairHanging(t.Context(), r, now); n != 2 {
		t.Fatalf("repaired %d partitions without the state store, want 2 (enriched/0 and the group's offsets partition)", n)
	}
	if _, ok := adm.described[st]; ok {
		t.Errorf("the state topic was described without a state store: %v", adm.described)
	}
	want := map[string]bool{ // topic/partition -> commit
		testTopics.Enriched + "/0":                                        true,
		kafka.ConsumerOffsetsTopic + "/" + strconv.Itoa(int(offsetsPart)): true,
	}
	checkMarkers(t, adm.written, want, pid, 18) // the epoch after the transaction's, as the coordinator writes it

	// With the state store the aborted transaction on the state topic is repaired with abort.
	adm.written = nil
	e.store = state.NewStore()
	if n := e.repairHanging(t.Context(), r, now); n != 3 {
		t.Fatalf("repaired %d partitions with the state store, want 3", n)
	}
	if c, ok := markerFor(adm.written, st, 1); !ok || c.Commit || c.ProducerEpoch != 19 || c.CoordinatorEpoch != 4 {
		t.Errorf("state/1 marker %+v (found %v), want an abort at epoch 19 (transaction 18's) with coordinator epoch 4", c, ok)
	}
	if got := testutil.ToFloat64(e.m.repaired.WithLabelValues("commit")); got != 4 {
		t.Errorf("repaired{marker=commit} = %v, want 4 (two partitions, twice)", got)
	}
	if got := testutil.ToFloat64(e.m.repaired.WithLabelValues("abort")); got != 1 {
		t.Errorf("repaired{marker=abort} = %v, want 1", got)
	}

	// A leader that refuses the marker: nothing counted, tried again at the next refresh, and
	// left to the doctor after maxRepairFailures refusals.
	adm.refuse = kerr.TransactionCoordinatorFenced
	for i := range maxRepairFailures + 2 {
		adm.written = nil
		n := e.repairHanging(t.Context(), r, now)
		want := 3
		if i >= maxRepairFailures {
			want = 0
		}
		if n != 0 || len(adm.written) != want {
			t.Errorf("refused markers, try %d: repaired %d, %d written, want 0 and %d", i+1, n, len(adm.written), want)
		}
	}
	r.episodeOver() // nothing hangs any more: a new episode tries again
	adm.written = nil
	if e.repairHanging(t.Context(), r, now); len(adm.written) != 3 {
		t.Errorf("a new episode wrote %d markers, want 3", len(adm.written))
	}

	// A topic the enricher may not describe is left out; the others are still repaired.
	adm.written, adm.refuse, adm.denied = nil, nil, map[string]bool{kafka.ConsumerOffsetsTopic: true}
	r.episodeOver()
	if n := e.repairHanging(t.Context(), r, now); n != 2 {
		t.Errorf("with __consumer_offsets denied: repaired %d, want 2 (enriched/0, state/1)", n)
	}
	if _, ok := markerFor(adm.written, kafka.ConsumerOffsetsTopic, offsetsPart); ok {
		t.Error("a marker was written to a topic the enricher may not describe")
	}

	// No producer now (the client is being re-created): nothing is touched.
	adm.written, adm.refuse = nil, nil
	r.current = func(context.Context) (int64, int16, error) { return 0, 0, errors.New("producer id failed") }
	if n := e.repairHanging(t.Context(), r, now); n != 0 || len(adm.written) != 0 {
		t.Errorf("without a producer: repaired %d, wrote %v", n, adm.written)
	}
}

func markerFor(ms []kadm.TxnMarkers, topic string, part int32) (kadm.TxnMarkers, bool) {
	i := slices.IndexFunc(ms, func(m kadm.TxnMarkers) bool { _, ok := m.Topics[topic][part]; return ok })
	if i < 0 {
		return kadm.TxnMarkers{}, false
	}
	return ms[i], true
}

func checkMarkers(t *testing.T, ms []kadm.TxnMarkers, want map[string]bool, pid int64, epoch int16) {
	t.Helper()
	got := map[string]bool{}
	for _, m := range ms {
		if m.ProducerID != pid || m.ProducerEpoch != epoch {
			t.Errorf("marker for producer %d epoch %d, want %d/%d", m.ProducerID, m.ProducerEpoch, pid, epoch)
		}
		for topic, ps := range m.Topics {
			for p := range ps {
				got[topic+"/"+strconv.Itoa(int(p))] = m.Commit
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("markers on %v, want %v", got, want)
	}
	for k, c := range want {
		if g, ok := got[k]; !ok || g != c {
			t.Errorf("marker on %s: commit %v (written %v), want commit %v", k, g, ok, c)
		}
	}
}

// TestTxnOutcomes: one outcome per id and epoch, unknown when two transactions ended under it or
// the outcome was uncertain, forgotten after the retention or past the bound.
func TestTxnOutcomes(t *testing.T) {
	var o txnOutcomes
	t0 := time.Unix(1000, 0)
	o.record(1, 1, outcomeCommit, t0, time.Minute)
	o.record(1, 2, outcomeAbort, t0, time.Minute)
	o.record(1, 3, outcomeCommit, t0, time.Minute)
	o.record(1, 3, outcomeCommit, t0, time.Minute)
	o.record(1, 4, outcomeUnknown, t0, time.Minute)
	for _, tt := range []struct {
		epoch         int16
		commit, known bool
	}{{1, true, true}, {2, false, true}, {3, false, false}, {4, false, false}, {5, false, false}} {
		if c, k := o.lookup(1, tt.epoch); c != tt.commit || k != tt.known {
			t.Errorf("epoch %d: commit %v known %v, want %v %v", tt.epoch, c, k, tt.commit, tt.known)
		}
	}
	// Past the retention the old ones go; the ambiguous one stays ambiguous while any of its
	// records is kept.
	o.record(1, 3, outcomeCommit, t0.Add(30*time.Second), time.Minute)
	o.record(2, 1, outcomeCommit, t0.Add(61*time.Second), time.Minute)
	if _, k := o.lookup(1, 1); k {
		t.Error("an outcome older than the retention is kept")
	}
	if _, ok := o.m[txnKey{1, 3}]; !ok {
		t.Error("epoch 3, recorded again 30 s later, was forgotten with its first record")
	}
	if c, k := o.lookup(2, 1); !c || !k {
		t.Error("the newest outcome is not kept")
	}
	for i := range maxTxnOutcomes {
		o.record(3, int16(i), outcomeCommit, t0.Add(62*time.Second), time.Hour)
	}
	if len(o.order) > maxTxnOutcomes || len(o.m) > maxTxnOutcomes {
		t.Errorf("%d outcomes, %d in order, bound %d", len(o.m), len(o.order), maxTxnOutcomes)
	}
	if _, k := o.lookup(2, 1); k {
		t.Error("the oldest outcome is kept past maxTxnOutcomes")
	}
}
