package enrich

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newStatefulEnricher builds (does not run) an enricher with the state store on a kfake cluster
// that has the state topic, and returns it with the cluster's addresses; the state restore
// clients get extra options.
func newStatefulEnricher(t *testing.T, extra ...kgo.Opt) (*Enricher, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(testPartitions, testTopics.Sessions, testTopics.Enriched, testTopics.DLQ, testTopics.State))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	events, enriched := newCodecs(t)
	cfg := testConfig("a")
	e, err := New(cfg, Deps{API: &statusAPI{}, Events: events, Enriched: enriched, Registry: prometheus.NewRegistry(),
		Topics: testTopics, Log: testLog(t), State: newStateCodec(t),
		StateOpts: append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, extra...)})
	if err != nil {
		t.Fatal(err)
	}
	return e, c.ListenAddrs()
}

// TestRevokeDuringRestoreLeavesNoStaleState: under exactly_once nothing holds a revoke back
// while a poll's partitions are restored. A restore that finished after its partition was
// revoked installed the partition anyway; handed back later, the partition counted as restored
// and was not read again, so its sessions kept the state from before the other member enriched
// them (duplicates not skipped, and the next state record written over the newer one).
func TestRevokeDuringRestoreLeavesNoStaleState(t *testing.T) {
	hold, restoring, release := holdFirstDial(t)
	e, _ := newStatefulEnricher(t, hold)
	const p = 1
	e.onAssigned(t.Context(), nil, map[string][]int32{testTopics.Sessions: {p}})
	done := make(chan error, 1)
	go func() {
		done <- e.restoreFor(t.Context(), []*kgo.Record{{Topic: testTopics.Sessions, Partition: p}})
	}()
	select {
	case <-restoring:
	case <-time.After(10 * time.Second):
		t.Fatal("the restore never started")
	}
	e.onRevoked(t.Context(), nil, map[string][]int32{testTopics.Sessions: {p}})
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.store.Restored(p) {
		t.Error("partition 1 counts as restored although it was revoked during its restore: handed back, it would not be read again")
	}
}

// TestAssignDropsHeldState: a GroupTransactSession passes only the first revoke (or loss) to
// OnPartitionsRevoked until its next End; a second rebalance's revoke before that End never
// reached the enricher, which kept the partition's state. When the partition came back, that
// state was taken as restored. A newly assigned partition was not owned in the previous session,
// so whatever state is held for it is stale.
func TestAssignDropsHeldState(t *testing.T) {
	e, _ := newStatefulEnricher(t)
	const p = 2
	e.onAssigned(t.Context(), nil, map[string][]int32{testTopics.Sessions: {p}})
	if err := e.restoreFor(t.Context(), []*kgo.Record{{Topic: testTopics.Sessions, Partition: p}}); err != nil {
		t.Fatal(err)
	}
	if !e.store.Restored(p) {
		t.Fatal("partition 2 was not restored")
	}
	// The revoke the session swallowed is not delivered; the partition comes back.
	e.onAssigned(t.Context(), nil, map[string][]int32{testTopics.Sessions: {p}})
	if e.store.Restored(p) {
		t.Error("partition 2 still counts as restored after it was newly assigned: its state from before is taken as current")
	}
}
