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
	partitions map[string]int // topic -> partition count
	open       []kadm.DescribedProducer
	refuse     error // the error every marker write answers with; nil = written
	described  kadm.TopicsSet
	written    []kadm.TxnMarkers
}

func (f *fakeTxnAdmin) ListTopics(_ context.Context, topics ...string) (kadm.TopicDetails, error) {
	out := kadm.TopicDetails{}
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
			open(testTopics.DLQ, 2, pid, 15, old),                                 // both outcomes recorded: unknown
		},
	}
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: testTopics}, m: testMetrics(t), log: discardLog(), progress: newProgress()}
	e.cfg.Group = group
	e.cfg.TransactionTimeout = 20 * time.Second
	e.outcomes.record(pid, 17, true)
	e.outcomes.record(pid, 18, false)
	e.outcomes.record(pid, 19, true)
	e.outcomes.record(pid, current, true) // an outcome for the current epoch must not matter
	e.outcomes.record(pid, 15, true)
	e.outcomes.record(pid, 15, false)

	r := txnRepair{adm: adm, current: func(context.Context) (int64, int16, error) { return pid, current, nil }}
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
	checkMarkers(t, adm.written, want, pid, 17)

	// With the state store the aborted transaction on the state topic is repaired with abort.
	adm.written = nil
	e.store = state.NewStore()
	if n := e.repairHanging(t.Context(), r, now); n != 3 {
		t.Fatalf("repaired %d partitions with the state store, want 3", n)
	}
	if c, ok := markerFor(adm.written, st, 1); !ok || c.Commit || c.ProducerEpoch != 18 || c.CoordinatorEpoch != 4 {
		t.Errorf("state/1 marker %+v (found %v), want an abort of epoch 18 with coordinator epoch 4", c, ok)
	}
	if got := testutil.ToFloat64(e.m.repaired.WithLabelValues("commit")); got != 4 {
		t.Errorf("repaired{marker=commit} = %v, want 4 (two partitions, twice)", got)
	}
	if got := testutil.ToFloat64(e.m.repaired.WithLabelValues("abort")); got != 1 {
		t.Errorf("repaired{marker=abort} = %v, want 1", got)
	}

	// A leader that refuses the marker: nothing counted, tried again at the next refresh.
	adm.written, adm.refuse = nil, kerr.TransactionCoordinatorFenced
	if n := e.repairHanging(t.Context(), r, now); n != 0 || len(adm.written) != 3 {
		t.Errorf("refused markers: repaired %d, %d written, want 0 and 3 attempts", n, len(adm.written))
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

// TestTxnOutcomes: one outcome per id and epoch, unknown when both were recorded, the oldest
// forgotten past the bound.
func TestTxnOutcomes(t *testing.T) {
	var o txnOutcomes
	o.record(1, 1, true)
	o.record(1, 2, false)
	o.record(1, 3, true)
	o.record(1, 3, false)
	for _, tt := range []struct {
		epoch         int16
		commit, known bool
	}{{1, true, true}, {2, false, true}, {3, false, false}, {4, false, false}} {
		if c, k := o.lookup(1, tt.epoch); c != tt.commit || k != tt.known {
			t.Errorf("epoch %d: commit %v known %v, want %v %v", tt.epoch, c, k, tt.commit, tt.known)
		}
	}
	for i := range maxTxnOutcomes {
		o.record(2, int16(i), true)
	}
	if _, k := o.lookup(1, 1); k {
		t.Error("the oldest outcome is kept past maxTxnOutcomes")
	}
	if len(o.m) > maxTxnOutcomes || len(o.order) != len(o.m) {
		t.Errorf("%d outcomes, %d in order, bound %d", len(o.m), len(o.order), maxTxnOutcomes)
	}
}
