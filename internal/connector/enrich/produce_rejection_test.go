package enrich

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
)

// newControlledCluster is newCluster returning the cluster, for tests that answer requests
// themselves.
func newControlledCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(testPartitions, testTopics.Sessions, testTopics.Enriched, testTopics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// answerProduce answers req with code on every partition, as a broker refusing whole batches.
func answerProduce(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// batchRecords is the largest record count of the request's partition batches.
func batchRecords(req *kmsg.ProduceRequest) int32 {
	var n int32
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(p.Records); err == nil {
				n = max(n, rb.NumRecords)
			}
		}
	}
	return n
}

func sessionsAPI(n int) (*fakeAPI, []sentEvent) {
	fake := &fakeAPI{sessions: map[string]*idnow.Session{}}
	var sent []sentEvent
	for i := range n {
		id := fmt.Sprintf("ses-%02d", i)
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
		sent = append(sent, sentEvent{ev: testEvent(id, "RUNNING")})
	}
	return fake, sent
}

// TestBatchRefusedOnceKeepsHealthyRecords reproduces the review finding on per-record produce
// errors: INVALID_RECORD (like CORRUPT_MESSAGE and POLICY_VIOLATION) is the broker's answer for
// a whole partition batch, so every healthy record sharing the batch got it too and was
// dead-lettered. The broker here refuses the first batch of several records once; the records
// are produced alone again, every event is enriched and nothing is dead-lettered.
func TestBatchRefusedOnceKeepsHealthyRecords(t *testing.T) {
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) {
			c := newControlledCluster(t)
			brokers := c.ListenAddrs()
			fake, sent := sessionsAPI(30)
			produceEvents(t, brokers, sent)
			var fired atomic.Bool
			c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				req := kreq.(*kmsg.ProduceRequest)
				if fired.Load() || batchRecords(req) < 2 {
					return nil, nil, false
				}
				fired.Store(true)
				return answerProduce(req, kerr.InvalidRecord.Code), nil, true
			})
			cfg := testConfig("a")
			cfg.Delivery = delivery
			cfg.MaxPollRecords = 100
			logs := &syncBuffer{}
			r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, logs)
			waitConsumed(t, brokers, cfg.Group, 30*time.Second)
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if !fired.Load() {
				t.Fatal("no produce batch of several records was refused: the test exercised nothing")
			}
			seen := map[string]int{}
			for _, es := range decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)) {
				seen[es.Session.SessionID]++
			}
			for id := range fake.sessions {
				if seen[id] != 1 {
					t.Errorf("session %s: %d enriched records, want 1", id, seen[id])
				}
			}
			if dlq := readCommitted(t, brokers, testTopics.DLQ); len(dlq) != 0 {
				t.Errorf("%d healthy records dead-lettered after one refused batch, want 0", len(dlq))
			}
			if n := testutil.ToFloat64(r.e.m.dlq.WithLabelValues(ClassOutputRejected)); n != 0 {
				t.Errorf("dlq_records_total{reason=output_rejected} = %v, want 0", n)
			}
			if !strings.Contains(logs.String(), "refused together (output_rejected); producing each alone") {
				t.Errorf("the retry alone was not logged:\n%s", logs.String())
			}
		})
	}
}

// TestOutputTopicNotAuthorised reproduces the review finding on TOPIC_AUTHORIZATION_FAILED: it
// was a per-record class, so a missing WRITE ACL on the enriched topic dead-lettered every event
// and committed the input, silently draining the stream. Now nothing is dead-lettered or
// committed while the broker refuses: the enricher retries with the blocked gauge at 1, logs an
// ERROR naming the topic and the ACL, the stall watchdog fires, and once the ACL is granted
// every event is enriched.
func TestOutputTopicNotAuthorised(t *testing.T) {
	for _, delivery := range []string{DeliveryExactlyOnce, DeliveryAtLeastOnce} {
		t.Run(delivery, func(t *testing.T) {
			c := newControlledCluster(t)
			brokers := c.ListenAddrs()
			fake, sent := sessionsAPI(20)
			produceEvents(t, brokers, sent)
			var denied, refused atomic.Bool
			denied.Store(true)
			c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				if !denied.Load() {
					return nil, nil, false
				}
				refused.Store(true)
				return answerProduce(kreq.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed.Code), nil, true
			})
			cfg := testConfig("a")
			cfg.Delivery = delivery
			cfg.MaxPollRecords = 100
			cfg.LagInterval = 50 * time.Millisecond
			cfg.StallAfter = time.Second
			logs := &syncBuffer{}
			r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, logs)

			eventually(t, 20*time.Second, "blocked and stalled", func() bool {
				return testutil.ToFloat64(r.e.m.blocked) == 1 && testutil.ToFloat64(r.e.m.stalled) == 1
			}, func() string {
				return fmt.Sprintf("blocked %v, stalled %v, refused %v", testutil.ToFloat64(r.e.m.blocked), testutil.ToFloat64(r.e.m.stalled), refused.Load())
			})
			if n := committedTotal(t, brokers, cfg.Group); n != 0 {
				t.Errorf("%d offsets committed while the output topic refuses every write, want 0", n)
			}
			if n := testutil.ToFloat64(r.e.m.dlq.WithLabelValues(ClassOutputRejected)); n != 0 {
				t.Errorf("dlq_records_total{reason=output_rejected} = %v while not authorised, want 0", n)
			}
			if l := logs.String(); !strings.Contains(l, `level=ERROR msg="the enricher is not authorised to write to an output topic`) ||
				!strings.Contains(l, "topic="+testTopics.Enriched) || !strings.Contains(l, `acl="WRITE on topic `+testTopics.Enriched+`"`) {
				t.Errorf("no ERROR naming the topic and the ACL:\n%s", l)
			}

			denied.Store(false)
			waitConsumed(t, brokers, cfg.Group, 30*time.Second)
			eventually(t, 10*time.Second, "unblocked", func() bool { return testutil.ToFloat64(r.e.m.blocked) == 0 },
				func() string { return "blocked stays 1 after the ACL was granted" })
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			seen := map[string]int{}
			for _, es := range decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)) {
				seen[es.Session.SessionID]++
			}
			for id := range fake.sessions {
				if seen[id] != 1 {
					t.Errorf("session %s: %d enriched records, want 1", id, seen[id])
				}
			}
			if dlq := readCommitted(t, brokers, testTopics.DLQ); len(dlq) != 0 {
				t.Errorf("%d events dead-lettered for a missing ACL, want 0", len(dlq))
			}
		})
	}
}
