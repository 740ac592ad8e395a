package enrich

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/ingress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TestEndToEnd is the whole pipeline: the simulator drives 30 sessions through their lifecycles
// and sends signed webhooks to the real ingress, which writes SessionEvents; the enricher runs
// at the same time. A read_committed reader of the enriched topic sees exactly one record per
// SessionEvent on the sessions topic, each with a status the session really had at or after
// the event, and the final outcome once terminal; completed sessions carry their data blocks.
func TestEndToEnd(t *testing.T) {
	brokers := newCluster(t)
	sim := simtest.Start(t)
	log := testLog(t)
	reg := prometheus.NewRegistry()

	// The ingress, verifying webhooks against the simulator's JWKS.
	events, _ := newCodecs(t)
	producer := newProducer(t, brokers, ingress.ProducerOpts()...)
	icfg := ingress.DefaultConfig()
	// The audience is the webhook URL, so the port must be known before the verifier exists.
	addr := freeAddr(t)
	icfg.Listen = addr
	url := "http://" + addr + icfg.Path
	wcfg := webhook.DefaultConfig()
	wcfg.JWKSURL, wcfg.Issuer, wcfg.Audience = sim.JWKSURL(), sim.Issuer(), url
	wcfg.AllowInsecureHTTP = true // the simulator serves its JWKS over plain http
	v, err := webhook.NewVerifier(t.Context(), wcfg, webhook.Deps{Registry: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	in, err := ingress.New(icfg, ingress.Deps{Verifier: v, Encoder: events, Kafka: producer, Topic: testTopics.Sessions, Registry: reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ingressCtx, stopIngress := context.WithCancel(context.WithoutCancel(t.Context()))
	ingressDone := make(chan error, 1)
	go func() { ingressDone <- in.Run(ingressCtx) }()
	t.Cleanup(func() {
		stopIngress()
		if err := <-ingressDone; err != nil {
			t.Errorf("ingress shutdown: %v", err)
		}
	})
	if err := sim.SetWebhookURL(url); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("a")
	r := startEnricher(t, brokers, newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3), cfg)

	sim.CreateSessions(30)
	simtest.WaitIdle(t, sim, 30*time.Second)
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Every delivered webhook is a SessionEvent; every SessionEvent has exactly one enrichment.
	input := readCommitted(t, brokers, testTopics.Sessions)
	inputIDs := map[string]int{}
	for _, rec := range input {
		var ev schemas.SessionEvent
		if err := events.Decode(t.Context(), rec.Value, &ev); err != nil {
			t.Fatal(err)
		}
		inputIDs[ev.EventID]++
	}
	delivered := 0
	snaps := map[string]int{}
	sessions := sim.Sessions()
	for i, s := range sessions {
		snaps[s.SessionID] = i
		for _, e := range s.Events {
			if e.Delivered {
				delivered++
				if inputIDs[e.EventID] == 0 {
					t.Errorf("webhook %s was delivered but is not on %s", e.EventID, testTopics.Sessions)
				}
			}
		}
	}
	if delivered < 30*2 {
		t.Fatalf("only %d webhooks were delivered for 30 sessions", delivered)
	}
	got := decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched))
	gotIDs := map[string]int{}
	for _, es := range got {
		gotIDs[es.Event.EventID]++
	}
	for id, n := range inputIDs {
		if gotIDs[id] != n {
			t.Errorf("event %s: %d SessionEvents, %d enriched records", id, n, gotIDs[id])
		}
	}
	for id := range gotIDs {
		if inputIDs[id] == 0 {
			t.Errorf("enriched record for event %s that is not on the sessions topic", id)
		}
	}
	for _, es := range got {
		i, ok := snaps[es.Session.SessionID]
		if !ok {
			t.Errorf("enriched record for unknown session %s", es.Session.SessionID)
			continue
		}
		snap := sessions[i]
		at := slices.Index(snap.Transitions, es.Session.Status)
		from := slices.Index(snap.Transitions, deref(es.Event.SessionStatus))
		if at < 0 || from < 0 || at < from {
			t.Errorf("event %s announced %s but the enrichment says %s; the session went %v",
				es.Event.EventID, deref(es.Event.SessionStatus), es.Session.Status, snap.Transitions)
		}
		if es.Session.Terminal {
			if es.Session.Status != snap.Status || deref(es.Session.Outcome) != idnow.NormalizeOutcome(snap.Outcome) {
				t.Errorf("event %s: terminal %s/%s, the simulator ended %s/%s", es.Event.EventID,
					es.Session.Status, deref(es.Session.Outcome), snap.Status, snap.Outcome)
			}
		}
		if es.Session.Status == "COMPLETED" {
			if !es.DataBlocksFetched || len(es.DataBlocks) != len(snap.DataBlockTypes) {
				t.Errorf("completed session %s: fetched %v, %d blocks, the simulator has %v",
					es.Session.SessionID, es.DataBlocksFetched, len(es.DataBlocks), snap.DataBlockTypes)
			}
		} else if es.DataBlocksFetched {
			t.Errorf("session %s in %s: data blocks fetched against the policy", es.Session.SessionID, es.Session.Status)
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
