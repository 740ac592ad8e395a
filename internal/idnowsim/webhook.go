package idnowsim

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Webhook constants.
const (
	// EventVersion is the eventVersion the simulator stamps on every event.
	EventVersion = "1.0"
	// SignatureHeader carries the JWT in the older JSON delivery variant.
	SignatureHeader = "X-Idnow-Signature"
	// webhookTokenTTL is the exp of webhook JWTs relative to signing.
	webhookTokenTTL = 5 * time.Minute
)

// delivery is one scheduled attempt to deliver an event.
type delivery struct {
	ev       *event
	attempts int // attempts already made
	due      time.Time
	order    uint64
}

type deliveryHeap []*delivery

func (h deliveryHeap) Len() int { return len(h) }
func (h deliveryHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].order < h[j].order
	}
	return h[i].due.Before(h[j].due)
}
func (h deliveryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *deliveryHeap) Push(x any)   { *h = append(*h, x.(*delivery)) }
func (h *deliveryHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}

// outbox schedules deliveries by due time: new events (delayed at random when shuffling) and
// retries after backoff. One dispatcher hands due deliveries to the workers.
type outbox struct {
	mu      sync.Mutex
	h       deliveryHeap
	pending int // events neither delivered nor given up
	seq     uint64
	wake    chan struct{}
	work    chan *delivery
}

func newOutbox() *outbox {
	return &outbox{wake: make(chan struct{}, 1), work: make(chan *delivery)}
}

func (o *outbox) push(d *delivery, newEvent bool) {
	o.mu.Lock()
	o.seq++
	d.order = o.seq
	heap.Push(&o.h, d)
	if newEvent {
		o.pending++
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) finish() {
	o.mu.Lock()
	o.pending--
	o.mu.Unlock()
}

func (o *outbox) pendingEvents() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pending
}

func (o *outbox) queued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.h)
}

// WebhookURL returns where webhooks are currently sent; empty means nowhere.
func (s *Simulator) WebhookURL() string { return *s.hookURL.Load() }

// SetWebhookURL changes where webhooks are sent, e.g. once an in-process receiver has bound its
// port. Queued deliveries and retries go to the new URL, signed with it as the audience. An
// empty URL stops sending; events created meanwhile are recorded but never delivered.
func (s *Simulator) SetWebhookURL(u string) error {
	c := s.cfg
	c.WebhookURL = u
	if err := c.Validate(); err != nil {
		return fmt.Errorf("idnowsim: set webhook URL: %w", err)
	}
	s.hookURL.Store(&u)
	return nil
}

// enqueue schedules a new event for delivery; without a webhook URL events are only recorded.
func (s *Simulator) enqueue(ev *event) {
	if s.WebhookURL() == "" {
		return
	}
	if s.dropEvent(ev) {
		return
	}
	due := time.Now()
	if s.cfg.Shuffle {
		due = due.Add(s.rng.Duration(0, s.cfg.ShuffleWindow))
	}
	s.outbox.push(&delivery{ev: ev, due: due}, true)
}

// dispatch hands deliveries to workers when they are due.
func (s *Simulator) dispatch() {
	o := s.outbox
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var next *delivery
		wait := time.Duration(-1)
		o.mu.Lock()
		if len(o.h) > 0 {
			if d := time.Until(o.h[0].due); d <= 0 {
				next = heap.Pop(&o.h).(*delivery)
			} else {
				wait = d
			}
		}
		o.mu.Unlock()

		if next != nil {
			select {
			case o.work <- next:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		var timerC <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			timerC = timer.C
		}
		select {
		case <-o.wake:
		case <-timerC:
		case <-s.ctx.Done():
			return
		}
		if !timer.Stop() {
			// Drain so the next Reset starts clean (Go 1.23+ timers make this a no-op, but harmless).
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// deliveryWorker attempts deliveries until the simulator stops.
func (s *Simulator) deliveryWorker() {
	for {
		select {
		case d := <-s.outbox.work:
			s.attempt(d)
		case <-s.ctx.Done():
			return
		}
	}
}

// attempt makes one delivery attempt with a fresh eventDeliverId and reschedules failures with
// exponential backoff until the retries run out.
func (s *Simulator) attempt(d *delivery) {
	deliverID := s.rng.UUID()
	s.mu.Lock()
	d.ev.deliverIDs = append(d.ev.deliverIDs, deliverID)
	data := eventData(d.ev, deliverID)
	s.mu.Unlock()
	d.attempts++
	s.counters.webhookAttempts.Add(1)

	var outcome string
	if s.rng.Chance(s.currentFaults().WebhookFail) {
		outcome = "injected_failure"
		s.counters.webhookInjected.Add(1)
		s.m.faults.WithLabelValues("webhook_fail").Inc()
	} else {
		start := time.Now()
		outcome = s.send(d.ev, deliverID, data, s.WebhookURL())
		s.m.webhookDuration.Observe(time.Since(start).Seconds())
		if mirror := s.cfg.WebhookMirrorURL; mirror != "" {
			s.m.webhookAttempts.WithLabelValues("mirror_" + s.send(d.ev, deliverID, data, mirror)).Inc()
		}
	}
	s.m.webhookAttempts.WithLabelValues(outcome).Inc()
	if s.ctx.Err() != nil {
		return // shutting down: the attempt was cut short, nothing more to do
	}

	if outcome == "ok" {
		s.mu.Lock()
		d.ev.delivered = true
		s.mu.Unlock()
		s.counters.delivered.Add(1)
		s.m.webhookEvents.WithLabelValues("delivered").Inc()
		s.outbox.finish()
		return
	}
	s.counters.webhookFailed.Add(1)
	if d.attempts <= s.cfg.WebhookRetries {
		d.due = time.Now().Add(s.cfg.WebhookRetryBackoff << (d.attempts - 1))
		s.outbox.push(d, false)
		return
	}
	s.mu.Lock()
	d.ev.givenUp = true
	s.mu.Unlock()
	s.counters.givenUp.Add(1)
	s.m.webhookEvents.WithLabelValues("given_up").Inc()
	s.outbox.finish()
	s.log.Warn("webhook delivery given up after retries", "event_name", d.ev.name, "attempts", d.attempts)
}

// eventData builds the event object carried in the JWT's data claim; s.mu must be held.
func eventData(ev *event, deliverID string) map[string]any {
	data := map[string]any{
		"eventId":        ev.id,
		"eventVersion":   EventVersion,
		"eventName":      ev.name,
		"eventDeliverId": deliverID,
		"eventSequence":  ev.seq,
		"createdAt":      isoTime(ev.createdAt),
		"environment":    ev.env,
		"payload": map[string]any{
			"flowId":        ev.flowID,
			"sessionId":     ev.sessionID,
			"sessionStatus": ev.status,
		},
	}
	if ev.last != nil {
		data["lastStepId"] = ev.last.step.id
		data["lastStepType"] = ev.last.step.typ
		data["lastStepStatus"] = ev.last.verdict
	}
	return data
}

// webhookClaims are the JWT claims of a webhook: the registered ones plus the event in data.
type webhookClaims struct {
	jwt.RegisteredClaims
	Data map[string]any `json:"data"`
}

// send performs one HTTP delivery and returns its outcome label.
func (s *Simulator) send(ev *event, deliverID string, data map[string]any, target string) string {
	now := time.Now()
	token, err := s.keys.sign(webhookClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.Issuer(),
			Audience:  jwt.ClaimStrings{target},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(webhookTokenTTL)),
			ID:        deliverID,
		},
		Data: data,
	})
	if err != nil {
		s.log.Error("sign webhook", "err", err)
		return "error"
	}
	var body []byte
	contentType := "application/jwt"
	if ev.variant == WebhookVariantHeader {
		if body, err = json.Marshal(data); err != nil {
			s.log.Error("encode webhook body", "err", err)
			return "error"
		}
		contentType = "application/json"
	} else {
		body = []byte(token)
	}

	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		s.log.Error("build webhook request", "err", err)
		return "error"
	}
	for k, v := range s.cfg.WebhookHeaders {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "idnow-simulator/1")
	if ev.variant == WebhookVariantHeader {
		req.Header.Set(SignatureHeader, token)
	}
	resp, err := s.httpClient.Do(req)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("webhook delivery failed", "event_name", ev.name, "err", redactURL(err, target))
		}
		return "error"
	}
	// Drain a bounded amount so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return "ok"
	}
	s.log.Debug("webhook delivery refused", "event_name", ev.name, "status", resp.StatusCode)
	return "status_" + statusClass(resp.StatusCode)
}

// redactURL keeps error messages short and free of a webhook URL's query (which may hold a secret).
func redactURL(err error, raw string) string {
	msg := err.Error()
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		msg = strings.ReplaceAll(msg, raw, raw[:i]+"?…")
	}
	return fmt.Sprint(msg)
}
