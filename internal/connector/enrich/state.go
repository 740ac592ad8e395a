package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// StateCodec encodes and decodes SessionState records (topics.state); *serde.Codec for the
// SessionState schema satisfies it.
type StateCodec interface {
	Encoder
	Decoder
}

// stateMetrics are the idnow_connector_enrich_* series of the state store.
type stateMetrics struct {
	skipped         *prometheus.CounterVec
	outOfOrder      prometheus.Counter
	restored        prometheus.Counter
	restoreDuration prometheus.Histogram
	sessions        prometheus.GaugeFunc
}

func newStateMetrics(reg prometheus.Registerer, store *state.Store) (*stateMetrics, error) {
	m := &stateMetrics{
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_enrich_events_skipped_total",
			Help: "Events not enriched because the pipeline state shows them enriched already, by reason (already_enriched: same event id; status_already_enriched: the same terminal status under another event id). Counted when the batch commits.",
		}, []string{"reason"}),
		outOfOrder: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_enrich_out_of_order_total",
			Help: "Events enriched with outOfOrder=true: their status ranks below one already enriched for the session. Counted when the batch commits.",
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_enrich_state_restored_sessions_total",
			Help: "Session states read from topics.state while restoring assigned partitions.",
		}),
		restoreDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idnow_connector_enrich_state_restore_duration_seconds",
			Help:    "Time to restore newly assigned partitions from topics.state before enriching them.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
		}),
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idnow_connector_enrich_state_sessions",
			Help: "Sessions held in the enricher's in-memory state (the restored partitions it owns).",
		}, func() float64 { return float64(store.Len()) }),
	}
	for _, c := range []prometheus.Collector{m.skipped, m.outOfOrder, m.restored, m.restoreDuration, m.sessions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{state.SkipAlreadyEnriched, state.SkipStatusEnriched} {
		m.skipped.WithLabelValues(r)
	}
	return m, nil
}

// statePartitioner pins records of the state topic to the partition the enricher chose (the
// input record's partition: state is co-partitioned with the sessions), and partitions every
// other topic as franz-go does by default.
type statePartitioner struct {
	topic string
	def   kgo.Partitioner
}

func (p statePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == p.topic {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.def.ForTopic(t)
}

// restoreFor restores the state partitions of recs' input partitions that are not held yet. It
// runs before a batch (and before its transaction begins), once per partition assignment: by
// then the group's committed offsets were fetched as stable, so the previous owner's last
// transaction is over and its state records are readable. Only owned partitions are restored:
// a partition held but not owned would count as restored when it comes back, with the state
// from before its next owner's writes.
func (e *Enricher) restoreFor(ctx context.Context, recs []*kgo.Record) error {
	if e.store == nil {
		return nil
	}
	var missing []int32
	for _, r := range recs {
		if !e.store.Restored(r.Partition) && !slices.Contains(missing, r.Partition) {
			missing = append(missing, r.Partition)
		}
	}
	// A partition revoked during the read (under exactly_once nothing holds a rebalance back)
	// is not installed by the store, so it is read again when its records come next.
	if missing = e.owned(missing); len(missing) == 0 {
		return nil
	}
	return e.restore(ctx, missing)
}

// restore reads partitions ps of the state topic into the store.
func (e *Enricher) restore(ctx context.Context, ps []int32) error {
	start := time.Now()
	n, err := e.store.Restore(ctx, e.deps.StateOpts, e.deps.Topics.State, e.deps.State, ps)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("restore %s partitions %v: %w", e.deps.Topics.State, ps, err)
	}
	d := time.Since(start)
	e.sm.restored.Add(float64(n))
	e.sm.restoreDuration.Observe(d.Seconds())
	e.log.Info("state restored", slog.String("topic", e.deps.Topics.State), slog.Any("partitions", ps),
		slog.Int("sessions", n), slog.Duration("took", d))
	return nil
}

// owned returns the partitions of ps this member owns.
func (e *Enricher) owned(ps []int32) []int32 {
	e.progress.mu.Lock()
	defer e.progress.mu.Unlock()
	return slices.DeleteFunc(ps, func(p int32) bool { return !e.progress.assigned[p] })
}

// keyState carries one session's state through the records of that session in a batch: the
// records of one key are handled in order by one worker, so no lock is needed.
type keyState struct {
	loaded bool
	st     state.Session
}

// stateUpdate is a session's state after an enriched event, installed in the store when the
// event commits.
type stateUpdate struct {
	sessionID string // the decoded event's; Store.Put copies it
	st        state.Session
}

// gate decides, before the handler runs, whether r is enriched: it decodes the event (a record
// that does not decode passes to the handler, which dead-letters it) and checks it against the
// session's state.
func (e *Enricher) gate(ctx context.Context, ks *keyState, r *kgo.Record) (*schemas.SessionEvent, state.Decision) {
	var ev schemas.SessionEvent
	if err := e.deps.Events.Decode(ctx, r.Value, &ev); err != nil || ev.SessionID == "" || ev.EventID == "" {
		return nil, state.Decision{}
	}
	if !ks.loaded {
		ks.st, _ = e.store.Get(r.Partition, ev.SessionID)
		ks.loaded = true
	}
	return &ev, ks.st.Decide(ev.EventID, eventStatus(&ev))
}

// withState returns res with the state record that says ev was enriched, and advances ks. A
// DLQ result gets none: the event was not enriched, and dlq-replay may bring it again. The
// state record of an earlier attempt (kept by the result cache) is replaced, never doubled.
func (e *Enricher) withState(ks *keyState, src *kgo.Record, ev *schemas.SessionEvent, res Result) (Result, error) {
	recs := make([]*kgo.Record, 0, len(res.Records)+1)
	for _, r := range res.Records {
		if r.Topic != e.deps.Topics.State {
			recs = append(recs, r)
		}
	}
	res.Records = recs
	res.state = nil
	if ev == nil || res.DLQClass != "" {
		return res, nil
	}
	// The decoded event's strings point into the Avro decoder's pooled slabs, shared with other
	// records' strings: kept in the store for the session's lifetime, each id would keep its
	// whole slab alive (draining 1 000 000 events over 25 000 sessions grew the enricher past
	// 600 MiB). A state.Session keeps its own copies, and Store.Put copies the key.
	next := ks.st.Apply(ev.EventID, eventStatus(ev), res.sessionOutcome, time.Now())
	value, err := e.deps.State.Encode(next.State(ev.SessionID))
	if err != nil {
		return Result{}, fmt.Errorf("encode the SessionState of %s: %w", ev.SessionID, err)
	}
	res.Records = append(res.Records, &kgo.Record{
		Topic: e.deps.Topics.State, Partition: src.Partition, Key: []byte(ev.SessionID), Value: value,
		Headers: []kgo.RecordHeader{
			{Key: serde.HeaderSchema, Value: []byte(e.deps.State.Schema().FullName)},
			{Key: serde.HeaderEventID, Value: []byte(ev.EventID)},
		},
	})
	res.state = &stateUpdate{sessionID: ev.SessionID, st: next}
	ks.st = next
	return res, nil
}

// commitState installs the committed batch's states and counts what the state decided.
func (e *Enricher) commitState(recs []*kgo.Record, results []Result) {
	if e.store == nil {
		return
	}
	for i, r := range results {
		switch {
		case r.Skipped != "":
			e.sm.skipped.WithLabelValues(r.Skipped).Inc()
		case r.state != nil:
			e.store.Put(recs[i].Partition, r.state.sessionID, r.state.st)
			if r.OutOfOrder {
				e.sm.outOfOrder.Inc()
			}
		}
	}
}

func eventStatus(ev *schemas.SessionEvent) string {
	if ev.SessionStatus == nil {
		return ""
	}
	return *ev.SessionStatus
}
