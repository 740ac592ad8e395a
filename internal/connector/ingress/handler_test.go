package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandlerStatuses drives every answer the ingress can give through the real handler.
func TestHandlerStatuses(t *testing.T) {
	h := newHarness(t)
	ev := func(sessionID, eventID string) map[string]any { return webhooktest.Event(sessionID, eventID) }
	without := func(m map[string]any, path ...string) map[string]any {
		if len(path) == 2 {
			delete(m[path[0]].(map[string]any), path[1])
		} else {
			delete(m, path[0])
		}
		return m
	}
	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		other := strings.Split(h.token("RS256", ev("s-evil", "e-evil")), ".")
		return parts[0] + "." + other[1] + "." + parts[2]
	}
	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantInBody string
	}{
		{"jwt RS256 accepted", func() *http.Request { return jwtRequest(h.token("RS256", ev("s-1", "e-rs"))) }, 200, `"accepted"`},
		{"jwt ES256 accepted", func() *http.Request { return jwtRequest(h.token("ES256", ev("s-1", "e-es"))) }, 200, `"accepted"`},
		{"header variant accepted", func() *http.Request {
			e := ev("s-2", "e-hdr")
			return headerRequest(h.token("RS256", e), e)
		}, 200, `"accepted"`},
		{"redelivery is a duplicate", func() *http.Request { return jwtRequest(h.token("RS256", ev("s-1", "e-rs"))) }, 200, `"duplicate"`},
		{"content type with charset", func() *http.Request {
			r := jwtRequest(h.token("RS256", ev("s-3", "e-cs")))
			r.Header.Set("Content-Type", "application/jwt; charset=utf-8")
			return r
		}, 200, `"accepted"`},
		{"missing eventId is 400", func() *http.Request { return jwtRequest(h.token("RS256", without(ev("s-1", "x"), "eventId"))) }, 400, "eventId"},
		{"missing sessionId is 400", func() *http.Request {
			return jwtRequest(h.token("RS256", without(ev("s-1", "e-nosess"), "payload", "sessionId")))
		}, 400, "sessionId"},
		{"empty body is 400", func() *http.Request { return jwtRequest("") }, 400, "empty body"},
		{"sessionId .. is 400 naming the field", func() *http.Request { return jwtRequest(h.token("RS256", ev("..", "e-dotdot"))) }, 400, "payload.sessionId"},
		{"eventId with NUL is 400 naming the field", func() *http.Request { return jwtRequest(h.token("RS256", ev("s-1", "e\x00nul"))) }, 400, "eventId"},
		{"header variant bad JSON is 400", func() *http.Request {
			r := headerRequest(h.token("RS256", ev("s-1", "e-1")), nil)
			r.Body = httpBody("{not json")
			return r
		}, 400, "not valid JSON"},
		{"tampered payload is 401", func() *http.Request { return jwtRequest(tamper(h.token("RS256", ev("s-1", "e-t")))) }, 401, "bad signature"},
		{"expired is 401", func() *http.Request {
			return jwtRequest(h.keys.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["exp"] = float64(1) })))
		}, 401, "expired"},
		{"wrong audience is 401", func() *http.Request {
			return jwtRequest(h.keys.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["aud"] = "https://other" })))
		}, 401, "audience"},
		{"header variant mismatch is 401", func() *http.Request {
			return headerRequest(h.token("RS256", ev("s-1", "e-signed")), ev("s-1", "e-other"))
		}, 401, "does not match"},
		{"header variant without signature is 401", func() *http.Request {
			r := headerRequest("", ev("s-1", "e-1"))
			r.Header.Del("X-Idnow-Signature")
			return r
		}, 401, "X-Idnow-Signature"},
		{"garbage token is 401", func() *http.Request { return jwtRequest("not.a.jwt") }, 401, "rejected"},
		{"wrong path is 404", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/other", nil)
		}, 404, "/webhooks/idnow"},
		{"GET is 405", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/webhooks/idnow", nil) }, 405, "POST"},
		{"too large is 413", func() *http.Request {
			return jwtRequest(strings.Repeat("a", int(DefaultConfig().MaxBodyBytes)+1))
		}, 413, "larger than"},
		{"too large without Content-Length is 413", func() *http.Request {
			r := jwtRequest(strings.Repeat("a", int(DefaultConfig().MaxBodyBytes)+1))
			r.ContentLength = -1
			return r
		}, 413, "larger than"},
		{"text/plain is 415", func() *http.Request {
			r := jwtRequest(h.token("RS256", ev("s-1", "e-1")))
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, 415, "not supported"},
		{"no content type is 415", func() *http.Request {
			r := jwtRequest(h.token("RS256", ev("s-1", "e-1")))
			r.Header.Del("Content-Type")
			return r
		}, 415, "Content-Type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := h.do(tc.req())
			if w.Code != tc.wantStatus || !strings.Contains(w.Body.String(), tc.wantInBody) {
				t.Fatalf("got %d %s, want %d containing %q", w.Code, w.Body.String(), tc.wantStatus, tc.wantInBody)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("answer Content-Type %q", ct)
			}
		})
	}
	if got := testutil.ToFloat64(h.handler.metrics.dedupeHits); got != 1 {
		t.Fatalf("dedupe hits = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.handler.metrics.requests.WithLabelValues(resultAccepted)); got != 4 {
		t.Fatalf("accepted = %v, want 4", got)
	}
	// Exactly the four accepted events are on the topic, keyed by session id.
	recs := h.records()
	if len(recs) != 4 {
		t.Fatalf("%d records on the topic, want 4", len(recs))
	}
	for _, r := range recs {
		var se schemas.SessionEvent
		if err := h.codec.Decode(t.Context(), r.Value, &se); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != se.SessionID {
			t.Fatalf("key %q, session %q", r.Key, se.SessionID)
		}
	}
}

func httpBody(s string) *nopCloser { return &nopCloser{bytes.NewBufferString(s)} }

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func TestStaticHeader(t *testing.T) {
	h := newHarness(t, configure(func(_ *Config, w *webhook.Config) {
		w.StaticHeader = webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic c2VjcmV0"}
	}))
	tok := h.token("RS256", webhooktest.Event("s-1", "e-1"))
	for _, tc := range []struct {
		name   string
		header string
		want   int
	}{
		{"absent", "", 401},
		{"wrong", "Basic d3Jvbmc=", 401},
		{"right", "Basic c2VjcmV0", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := jwtRequest(tok)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if w := h.do(r); w.Code != tc.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.want)
			}
		})
	}
}

func TestUnavailableAnswers(t *testing.T) {
	t.Run("kafka down", func(t *testing.T) {
		h := newHarness(t)
		h.kafkaDown.Store(true)
		w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s-1", "e-1"))))
		if w.Code != 503 || w.Header().Get("Retry-After") != "5" {
			t.Fatalf("got %d Retry-After %q, want 503 with Retry-After 5", w.Code, w.Header().Get("Retry-After"))
		}
		// Once Kafka is back, IDnow's retry is accepted: either its own produce succeeds or the
		// first attempt's record, still in the producer, lands and the retry joins it or finds it
		// in the dedupe window. Either way the event is on the topic exactly once.
		h.kafkaDown.Store(false)
		tok := h.token("RS256", webhooktest.Event("s-1", "e-1"))
		var w2 *httptest.ResponseRecorder
		for range 20 { // IDnow retries; the producer needs a moment to reconnect
			if w2 = h.do(jwtRequest(tok)); w2.Code == 200 {
				break
			}
		}
		if body := w2.Body.String(); w2.Code != 200 || (!strings.Contains(body, "accepted") && !strings.Contains(body, "duplicate")) {
			t.Fatalf("retry after outage: %d %s", w2.Code, w2.Body)
		}
		if recs := h.records(); len(recs) != 1 {
			t.Fatalf("%d records on the topic after the outage and a retry, want exactly 1", len(recs))
		}
	})
	t.Run("keys not loaded", func(t *testing.T) {
		keys := webhooktest.NewKeySet(t)
		keys.SetAvailable(false)
		url := keys.Serve(t)
		h := newHarness(t, configure(func(_ *Config, w *webhook.Config) { w.JWKSURL = url }))
		w := h.do(jwtRequest(keys.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))))
		if w.Code != 503 || w.Header().Get("Retry-After") == "" {
			t.Fatalf("got %d, want 503 with Retry-After", w.Code)
		}
		if got := testutil.ToFloat64(h.handler.metrics.requests.WithLabelValues(resultKeysUnavailable)); got != 1 {
			t.Fatalf("keys_unavailable requests = %v, want 1", got)
		}
	})
	t.Run("producer buffer full", func(t *testing.T) {
		h := newHarness(t, func(s *harnessSettings) { s.maxBuffered = 1 })
		h.kafkaDown.Store(true)
		first := make(chan int)
		go func() { first <- h.do(jwtRequest(h.token("RS256", webhooktest.Event("s", "e-first")))).Code }()
		for h.client.BufferedProduceRecords() == 0 {
			runtime.Gosched() // wait until the first event occupies the whole buffer
		}
		// The second event finds the buffer full and is refused at once, while the first is
		// still waiting for Kafka.
		w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s", "e-second"))))
		if w.Code != 503 {
			t.Fatalf("second request: got %d, want 503", w.Code)
		}
		select {
		case code := <-first:
			t.Fatalf("the first request was answered (%d) before the second was refused", code)
		default:
		}
		if code := <-first; code != 503 {
			t.Fatalf("first request: got %d, want 503 after produce_timeout", code)
		}
	})
	t.Run("overloaded", func(t *testing.T) {
		h := newHarness(t, configure(func(c *Config, _ *webhook.Config) { c.MaxConcurrent = 1 }))
		h.handler.slots <- struct{}{} // one request in flight
		w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s", "e"))))
		<-h.handler.slots
		if w.Code != 503 || !strings.Contains(w.Body.String(), "too many") {
			t.Fatalf("got %d %s, want 503 too many", w.Code, w.Body)
		}
	})
	t.Run("shutting down", func(t *testing.T) {
		h := newHarness(t)
		h.handler.closing.Store(true)
		if w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s", "e")))); w.Code != 503 {
			t.Fatalf("got %d, want 503", w.Code)
		}
	})
}

func TestSignedTokenKeptByConfig(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			h := newHarness(t, configure(func(c *Config, _ *webhook.Config) { c.KeepSignedToken = keep }))
			tok := h.token("RS256", webhooktest.Event("s-1", "e-1"))
			if w := h.do(jwtRequest(tok)); w.Code != 200 {
				t.Fatalf("got %d", w.Code)
			}
			recs := h.records()
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			var se schemas.SessionEvent
			if err := h.codec.Decode(t.Context(), recs[0].Value, &se); err != nil {
				t.Fatal(err)
			}
			if keep && (se.SignedToken == nil || *se.SignedToken != tok) {
				t.Fatal("signed token not kept")
			}
			if !keep && se.SignedToken != nil {
				t.Fatal("signed token kept although disabled")
			}
		})
	}
}

func TestAnswersAreJSON(t *testing.T) {
	h := newHarness(t)
	w := h.do(jwtRequest("x"))
	var a answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || a.Error == "" {
		t.Fatalf("answer %q is not a JSON error: %v", w.Body, err)
	}
}

// TestOKAnswerMatchesWriteJSON: the hand-built answer of an accepted webhook is byte for byte
// what encoding/json (writeJSON) writes, headers included.
func TestOKAnswerMatchesWriteJSON(t *testing.T) {
	for _, result := range []string{resultAccepted, resultDuplicate} {
		for _, id := range []string{"e", "98da8c6c-7f38-4c1e-9d0a-2f4b7c1e5a10", "evt:2026.11.25-1"} {
			got := httptest.NewRecorder()
			(&Handler{}).ok(got, result, id)
			want := httptest.NewRecorder()
			writeJSON(want, http.StatusOK, answer{Status: result, EventID: id})
			if got.Code != want.Code || got.Body.String() != want.Body.String() || fmt.Sprint(got.Header()) != fmt.Sprint(want.Header()) {
				t.Fatalf("ok answer %d %v %q, writeJSON %d %v %q", got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
			}
		}
	}
}
