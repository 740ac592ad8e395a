package app

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
)

// The values of log.progress.
const (
	ProgressAuto   = "auto"
	ProgressAlways = "always"
	ProgressNever  = "never"
)

// The metrics the status line reads. It gathers them from the process's registry instead of
// asking the components, so it needs no wiring into them and shows exactly what /metrics shows.
const (
	metricIngressRequests = "idnow_connector_ingress_requests_total"
	metricEnriched        = "idnow_connector_enrich_records_enriched_total"
	metricDLQ             = "idnow_connector_enrich_dlq_records_total"
	metricLag             = "idnow_connector_enrich_consumer_lag"
	metricEnrichDuration  = "idnow_connector_enrich_duration_seconds"
	metricReconcileLeader = "idnow_connector_reconcile_leader"
	metricReconcilePasses = "idnow_connector_reconcile_passes_total"
	metricReconcileLast   = "idnow_connector_reconcile_last_success_timestamp_seconds"
	metricReconcileFixed  = "idnow_connector_reconcile_sessions_repaired_total"
	metricArchiveSessions = "idnow_connector_archive_sessions_total"
	metricArchiveMissing  = "idnow_connector_archive_missing_files_total"
	metricArchiveInFlight = "idnow_connector_archive_files_in_flight"
	metricCommandReplies  = "idnow_connector_commands_replies_total"
)

// SetProgressOutput makes the app write the status line (log.progress) to w, normally the
// process's stderr; without it there is no status line. Call before Start.
func (a *App) SetProgressOutput(w io.Writer) { a.progressOut = w }

// addProgress adds the status line as a lifecycle part when log.progress asks for it.
func (a *App) addProgress() {
	if !progressEnabled(a.cfg.Log, a.progressOut) {
		return
	}
	p := &progress{g: a.reg, w: a.progressOut, interval: a.cfg.Log.ProgressInterval, now: time.Now}
	a.group.Add(lifecycle.Part{Name: "progress", Run: p.Run, StopTimeout: time.Second})
}

// progressEnabled: auto means only on a terminal, where a person is watching; in a container
// log or a pipe the line would be noise next to the JSON logs and /metrics says the same.
func progressEnabled(l LogConfig, w io.Writer) bool {
	if w == nil || l.ProgressInterval <= 0 || l.Progress == ProgressNever {
		return false
	}
	return l.Progress == ProgressAlways || isTerminal(w)
}

// isTerminal is the character-device test: no ioctl, so it builds everywhere without x/sys. It
// also says yes for /dev/null, where the line costs nothing and is seen by no one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress writes one status line per interval, and a last one when it stops.
type progress struct {
	g        prometheus.Gatherer
	w        io.Writer
	interval time.Duration
	now      func() time.Time
	prev     progressSnapshot
}

// progressSnapshot is what one Gather found; has* say whether the metric exists in this
// process (an ingress has no enricher metrics, and the line leaves out what does not run).
type progressSnapshot struct {
	hasIngress, hasEnrich, hasLag, hasDuration, hasReconcile, hasCommands, hasArchive bool
	// The commands role's replies: sessions created (replays included) and failed commands.
	cmdCreated, cmdFailed                  float64
	accepted, rejected, enriched, dlq, lag float64
	// The reconciler's: leader 0/1, failed passes, last successful pass (Unix s), repairs.
	leader, failedPasses, lastPass, repaired float64
	// The archiver's: sessions archived (or their lost transaction redone), files recorded
	// missing, files in flight.
	archived, archiveMissing, archiveInFlight float64
	// buckets maps a histogram upper bound to its cumulative count, summed over label sets.
	buckets map[float64]float64
	count   float64
}

// Run writes a line every interval until ctx ends, then a final one.
func (p *progress) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	p.prev = p.snapshot()
	for {
		select {
		case <-ctx.Done():
			p.tick()
			return nil
		case <-t.C:
			p.tick()
		}
	}
}

func (p *progress) tick() {
	cur := p.snapshot()
	// A failed write (a closed terminal) is not worth stopping the connector for.
	_, _ = io.WriteString(p.w, p.line(cur)+"\n")
	p.prev = cur
}

func (p *progress) snapshot() progressSnapshot {
	var s progressSnapshot
	families, err := p.g.Gather()
	if err != nil && len(families) == 0 {
		// Gather reports inconsistent collectors but still returns the rest; only nothing
		// at all leaves the line empty.
		return s
	}
	for _, mf := range families {
		switch mf.GetName() {
		case metricIngressRequests:
			s.hasIngress = true
			for _, m := range mf.GetMetric() {
				switch label(m, "result") {
				case "accepted", "duplicate": // both answered 200: IDnow is done with them
					s.accepted += m.GetCounter().GetValue()
				default:
					s.rejected += m.GetCounter().GetValue()
				}
			}
		case metricEnriched:
			s.hasEnrich = true
			s.enriched = sum(mf)
		case metricDLQ:
			s.hasEnrich = true
			s.dlq = sum(mf)
		case metricLag:
			s.hasLag = true
			s.lag = sum(mf)
		case metricReconcileLeader:
			s.hasReconcile = true
			s.leader = sum(mf)
		case metricReconcilePasses:
			for _, m := range mf.GetMetric() {
				if label(m, "result") == "failure" {
					s.failedPasses += m.GetCounter().GetValue()
				}
			}
		case metricReconcileLast:
			s.lastPass = sum(mf)
		case metricReconcileFixed:
			s.repaired = sum(mf)
		case metricCommandReplies:
			s.hasCommands = true
			for _, m := range mf.GetMetric() {
				if label(m, "outcome") == "created" {
					s.cmdCreated += m.GetCounter().GetValue()
				} else {
					s.cmdFailed += m.GetCounter().GetValue()
				}
			}
		case metricArchiveSessions:
			s.hasArchive = true
			for _, m := range mf.GetMetric() {
				if r := label(m, "result"); r == "archived" || r == "reused" {
					s.archived += m.GetCounter().GetValue()
				}
			}
		case metricArchiveMissing:
			s.archiveMissing = sum(mf)
		case metricArchiveInFlight:
			s.archiveInFlight = sum(mf)
		case metricEnrichDuration:
			s.hasDuration = true
			s.buckets = map[float64]float64{}
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				s.count += float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					s.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
				s.buckets[math.Inf(1)] += float64(h.GetSampleCount())
			}
		}
	}
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sum(mf *dto.MetricFamily) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		}
	}
	return v
}

// line renders cur with the change since the previous line in brackets; the percentiles are of
// the events handled since then (the whole run's would hide a slowdown behind hours of history).
func (p *progress) line(cur progressSnapshot) string {
	parts := []string{p.now().Format("15:04:05")}
	if cur.hasIngress {
		parts = append(parts, fmt.Sprintf("webhooks %s accepted, %s rejected",
			withDelta(cur.accepted, p.prev.accepted), withDelta(cur.rejected, p.prev.rejected)))
	}
	if cur.hasEnrich {
		parts = append(parts, fmt.Sprintf("enriched %s, DLQ %s",
			withDelta(cur.enriched, p.prev.enriched), withDelta(cur.dlq, p.prev.dlq)))
	}
	if cur.hasLag {
		parts = append(parts, fmt.Sprintf("lag %.0f", cur.lag))
	}
	if cur.hasDuration {
		d := deltaBuckets(cur.buckets, p.prev.buckets)
		if n := cur.count - p.prev.count; n > 0 {
			parts = append(parts, fmt.Sprintf("enrich p50 %s p99 %s", fmtSeconds(quantile(0.5, d)), fmtSeconds(quantile(0.99, d))))
		} else {
			parts = append(parts, "enrich p50 - p99 -")
		}
	}
	if cur.hasReconcile {
		parts = append(parts, p.reconcilerPart(cur))
	}
	if cur.hasCommands {
		parts = append(parts, fmt.Sprintf("commands %s created, %s failed",
			withDelta(cur.cmdCreated, p.prev.cmdCreated), withDelta(cur.cmdFailed, p.prev.cmdFailed)))
	}
	if cur.hasArchive {
		parts = append(parts, fmt.Sprintf("archived %s, files missing %s, %.0f in flight",
			withDelta(cur.archived, p.prev.archived), withDelta(cur.archiveMissing, p.prev.archiveMissing), cur.archiveInFlight))
	}
	return strings.Join(parts, " | ")
}

// reconcilerPart: whether this process is the active reconciler, how long ago its last pass
// succeeded, the sessions it repaired and the failed passes (a follower only waits).
func (p *progress) reconcilerPart(cur progressSnapshot) string {
	if cur.leader == 0 {
		return "reconciler standby"
	}
	last := "no pass yet"
	if cur.lastPass > 0 {
		ago := p.now().Sub(time.Unix(0, int64(cur.lastPass*float64(time.Second)))).Round(time.Second)
		last = "last pass " + ago.String() + " ago"
	}
	return fmt.Sprintf("reconciler leader, %s, repaired %s, failed passes %s",
		last, withDelta(cur.repaired, p.prev.repaired), withDelta(cur.failedPasses, p.prev.failedPasses))
}

func withDelta(cur, prev float64) string {
	return fmt.Sprintf("%.0f (+%.0f)", cur, cur-prev)
}

func deltaBuckets(cur, prev map[float64]float64) map[float64]float64 {
	d := make(map[float64]float64, len(cur))
	for ub, c := range cur {
		d[ub] = c - prev[ub]
	}
	return d
}

// quantile estimates the q-quantile of cumulative buckets as Prometheus's histogram_quantile
// does: linear within the bucket that holds the rank; a rank in the +Inf bucket answers the
// highest finite bound (all that is known is "above it").
func quantile(q float64, buckets map[float64]float64) float64 {
	bounds := make([]float64, 0, len(buckets))
	for ub := range buckets {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return math.NaN()
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lower, lowerCount := 0.0, 0.0
	for _, ub := range bounds {
		c := buckets[ub]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return lower
			}
			if c == lowerCount {
				return ub
			}
			return lower + (ub-lower)*(rank-lowerCount)/(c-lowerCount)
		}
		lower, lowerCount = ub, c
	}
	return lower
}

func fmtSeconds(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
