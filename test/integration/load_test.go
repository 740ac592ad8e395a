//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// testIssuer is the webhook issuer of tests that sign their own webhooks.
const testIssuer = "https://auth.itest.invalid/oidc"

// delivery is one webhook ready to post: signed up front in the test goroutine (signing helpers
// may fail the test, which only the test goroutine may do), in one of the two delivery variants.
type delivery struct {
	eventID     string
	body        []byte
	contentType string
	signature   string // X-Idnow-Signature for the JSON variant
}

// signDelivery signs event (the webhook's data claim) for audience; odd variants use the JSON
// body with the token in X-Idnow-Signature, even ones the token as the body. Most tokens are
// ES256 (cheap to sign); every fifth is RS256, so both algorithms go through the ingress.
func signDelivery(t testing.TB, keys *webhooktest.KeySet, audience string, eventID string, event map[string]any, variant int) delivery {
	t.Helper()
	data, err := json.Marshal(event)
	if err != nil {
		t.Fatalf("encode webhook event: %v", err)
	}
	alg := "ES256"
	if variant%5 == 0 {
		alg = "RS256"
	}
	// json.RawMessage keeps the claim byte-identical to the JSON body of the header variant.
	token := keys.Sign(t, alg, webhooktest.Claims(testIssuer, audience, json.RawMessage(data)))
	if variant%2 == 1 {
		return delivery{eventID: eventID, body: data, contentType: "application/json", signature: token}
	}
	return delivery{eventID: eventID, body: []byte(token), contentType: "application/jwt"}
}

// simDeliveries signs one webhook per event the simulator recorded (its own webhook sending is
// off), shaped as the simulator would send it, so the enricher finds every session at its API.
func simDeliveries(t testing.TB, keys *webhooktest.KeySet, audience string, sim *idnowsim.Simulator) []delivery {
	t.Helper()
	var out []delivery
	for _, s := range sim.Sessions() {
		for _, e := range s.Events {
			ev := map[string]any{
				"eventId":        e.EventID,
				"eventVersion":   idnowsim.EventVersion,
				"eventName":      e.EventName,
				"eventDeliverId": newID(t),
				"eventSequence":  e.EventSequence,
				"createdAt":      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
				"environment":    s.Environment,
				"payload": map[string]any{
					"flowId":        s.FlowID,
					"sessionId":     s.SessionID,
					"sessionStatus": e.SessionStatus,
				},
			}
			out = append(out, signDelivery(t, keys, audience, e.EventID, ev, len(out)))
		}
	}
	return out
}

// syntheticDeliveries signs n webhooks for made-up sessions, for tests without an enricher.
func syntheticDeliveries(t testing.TB, keys *webhooktest.KeySet, audience string, n int) []delivery {
	t.Helper()
	out := make([]delivery, 0, n)
	for i := range n {
		id := newID(t)
		out = append(out, signDelivery(t, keys, audience, id, webhooktest.Event(newID(t), id), i))
	}
	return out
}

// newID returns a random version 4 UUID, the format IDnow uses for ids.
func newID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random id: %v", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// attempt is one POST the load generator made and what came of it.
type attempt struct {
	eventID string
	began   time.Time
	ended   time.Time
	status  int   // 0 when the request failed without an answer
	err     error // transport error
	// retryAfter is the Retry-After header of the answer.
	retryAfter string
}

// acked reports whether the ingress acknowledged the webhook (any 2xx).
func (a attempt) acked() bool { return a.status >= 200 && a.status < 300 }

// loadGen posts webhooks to the ingress from several workers and records every attempt.
type loadGen struct {
	url    string
	client *http.Client

	mu       sync.Mutex
	attempts []attempt
	acked    map[string]bool
	changed  chan struct{} // closed and replaced on every recorded attempt
}

// newLoadGen returns a load generator for the webhook URL; its connections are closed when the
// test ends.
func newLoadGen(t testing.TB, url string) *loadGen {
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(transport.CloseIdleConnections)
	return &loadGen{
		url: url,
		// The timeout exceeds ingress.produce_timeout, so a slow broker shows as a 503, not
		// as a client timeout.
		client:  &http.Client{Timeout: 20 * time.Second, Transport: transport},
		acked:   map[string]bool{},
		changed: make(chan struct{}),
	}
}

// post sends one delivery and records the attempt.
func (g *loadGen) post(ctx context.Context, d delivery) attempt {
	a := attempt{eventID: d.eventID, began: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(d.body))
	if err != nil {
		a.err = err
	} else {
		req.Header.Set("Content-Type", d.contentType)
		if d.signature != "" {
			req.Header.Set("X-Idnow-Signature", d.signature)
		}
		resp, err := g.client.Do(req)
		if err != nil {
			a.err = err
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			a.status = resp.StatusCode
			a.retryAfter = resp.Header.Get("Retry-After")
		}
	}
	a.ended = time.Now()
	if errors.Is(a.err, context.Canceled) {
		// Cancelled by the test when it stopped the load: not an observation of the ingress.
		return a
	}
	g.mu.Lock()
	g.attempts = append(g.attempts, a)
	if a.acked() {
		g.acked[a.eventID] = true
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	return a
}

// snapshot returns the attempts so far and the number of acknowledged events.
func (g *loadGen) snapshot() ([]attempt, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]attempt(nil), g.attempts...), len(g.acked)
}

// ackedIDs returns the ids of every acknowledged event.
func (g *loadGen) ackedIDs() map[string]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]bool, len(g.acked))
	for id := range g.acked {
		out[id] = true
	}
	return out
}

// waitFor waits until cond holds for the attempts so far, failing the test after timeout with
// what was expected.
func (g *loadGen) waitFor(t testing.TB, what string, timeout time.Duration, cond func(attempts []attempt, acked int) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		g.mu.Lock()
		ch := g.changed
		g.mu.Unlock()
		attempts, acked := g.snapshot()
		if cond(attempts, acked) {
			return
		}
		select {
		case <-ch:
		case <-time.After(time.Second): // conditions may also depend on the clock
		case <-deadline:
			t.Fatalf("load generator: %s not seen within %s (%d attempts, %d events acknowledged)", what, timeout, len(attempts), acked)
		}
	}
}

// runOnce starts workers posting deliveries once each, in order, until they run out or ctx ends;
// the returned function waits for the workers.
func (g *loadGen) runOnce(ctx context.Context, workers int, ds []delivery) (wait func()) {
	ch := make(chan delivery)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ch)
		for _, d := range ds {
			select {
			case ch <- d:
			case <-ctx.Done():
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for d := range ch {
				g.post(ctx, d)
			}
		})
	}
	return wg.Wait
}

// runUntilAcked posts each delivery, one released every interval, and re-posts it after retry
// until the ingress acknowledges it, as IDnow retries a webhook that got no 2xx. The returned
// function waits until every delivery is acknowledged or ctx ends, and for the workers.
func (g *loadGen) runUntilAcked(ctx context.Context, workers int, ds []delivery, interval, retry time.Duration) (wait func()) {
	queue := make(chan delivery, len(ds)) // room for every delivery: a re-post never blocks
	var remaining atomic.Int64
	remaining.Store(int64(len(ds)))
	allAcked := make(chan struct{})
	if len(ds) == 0 {
		close(allAcked)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for _, d := range ds {
			queue <- d
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-allAcked:
					return
				case d := <-queue:
					if g.post(ctx, d).acked() {
						if remaining.Add(-1) == 0 {
							close(allAcked)
						}
						continue
					}
					select {
					case <-time.After(retry):
						queue <- d
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	return wg.Wait
}
