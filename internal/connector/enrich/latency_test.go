package enrich

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
)

// histogram reads a histogram's sample count and sum.
func histogram(t *testing.T, h prometheus.Histogram) (count uint64, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestEndToEndLatencyCountsCommittedRecords: the end-to-end and event-age histograms observe
// each enriched record once, when its transaction commits. The batch holding an oversized
// record aborts (the broker refuses it) after every small record in it was enriched; the
// records of that aborted attempt must not be observed, so each histogram counts exactly the
// 30 committed enriched records, with the latency measured from the event's receivedAt and
// createdAt. The DLQ'd record shows up in RecentDLQ with its metadata only.
func TestEndToEndLatencyCountsCommittedRecords(t *testing.T) {
	brokers := newCluster(t)
	fake := bigSessionAPI("ses-big", 20)
	const small = 30
	for i := range small {
		id := fmt.Sprintf("ses-small-%02d", i)
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
	}
	cfg := testConfig("a")
	cfg.Delivery = DeliveryExactlyOnce
	cfg.MaxPollRecords = 100
	logs := &syncBuffer{}
	r := startEnricherLogged(t, brokers, &safeAPI{api: fake}, cfg, logs)
	eventually(t, 20*time.Second, "joined", r.e.joined.Load, func() string { return "not joined" })
	waitLimitsResolved(t, r)

	adm := kadm.NewClient(newProducer(t, brokers))
	limit := "3000"
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, testTopics.Enriched); err != nil {
		t.Fatal(err)
	}
	const receivedAgo, createdAgo = 2 * time.Second, 5 * time.Second
	start := time.Now()
	received, created := start.Add(-receivedAgo).UTC(), start.Add(-createdAgo).UTC()
	var sent []sentEvent
	for id := range fake.sessions {
		status := "RUNNING"
		if id == "ses-big" {
			status = "COMPLETED"
		}
		ev := testEvent(id, status)
		ev.ReceivedAt, ev.CreatedAt = received, &created
		sent = append(sent, sentEvent{ev: ev})
	}
	produceEvents(t, brokers, sent)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	elapsed := time.Since(start)

	if n := testutil.ToFloat64(r.e.m.transactions.WithLabelValues("aborted")); n < 1 {
		t.Fatalf("no aborted transaction: the test did not exercise an aborted batch")
	}
	if enriched := testutil.ToFloat64(r.e.m.enriched.WithLabelValues("RUNNING", "none")); enriched != small {
		t.Fatalf("records_enriched_total = %v, want %d", enriched, small)
	}
	for name, c := range map[string]struct {
		h   prometheus.Histogram
		ago time.Duration
	}{"end_to_end_seconds": {r.e.m.endToEnd, receivedAgo}, "event_age_seconds": {r.e.m.eventAge, createdAgo}} {
		count, sum := histogram(t, c.h)
		if count != small {
			t.Errorf("%s counts %d records, want the %d committed ones (aborted attempts must not count)", name, count, small)
		}
		if lo, hi := float64(small)*c.ago.Seconds(), float64(small)*(c.ago+elapsed).Seconds(); sum < lo || sum > hi {
			t.Errorf("%s sum %.2fs outside [%.2f, %.2f]: latency not measured from the event's timestamp to the commit", name, sum, lo, hi)
		}
	}
	recent := r.e.RecentDLQ()
	if len(recent) != 1 {
		t.Fatalf("RecentDLQ holds %d entries, want 1: %+v", len(recent), recent)
	}
	if e := recent[0]; e.SessionID != "ses-big" || e.EventID != "evt-ses-big" || e.Reason != ClassRecordTooLarge || e.At.Before(start) {
		t.Errorf("RecentDLQ entry %+v, want session ses-big, event evt-ses-big, reason %s, a commit time", e, ClassRecordTooLarge)
	}
}

// TestRecentDLQRing: the ring keeps the newest entries, newest first.
func TestRecentDLQRing(t *testing.T) {
	var q recentDLQ
	at := time.Unix(1_700_000_000, 0)
	for i := range recentDLQSize + 5 {
		q.add(Result{DLQClass: ClassUndecodable}, at.Add(time.Duration(i)*time.Second))
	}
	got := q.newest()
	if len(got) != recentDLQSize {
		t.Fatalf("%d entries, want %d", len(got), recentDLQSize)
	}
	if want := at.Add(time.Duration(recentDLQSize+4) * time.Second); !got[0].At.Equal(want) {
		t.Errorf("newest entry at %v, want %v", got[0].At, want)
	}
	if want := at.Add(5 * time.Second); !got[len(got)-1].At.Equal(want) {
		t.Errorf("oldest kept entry at %v, want %v", got[len(got)-1].At, want)
	}
}

// holdingAPI answers like api except for session hold, which it keeps waiting until the call's
// context ends; handled counts the other sessions answered.
type holdingAPI struct {
	SessionAPI
	hold    string
	held    chan struct{}
	once    sync.Once
	handled atomic.Int32
}

func (h *holdingAPI) GetSession(ctx context.Context, id string) (*idnow.Session, error) {
	if id == h.hold {
		h.once.Do(func() { close(h.held) })
		<-ctx.Done()
		return nil, ctx.Err()
	}
	s, err := h.SessionAPI.GetSession(ctx, id)
	h.handled.Add(1)
	return s, err
}

// TestEndToEndLatencyNotObservedForUncommitted: records enriched but never committed (the
// enricher shuts down while an earlier event of their partition still waits on the IDnow API, so
// they are never ready for a commit) are not observed: the histograms count exactly the records
// that committed, not the ones handled. Observing when a record is handled would count them.
func TestEndToEndLatencyNotObservedForUncommitted(t *testing.T) {
	brokers := newCluster(t)
	fake := &fakeAPI{sessions: map[string]*idnow.Session{"ses-hold": {SessionID: "ses-hold", Status: idnow.StatusRunning}}}
	const before, after = 5, 5
	var order []string
	for i := range before + after {
		id := fmt.Sprintf("ses-%02d", i)
		fake.sessions[id] = &idnow.Session{SessionID: id, Status: idnow.StatusRunning}
		if i == before {
			order = append(order, "ses-hold")
		}
		order = append(order, id)
	}
	// One partition, in this order: the held event stops the commits of the events behind it.
	codec, _ := newCodecs(t)
	cl := newProducer(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, id := range order {
		v, err := codec.Encode(testEvent(id, "RUNNING"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.Sessions, Partition: 0, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	api := &holdingAPI{SessionAPI: &safeAPI{api: fake}, hold: "ses-hold", held: make(chan struct{})}
	cfg := testConfig("a")
	cfg.Delivery = DeliveryExactlyOnce
	cfg.MaxPollRecords = 100
	r := startEnricherLogged(t, brokers, api, cfg, &syncBuffer{})
	select {
	case <-api.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the held session was never requested")
	}
	eventually(t, 20*time.Second, "the other sessions handled", func() bool { return api.handled.Load() == before+after },
		func() string { return fmt.Sprintf("%d of %d handled", api.handled.Load(), before+after) })
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	committed := 0.0
	for _, mt := range gatherFamily(t, r.reg, "idnow_connector_enrich_records_enriched_total") {
		committed += mt.GetCounter().GetValue()
	}
	if committed != before {
		t.Fatalf("%v records committed, want the %d ahead of the held one", committed, before)
	}
	for name, h := range map[string]prometheus.Histogram{"end_to_end_seconds": r.e.m.endToEnd, "event_age_seconds": r.e.m.eventAge} {
		if count, _ := histogram(t, h); float64(count) != committed {
			t.Errorf("%s counts %d records; %v committed, %d were handled (uncommitted records must not count)", name, count, committed, before+after)
		}
	}
}

// gatherFamily returns the series of metric family name; none when it has no series.
func gatherFamily(t *testing.T, g prometheus.Gatherer, name string) []*dto.Metric {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil // a vector without series yet is not gathered
}
