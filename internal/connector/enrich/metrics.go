package enrich

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

// metrics are the enricher's collectors. Labels are bounded: status and outcome through
// statusLabel/outcomeLabel, reason and class through the Class* constants, partition by the
// partition count of topics.sessions.
type metrics struct {
	consumed     prometheus.Counter
	enriched     *prometheus.CounterVec
	dlq          *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     prometheus.Gauge
	transactions *prometheus.CounterVec
	lag          *prometheus.GaugeVec
	retries      *prometheus.CounterVec
	blocked      prometheus.Gauge
	lastCommit   prometheus.Gauge
	restarts     prometheus.Counter
	truncated    *prometheus.CounterVec
	stalled      prometheus.Gauge
	hanging      prometheus.Gauge
	repaired     *prometheus.CounterVec
	endToEnd     prometheus.Histogram
	eventAge     prometheus.Histogram
	uncommitted  prometheus.Gauge
	batchSize    prometheus.Histogram

	recent recentDLQ // metadata of the newest committed DLQ records, for the status page

	mu           sync.Mutex
	blockedCount int  // events waiting in Retry
	hangingNow   bool // a hanging transaction is detected
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "idnow_connector_enrich_"
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "events_consumed_total",
			Help: "SessionEvent records polled from topics.sessions (a record consumed again after an aborted batch counts again).",
		}),
		enriched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "records_enriched_total",
			Help: "EnrichedSession records committed, by the session's current status (unknown ones as other) and normalised outcome (none when absent).",
		}, []string{"status", "outcome"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "dlq_records_total",
			Help: "Records committed to topics.dlq, by error class.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    ns + "duration_seconds",
			Help:    "Time to handle one event, retries included, by result (enriched, dlq, abandoned).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "in_flight",
			Help: "Events being enriched now (bounded by enrich.concurrency).",
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "transactions_total",
			Help: "Batches ended, by result: committed (output and offsets written) or aborted (rebalance, shutdown, Kafka error; the batch is consumed again).",
		}, []string{"result"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ns + "consumer_lag",
			Help: "Records of topics.sessions not yet committed by the group on this member's partitions: the partition's end offset minus the group's committed offset (as kafka-consumer-groups.sh reports it), refreshed every enrich.lag_interval.",
		}, []string{"partition"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "retries_total",
			Help: "Retried enrichment attempts, by error class.",
		}, []string{"class"}),
		blocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "blocked",
			Help: "1 while at least one event waits on a retryable failure (IDnow down, rate limited, bad credentials) or a hanging transaction is detected: progress has stopped.",
		}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "last_commit_timestamp_seconds",
			Help: "Unix time of the last committed batch; alert when it stops moving while lag grows.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: ns + "client_restarts_total",
			Help: "Kafka client re-creations after an unrecoverable client or transaction error.",
		}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "records_truncated_total",
			Help: "EnrichedSession records committed shortened to fit the output limit, by level: content (data-block content dropped) or metadata (data blocks and file references dropped).",
		}, []string{"level"}),
		stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "stalled",
			Help: "1 while input waits (records polled but uncommitted, or lag > 0) and nothing has committed for enrich.stall_after.",
		}),
		hanging: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "hanging_transactions",
			Help: "Partitions whose group offsets stay unstable, or whose last stable offset stays behind the end offset (an open transaction), for longer than enrich.transaction_timeout, and that the enricher could not repair (its own transactions whose markers the broker skipped it ends first).",
		}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: ns + "hanging_transactions_repaired_total",
			Help: "Partitions on which the enricher ended one of its own hanging transactions, by the marker it wrote (commit or abort, what it had decided): the coordinator had completed the transaction without the partition because it had no leader at that moment (docs/operations.md).",
		}, []string{"marker"}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    ns + "end_to_end_seconds",
			Help:    "Time from the ingress accepting the webhook (SessionEvent receivedAt) to its EnrichedSession record committing, per committed record.",
			Buckets: latencyBuckets,
		}),
		eventAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    ns + "event_age_seconds",
			Help:    "Time from IDnow creating the event (createdAt) to its EnrichedSession record committing, per committed record with a createdAt.",
			Buckets: latencyBuckets,
		}),
		uncommitted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: ns + "uncommitted_events",
			Help: "Events polled and not yet committed: being enriched, waiting for an earlier event of their partition, or finished and waiting for their commit (bounded by enrich.max_in_flight).",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    ns + "commit_events",
			Help:    "Events per commit (transaction under exactly_once), bounded by enrich.max_batch_records.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000},
		}),
	}
	// Every labelled series an alert or dashboard reads exists from the start at 0, so that
	// increase() sees the first event of each kind.
	for _, c := range permanentClasses {
		m.dlq.WithLabelValues(c)
	}
	for _, c := range retryableClasses {
		m.retries.WithLabelValues(c)
	}
	for _, r := range []string{"committed", "aborted"} {
		m.transactions.WithLabelValues(r)
	}
	for _, r := range []string{"commit", "abort"} {
		m.repaired.WithLabelValues(r)
	}
	for _, l := range []string{TruncatedContent, TruncatedMetadata} {
		m.truncated.WithLabelValues(l)
	}
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				m.unregister(reg)
				return nil, errors.New("enrich metrics are already registered on this registry: use one registry per enricher")
			}
			m.unregister(reg)
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.consumed, m.enriched, m.dlq, m.duration, m.inFlight, m.transactions, m.lag, m.retries,
		m.blocked, m.lastCommit, m.restarts, m.truncated, m.stalled, m.hanging, m.repaired, m.endToEnd, m.eventAge, m.uncommitted, m.batchSize}
}

func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

func (m *metrics) retried(class string) { m.retries.WithLabelValues(class).Inc() }

func (m *metrics) block() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blockedCount++
	m.setBlockedLocked()
}

func (m *metrics) unblock() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.blockedCount = max(m.blockedCount-1, 0)
	m.setBlockedLocked()
}

// setHanging records the hanging-transaction count; blocked is 1 while it is above 0.
func (m *metrics) setHanging(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hanging.Set(float64(n))
	m.hangingNow = n > 0
	m.setBlockedLocked()
}

func (m *metrics) setBlockedLocked() {
	if m.blockedCount > 0 || m.hangingNow {
		m.blocked.Set(1)
	} else {
		m.blocked.Set(0)
	}
}

func (m *metrics) setLag(partition int32, lag int64) {
	m.lag.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(max(lag, 0)))
}

func (m *metrics) dropLag(partitions []int32) {
	for _, p := range partitions {
		m.lag.DeleteLabelValues(strconv.Itoa(int(p)))
	}
}

// committed records the results of a committed batch.
func (m *metrics) committed(results []Result, at time.Time) {
	for _, r := range results {
		if r.Skipped != "" {
			continue // counted by idnow_connector_enrich_events_skipped_total
		}
		if r.DLQClass != "" {
			m.dlq.WithLabelValues(r.DLQClass).Inc()
			m.recent.add(r, at)
		} else {
			m.enriched.WithLabelValues(r.Status, r.Outcome).Inc()
			if r.Truncated != "" {
				m.truncated.WithLabelValues(r.Truncated).Inc()
			}
			m.observeLatency(r, at)
		}
	}
	m.transactions.WithLabelValues("committed").Inc()
	m.lastCommit.Set(float64(at.UnixNano()) / 1e9)
}

func (m *metrics) aborted() { m.transactions.WithLabelValues("aborted").Inc() }

// Metrics observes each message: the in-flight gauge while it is handled and its duration by
// result. Counts of enriched and DLQ records are taken when their batch commits, so they count
// what consumers see, not attempts that were rolled back.
func Metrics(m *metrics) Middleware {
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, msg *Message) (Result, error) {
			m.inFlight.Inc()
			start := time.Now()
			res, err := next(ctx, msg)
			m.inFlight.Dec()
			result := "enriched"
			switch {
			case err != nil:
				result = "abandoned"
			case res.DLQClass != "":
				result = "dlq"
			}
			m.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
			return res, err
		}
	}
}

// latencyBuckets span a healthy pipeline (tens of milliseconds) to a backlog of minutes; the
// IdnowEndToEndLatencyHigh alert's threshold (30 s by default) must stay a bucket boundary for
// histogram_quantile to be exact there.
var latencyBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// observeLatency records a committed enriched record's end-to-end latency and event age. Clocks
// of the ingress, IDnow and this host differ slightly: a negative span counts as 0 rather than
// being dropped, so the histogram's count stays the number of committed records.
func (m *metrics) observeLatency(r Result, at time.Time) {
	if !r.ReceivedAt.IsZero() {
		m.endToEnd.Observe(max(at.Sub(r.ReceivedAt).Seconds(), 0))
	}
	if !r.CreatedAt.IsZero() {
		m.eventAge.Observe(max(at.Sub(r.CreatedAt).Seconds(), 0))
	}
}

// DLQEntry is the metadata of one record the enricher committed to the dead-letter topic: no
// record content, only what an operator needs to find it (the DLQ record's key is the session
// id, its idnow.event_id header the event id).
type DLQEntry struct {
	EventID   string
	SessionID string
	Reason    string // the error class (dlq_records_total's reason label)
	At        time.Time
}

// recentDLQSize is how many DLQ entries the status page can show.
const recentDLQSize = 20

// recentDLQ is a ring of the newest committed DLQ entries.
type recentDLQ struct {
	mu      sync.Mutex
	entries [recentDLQSize]DLQEntry
	next, n int
}

func (q *recentDLQ) add(r Result, at time.Time) {
	e := DLQEntry{Reason: r.DLQClass, At: at}
	if len(r.Records) > 0 {
		rec := r.Records[0]
		e.SessionID = string(rec.Key)
		for _, h := range rec.Headers {
			if h.Key == serde.HeaderEventID {
				e.EventID = string(h.Value)
			}
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.entries[q.next] = e
	q.next = (q.next + 1) % recentDLQSize
	q.n = min(q.n+1, recentDLQSize)
}

// newest returns the entries, newest first.
func (q *recentDLQ) newest() []DLQEntry {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]DLQEntry, 0, q.n)
	for i := 1; i <= q.n; i++ {
		out = append(out, q.entries[(q.next-i+recentDLQSize)%recentDLQSize])
	}
	return out
}

// RecentDLQ returns the metadata of the newest records committed to topics.dlq (at most 20),
// newest first; the status page shows them.
func (e *Enricher) RecentDLQ() []DLQEntry { return e.m.recent.newest() }
