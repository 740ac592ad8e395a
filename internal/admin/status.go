package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// StatusProvider supplies what the status page shows beyond metrics and readiness: the
// configuration summary and the newest dead-letter entries. The application implements it;
// the admin package knows nothing about the components behind it.
type StatusProvider interface {
	// Summary describes the process: mode, roles and their readiness checks, Kafka topics,
	// encoding, brokers. It must hold no secrets.
	Summary() Summary
	// RecentDLQ returns metadata of the newest records sent to the dead-letter topic, newest
	// first; nil when this process runs no enricher.
	RecentDLQ() []DLQEntry
}

// Summary is the configuration summary of the status page.
type Summary struct {
	Mode      string   `json:"mode"`
	Version   string   `json:"version"`
	Roles     []Role   `json:"roles"`
	Brokers   []string `json:"brokers"`
	Topics    Topics   `json:"topics"`
	Encoding  string   `json:"encoding"`
	Delivery  string   `json:"delivery,omitempty"` // the enricher's enrich.delivery
	Simulator bool     `json:"simulator"`
}

// Role is a component of the process (ingress, enricher) and the readiness checks it owns.
type Role struct {
	Name   string   `json:"name"`
	Checks []string `json:"checks"`
}

// Topics are the Kafka topics in use.
type Topics struct {
	Sessions string `json:"sessions"`
	Enriched string `json:"enriched"`
	DLQ      string `json:"dlq"`
}

// DLQEntry is the metadata of one dead-lettered record; never its content.
type DLQEntry struct {
	EventID   string    `json:"event_id"`
	SessionID string    `json:"session_id"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

// Status is the content of the status page, served as JSON at /status.
type Status struct {
	GeneratedAt time.Time         `json:"generated_at"`
	Uptime      string            `json:"uptime"`
	Ready       bool              `json:"ready"`
	Roles       []RoleStatus      `json:"roles"`
	Webhooks    *WebhookStatus    `json:"webhooks,omitempty"`
	Enricher    *EnricherStatus   `json:"enricher,omitempty"`
	Reconciler  *ReconcilerStatus `json:"reconciler,omitempty"`
	Archiver    *ArchiverStatus   `json:"archiver,omitempty"`
	RecentDLQ   []DLQEntry        `json:"recent_dlq"`
	Config      Summary           `json:"config"`
}

// RoleStatus is one role's health: ready when all its checks pass, degraded when ready but
// making no progress (the enricher blocked or stalled), unhealthy otherwise.
type RoleStatus struct {
	Name   string        `json:"name"`
	Health string        `json:"health"`
	Checks []CheckStatus `json:"checks"`
}

// CheckStatus is one readiness check's result; Reason says why it is not ready.
type CheckStatus struct {
	Name   string `json:"name"`
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}

// Health values of RoleStatus.
const (
	HealthHealthy   = "healthy"
	HealthDegraded  = "degraded"
	HealthUnhealthy = "unhealthy"
)

// WebhookStatus counts webhook requests since the process started
// (idnow_connector_ingress_requests_total), with rates over the last minute.
type WebhookStatus struct {
	Accepted  float64            `json:"accepted"`
	Duplicate float64            `json:"duplicate"`
	Rejected  float64            `json:"rejected"`
	ByResult  map[string]float64 `json:"by_result"`
	Rates     *Rates             `json:"rates_per_second,omitempty"`
}

// EnricherStatus is the enricher's progress since the process started.
type EnricherStatus struct {
	Enriched    float64            `json:"enriched"`
	DLQ         float64            `json:"dlq"`
	DLQByReason map[string]float64 `json:"dlq_by_reason"`
	ConsumerLag float64            `json:"consumer_lag"`
	InFlight    float64            `json:"in_flight"`
	Blocked     bool               `json:"blocked"`
	Stalled     bool               `json:"stalled"`
	Hanging     float64            `json:"hanging_transactions"`
	Committed   float64            `json:"transactions_committed"`
	Aborted     float64            `json:"transactions_aborted"`
	LastCommit  *time.Time         `json:"last_commit,omitempty"`
	EndToEndP50 *float64           `json:"end_to_end_p50_seconds,omitempty"`
	EndToEndP99 *float64           `json:"end_to_end_p99_seconds,omitempty"`
	EventAgeP50 *float64           `json:"event_age_p50_seconds,omitempty"`
	EventAgeP99 *float64           `json:"event_age_p99_seconds,omitempty"`
	Rates       *Rates             `json:"rates_per_second,omitempty"`
}

// ReconcilerStatus is the reconciler's passes since the process started.
type ReconcilerStatus struct {
	Leader          bool       `json:"leader"`
	PassesSucceeded float64    `json:"passes_succeeded"`
	PassesFailed    float64    `json:"passes_failed"`
	LastSuccess     *time.Time `json:"last_success,omitempty"`
	SessionsListed  float64    `json:"sessions_listed"`
	Repaired        float64    `json:"sessions_repaired"`
}

// ArchiverStatus is the archiver's work since the process started (internal/connector/archive).
type ArchiverStatus struct {
	// Archived counts sessions archived, including lost transactions redone from an existing
	// manifest.
	Archived      float64    `json:"sessions_archived"`
	FilesUploaded float64    `json:"files_uploaded"`
	FilesExisting float64    `json:"files_existing"`
	FilesMissing  float64    `json:"files_missing"`
	Bytes         float64    `json:"bytes"`
	InFlight      float64    `json:"files_in_flight"`
	LastCommit    *time.Time `json:"last_commit,omitempty"`
}

// Rates are per-second rates over the window since the oldest kept sample (up to a minute).
type Rates struct {
	WindowSeconds    float64 `json:"window_seconds"`
	WebhooksAccepted float64 `json:"webhooks_accepted"`
	WebhooksRejected float64 `json:"webhooks_rejected"`
	Enriched         float64 `json:"enriched"`
	DLQ              float64 `json:"dlq"`
}

// rateWindow is how far back the rates look; samples are taken when the page is requested.
const rateWindow = time.Minute

type sample struct {
	at                                time.Time
	accepted, rejected, enriched, dlq float64
}

// SetStatusProvider makes the status page show p's summary and DLQ entries.
func (s *Server) SetStatusProvider(p StatusProvider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = p
}

// Status collects the status page's content now: readiness, the registry's counters and the
// provider's summary.
func (s *Server) Status(ctx context.Context) (Status, error) {
	now := time.Now()
	failed := s.Ready(ctx)
	s.mu.RLock()
	p := s.status
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	s.mu.RUnlock()
	sort.Strings(names)
	st := Status{GeneratedAt: now.UTC(), Uptime: now.Sub(s.started).Round(time.Second).String(), Ready: len(failed) == 0, RecentDLQ: []DLQEntry{}}
	if p != nil {
		st.Config = p.Summary()
		if d := p.RecentDLQ(); d != nil {
			st.RecentDLQ = d
		}
	}
	// Empty lists rather than null, so that JSON consumers need no special case.
	if st.Config.Brokers == nil {
		st.Config.Brokers = []string{}
	}
	if st.Config.Roles == nil {
		st.Config.Roles = []Role{}
	}
	fams, err := s.gatherer.Gather()
	if err != nil {
		return Status{}, fmt.Errorf("gather metrics for the status page: %w", err)
	}
	m := indexFamilies(fams)
	st.Webhooks = webhookStatus(m)
	st.Enricher = enricherStatus(m)
	st.Reconciler = reconcilerStatus(m)
	st.Archiver = archiverStatus(m)
	s.addRates(&st, now)

	// Checks by role; a check no role claims is listed under "process".
	claimed := map[string]bool{}
	roles := slices.Clone(st.Config.Roles)
	for _, r := range roles {
		for _, c := range r.Checks {
			claimed[c] = true
		}
	}
	var rest []string
	for _, n := range names {
		if !claimed[n] {
			rest = append(rest, n)
		}
	}
	if len(rest) > 0 {
		roles = append(roles, Role{Name: "process", Checks: rest})
	}
	for _, r := range roles {
		rs := RoleStatus{Name: r.Name, Health: HealthHealthy, Checks: []CheckStatus{}}
		for _, c := range r.Checks {
			cs := CheckStatus{Name: c, Ready: true}
			if err, bad := failed[c]; bad {
				cs.Ready, cs.Reason, rs.Health = false, err.Error(), HealthUnhealthy
			} else if !slices.Contains(names, c) {
				cs.Ready, cs.Reason, rs.Health = false, "check not registered", HealthUnhealthy
			}
			rs.Checks = append(rs.Checks, cs)
		}
		if r.Name == "enricher" && rs.Health == HealthHealthy && st.Enricher != nil && (st.Enricher.Blocked || st.Enricher.Stalled) {
			rs.Health = HealthDegraded
		}
		st.Roles = append(st.Roles, rs)
	}
	return st, nil
}

// addRates keeps one counter sample per second for rateWindow and fills the rates from the
// oldest one. Rates are only shown once a second of history exists.
func (s *Server) addRates(st *Status, now time.Time) {
	cur := sample{at: now}
	if w := st.Webhooks; w != nil {
		cur.accepted, cur.rejected = w.Accepted, w.Rejected
	}
	if e := st.Enricher; e != nil {
		cur.enriched, cur.dlq = e.Enriched, e.DLQ
	}
	s.sampleMu.Lock()
	defer s.sampleMu.Unlock()
	for len(s.samples) > 1 && now.Sub(s.samples[1].at) >= rateWindow {
		s.samples = s.samples[1:]
	}
	if n := len(s.samples); n == 0 || now.Sub(s.samples[n-1].at) >= time.Second {
		s.samples = append(s.samples, cur)
	}
	base := s.samples[0]
	dt := now.Sub(base.at).Seconds()
	if dt < 1 {
		return
	}
	r := &Rates{
		WindowSeconds: math.Round(dt), WebhooksAccepted: (cur.accepted - base.accepted) / dt,
		WebhooksRejected: (cur.rejected - base.rejected) / dt, Enriched: (cur.enriched - base.enriched) / dt, DLQ: (cur.dlq - base.dlq) / dt,
	}
	if st.Webhooks != nil {
		st.Webhooks.Rates = r
	}
	if st.Enricher != nil {
		st.Enricher.Rates = r
	}
}

func indexFamilies(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	m := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func label(mt *dto.Metric, name string) string {
	for _, l := range mt.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.GetCounter().GetValue()
	case mt.Gauge != nil:
		return mt.GetGauge().GetValue()
	}
	return 0
}

// byLabel sums a family's series by one label's value.
func byLabel(f *dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, mt := range f.GetMetric() {
		out[label(mt, name)] += value(mt)
	}
	return out
}

func sum(f *dto.MetricFamily) float64 {
	var s float64
	for _, mt := range f.GetMetric() {
		s += value(mt)
	}
	return s
}

func webhookStatus(m map[string]*dto.MetricFamily) *WebhookStatus {
	f := m["idnow_connector_ingress_requests_total"]
	if f == nil {
		return nil
	}
	w := &WebhookStatus{ByResult: byLabel(f, "result")}
	for r, v := range w.ByResult {
		switch r {
		case "accepted":
			w.Accepted += v
		case "duplicate": // answered 200: IDnow's retry of a webhook already on Kafka
			w.Duplicate += v
		default:
			w.Rejected += v
		}
	}
	return w
}

func enricherStatus(m map[string]*dto.MetricFamily) *EnricherStatus {
	const ns = "idnow_connector_enrich_"
	f := m[ns+"records_enriched_total"]
	if f == nil {
		return nil
	}
	e := &EnricherStatus{Enriched: sum(f), DLQByReason: map[string]float64{}}
	if f := m[ns+"dlq_records_total"]; f != nil {
		e.DLQByReason = byLabel(f, "reason")
		e.DLQ = sum(f)
	}
	if f := m[ns+"consumer_lag"]; f != nil {
		e.ConsumerLag = sum(f)
	}
	if f := m[ns+"in_flight"]; f != nil {
		e.InFlight = sum(f)
	}
	if f := m[ns+"blocked"]; f != nil {
		e.Blocked = sum(f) > 0
	}
	if f := m[ns+"stalled"]; f != nil {
		e.Stalled = sum(f) > 0
	}
	if f := m[ns+"hanging_transactions"]; f != nil {
		e.Hanging = sum(f)
	}
	if f := m[ns+"transactions_total"]; f != nil {
		t := byLabel(f, "result")
		e.Committed, e.Aborted = t["committed"], t["aborted"]
	}
	if f := m[ns+"last_commit_timestamp_seconds"]; f != nil {
		if v := sum(f); v > 0 {
			at := time.Unix(0, int64(v*1e9)).UTC()
			e.LastCommit = &at
		}
	}
	e.EndToEndP50, e.EndToEndP99 = quantile(m[ns+"end_to_end_seconds"], 0.5), quantile(m[ns+"end_to_end_seconds"], 0.99)
	e.EventAgeP50, e.EventAgeP99 = quantile(m[ns+"event_age_seconds"], 0.5), quantile(m[ns+"event_age_seconds"], 0.99)
	return e
}

func archiverStatus(m map[string]*dto.MetricFamily) *ArchiverStatus {
	const ns = "idnow_connector_archive_"
	f := m[ns+"sessions_total"]
	if f == nil {
		return nil
	}
	sessions := byLabel(f, "result")
	a := &ArchiverStatus{Archived: sessions["archived"] + sessions["reused"]}
	if f := m[ns+"files_total"]; f != nil {
		files := byLabel(f, "result")
		a.FilesUploaded, a.FilesExisting, a.FilesMissing = files["uploaded"], files["existing"], files["missing"]
	}
	if f := m[ns+"bytes_total"]; f != nil {
		a.Bytes = sum(f)
	}
	if f := m[ns+"files_in_flight"]; f != nil {
		a.InFlight = sum(f)
	}
	if f := m[ns+"last_commit_timestamp_seconds"]; f != nil {
		if v := sum(f); v > 0 {
			at := time.Unix(0, int64(v*1e9)).UTC()
			a.LastCommit = &at
		}
	}
	return a
}

func reconcilerStatus(m map[string]*dto.MetricFamily) *ReconcilerStatus {
	const ns = "idnow_connector_reconcile_"
	f := m[ns+"passes_total"]
	if f == nil {
		return nil
	}
	passes := byLabel(f, "result")
	r := &ReconcilerStatus{PassesSucceeded: passes["success"], PassesFailed: passes["failure"]}
	if f := m[ns+"leader"]; f != nil {
		r.Leader = sum(f) > 0
	}
	if f := m[ns+"last_success_timestamp_seconds"]; f != nil {
		if v := sum(f); v > 0 {
			at := time.Unix(0, int64(v*1e9)).UTC()
			r.LastSuccess = &at
		}
	}
	if f := m[ns+"sessions_listed_total"]; f != nil {
		r.SessionsListed = sum(f)
	}
	if f := m[ns+"sessions_repaired_total"]; f != nil {
		r.Repaired = sum(f)
	}
	return r
}

// quantile estimates the q-quantile of a histogram's observations since start-up the way
// PromQL's histogram_quantile does: linear interpolation inside the bucket holding the rank,
// the highest finite bound when the rank falls in +Inf. nil without observations.
func quantile(f *dto.MetricFamily, q float64) *float64 {
	if f == nil || len(f.GetMetric()) == 0 {
		return nil
	}
	h := f.GetMetric()[0].GetHistogram()
	total := float64(h.GetSampleCount())
	if total == 0 {
		return nil
	}
	rank := q * total
	lower, prevCount := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, count := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if count >= rank {
			v := upper
			if count > prevCount {
				v = lower + (upper-lower)*(rank-prevCount)/(count-prevCount)
			}
			v = math.Round(v*1000) / 1000
			return &v
		}
		lower, prevCount = upper, count
	}
	v := lower // the rank lies in +Inf: the largest finite bound, as histogram_quantile answers
	return &v
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	st, err := s.statusFor(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}

func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	st, err := s.statusFor(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The page is self-contained; nothing may load from elsewhere or run script.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := pageTemplate.Execute(w, st); err != nil {
		s.log.Error("status page: render", "err", err)
	}
}

func (s *Server) statusFor(r *http.Request) (Status, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	return s.Status(ctx)
}

// count formats a counter or gauge that holds a whole number as the page shows it and the
// browser test reads it back.
func count(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// num formats a real number (rates, latencies) to three decimals.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"count": count,
	"num":   num,
	"sortedKeys": func(m map[string]float64) []string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	},
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}).Parse(pageHTML))

// pageHTML is the status page. Every number carries data-key, its path in /status's JSON, so
// that a test (and a curious operator) can match the two.
const pageHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>idnow-connector {{.Config.Mode}}: {{if .Ready}}ready{{else}}NOT READY{{end}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.05em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.2em 0} td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#555} td.n{text-align:right;font-variant-numeric:tabular-nums}
.healthy,.ok{color:#137333}.degraded{color:#b06000}.unhealthy,.bad{color:#c5221f;font-weight:600}
.muted{color:#777} .grid{display:flex;flex-wrap:wrap;gap:2.5em}
</style>
</head>
<body>
<h1>idnow-connector <span data-key="config.mode">{{.Config.Mode}}</span>
 <span class="{{if .Ready}}ok{{else}}bad{{end}}" data-key="ready">{{if .Ready}}ready{{else}}not ready{{end}}</span></h1>
<div class="muted">version <span data-key="config.version">{{.Config.Version}}</span> · up {{.Uptime}} · generated {{time .GeneratedAt}} · refreshes every 5 s · <a href="status">JSON</a> · <a href="metrics">metrics</a></div>

<h2>Roles</h2>
<table>
<tr><th>role</th><th>health</th><th>check</th><th>ready</th><th>reason</th></tr>
{{range $i, $r := .Roles}}{{range $j, $c := $r.Checks}}<tr>
<td>{{if eq $j 0}}{{$r.Name}}{{end}}</td>
<td>{{if eq $j 0}}<span class="{{$r.Health}}" data-key="roles.{{$i}}.health">{{$r.Health}}</span>{{end}}</td>
<td>{{$c.Name}}</td><td class="{{if $c.Ready}}ok{{else}}bad{{end}}" data-key="roles.{{$i}}.checks.{{$j}}.ready">{{if $c.Ready}}yes{{else}}no{{end}}</td>
<td>{{$c.Reason}}</td></tr>
{{else}}<tr><td>{{$r.Name}}</td><td class="{{$r.Health}}" data-key="roles.{{$i}}.health">{{$r.Health}}</td><td colspan="3" class="muted">no checks</td></tr>
{{end}}{{end}}
</table>

<div class="grid">
{{with .Webhooks}}<div>
<h2>Webhooks (since start)</h2>
<table>
<tr><th>accepted</th><td class="n" data-key="webhooks.accepted">{{count .Accepted}}</td></tr>
<tr><th>duplicate</th><td class="n" data-key="webhooks.duplicate">{{count .Duplicate}}</td></tr>
<tr><th>rejected</th><td class="n" data-key="webhooks.rejected">{{count .Rejected}}</td></tr>
{{$by := .ByResult}}{{range sortedKeys .ByResult}}{{if and (ne . "accepted") (ne . "duplicate")}}<tr><td class="muted">&nbsp;&nbsp;{{.}}</td><td class="n muted" data-key="webhooks.by_result.{{.}}">{{count (index $by .)}}</td></tr>
{{end}}{{end}}{{with .Rates}}<tr><th>accepted/s</th><td class="n">{{num .WebhooksAccepted}}</td></tr>
<tr><th>rejected/s</th><td class="n">{{num .WebhooksRejected}}</td></tr>
<tr><td colspan="2" class="muted">rates over the last {{.WindowSeconds}} s</td></tr>{{end}}
</table></div>{{end}}

{{with .Enricher}}<div>
<h2>Enricher (since start)</h2>
<table>
<tr><th>enriched</th><td class="n" data-key="enricher.enriched">{{count .Enriched}}</td></tr>
<tr><th>dead-lettered</th><td class="n" data-key="enricher.dlq">{{count .DLQ}}</td></tr>
<tr><th>consumer lag</th><td class="n" data-key="enricher.consumer_lag">{{count .ConsumerLag}}</td></tr>
<tr><th>in flight</th><td class="n" data-key="enricher.in_flight">{{count .InFlight}}</td></tr>
<tr><th>transactions committed</th><td class="n" data-key="enricher.transactions_committed">{{count .Committed}}</td></tr>
<tr><th>transactions aborted</th><td class="n" data-key="enricher.transactions_aborted">{{count .Aborted}}</td></tr>
<tr><th>blocked</th><td class="{{if .Blocked}}bad{{else}}ok{{end}}" data-key="enricher.blocked">{{.Blocked}}</td></tr>
<tr><th>stalled</th><td class="{{if .Stalled}}bad{{else}}ok{{end}}" data-key="enricher.stalled">{{.Stalled}}</td></tr>
<tr><th>hanging transactions</th><td class="n" data-key="enricher.hanging_transactions">{{count .Hanging}}</td></tr>
<tr><th>last commit</th><td>{{with .LastCommit}}{{time .}}{{else}}<span class="muted">none yet</span>{{end}}</td></tr>
{{with .Rates}}<tr><th>enriched/s</th><td class="n">{{num .Enriched}}</td></tr>
<tr><th>dead-lettered/s</th><td class="n">{{num .DLQ}}</td></tr>{{end}}
</table></div>

<div>
<h2>End-to-end latency (since start)</h2>
<table>
<tr><th></th><th>p50</th><th>p99</th></tr>
<tr><th>webhook → enriched</th><td class="n">{{with .EndToEndP50}}<span data-key="enricher.end_to_end_p50_seconds">{{num .}}</span> s{{else}}–{{end}}</td><td class="n">{{with .EndToEndP99}}<span data-key="enricher.end_to_end_p99_seconds">{{num .}}</span> s{{else}}–{{end}}</td></tr>
<tr><th>IDnow event → enriched</th><td class="n">{{with .EventAgeP50}}<span data-key="enricher.event_age_p50_seconds">{{num .}}</span> s{{else}}–{{end}}</td><td class="n">{{with .EventAgeP99}}<span data-key="enricher.event_age_p99_seconds">{{num .}}</span> s{{else}}–{{end}}</td></tr>
</table>

<h2>Dead letters by reason</h2>
<table>
{{$by := .DLQByReason}}{{range sortedKeys .DLQByReason}}<tr><th>{{.}}</th><td class="n" data-key="enricher.dlq_by_reason.{{.}}">{{count (index $by .)}}</td></tr>
{{end}}
</table></div>{{end}}
</div>

{{with .Reconciler}}<h2>Reconciler (since start)</h2>
<table>
<tr><th>leader</th><td data-key="reconciler.leader">{{.Leader}}</td></tr>
<tr><th>last successful pass</th><td>{{with .LastSuccess}}{{time .}}{{else}}<span class="muted">none yet</span>{{end}}</td></tr>
<tr><th>passes succeeded</th><td class="n" data-key="reconciler.passes_succeeded">{{count .PassesSucceeded}}</td></tr>
<tr><th>passes failed</th><td class="n {{if .PassesFailed}}bad{{end}}" data-key="reconciler.passes_failed">{{count .PassesFailed}}</td></tr>
<tr><th>sessions listed</th><td class="n" data-key="reconciler.sessions_listed">{{count .SessionsListed}}</td></tr>
<tr><th>sessions repaired</th><td class="n" data-key="reconciler.sessions_repaired">{{count .Repaired}}</td></tr>
</table>{{end}}

{{with .Archiver}}<h2>Archiver (since start)</h2>
<table>
<tr><th>sessions archived</th><td class="n" data-key="archiver.sessions_archived">{{count .Archived}}</td></tr>
<tr><th>files uploaded</th><td class="n" data-key="archiver.files_uploaded">{{count .FilesUploaded}}</td></tr>
<tr><th>files already stored</th><td class="n" data-key="archiver.files_existing">{{count .FilesExisting}}</td></tr>
<tr><th>files missing</th><td class="n {{if .FilesMissing}}bad{{end}}" data-key="archiver.files_missing">{{count .FilesMissing}}</td></tr>
<tr><th>bytes verified</th><td class="n" data-key="archiver.bytes">{{count .Bytes}}</td></tr>
<tr><th>files in flight</th><td class="n" data-key="archiver.files_in_flight">{{count .InFlight}}</td></tr>
<tr><th>last commit</th><td>{{with .LastCommit}}{{time .}}{{else}}<span class="muted">none yet</span>{{end}}</td></tr>
</table>{{end}}

{{if .Enricher}}<h2>Newest dead letters</h2>
{{if .RecentDLQ}}<table>
<tr><th>time</th><th>reason</th><th>event id</th><th>session id</th></tr>
{{range $i, $d := .RecentDLQ}}<tr><td>{{time $d.At}}</td><td data-key="recent_dlq.{{$i}}.reason">{{$d.Reason}}</td><td data-key="recent_dlq.{{$i}}.event_id">{{$d.EventID}}</td><td data-key="recent_dlq.{{$i}}.session_id">{{$d.SessionID}}</td></tr>
{{end}}</table>
<div class="muted">metadata only; the records are on topic {{$.Config.Topics.DLQ}} (idnow-connector dlq-replay)</div>
{{else}}<div class="muted">none since start</div>{{end}}{{end}}

<h2>Configuration</h2>
<table>
<tr><th>mode</th><td>{{.Config.Mode}}</td></tr>
<tr><th>roles</th><td>{{range $i, $r := .Config.Roles}}{{if $i}}, {{end}}{{$r.Name}}{{end}}</td></tr>
<tr><th>brokers</th><td data-key="config.brokers">{{range $i, $b := .Config.Brokers}}{{if $i}}, {{end}}{{$b}}{{end}}</td></tr>
<tr><th>topics</th><td>sessions <code data-key="config.topics.sessions">{{.Config.Topics.Sessions}}</code>, enriched <code data-key="config.topics.enriched">{{.Config.Topics.Enriched}}</code>, dead letters <code data-key="config.topics.dlq">{{.Config.Topics.DLQ}}</code></td></tr>
<tr><th>encoding</th><td data-key="config.encoding">{{.Config.Encoding}}</td></tr>
{{with .Config.Delivery}}<tr><th>delivery</th><td data-key="config.delivery">{{.}}</td></tr>{{end}}
{{if .Config.Simulator}}<tr><th>simulator</th><td class="degraded">enabled: webhooks and API calls go to the local IDnow simulator</td></tr>{{end}}
</table>
</body>
</html>
`
