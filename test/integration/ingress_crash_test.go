//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// TestIngressCrash posts signed webhooks (the test's own keys, JWKS served by the test) to an
// ingress process from concurrent workers and SIGKILLs the ingress mid-load: every webhook that
// was answered 2xx before the crash is on the sessions topic, because the ingress answers only
// after the broker acknowledged with acks=all.
func TestIngressCrash(t *testing.T) {
	const (
		workers   = 12
		killAfter = 300 // acknowledged webhooks before the kill
		prepared  = 3000
	)
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	keys := webhooktest.NewKeySet(t)
	icfg, url := p.ingressSettings(keys.Serve(t), testIssuer)
	// The subject is the crash, not a slow broker: on a loaded CI machine a broker that has just
	// created the topic can take longer than the suite's 3 s to acknowledge, and the 503 the
	// ingress then answers (correctly) would read as a failure here. 9 s is the most the ingress
	// accepts (IDnow's answer deadline is 10 s).
	icfg = icfg.with(settings{"ingress.produce_timeout": "9s", "ingress.write_timeout": "12s"})
	began := time.Now()
	ds := syntheticDeliveries(t, keys, url, prepared)
	t.Logf("signed %d webhooks in %s", len(ds), time.Since(began).Round(time.Millisecond))
	ingress := startChild(t, "ingress", "ingress", icfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newLoadGen(t, url)
	began = time.Now()
	wait := g.runOnce(ctx, workers, ds)
	g.waitFor(t, "enough acknowledged webhooks before the kill", time.Minute, func(_ []attempt, acked int) bool { return acked >= killAfter })
	ingress.kill()
	killed := time.Now()
	// Keep posting for a moment: the workers must run into the dead ingress, which shows the
	// kill came while the load was on.
	g.waitFor(t, "a failed request after the kill", 30*time.Second, func(as []attempt, _ int) bool {
		for _, a := range as {
			if a.err != nil && !a.ended.Before(killed) {
				return true
			}
		}
		return false
	})
	cancel()
	wait()

	attempts, acked := g.snapshot()
	var failed, inFlight, other int
	for _, a := range attempts {
		switch {
		case a.err != nil:
			failed++
			if a.began.Before(killed) {
				inFlight++ // in flight when the process died
			}
		case !a.acked():
			other++
		}
	}
	t.Logf("load: %d attempts in %s, %d acknowledged, %d failed without an answer (%d of them in flight at the kill), %d other answers",
		len(attempts), time.Since(began).Round(time.Millisecond), acked, failed, inFlight, other)
	if other > 0 {
		t.Errorf("%d webhooks got a non-2xx answer while the broker was healthy; want 2xx or no answer (crash)", other)
	}
	if inFlight == 0 {
		t.Errorf("no request was in flight when the ingress was killed (%d workers posting); the crash did not land mid-load", workers)
	}
	if acked == len(ds) {
		t.Fatalf("every prepared webhook was acknowledged before the kill; the test proves nothing")
	}

	_, onTopic := decodeEvents(t, p.readAll(p.sessions))
	var lost []string
	for id := range g.ackedIDs() {
		if onTopic[id] == 0 {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d webhooks answered 2xx are not on %s (lost): %v", len(lost), p.sessions, firstN(lost, 10))
	}
	// Records written for requests the crash left unanswered are allowed: IDnow retries those,
	// and consumers are idempotent on eventId.
	t.Logf("%d SessionEvents on %s for %d acknowledged webhooks", len(onTopic), p.sessions, acked)
}
