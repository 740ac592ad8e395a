//go:build integration

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// withState gives the pipeline its own topics.state (deleted at the end, like the other topics).
func withState(t *testing.T, p *pipeline) settings {
	t.Helper()
	topic := uniqueName(t, "state")
	adm := newAdmin(t, p.seeds)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			t.Logf("delete topic %s: %v", topic, err)
		}
	})
	return settings{"topics.state": topic}
}

// scrapeMetric reads one sample from a child's /metrics (0 when absent).
func scrapeMetric(t *testing.T, admin, series string) float64 {
	t.Helper()
	v, err := metricValue(admin, series)
	if err != nil {
		return 0 // not scraped yet, or the series does not exist yet: nothing counted
	}
	return v
}

// finalOnce checks the done-when of completeness: every terminal session has exactly one
// EnrichedSession whose event announced its final status, and no eventId appears twice.
func finalOnce(t *testing.T, sim *idnowsim.Simulator, got []*schemas.EnrichedSession, byID map[string]int) (terminal int) {
	t.Helper()
	for id, n := range byID {
		if n != 1 {
			t.Errorf("eventId %s enriched %d times", id, n)
		}
	}
	final := map[string]int{}
	for _, es := range got {
		s, ok := sim.Session(es.Session.SessionID)
		if ok && strings.EqualFold(deref(es.Event.SessionStatus), s.Status) {
			final[s.SessionID]++
		}
	}
	for _, s := range sim.Sessions() {
		if !idnowsim.IsTerminal(s.Status) {
			continue
		}
		terminal++
		if final[s.SessionID] != 1 {
			t.Errorf("terminal session %s (%s) has %d EnrichedSessions for its final status, want 1", s.SessionID, s.Status, final[s.SessionID])
		}
	}
	return terminal
}

// TestCompletenessReconcile: 300 sessions, 30 % of webhooks dropped and the ingress stopped for
// a stretch in the middle; after one reconciliation pass every terminal session has exactly one
// EnrichedSession for its final status and no eventId appears twice (read_committed). A
// backfill over the same window then writes 0 events.
func TestCompletenessReconcile(t *testing.T) {
	const sessions = 300
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	state := withState(t, p)
	sim := startSimulator(t, func(c *idnowsim.Config) {
		c.WebhookRetries = 2 // a stopped ingress loses deliveries quickly, as IDnow gives up
		c.Faults.WebhookDropRate = 0.3
		c.Rate = 100
	})
	icfg, url := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	icfg = icfg.with(state)
	ingress := startChild(t, "ingress", "ingress", icfg)
	if err := sim.SetWebhookURL(url); err != nil {
		t.Fatal(err)
	}
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "complete").with(state))

	sim.CreateSessions(sessions / 2)
	time.Sleep(time.Second)
	ingress.stop() // deliveries fail and are given up while it is down
	sim.CreateSessions(sessions / 4)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	ingress = startChild(t, "ingress-2", "ingress", icfg)
	sim.CreateSessions(sessions / 4)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	ingress.stop()
	st := sim.Stats()
	t.Logf("simulator: %+v", st)
	if st.WebhooksDropped == 0 || st.WebhooksGivenUp == 0 {
		t.Fatalf("no holes to repair: dropped %d, given up %d", st.WebhooksDropped, st.WebhooksGivenUp)
	}
	p.waitConsumed(1, 2*time.Minute)
	_, before := decodeEnriched(t, p.readCommitted(p.enriched))

	rcfg := p.enricherSettings(sim, "rec").with(state).with(settings{
		"admin.listen": freeAddr(t), "reconcile.group": uniqueName(t, "reconcile"), "reconcile.interval": "1h",
		"reconcile.rate_limit": "50", "reconcile.grace": "0s",
	})
	reconciler := startChild(t, "reconciler", "reconciler", rcfg)
	deadline := time.Now().Add(2 * time.Minute)
	for scrapeMetric(t, reconciler.admin, `idnow_connector_reconcile_passes_total{result="success"}`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no successful reconciliation pass within 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	repaired := 0.0
	for _, s := range []string{"COMPLETED", "ABORTED", "EXPIRED", "ERROR"} {
		repaired += scrapeMetric(t, reconciler.admin, `idnow_connector_reconcile_sessions_repaired_total{status="`+s+`"}`)
	}
	reconciler.stop()
	if repaired == 0 {
		t.Fatal("the pass repaired no terminal status although webhooks were lost")
	}
	p.waitConsumed(1, 2*time.Minute)
	enricher.stop()

	got, byID := decodeEnriched(t, p.readCommitted(p.enriched))
	terminal := finalOnce(t, sim, got, byID)
	t.Logf("%d terminal sessions; %d enriched before the pass, %d after; %v terminal statuses repaired", terminal, len(before), len(got), repaired)

	// backfill over the same window: everything is complete now.
	cmd := exec.Command(connectorBinary(t), "backfill", "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	cmd.Dir = t.TempDir()
	cmd.Env = rcfg.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("backfill: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("sessions seen %d, already complete %d, events written 0", sessions, sessions)) {
		t.Fatalf("second pass (backfill) did not find everything complete:\n%s", out)
	}
}

// TestCompletenessTwoIngressAndRestart: the simulator sends every delivery to two ingress
// replicas, so every event is on the sessions topic twice; the enricher is killed mid-stream and
// restarted. One EnrichedSession per eventId (read_committed), and the restarted enricher skipped
// the copies whose twin the first one had enriched.
func TestCompletenessTwoIngressAndRestart(t *testing.T) {
	const sessions = 60
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	state := withState(t, p)
	// The second ingress's URL must be known before the simulator starts (it mirrors to it).
	i2cfg, url2 := p.ingressSettings("", "")
	sim := startSimulator(t, func(c *idnowsim.Config) { c.WebhookMirrorURL = url2 })
	i1cfg, url1 := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	i2cfg = i2cfg.with(settings{"webhook.jwks_url": sim.JWKSURL(), "webhook.issuer": sim.Issuer()})
	in1 := startChild(t, "ingress-1", "ingress", i1cfg.with(state))
	in2 := startChild(t, "ingress-2", "ingress", i2cfg.with(state))
	if err := sim.SetWebhookURL(url1); err != nil {
		t.Fatal(err)
	}
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	in1.stop()
	in2.stop()
	events, inputByID := decodeEvents(t, p.readAll(p.sessions))
	dups := 0
	for _, n := range inputByID {
		if n > 1 {
			dups++
		}
	}
	if dups == 0 {
		t.Fatalf("no eventId reached the sessions topic twice (%d records): the two-ingress case was not exercised", len(events))
	}

	if err := sim.SetFaults(idnowsim.Faults{Latency: 30 * time.Millisecond, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	ecfg := p.enricherSettings(sim, "twice").with(state).with(settings{"enrich.concurrency": "2", "enrich.max_poll_records": "6"})
	first := startChild(t, "enricher-1", "enricher", ecfg)
	p.waitConsumed(0.3, 2*time.Minute)
	first.kill()
	second := startChild(t, "enricher-2", "enricher", ecfg.with(settings{"admin.listen": freeAddr(t)}))
	p.waitConsumed(1, 3*time.Minute)
	skipped := scrapeMetric(t, second.admin, `idnow_connector_enrich_events_skipped_total{reason="already_enriched"}`)
	restored := scrapeMetric(t, second.admin, `idnow_connector_enrich_state_restored_sessions_total`)
	second.stop()

	got, byID := decodeEnriched(t, p.readCommitted(p.enriched))
	for id := range inputByID {
		if byID[id] != 1 {
			t.Errorf("eventId %s: %d EnrichedSessions, want 1", id, byID[id])
		}
	}
	if restored == 0 || skipped == 0 {
		t.Errorf("the restarted enricher restored %v sessions and skipped %v events; want both above 0", restored, skipped)
	}
	t.Logf("%d SessionEvents (%d eventIds on the topic twice), %d EnrichedSessions; restarted enricher restored %v sessions, skipped %v",
		len(events), dups, len(got), restored, skipped)
}
