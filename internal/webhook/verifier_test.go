package webhook_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testIssuer   = "https://auth.eu.platform.idnow.example/oidc"
	testAudience = "https://receiver.example/webhooks/idnow"
)

// syncBuffer collects log output from the verifier's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	v    *webhook.Verifier
	reg  *prometheus.Registry
	logs *syncBuffer
}

// testConfig is a valid config for jwksURL. The refetch interval is long so that each test sees
// exactly one refetch for unknown kids unless it says otherwise. Plain http is allowed because
// httptest serves the JWKS over it, as idnow.allow_insecure_http does for the application.
func testConfig(jwksURL string) webhook.Config {
	cfg := webhook.DefaultConfig()
	cfg.AllowInsecureHTTP = true
	cfg.JWKSURL = jwksURL
	cfg.Issuer = testIssuer
	cfg.Audience = testAudience
	cfg.JWKSRefetchMinInterval = time.Hour
	cfg.JWKSTimeout = 2 * time.Second
	return cfg
}

func newHarness(t *testing.T, cfg webhook.Config) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v, err := webhook.NewVerifier(t.Context(), cfg, webhook.Deps{Registry: h.reg, Log: log})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	h.v = v
	return h
}

// metricValue returns the value of the series name{labels}, or fails the test if it is absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// signWith signs claims with an arbitrary key and header, for forged tokens.
func signWith(t *testing.T, method jwt.SigningMethod, key any, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

func claimsWith(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("sess-1", "evt-1"))
	mod(c)
	return c
}

func TestVerify(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	now := time.Now()

	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustPKIX(t, ks.PublicKey("RS256"))})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	good := func(t *testing.T) string {
		return ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("sess-1", "evt-1")))
	}

	tests := []struct {
		name   string
		token  func(t *testing.T) string
		reason string // "" means the token must verify
	}{
		{name: "good RS256", token: good},
		{name: "good ES256", token: func(t *testing.T) string {
			return ks.Sign(t, "ES256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("sess-1", "evt-1")))
		}},
		{name: "surrounding whitespace is ignored", token: func(t *testing.T) string { return "\n " + good(t) + "\r\n" }},
		{name: "aud as a list containing ours", token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["aud"] = []string{"other", testAudience} }))
		}},
		{name: "expired within clock skew", token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() }))
		}},
		{name: "iat in the future within clock skew", token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["iat"] = now.Add(10 * time.Second).Unix() }))
		}},
		{name: "wrong key with a known kid", reason: webhook.ReasonBadSignature, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, otherRSA, map[string]any{"kid": ks.KID("RS256")},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "tampered payload", reason: webhook.ReasonBadSignature, token: func(t *testing.T) string {
			parts := strings.Split(good(t), ".")
			forged, err := json.Marshal(claimsWith(func(c jwt.MapClaims) { c["data"] = webhooktest.Event("someone-else", "evt-1") }))
			if err != nil {
				t.Fatal(err)
			}
			parts[1] = base64.RawURLEncoding.EncodeToString(forged)
			return strings.Join(parts, ".")
		}},
		{name: "truncated signature", reason: webhook.ReasonBadSignature, token: func(t *testing.T) string {
			tok := good(t)
			return tok[:len(tok)-8]
		}},
		{name: "expired", reason: webhook.ReasonExpired, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) {
				c["iat"] = now.Add(-10 * time.Minute).Unix()
				c["exp"] = now.Add(-2 * time.Minute).Unix()
			}))
		}},
		{name: "iat in the future beyond clock skew", reason: webhook.ReasonNotYetValid, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() }))
		}},
		{name: "nbf in the future beyond clock skew", reason: webhook.ReasonNotYetValid, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() }))
		}},
		{name: "missing exp", reason: webhook.ReasonMissingClaim, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { delete(c, "exp") }))
		}},
		{name: "wrong audience", reason: webhook.ReasonWrongAudience, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["aud"] = "https://attacker.example/hook" }))
		}},
		{name: "missing audience", reason: webhook.ReasonMissingClaim, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { delete(c, "aud") }))
		}},
		{name: "wrong issuer", reason: webhook.ReasonWrongIssuer, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["iss"] = "https://evil.example/oidc" }))
		}},
		{name: "alg none", reason: webhook.ReasonAlgorithmNotAllowed, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, map[string]any{"kid": ks.KID("RS256")},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "HS256 with the RSA public key as secret", reason: webhook.ReasonAlgorithmNotAllowed, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodHS256, rsaPEM, map[string]any{"kid": ks.KID("RS256")},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "RS384 not in webhook.algorithms", reason: webhook.ReasonAlgorithmNotAllowed, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS384, otherRSA, map[string]any{"kid": ks.KID("RS256")},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "unknown alg", reason: webhook.ReasonAlgorithmNotAllowed, token: func(t *testing.T) string {
			return rawToken(t, map[string]any{"alg": "XX999", "kid": ks.KID("RS256")}, webhooktest.Claims(testIssuer, testAudience, 1))
		}},
		{name: "missing kid", reason: webhook.ReasonMissingKID, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, otherRSA, nil, webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "kid not a string", reason: webhook.ReasonMissingKID, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, otherRSA, map[string]any{"kid": 42},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "unknown kid", reason: webhook.ReasonUnknownKey, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodRS256, otherRSA, map[string]any{"kid": "not-in-jwks"},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "ES256 token naming the RS256 key", reason: webhook.ReasonKeyMismatch, token: func(t *testing.T) string {
			return signWith(t, jwt.SigningMethodES256, ecKey, map[string]any{"kid": ks.KID("RS256")},
				webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
		}},
		{name: "missing data claim", reason: webhook.ReasonMissingData, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { delete(c, "data") }))
		}},
		{name: "null data claim", reason: webhook.ReasonMissingData, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["data"] = nil }))
		}},
		{name: "data claim not an object", reason: webhook.ReasonInvalidData, token: func(t *testing.T) string {
			return ks.Sign(t, "ES256", claimsWith(func(c jwt.MapClaims) { c["data"] = "session.completed" }))
		}},
		{name: "exp of the wrong type", reason: webhook.ReasonClaimNotNumeric, token: func(t *testing.T) string {
			return ks.Sign(t, "RS256", claimsWith(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }))
		}},
		{name: "empty", reason: webhook.ReasonMalformed, token: func(*testing.T) string { return "" }},
		{name: "not a JWT", reason: webhook.ReasonMalformed, token: func(*testing.T) string { return "hello" }},
		{name: "bad base64", reason: webhook.ReasonMalformed, token: func(*testing.T) string { return "a.b.c" }},
		{name: "JWE-like five segments", reason: webhook.ReasonMalformed, token: func(*testing.T) string { return "a.b.c.d.e" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := h.v.Verify(t.Context(), tc.token(t))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify: unexpected error %v", err)
				}
				var event struct {
					EventID string `json:"eventId"`
					Payload struct {
						SessionID string `json:"sessionId"`
					} `json:"payload"`
				}
				if err := json.Unmarshal(claims.Data, &event); err != nil {
					t.Fatalf("data claim: %v", err)
				}
				if event.EventID != "evt-1" || event.Payload.SessionID != "sess-1" || claims.Issuer != testIssuer {
					t.Fatalf("claims = %+v, event = %+v", claims.RegisteredClaims, event)
				}
				return
			}
			if claims != nil {
				t.Errorf("claims returned for a rejected token")
			}
			if !errors.Is(err, webhook.ErrInvalidToken) {
				t.Fatalf("Verify error %v does not match ErrInvalidToken", err)
			}
			var ve *webhook.VerificationError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify error %T is not a *VerificationError", err)
			}
			if ve.Reason != tc.reason {
				t.Fatalf("reason = %q (%v), want %q", ve.Reason, err, tc.reason)
			}
			if errors.Is(err, webhook.ErrKeysUnavailable) {
				t.Fatalf("a bad token must not look like a receiver problem: %v", err)
			}
		})
	}

	if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": "ok"}); got != 6 {
		t.Errorf("verifications ok = %v, want 6", got)
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": "alg_not_allowed"}); got != 4 {
		t.Errorf("verifications alg_not_allowed = %v, want 4", got)
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_jwks_keys", nil); got != 2 {
		t.Errorf("jwks_keys = %v, want 2", got)
	}
}

func mustPKIX(t *testing.T, pub any) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawToken builds a token with an arbitrary header and a dummy signature, for algorithms no
// library would sign with.
func rawToken(t *testing.T, header map[string]any, claims jwt.Claims) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString([]byte("sig"))
}

func TestVerifyRefetchesOnRotation(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	if got := ks.Hits(); got != 1 {
		t.Fatalf("JWKS hits after start = %d, want 1", got)
	}
	before := ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))

	ks.Rotate(t)
	tests := []struct {
		name     string
		alg      string
		wantHits int64
	}{
		// The first token with a new kid triggers one refetch; the second new kid is already there.
		{name: "RS256 after rotation", alg: "RS256", wantHits: 2},
		{name: "ES256 after rotation", alg: "ES256", wantHits: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := ks.Sign(t, tc.alg, webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
			if _, err := h.v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify after rotation: %v", err)
			}
			if got := ks.Hits(); got != tc.wantHits {
				t.Fatalf("JWKS hits = %d, want %d", got, tc.wantHits)
			}
		})
	}

	// The refetch replaced the set: the pre-rotation key is gone.
	_, err := h.v.Verify(t.Context(), before)
	var ve *webhook.VerificationError
	if !errors.As(err, &ve) || ve.Reason != webhook.ReasonUnknownKey {
		t.Fatalf("token signed before rotation: err = %v, want %q", err, webhook.ReasonUnknownKey)
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_jwks_refreshes_total", map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("jwks_refreshes ok = %v, want 2", got)
	}
}

func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	tests := []struct {
		name       string
		concurrent bool
	}{
		{name: "sequential", concurrent: false},
		{name: "concurrent", concurrent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := webhooktest.NewKeySet(t)
			h := newHarness(t, testConfig(ks.Serve(t)))
			attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			const n = 200
			tokens := make([]string, n)
			for i := range tokens {
				tokens[i] = signWith(t, jwt.SigningMethodES256, attacker, map[string]any{"kid": fmt.Sprintf("bogus-%d", i)},
					webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
			}
			errs := make([]error, n)
			if tc.concurrent {
				var wg sync.WaitGroup
				for i := range tokens {
					wg.Go(func() { _, errs[i] = h.v.Verify(t.Context(), tokens[i]) })
				}
				wg.Wait()
			} else {
				for i := range tokens {
					_, errs[i] = h.v.Verify(t.Context(), tokens[i])
				}
			}
			for i, err := range errs {
				var ve *webhook.VerificationError
				if !errors.As(err, &ve) || ve.Reason != webhook.ReasonUnknownKey {
					t.Fatalf("token %d: err = %v, want %q", i, err, webhook.ReasonUnknownKey)
				}
			}
			// One fetch at start-up plus at most one refetch within webhook.jwks_refetch_min_interval.
			if got := ks.Hits(); got > 2 {
				t.Fatalf("JWKS hits = %d after %d bogus kids, want at most 2", got, n)
			}
			// Concurrent callers may all have joined the one refetch; a later bogus kid must find
			// the limiter closed and cost no request.
			hits := ks.Hits()
			if _, err := h.v.Verify(t.Context(), tokens[0]); err == nil {
				t.Fatal("bogus kid accepted")
			}
			if got := ks.Hits(); got != hits {
				t.Fatalf("JWKS hits = %d after one more bogus kid, want %d", got, hits)
			}
			if got := metricValue(t, h.reg, "idnow_connector_webhook_jwks_refetch_rate_limited_total", nil); got == 0 {
				t.Errorf("refetch_rate_limited = 0, want > 0")
			}
			// Legitimate traffic is unaffected by the flood.
			good := ks.Sign(t, "ES256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
			if _, err := h.v.Verify(t.Context(), good); err != nil {
				t.Fatalf("good token after flood: %v", err)
			}
		})
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	url := ks.Serve(t)
	ks.SetAvailable(false)
	h := newHarness(t, testConfig(url))

	if h.v.Ready() {
		t.Fatal("Ready() = true before any JWKS was loaded")
	}
	tok := ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
	_, err := h.v.Verify(t.Context(), tok)
	if !errors.Is(err, webhook.ErrKeysUnavailable) || errors.Is(err, webhook.ErrInvalidToken) {
		t.Fatalf("Verify while keys are missing: err = %v, want ErrKeysUnavailable only", err)
	}

	ks.SetAvailable(true)
	waitReady(t, h.v)
	if _, err := h.v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("Verify once the JWKS host is up: %v", err)
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_jwks_refreshes_total", map[string]string{"result": "error"}); got < 1 {
		t.Errorf("jwks_refreshes error = %v, want >= 1", got)
	}
	if !strings.Contains(h.logs.String(), "JWKS not loaded at start-up") {
		t.Errorf("no start-up warning logged; logs:\n%s", h.logs.String())
	}
}

func TestJWKSConnectionRefusedAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, testConfig("http://"+addr+"/jwks.json"))
	if h.v.Ready() {
		t.Fatal("Ready() = true with an unreachable JWKS host")
	}
	ks := webhooktest.NewKeySet(t)
	_, err = h.v.Verify(t.Context(), ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e"))))
	if !errors.Is(err, webhook.ErrKeysUnavailable) {
		t.Fatalf("err = %v, want ErrKeysUnavailable", err)
	}
}

func waitReady(t *testing.T, v *webhook.Verifier) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !v.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("verifier did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKeysSurviveFailedRefresh(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	ks.SetAvailable(false)
	// An unknown kid triggers a refetch, which fails: the loaded keys must stay, and the unknown
	// kid is not held against the sender (it may be a key rotated in while the JWKS is down).
	_, err := h.v.Verify(t.Context(), signWith(t, jwt.SigningMethodRS256, mustRSA(t), map[string]any{"kid": "new"},
		webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e"))))
	if !errors.Is(err, webhook.ErrKeysUnavailable) || errors.Is(err, webhook.ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrKeysUnavailable only", err)
	}
	if ks.Hits() != 2 {
		t.Fatalf("JWKS hits = %d, want 2 (start-up and the refetch)", ks.Hits())
	}
	if !h.v.Ready() {
		t.Fatal("Ready() = false after a failed refresh with keys already loaded")
	}
	if _, err := h.v.Verify(t.Context(), ks.Sign(t, "ES256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))); err != nil {
		t.Fatalf("good token after failed refresh: %v", err)
	}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBackgroundRefreshPicksUpRotation(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	cfg := testConfig(ks.Serve(t))
	cfg.JWKSRefreshInterval = 50 * time.Millisecond
	h := newHarness(t, cfg)
	old := ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
	ks.Rotate(t)
	// Without any unknown-kid traffic the periodic refresh must drop the old key.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := h.v.Verify(t.Context(), old)
		if err != nil {
			var ve *webhook.VerificationError
			if !errors.As(err, &ve) || ve.Reason != webhook.ReasonUnknownKey {
				t.Fatalf("old token after rotation: err = %v, want %q", err, webhook.ReasonUnknownKey)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background refresh never dropped the rotated-out key")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJWKSEntryFiltering(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	var good map[string]any
	var all struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(ks.JWKS(), &all); err != nil {
		t.Fatal(err)
	}
	for _, k := range all.Keys {
		if k["kid"] == ks.KID("RS256") {
			good = k
		}
	}
	with := func(mod func(map[string]any)) map[string]any {
		c := make(map[string]any, len(good))
		for k, v := range good {
			c[k] = v
		}
		mod(c)
		return c
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		keys      []map[string]any
		wantReady bool
	}{
		{name: "usable key among unusable ones", wantReady: true, keys: []map[string]any{
			{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
			with(func(k map[string]any) { k["kid"] = "enc"; k["use"] = "enc" }),
			with(func(k map[string]any) { delete(k, "kid") }),
			with(func(k map[string]any) { k["kid"] = "pinned-hs"; k["alg"] = "HS256" }),
			with(func(k map[string]any) { k["kid"] = "pinned-es"; k["alg"] = "ES256" }),
			{"kty": "RSA", "kid": "weak", "n": base64.RawURLEncoding.EncodeToString(weak.N.Bytes()), "e": "AQAB"},
			{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
			good,
			with(func(k map[string]any) { k["n"] = "AQAB" }), // duplicate kid: first entry wins
		}},
		{name: "no usable key", wantReady: false, keys: []map[string]any{
			{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
			{"kty": "RSA", "kid": "weak", "n": base64.RawURLEncoding.EncodeToString(weak.N.Bytes()), "e": "AQAB"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, err := json.Marshal(map[string]any{"keys": tc.keys})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
			t.Cleanup(srv.Close)
			h := newHarness(t, testConfig(srv.URL))
			if got := h.v.Ready(); got != tc.wantReady {
				t.Fatalf("Ready() = %v, want %v; logs:\n%s", got, tc.wantReady, h.logs.String())
			}
			if !tc.wantReady {
				return
			}
			if got := metricValue(t, h.reg, "idnow_connector_webhook_jwks_keys", nil); got != 1 {
				t.Fatalf("jwks_keys = %v, want 1; logs:\n%s", got, h.logs.String())
			}
			tok := ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
			if _, err := h.v.Verify(t.Context(), tok); err != nil {
				t.Fatalf("Verify with the usable key: %v", err)
			}
		})
	}
}

func TestCheckStaticHeader(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	url := ks.Serve(t)
	secretFile := filepath.Join(t.TempDir(), "static-header")
	if err := os.WriteFile(secretFile, []byte("Basic czNjcjN0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name    string
		cfg     webhook.StaticHeaderConfig
		header  http.Header
		wantErr bool
	}{
		{name: "disabled ignores headers", header: header()},
		{name: "present and right", cfg: webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic czNjcjN0"},
			header: header("Authorization", "Basic czNjcjN0")},
		{name: "header name is case-insensitive", cfg: webhook.StaticHeaderConfig{Name: "x-idnow-secret", Value: "v"},
			header: header("X-Idnow-Secret", "v")},
		{name: "absent", cfg: webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic czNjcjN0"},
			header: header(), wantErr: true},
		{name: "wrong", cfg: webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic czNjcjN0"},
			header: header("Authorization", "Basic czNjcjN1"), wantErr: true},
		{name: "prefix of the right value", cfg: webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic czNjcjN0"},
			header: header("Authorization", "Basic"), wantErr: true},
		{name: "repeated", cfg: webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic czNjcjN0"},
			header: header("Authorization", "Basic czNjcjN0", "Authorization", "Basic czNjcjN0"), wantErr: true},
		{name: "from file, newline trimmed", cfg: webhook.StaticHeaderConfig{Name: "Authorization", ValueFile: secretFile},
			header: header("Authorization", "Basic czNjcjN0")},
		{name: "from file, wrong", cfg: webhook.StaticHeaderConfig{Name: "Authorization", ValueFile: secretFile},
			header: header("Authorization", "Basic czNjcjN0\n"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(url)
			cfg.StaticHeader = tc.cfg
			h := newHarness(t, cfg)
			err := h.v.CheckStaticHeader(tc.header)
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("CheckStaticHeader: %v", err)
				}
				return
			}
			var ve *webhook.VerificationError
			if !errors.As(err, &ve) || ve.Reason != webhook.ReasonStaticHeader || !errors.Is(err, webhook.ErrInvalidToken) {
				t.Fatalf("err = %v, want a %q VerificationError", err, webhook.ReasonStaticHeader)
			}
			if strings.Contains(err.Error(), "czNjcjN0") {
				t.Fatalf("error leaks the secret: %v", err)
			}
			if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": "static_header"}); got != 1 {
				t.Errorf("verifications static_header = %v, want 1", got)
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	url := ks.Serve(t)
	shared := prometheus.NewRegistry()
	first, err := webhook.NewVerifier(t.Context(), testConfig(url), webhook.Deps{Registry: shared, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Close)

	tests := []struct {
		name    string
		cfg     func() webhook.Config
		reg     prometheus.Registerer
		wantErr string
	}{
		{name: "invalid config", cfg: func() webhook.Config { c := testConfig(url); c.Issuer = ""; return c },
			reg: prometheus.NewRegistry(), wantErr: "webhook.issuer"},
		{name: "nil registerer", cfg: func() webhook.Config { return testConfig(url) }, wantErr: "Registerer"},
		{name: "metrics already registered", cfg: func() webhook.Config { return testConfig(url) }, reg: shared,
			wantErr: "register webhook metrics"},
		{name: "unreadable value file", cfg: func() webhook.Config {
			c := testConfig(url)
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "Authorization", ValueFile: filepath.Join(t.TempDir(), "missing")}
			return c
		}, reg: prometheus.NewRegistry(), wantErr: "webhook.static_header.value_file"},
		{name: "empty value file", cfg: func() webhook.Config {
			f := filepath.Join(t.TempDir(), "empty")
			if err := os.WriteFile(f, []byte("\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := testConfig(url)
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "Authorization", ValueFile: f}
			return c
		}, reg: prometheus.NewRegistry(), wantErr: "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := webhook.NewVerifier(t.Context(), tc.cfg(), webhook.Deps{Registry: tc.reg, Log: slog.New(slog.DiscardHandler)})
			if err == nil {
				v.Close()
				t.Fatal("NewVerifier succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	tests := []struct {
		name string
		up   bool
	}{
		{name: "keys loaded, periodic refresh pending", up: true},
		{name: "JWKS down, retry loop running", up: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks := webhooktest.NewKeySet(t)
			url := ks.Serve(t)
			ks.SetAvailable(tc.up)
			ignore := goleak.IgnoreCurrent()
			v, err := webhook.NewVerifier(t.Context(), testConfig(url), webhook.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			if v.Ready() != tc.up {
				t.Fatalf("Ready() = %v, want %v", v.Ready(), tc.up)
			}
			v.Close()
			v.Close() // idempotent
			goleak.VerifyNone(t, ignore)
		})
	}
}

func TestCloseWhenContextEnds(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	ctx, cancel := context.WithCancel(t.Context())
	v, err := webhook.NewVerifier(ctx, testConfig(ks.Serve(t)), webhook.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	v.Close()
	// Verification keeps working with the keys already loaded.
	if _, err := v.Verify(t.Context(), ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))); err != nil {
		t.Fatalf("Verify after Close: %v", err)
	}
}

func TestVerifyHonoursContextWhileRefetching(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	release := make(chan struct{})
	var served sync.Mutex
	first := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Lock()
		isFirst := first
		first = false
		served.Unlock()
		if !isFirst { // refetches hang, like an overloaded JWKS host
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = w.Write(ks.JWKS())
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	h := newHarness(t, testConfig(srv.URL))

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	tok := signWith(t, jwt.SigningMethodRS256, mustRSA(t), map[string]any{"kid": "rotated"},
		webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
	_, err := h.v.Verify(ctx, tok)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, webhook.ErrInvalidToken) {
		t.Fatalf("err = %v, want the context error and not ErrInvalidToken", err)
	}
}

func TestLogsCarryNoTokenOrClaims(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	const sessionID, eventID = "sess-secret-4711", "evt-secret-0815"
	toks := []string{
		ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event(sessionID, eventID))),
		ks.Sign(t, "RS256", webhooktest.Claims("https://wrong", testAudience, webhooktest.Event(sessionID, eventID))),
		signWith(t, jwt.SigningMethodRS256, mustRSA(t), map[string]any{"kid": "unknown"},
			webhooktest.Claims(testIssuer, testAudience, webhooktest.Event(sessionID, eventID))),
	}
	for _, tok := range toks {
		_, err := h.v.Verify(t.Context(), tok)
		if err != nil && strings.Contains(err.Error(), sessionID) {
			t.Errorf("error exposes claims: %v", err)
		}
	}
	h.v.Close()
	logs := h.logs.String()
	for _, secret := range append([]string{sessionID, eventID}, toks...) {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain token or claim contents %q:\n%s", secret, logs)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	ks := webhooktest.NewKeySet(b)
	cfg := testConfig(ks.Serve(b))
	v, err := webhook.NewVerifier(b.Context(), cfg, webhook.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			tok := ks.Sign(b, alg, webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("sess-1", "evt-1")))
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestJWKSRedirectFromHTTPSToHTTPRefused(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	plain := ks.Serve(t)
	tests := []struct {
		name      string
		target    string
		wantReady bool
	}{
		{name: "https to http", target: plain, wantReady: false},
		{name: "https to https", target: "/jwks.json", wantReady: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/jwks.json" {
					_, _ = w.Write(ks.JWKS())
					return
				}
				http.Redirect(w, r, tc.target, http.StatusFound)
			}))
			t.Cleanup(tlsSrv.Close)
			client := tlsSrv.Client()
			t.Cleanup(client.CloseIdleConnections)
			reg := prometheus.NewRegistry()
			v, err := webhook.NewVerifier(t.Context(), testConfig(tlsSrv.URL+"/start"), webhook.Deps{HTTPClient: client, Registry: reg, Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			if got := v.Ready(); got != tc.wantReady {
				t.Fatalf("Ready() = %v, want %v", got, tc.wantReady)
			}
		})
	}
}
