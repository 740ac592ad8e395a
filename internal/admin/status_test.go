package admin

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin/statustest"
	"html"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeProvider struct{ dlq []DLQEntry }

func (f fakeProvider) Summary() Summary {
	return Summary{
		Mode: "run", Version: "v1.2.3", Brokers: []string{"127.0.0.1:9092", "127.0.0.1:9093"},
		Roles:    []Role{{Name: "ingress", Checks: []string{"kafka", "jwks"}}, {Name: "enricher", Checks: []string{"enricher"}}},
		Topics:   Topics{Sessions: "idnow.sessions", Enriched: "idnow.sessions.enriched", DLQ: "idnow.sessions.dlq"},
		Encoding: "Avro single-object encoding (no schema registry)", Delivery: "exactly_once",
	}
}

func (f fakeProvider) RecentDLQ() []DLQEntry { return f.dlq }

// statusRegistry registers series named like the ingress's and enricher's, with known values.
func statusRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_ingress_requests_total", Help: "h"}, []string{"result"})
	requests.WithLabelValues("accepted").Add(42)
	requests.WithLabelValues("duplicate").Add(3)
	requests.WithLabelValues("unauthorized").Add(5)
	requests.WithLabelValues("bad_request").Add(2)
	const ns = "idnow_connector_enrich_"
	enriched := prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "records_enriched_total", Help: "h"}, []string{"status", "outcome"})
	enriched.WithLabelValues("COMPLETED", "ACCEPTED").Add(30)
	enriched.WithLabelValues("RUNNING", "none").Add(10)
	dlq := prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "dlq_records_total", Help: "h"}, []string{"reason"})
	dlq.WithLabelValues("undecodable").Add(2)
	dlq.WithLabelValues("session_not_found").Add(1)
	dlq.WithLabelValues("record_too_large")
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "consumer_lag", Help: "h"}, []string{"partition"})
	lag.WithLabelValues("0").Set(4)
	lag.WithLabelValues("1").Set(3)
	blocked := prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "blocked", Help: "h"})
	blocked.Set(1)
	e2e := prometheus.NewHistogram(prometheus.HistogramOpts{Name: ns + "end_to_end_seconds", Help: "h", Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30}})
	for range 99 {
		e2e.Observe(0.2)
	}
	e2e.Observe(20)
	passes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_reconcile_passes_total", Help: "h"}, []string{"result"})
	passes.WithLabelValues("success").Add(4)
	passes.WithLabelValues("failure").Add(1)
	leader := prometheus.NewGauge(prometheus.GaugeOpts{Name: "idnow_connector_reconcile_leader", Help: "h"})
	leader.Set(1)
	archived := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_archive_sessions_total", Help: "h"}, []string{"result"})
	archived.WithLabelValues("archived").Add(5)
	archived.WithLabelValues("reused").Add(1)
	archived.WithLabelValues("skipped_status").Add(30)
	files := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_archive_files_total", Help: "h"}, []string{"result"})
	files.WithLabelValues("uploaded").Add(18)
	files.WithLabelValues("missing").Add(2)
	reg.MustRegister(requests, enriched, dlq, lag, blocked, e2e, passes, leader, archived, files)
	return reg
}

func startStatusServer(t *testing.T, reg prometheus.Gatherer, p StatusProvider) (*Server, string) {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0"}, Deps{Gatherer: reg, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if p != nil {
		s.SetStatusProvider(p)
	}
	s.AddCheck("kafka", func(context.Context) error { return nil })
	s.AddCheck("jwks", func(context.Context) error {
		return errors.New("no webhook signing keys loaded from https://idnow.example/jwks yet")
	})
	s.AddCheck("enricher", func(context.Context) error { return nil })
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return s, "http://" + s.Addr()
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestStatusPageMatchesJSON: / and /status show the same numbers (every data-key on the page
// is found in the JSON with the same value), computed from the registry and the checks.
func TestStatusPageMatchesJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	p := fakeProvider{dlq: []DLQEntry{{EventID: "evt-2", SessionID: "ses-2", Reason: "undecodable", At: at}, {EventID: "evt-1", SessionID: "ses-1", Reason: "session_not_found", At: at.Add(-time.Minute)}}}
	_, base := startStatusServer(t, statusRegistry(t), p)

	resp, page := get(t, base+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/ = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, `<meta http-equiv="refresh" content="5">`) {
		t.Error("the page does not refresh itself")
	}
	if strings.Contains(page, "<script") {
		t.Error("the page runs script; it must be plain server-rendered HTML")
	}
	resp, body := get(t, base+"/status")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	// The figures, from the registry and the checks.
	if w := st.Webhooks; w == nil || w.Accepted != 42 || w.Duplicate != 3 || w.Rejected != 7 || w.ByResult["unauthorized"] != 5 {
		t.Errorf("webhooks = %+v, want accepted 42, duplicate 3, rejected 7 (5 unauthorized)", st.Webhooks)
	}
	e := st.Enricher
	if e == nil || e.Enriched != 40 || e.DLQ != 3 || e.DLQByReason["undecodable"] != 2 || e.ConsumerLag != 7 || !e.Blocked {
		t.Fatalf("enricher = %+v, want enriched 40, dlq 3 (2 undecodable), lag 7, blocked", e)
	}
	if _, ok := e.DLQByReason["record_too_large"]; !ok {
		t.Error("a DLQ reason at 0 is not listed")
	}
	if e.EndToEndP50 == nil || *e.EndToEndP50 <= 0.1 || *e.EndToEndP50 > 0.25 || e.EndToEndP99 == nil || *e.EndToEndP99 > 0.25 {
		t.Errorf("end-to-end p50 %v p99 %v, want both in the (0.1, 0.25] bucket", e.EndToEndP50, e.EndToEndP99)
	}
	if e.EventAgeP50 != nil {
		t.Errorf("event age p50 %v without the histogram", *e.EventAgeP50)
	}
	if r := st.Reconciler; r == nil || !r.Leader || r.PassesSucceeded != 4 || r.PassesFailed != 1 || r.LastSuccess != nil {
		t.Errorf("reconciler = %+v, want leader, 4 passes succeeded, 1 failed, no last success", st.Reconciler)
	}
	if a := st.Archiver; a == nil || a.Archived != 6 || a.FilesUploaded != 18 || a.FilesMissing != 2 || a.LastCommit != nil {
		t.Errorf("archiver = %+v, want 6 archived (5 + 1 redone), 18 files uploaded, 2 missing, no commit yet", st.Archiver)
	}
	if st.Ready || len(st.Roles) != 2 || st.Roles[0].Health != HealthUnhealthy || st.Roles[1].Health != HealthDegraded {
		t.Errorf("ready %v roles %+v: want not ready, ingress unhealthy (jwks), enricher degraded (blocked)", st.Ready, st.Roles)
	}
	if c := st.Roles[0].Checks; len(c) != 2 || c[1].Name != "jwks" || c[1].Ready || !strings.Contains(c[1].Reason, "no webhook signing keys") {
		t.Errorf("ingress checks %+v: want jwks not ready with its reason", c)
	}
	if len(st.RecentDLQ) != 2 || st.RecentDLQ[0].EventID != "evt-2" {
		t.Errorf("recent DLQ %+v", st.RecentDLQ)
	}

	keys := compareStatusPage(t, page, body)
	for _, want := range []string{"webhooks.accepted", "webhooks.rejected", "enricher.enriched", "enricher.dlq", "enricher.consumer_lag",
		"enricher.dlq_by_reason.undecodable", "enricher.end_to_end_p99_seconds", "roles.0.checks.1.ready", "recent_dlq.0.event_id", "config.topics.dlq", "config.brokers", "reconciler.passes_failed", "reconciler.leader"} {
		if !keys[want] {
			t.Errorf("the page shows no %s", want)
		}
	}
	if !strings.Contains(page, "no webhook signing keys loaded") {
		t.Error("the page does not show the readiness reason")
	}
}

// TestStatusNoPersonalData: DLQ entries carry metadata only, and the JSON has no field that
// could hold record content.
func TestStatusNoPersonalData(t *testing.T) {
	p := fakeProvider{dlq: []DLQEntry{{EventID: "evt-1", SessionID: "ses-1", Reason: "undecodable", At: time.Now()}}}
	_, base := startStatusServer(t, statusRegistry(t), p)
	_, body := get(t, base+"/status")
	var raw map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	entry := raw["recent_dlq"].([]any)[0].(map[string]any)
	if len(entry) != 4 || entry["event_id"] == nil || entry["session_id"] == nil || entry["reason"] == nil || entry["at"] == nil {
		t.Errorf("DLQ entry %v: want exactly event_id, session_id, reason, at", entry)
	}
	personal := regexp.MustCompile(`(?i)"(value|content|payload|body|given_?name|family_?name|first_?name|last_?name|birth\w*|address|email|phone|document\w*|nationality|signed_?token|password|secret|token)"\s*:`)
	if m := personal.FindString(body); m != "" {
		t.Errorf("/status has a field that may hold personal data or secrets: %s", m)
	}
}

// TestStatusWithoutProvider: an admin server nobody gave a provider still serves the page
// (checks and metrics only), listing its checks under "process".
func TestStatusWithoutProvider(t *testing.T) {
	_, base := startStatusServer(t, prometheus.NewRegistry(), nil)
	resp, page := get(t, base+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("/ = %d", resp.StatusCode)
	}
	_, body := get(t, base+"/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Webhooks != nil || st.Enricher != nil || st.Reconciler != nil || len(st.Roles) != 1 || st.Roles[0].Name != "process" || len(st.Roles[0].Checks) != 3 {
		t.Errorf("status without provider or metrics = %+v", st)
	}
	compareStatusPage(t, page, body)
	if resp, _ := get(t, base+"/nothing"); resp.StatusCode != 404 {
		t.Errorf("/nothing = %d, want 404 (only / is the page)", resp.StatusCode)
	}
}

// TestQuantile: the estimate interpolates inside the bucket like histogram_quantile.
func TestQuantile(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h", Buckets: []float64{1, 2, 4}})
	reg.MustRegister(h)
	fams, _ := reg.Gather()
	if q := quantile(fams[0], 0.5); q != nil {
		t.Errorf("quantile without observations = %v, want nil", *q)
	}
	for range 4 {
		h.Observe(1.5) // all in (1, 2]
	}
	h.Observe(100) // +Inf
	fams, _ = reg.Gather()
	if q := quantile(fams[0], 0.5); q == nil || *q != 1.625 {
		t.Errorf("p50 = %v, want 1.625 (rank 2.5 of 4 in (1,2])", q)
	}
	if q := quantile(fams[0], 0.99); q == nil || *q != 4 {
		t.Errorf("p99 = %v, want 4 (the largest finite bound)", q)
	}
}

var dataKey = regexp.MustCompile(`data-key="([^"]+)"[^>]*>([^<]*)<`)

// compareStatusPage checks every data-key element of page against the same path in the JSON
// body, and returns the keys seen.
func compareStatusPage(t *testing.T, page, body string) map[string]bool {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range dataKey.FindAllStringSubmatch(page, -1) {
		key, text := m[1], strings.TrimSpace(html.UnescapeString(m[2]))
		seen[key] = true
		if err := statustest.Match(doc, key, text); err != nil {
			t.Errorf("page %s: %v", key, err)
		}
	}
	if len(seen) == 0 {
		t.Fatal("the page has no data-key elements")
	}
	return seen
}
