//go:build integration

package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
)

// startSimulator starts the IDnow simulator in the test process with every response variant
// IDnow is known to use and patient webhook retries, so a webhook is only given up on when
// something is really wrong.
func startSimulator(t testing.TB, opts ...func(*idnowsim.Config)) *idnowsim.Simulator {
	t.Helper()
	return simtest.Start(t, append([]func(*idnowsim.Config){func(c *idnowsim.Config) {
		c.WebhookVariant = idnowsim.VariantMixed
		c.DataBlocksShape = idnowsim.VariantMixed
		c.LastStepVariant = idnowsim.VariantMixed
		c.OutcomeCase = idnowsim.VariantMixed
		c.DeletedBlockRate = 0.1
		c.WebhookRetries = 8
		c.WebhookRetryBackoff = 100 * time.Millisecond
	}}, opts...)...)
}

// TestPipelineEndToEnd runs sessions through the whole pipeline on a real broker: the simulator
// (in the test process) sends signed webhooks to an ingress process, which writes SessionEvents;
// an enricher process reads them, calls the simulator's API and writes EnrichedSessions in
// transactions. A read_committed reader sees exactly one enriched record per SessionEvent,
// everything decodes, completed sessions carry their data blocks, and the connector created its
// topics with the configured partitions on a broker that had never seen them.
func TestPipelineEndToEnd(t *testing.T) {
	const sessions = 40
	began := time.Now()
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	sim := startSimulator(t)

	ingress := p.startSimIngress(t, sim, nil)
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "e2e"))
	p.checkTopicsCreated()
	t.Logf("pipeline up after %s", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	t.Logf("simulator idle after %s: %+v", time.Since(began).Round(time.Millisecond), sim.Stats())
	p.waitConsumed(1, 2*time.Minute)
	t.Logf("%d sessions through the pipeline in %s", sessions, time.Since(began).Round(time.Millisecond))
	enricher.stop()
	ingress.stop()

	_, inputByID := decodeEvents(t, p.readAll(p.sessions))
	snaps := sim.Sessions()
	bySession := map[string]idnowsim.SessionSnapshot{}
	events := 0
	for _, s := range snaps {
		bySession[s.SessionID] = s
		for _, e := range s.Events {
			events++
			if !e.Delivered {
				t.Errorf("webhook %s (%s) was never acknowledged by the ingress (given up: %v)", e.EventID, e.EventName, e.GivenUp)
			} else if inputByID[e.EventID] == 0 {
				t.Errorf("webhook %s (%s) was acknowledged but is not on %s", e.EventID, e.EventName, p.sessions)
			}
		}
	}
	if len(snaps) != sessions || events < 2*sessions {
		t.Fatalf("the simulator ran %d sessions with %d events, want %d sessions with at least 2 events each", len(snaps), events, sessions)
	}

	got, enrichedByID := decodeEnriched(t, p.readCommitted(p.enriched))
	checkOnePerEvent(t, inputByID, enrichedByID)
	completed := 0
	for _, es := range got {
		snap, ok := bySession[es.Session.SessionID]
		if !ok {
			t.Errorf("enriched record for unknown session %s", es.Session.SessionID)
			continue
		}
		at := slices.Index(snap.Transitions, es.Session.Status)
		from := slices.Index(snap.Transitions, deref(es.Event.SessionStatus))
		if at < 0 || from < 0 || at < from {
			t.Errorf("event %s announced %s but the enrichment says %s; the session went %v",
				es.Event.EventID, deref(es.Event.SessionStatus), es.Session.Status, snap.Transitions)
		}
		if es.Session.Terminal && (es.Session.Status != snap.Status || deref(es.Session.Outcome) != idnow.NormalizeOutcome(snap.Outcome)) {
			t.Errorf("event %s: terminal %s/%s, the simulator ended %s/%s", es.Event.EventID,
				es.Session.Status, deref(es.Session.Outcome), snap.Status, snap.Outcome)
		}
		if es.Session.Status == "COMPLETED" {
			completed++
			if !es.DataBlocksFetched || len(es.DataBlocks) != len(snap.DataBlockTypes) || len(es.DataBlocks) == 0 {
				t.Errorf("completed session %s: data blocks fetched %v, %d blocks, the simulator has %v",
					es.Session.SessionID, es.DataBlocksFetched, len(es.DataBlocks), snap.DataBlockTypes)
			}
		} else if es.DataBlocksFetched {
			t.Errorf("session %s in %s: data blocks fetched against the default policy", es.Session.SessionID, es.Session.Status)
		}
	}
	if completed == 0 {
		t.Errorf("no enriched record of a COMPLETED session among %d; the data-block path was not exercised", len(got))
	}
	dlq := p.readCommitted(p.dlq)
	if len(dlq) != 0 {
		t.Errorf("%d records on the DLQ, want none: every session exists at the simulator", len(dlq))
	}
	t.Logf("%d SessionEvents, %d enriched records (%d of completed sessions), %d on the DLQ", len(inputByID), len(got), completed, len(dlq))
}

// TestEnricherCrash SIGKILLs the enricher process once part of the stream is enriched and
// starts it again with the same enrich.instance_id: the new process's transactional id fences
// the dead one's open transaction, the group hands it the partitions once the dead member's
// session expires, and a read_committed reader still sees exactly one record per event.
func TestEnricherCrash(t *testing.T) {
	const sessions = 40
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	sim := startSimulator(t)

	// All events are on the sessions topic before the enricher starts, so the kill lands in
	// the middle of a known amount of work.
	began := time.Now()
	ingress := p.startSimIngress(t, sim, nil)
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	ingress.stop()
	_, inputByID := decodeEvents(t, p.readAll(p.sessions))
	if len(inputByID) < 2*sessions {
		t.Fatalf("only %d events on %s for %d sessions", len(inputByID), p.sessions, sessions)
	}
	t.Logf("%d events on %s after %s", len(inputByID), p.sessions, time.Since(began).Round(time.Millisecond))

	// Slow enrichment down (small batches, little concurrency, API latency) so the stream is
	// still going when the kill comes.
	if err := sim.SetFaults(idnowsim.Faults{Latency: 40 * time.Millisecond, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatalf("set simulator latency: %v", err)
	}
	ecfg := p.enricherSettings(sim, "crashy").with(settings{"enrich.concurrency": "2", "enrich.max_poll_records": "6"})
	began = time.Now()
	first := startChild(t, "enricher-1", "enricher", ecfg)
	p.waitConsumed(0.25, time.Minute)
	first.kill()
	done, total, err := p.progress(t.Context(), newAdmin(t, seeds))
	if err != nil {
		t.Fatalf("progress after the kill: %v", err)
	}
	if done >= total {
		t.Fatalf("the first enricher finished all %d events before it was killed; the test proves nothing", total)
	}
	t.Logf("enricher killed after %s with %d of %d events committed", time.Since(began).Round(time.Millisecond), done, total)

	began = time.Now()
	second := startChild(t, "enricher-2", "enricher", ecfg.with(settings{"admin.listen": freeAddr(t)}))
	p.waitConsumed(1, 2*time.Minute)
	t.Logf("second enricher finished the stream in %s", time.Since(began).Round(time.Millisecond))
	second.stop()

	got, enrichedByID := decodeEnriched(t, p.readCommitted(p.enriched))
	checkOnePerEvent(t, inputByID, enrichedByID)
	t.Logf("%d SessionEvents, %d enriched records visible to read_committed", len(inputByID), len(got))
}
