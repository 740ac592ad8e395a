package idnowsim

import (
	"net/http"
	"testing"
	"time"
)

// eventIDs returns the distinct eventIds a receiver got.
func (rc *receiver) eventIDs() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]int{}
	for _, r := range rc.got {
		id, _ := r.data["eventId"].(string)
		out[id]++
	}
	return out
}

// TestWebhookDropRate: dropped events are never attempted (no retry either), are marked in the
// snapshot and counted; the others arrive.
func TestWebhookDropRate(t *testing.T) {
	rc := newReceiver(t, 0)
	sim := rc.start(func(c *Config) { c.Faults.WebhookDropRate = 0.3 })
	sim.CreateSessions(40)
	waitIdle(t, sim)
	got := rc.eventIDs()
	dropped, total := 0, 0
	for _, s := range sim.Sessions() {
		for _, e := range s.Events {
			total++
			switch {
			case e.Dropped:
				dropped++
				if len(e.DeliverIDs) != 0 || got[e.EventID] != 0 {
					t.Errorf("dropped event %s was attempted %d times, received %d", e.EventID, len(e.DeliverIDs), got[e.EventID])
				}
			case got[e.EventID] == 0:
				t.Errorf("event %s was neither dropped nor delivered", e.EventID)
			}
		}
	}
	if dropped == 0 || dropped == total || float64(dropped) < 0.15*float64(total) || float64(dropped) > 0.45*float64(total) {
		t.Fatalf("dropped %d of %d events with drop rate 0.3", dropped, total)
	}
	if st := sim.Stats(); st.WebhooksDropped != int64(dropped) {
		t.Fatalf("Stats().WebhooksDropped = %d, want %d", st.WebhooksDropped, dropped)
	}
}

// TestPauseWebhooks: events created during a pause (started over the control endpoint) are
// dropped; after resume, deliveries flow again.
func TestPauseWebhooks(t *testing.T) {
	rc := newReceiver(t, 0)
	sim := rc.start(nil)
	c := testClient(t)
	if r := do(t, c, http.MethodPost, sim.URL()+"/_sim/webhooks/pause?for=bogus", "", nil, nil); r.code != http.StatusBadRequest {
		t.Fatalf("pause with a bad duration: %d, want 400", r.code)
	}
	if r := do(t, c, http.MethodPost, sim.URL()+"/_sim/webhooks/pause?for=1h", "", nil, nil); r.code != http.StatusOK {
		t.Fatalf("pause: %d", r.code)
	}
	if !sim.WebhooksPaused() {
		t.Fatal("not paused after POST /_sim/webhooks/pause")
	}
	paused := sim.CreateSessions(5)
	waitIdle(t, sim)
	if n := len(rc.eventIDs()); n != 0 {
		t.Fatalf("%d events delivered during the pause", n)
	}
	if r := do(t, c, http.MethodPost, sim.URL()+"/_sim/webhooks/resume", "", nil, nil); r.code != http.StatusNoContent {
		t.Fatalf("resume: %d", r.code)
	}
	later := sim.CreateSessions(5)
	waitIdle(t, sim)
	got := rc.eventIDs()
	for _, id := range paused {
		s, _ := sim.Session(id)
		for _, e := range s.Events {
			if !e.Dropped || got[e.EventID] != 0 {
				t.Errorf("event %s of a paused session: dropped=%v received=%d", e.EventID, e.Dropped, got[e.EventID])
			}
		}
	}
	for _, id := range later {
		s, _ := sim.Session(id)
		for _, e := range s.Events {
			if got[e.EventID] == 0 {
				t.Errorf("event %s created after resume was not delivered", e.EventID)
			}
		}
	}
}

// TestWebhookMirror: with webhook_mirror_url every delivery reaches both receivers, each token
// signed for its own URL (the receiver verifies the audience).
func TestWebhookMirror(t *testing.T) {
	mirror := newReceiver(t, 0)
	rc := newReceiver(t, 0)
	sim := rc.start(func(c *Config) { c.WebhookMirrorURL = mirror.url() })
	mirror.mu.Lock()
	mirror.sim = sim
	mirror.mu.Unlock()
	sim.CreateSessions(10)
	waitIdle(t, sim)
	deadline := time.Now().Add(5 * time.Second)
	for len(mirror.eventIDs()) < len(rc.eventIDs()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	a, b := rc.eventIDs(), mirror.eventIDs()
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("primary got %d events, mirror %d", len(a), len(b))
	}
	for id := range a {
		if b[id] == 0 {
			t.Errorf("event %s not mirrored", id)
		}
	}
	mirror.mu.Lock()
	defer mirror.mu.Unlock()
	if len(mirror.errs) > 0 {
		t.Fatalf("mirror receiver refused deliveries: %v", mirror.errs)
	}
}
