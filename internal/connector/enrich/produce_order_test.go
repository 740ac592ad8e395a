package enrich

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduceKeepsSessionOrder: a record whose earlier attempt was refused together with others
// is produced alone. Alone records went out before every record produced together, whatever
// their place in the batch, so a session's later event could be written before its earlier
// one: topics.enriched then ended on the older enrichment, and the compacted topics.state on
// the older state (the later event id missing from it).
func TestProduceKeepsSessionOrder(t *testing.T) {
	e, brokers := newStatefulEnricher(t)
	cl := newProducer(t, brokers)
	in := func(off int64) *kgo.Record { return &kgo.Record{Topic: testTopics.Sessions, Partition: 0, Offset: off} }
	out := func(v string) Result {
		return Result{Records: []*kgo.Record{{Topic: testTopics.Enriched, Key: []byte("ses-1"), Value: []byte(v)}}}
	}
	recs := []*kgo.Record{in(10), in(11)}
	results := []Result{out("first"), out("second")}
	// The second event's earlier attempt was refused together with another record.
	e.cache.put(recs[1], cachedResult{res: results[1], alone: true})
	failed, transient, err := e.produceRound(t.Context(), cl, recs, results, []int{0, 1})
	if err != nil || transient != nil || len(failed) > 0 {
		t.Fatalf("produceRound: failed %v, transient %v, err %v", failed, transient, err)
	}
	var got []string
	for _, r := range readCommitted(t, brokers, testTopics.Enriched) {
		got = append(got, string(r.Value))
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("session ses-1 written as %v, want [first second] (log order)", got)
	}
}
