package idnowsim

import (
	"net/http"
	"time"
)

// PauseWebhooks drops every webhook event created during the next d: none of them is ever
// attempted, as when IDnow gave up on a receiver that was down longer than its retry window.
// Deliveries already queued go on. d <= 0 resumes at once.
func (s *Simulator) PauseWebhooks(d time.Duration) {
	if d <= 0 {
		s.pausedUntil.Store(0)
		return
	}
	s.pausedUntil.Store(time.Now().Add(d).UnixNano())
	s.log.Warn("webhook delivery paused: events created meanwhile are dropped", "for", d)
}

// ResumeWebhooks ends a pause started by PauseWebhooks.
func (s *Simulator) ResumeWebhooks() {
	s.pausedUntil.Store(0)
	s.log.Info("webhook delivery resumed")
}

// WebhooksPaused reports whether new webhook events are being dropped.
func (s *Simulator) WebhooksPaused() bool {
	until := s.pausedUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// dropEvent decides whether ev is lost for good (a pause, or faults.webhook_drop_rate) and, if
// so, records it as dropped.
func (s *Simulator) dropEvent(ev *event) bool {
	if !s.WebhooksPaused() && !s.rng.Chance(s.currentFaults().WebhookDropRate) {
		return false
	}
	s.mu.Lock()
	ev.dropped = true
	s.mu.Unlock()
	s.counters.dropped.Add(1)
	s.m.webhookEvents.WithLabelValues("dropped").Inc()
	return true
}

// handlePauseWebhooks serves POST /_sim/webhooks/pause?for=30s (tests and demos; the simulator
// is a development tool and its control endpoints take no credentials).
func (s *Simulator) handlePauseWebhooks(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("for"))
	if err != nil || d <= 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "for must be a positive duration, e.g. ?for=30s")
		return
	}
	s.PauseWebhooks(d)
	writeJSON(w, http.StatusOK, map[string]any{"pausedUntil": isoTime(time.Now().Add(d))})
}

// handleResumeWebhooks serves POST /_sim/webhooks/resume.
func (s *Simulator) handleResumeWebhooks(w http.ResponseWriter, _ *http.Request) {
	s.ResumeWebhooks()
	w.WriteHeader(http.StatusNoContent)
}
