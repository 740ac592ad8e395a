package idnowsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// received is one webhook as the receiver saw and verified it.
type received struct {
	variant string
	kid     string
	data    map[string]any
	header  http.Header
}

// receiver is a webhook endpoint that verifies every delivery against the simulator's JWKS,
// the way a real receiver would, and can refuse the first attempts of each event.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	sim     *Simulator // set by start, guarded by mu
	failFor int        // refuse this many attempts per eventId with 503

	mu       sync.Mutex
	got      []received
	attempts map[string]int
	errs     []error
}

func newReceiver(t *testing.T, failFor int) *receiver {
	t.Helper()
	rc := &receiver{t: t, failFor: failFor, attempts: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// start starts a simulator posting to this receiver.
func (rc *receiver) start(mutate func(*Config)) *Simulator {
	rc.t.Helper()
	sim := startSim(rc.t, func(c *Config) {
		c.WebhookURL = rc.url()
		if mutate != nil {
			mutate(c)
		}
	})
	rc.mu.Lock()
	rc.sim = sim
	rc.mu.Unlock()
	return sim
}

func (rc *receiver) url() string { return rc.srv.URL + "/webhooks/idnow" }

func (rc *receiver) fail(w http.ResponseWriter, err error) {
	rc.mu.Lock()
	rc.errs = append(rc.errs, err)
	rc.mu.Unlock()
	http.Error(w, err.Error(), http.StatusUnauthorized)
}

// keyfuncFromJWKS fetches the simulator's JWKS and builds a jwt.Keyfunc from it.
func keyfuncFromJWKS(sim *Simulator) (keyfunc.Keyfunc, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get(sim.JWKSURL())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return keyfunc.NewJWKSetJSON(raw)
}

func verifyWebhookJWT(sim *Simulator, token, audience string) (*jwt.Token, map[string]any, error) {
	kf, err := keyfuncFromJWKS(sim)
	if err != nil {
		return nil, nil, fmt.Errorf("JWKS: %w", err)
	}
	var claims struct {
		jwt.RegisteredClaims
		Data map[string]any `json:"data"`
	}
	tok, err := jwt.ParseWithClaims(token, &claims, kf.Keyfunc,
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(sim.Issuer()), jwt.WithAudience(audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return nil, nil, err
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute || claims.ID == "" {
		return nil, nil, fmt.Errorf("claims iat=%v exp=%v jti=%q", claims.IssuedAt, claims.ExpiresAt, claims.ID)
	}
	return tok, claims.Data, nil
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.fail(w, err)
		return
	}
	var token, variant string
	switch ct := r.Header.Get("Content-Type"); ct {
	case "application/jwt":
		token, variant = string(body), WebhookVariantJWT
	case "application/json":
		token, variant = r.Header.Get(SignatureHeader), WebhookVariantHeader
	default:
		rc.fail(w, fmt.Errorf("content type %q", ct))
		return
	}
	rc.mu.Lock()
	sim := rc.sim
	rc.mu.Unlock()
	tok, data, err := verifyWebhookJWT(sim, token, rc.url())
	if err != nil {
		rc.fail(w, fmt.Errorf("verify: %w", err))
		return
	}
	if variant == WebhookVariantHeader {
		// The JSON body must be the signed event, not something else.
		var bodyData map[string]any
		if err := json.Unmarshal(body, &bodyData); err != nil {
			rc.fail(w, err)
			return
		}
		a, _ := json.Marshal(bodyData)
		b, _ := json.Marshal(data)
		if !bytes.Equal(a, b) {
			rc.fail(w, errors.New("JSON body differs from the signed data claim"))
			return
		}
	}
	eventID, _ := data["eventId"].(string)
	rc.mu.Lock()
	rc.attempts[eventID]++
	n := rc.attempts[eventID]
	rc.got = append(rc.got, received{variant: variant, kid: tok.Header["kid"].(string), data: data, header: r.Header.Clone()})
	rc.mu.Unlock()
	if n <= rc.failFor {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) snapshot() ([]received, []error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...), append([]error(nil), rc.errs...)
}

func TestWebhooksVerifyWithJWKS(t *testing.T) {
	for _, variant := range []string{WebhookVariantJWT, WebhookVariantHeader, VariantMixed} {
		t.Run(variant, func(t *testing.T) {
			rc := newReceiver(t, 0)
			sim := rc.start(func(c *Config) {
				c.WebhookVariant = variant
				c.WebhookHeaders = map[string]string{"Authorization": "Basic c2ltOnNpbQ=="}
				c.StepEvents = true
			})
			sim.CreateSessions(12)
			waitIdle(t, sim)

			got, errs := rc.snapshot()
			if len(errs) > 0 {
				t.Fatalf("receiver rejected deliveries: %v", errs)
			}
			want := 0
			for _, s := range sim.Sessions() {
				want += len(s.Events)
			}
			if len(got) != want || want == 0 {
				t.Fatalf("received %d webhooks, want %d", len(got), want)
			}
			variants := map[string]int{}
			names := map[string]int{}
			for _, g := range got {
				variants[g.variant]++
				names[g.data["eventName"].(string)]++
				if g.header.Get("Authorization") != "Basic c2ltOnNpbQ==" {
					t.Fatalf("static header missing: %v", g.header)
				}
				p := g.data["payload"].(map[string]any)
				snap, ok := sim.Session(p["sessionId"].(string))
				if !ok || p["flowId"] != snap.FlowID || g.data["environment"] != EnvLive || g.data["eventVersion"] != EventVersion {
					t.Fatalf("event %v", g.data)
				}
				seq := int(g.data["eventSequence"].(float64))
				ev := snap.Events[seq-1]
				if ev.EventID != g.data["eventId"] || ev.EventName != g.data["eventName"] || ev.SessionStatus != p["sessionStatus"] {
					t.Fatalf("event %v does not match snapshot %+v", g.data, ev)
				}
				if _, err := time.Parse(time.RFC3339, g.data["createdAt"].(string)); err != nil {
					t.Fatalf("createdAt: %v", err)
				}
				if p["sessionStatus"] == StatusCompleted && (g.data["lastStepId"] != "decision" || g.data["lastStepType"] == nil || g.data["lastStepStatus"] == nil) {
					t.Fatalf("completed event without last step: %v", g.data)
				}
			}
			if variant == VariantMixed && (variants[WebhookVariantJWT] == 0 || variants[WebhookVariantHeader] == 0) {
				t.Fatalf("mixed produced %v", variants)
			} else if variant != VariantMixed && variants[variant] != len(got) {
				t.Fatalf("variant %s produced %v", variant, variants)
			}
			if names["session.created"] != 12 || names[eventStepCompleted] == 0 {
				t.Fatalf("event names %v", names)
			}
		})
	}
}

func TestWebhookRedelivery(t *testing.T) {
	rc := newReceiver(t, 2) // the first two attempts of every event fail
	sim := rc.start(nil)
	sim.CreateSessions(3)
	waitIdle(t, sim)

	got, errs := rc.snapshot()
	if len(errs) > 0 {
		t.Fatalf("receiver errors: %v", errs)
	}
	byEvent := map[string][]string{}
	for _, g := range got {
		id := g.data["eventId"].(string)
		byEvent[id] = append(byEvent[id], g.data["eventDeliverId"].(string))
	}
	for _, s := range sim.Sessions() {
		for _, e := range s.Events {
			deliveries := byEvent[e.EventID]
			if len(deliveries) != 3 || !e.Delivered || e.GivenUp {
				t.Fatalf("event %s: %d deliveries, snapshot %+v", e.EventID, len(deliveries), e)
			}
			seen := map[string]bool{}
			for _, d := range deliveries {
				if seen[d] {
					t.Fatalf("event %s reused eventDeliverId %s", e.EventID, d)
				}
				seen[d] = true
			}
		}
	}
	st := sim.Stats()
	if st.WebhookAttemptsFailed != 2*st.WebhooksDelivered || st.WebhooksGivenUp != 0 || st.WebhooksPending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSetWebhookURL(t *testing.T) {
	rc := newReceiver(t, 0)
	sim := rc.start(nil)
	if err := sim.SetWebhookURL("not a url"); err == nil {
		t.Fatal("SetWebhookURL accepted an invalid URL")
	}
	if err := sim.SetWebhookURL(""); err != nil {
		t.Fatal(err)
	}
	sim.CreateSessions(1)
	waitIdle(t, sim)
	if got, _ := rc.snapshot(); len(got) != 0 {
		t.Fatalf("%d webhooks sent without a URL", len(got))
	}
	if err := sim.SetWebhookURL(rc.url()); err != nil {
		t.Fatal(err)
	}
	sim.CreateSessions(1)
	waitIdle(t, sim)
	if got, errs := rc.snapshot(); len(got) == 0 || len(errs) > 0 {
		t.Fatalf("after SetWebhookURL: %d webhooks, errors %v", len(got), errs)
	}
}

func TestWebhookGivesUpAfterRetries(t *testing.T) {
	rc := newReceiver(t, 100) // never accepts
	sim := rc.start(func(c *Config) { c.WebhookRetries = 3 })
	ids := sim.CreateSessions(1)
	waitIdle(t, sim)
	snap, _ := sim.Session(ids[0])
	for _, e := range snap.Events {
		if len(e.DeliverIDs) != 4 || !e.GivenUp || e.Delivered {
			t.Fatalf("event %+v, want 4 attempts then given up", e)
		}
	}
}

func TestWebhookInjectedFailuresAndShuffle(t *testing.T) {
	rc := newReceiver(t, 0)
	sim := rc.start(func(c *Config) {
		c.Faults.WebhookFail = 0.5
		c.WebhookRetries = 10
		c.Shuffle, c.ShuffleWindow = true, 50*time.Millisecond
		c.StepDelay, c.StepJitter = time.Millisecond, 0
	})
	sim.CreateSessions(20)
	waitIdle(t, sim)
	got, _ := rc.snapshot()
	st := sim.Stats()
	if st.WebhookInjectedFailures == 0 || st.WebhooksDelivered != int64(len(got)) {
		t.Fatalf("stats %+v, received %d", st, len(got))
	}
	// With shuffling, some session's events arrive out of sequence order.
	last := map[string]float64{}
	outOfOrder := 0
	for _, g := range got {
		sid := g.data["payload"].(map[string]any)["sessionId"].(string)
		seq := g.data["eventSequence"].(float64)
		if seq < last[sid] {
			outOfOrder++
		}
		last[sid] = max(last[sid], seq)
	}
	if outOfOrder == 0 {
		t.Fatal("shuffle delivered every session's events in order")
	}
}

func TestKeyRotation(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.KeyGrace = time.Hour })
	oldKid := sim.KeyIDs()[0]
	claims := jwt.MapClaims{"iss": sim.Issuer(), "aud": "http://receiver", "jti": "rotation-test",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}
	oldToken, err := sim.keys.sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.RotateKeys(); err != nil {
		t.Fatal(err)
	}
	kids := sim.KeyIDs()
	if len(kids) != 2 || kids[1] != oldKid || kids[0] == oldKid {
		t.Fatalf("kids after rotation %v", kids)
	}
	newToken, _ := sim.keys.sign(claims)
	for name, tok := range map[string]string{"old key in grace": oldToken, "new key": newToken} {
		if _, _, err := verifyWebhookJWT(sim, tok, "http://receiver"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// After the grace period the old key leaves the JWKS and its tokens no longer verify.
	if _, err := sim.keys.jwksJSON(t.Context(), time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if kids := sim.KeyIDs(); len(kids) != 1 || kids[0] == oldKid {
		t.Fatalf("kids after grace %v", kids)
	}
	if _, _, err := verifyWebhookJWT(sim, oldToken, "http://receiver"); err == nil {
		t.Fatal("token of a pruned key still verifies")
	}
}
