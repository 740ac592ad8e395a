package enrich

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// readyLen is the number of ready records of the current flow waiting for a commit.
func readyLen(e *Enricher) int {
	e.mu.Lock()
	f := e.cur
	e.mu.Unlock()
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ready)
}

// TestStopDuringCommitCommitsNothingPastIt stops the enricher while a batch's produce is in
// flight, with later batches of the same partition ready behind it. The produce then fails
// (the broker refuses it once) and the stop has cancelled the commit: under at_least_once
// the shutdown committed the later batches, whose offsets lie past the failed batch, so its
// events were lost; under exactly_once the aborted transaction had rewound the session and
// the shutdown's next commit failed ("does not cover the batch: 0 of 1 partitions"), so Run
// returned an error on a normal stop.
func TestStopDuringCommitCommitsNothingPastIt(t *testing.T) {
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) {
			c := newControlledCluster(t)
			brokers := c.ListenAddrs()
			const n = 30
			fake, sent := sessionsAPI(n)
			// One partition, in log order: ses-i is at offset i.
			codec, _ := newCodecs(t)
			p := newProducer(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			for _, s := range sent {
				v, err := codec.Encode(s.ev)
				if err != nil {
					t.Fatal(err)
				}
				if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.Sessions, Partition: 0, Key: []byte(s.ev.SessionID), Value: v}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			// The enricher's first produce is held until the stop, then refused.
			held, release := make(chan struct{}), make(chan struct{})
			var fired atomic.Bool
			c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if fired.Swap(true) {
					return nil, nil, false
				}
				close(held)
				c.SleepControl(func() { <-release })
				return answerProduce(kreq.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed.Code), nil, true
			})
			cfg := testConfig("a")
			cfg.Delivery = delivery
			cfg.MaxPollRecords = 100
			cfg.MaxBatchRecords = 5
			r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, &syncBuffer{})
			select {
			case <-held:
			case <-time.After(30 * time.Second):
				t.Fatal("the enricher never produced")
			}
			eventually(t, 10*time.Second, "later batches ready", func() bool { return readyLen(r.e) >= n-cfg.MaxBatchRecords },
				func() string { return fmt.Sprintf("%d ready", readyLen(r.e)) })
			r.cancel()
			close(release)
			runErr := r.stop()

			offs, err := kadm.NewClient(newProducer(t, brokers)).FetchOffsets(t.Context(), cfg.Group)
			if err != nil {
				t.Fatal(err)
			}
			var committed int64
			if o, ok := offs.Lookup(testTopics.Sessions, 0); ok && o.Err == nil {
				committed = o.At
			}
			seen := map[string]bool{}
			for _, es := range decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)) {
				seen[es.Session.SessionID] = true
			}
			var lost []string
			for i := range min(committed, n) {
				if id := sent[i].ev.SessionID; !seen[id] {
					lost = append(lost, id)
				}
			}
			if len(lost) > 0 {
				t.Errorf("offset %d committed, yet %d events below it have no enriched record (lost): %v", committed, len(lost), lost)
			}
			if runErr != nil {
				t.Errorf("Run returned an error on a normal stop: %v", runErr)
			}
		})
	}
}
