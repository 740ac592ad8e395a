package webhook_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// TestVerifyRejectsAmbiguousTokens covers issue 9 problem 6 on the verifier side. Every token here
// is signed with a published key, so only the strictness of the verifier can refuse it: before,
// each of the rejected ones verified (the duplicate data claim produced the second event, string
// and missing times passed, a crit header was ignored, invalid UTF-8 became U+FFFD).
func TestVerifyRejectsAmbiguousTokens(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	now := time.Now().Unix()
	hdr := func(alg string, extra string) []byte {
		return fmt.Appendf(nil, `{"alg":%q,"kid":%q,"typ":"JWT"%s}`, alg, ks.KID(alg), extra)
	}
	// claimsWithout renders the claims object with the given members placed after iss and aud;
	// iat, exp and data default to a valid delivery unless the members set them or they are
	// listed in omit.
	claimsWithout := func(omit, members string) []byte {
		for _, d := range []struct{ name, member string }{
			{"iat", fmt.Sprintf(`,"iat":%d`, now)},
			{"exp", fmt.Sprintf(`,"exp":%d`, now+300)},
			{"data", `,"data":{"eventId":"evt-1","eventName":"session.completed","payload":{"sessionId":"sess-1"}}`},
		} {
			if !strings.Contains(members, `"`+d.name+`"`) && omit != d.name {
				members += d.member
			}
		}
		return fmt.Appendf(nil, `{"iss":%q,"aud":%q%s}`, testIssuer, testAudience, members)
	}
	claims := func(members string) []byte { return claimsWithout("", members) }
	event := `{"eventId":"evt-1","payload":{"sessionId":"sess-1","id":"x"},"id":"y"}`

	tests := []struct {
		name   string
		alg    string
		header []byte
		claims []byte
		reason string // "" means the token must verify
		inErr  string // substring of the error message
	}{
		{name: "well-formed raw token", header: hdr("RS256", ""), claims: claims("")},
		{name: "same name in different objects is fine", header: hdr("ES256", ""), claims: claims(`,"data":` + event)},
		{name: "escaped but valid UTF-8 and surrogate pair", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-1","note":"caf\u00e9 \ud83d\ude00 ü","payload":{"sessionId":"sess-1"}}`)},

		{name: "crit header", header: hdr("RS256", `,"crit":["exp"],"exp":1`), claims: claims(""),
			reason: webhook.ReasonCritHeader, inErr: "RFC 7515"},
		{name: "empty crit header", header: hdr("ES256", `,"crit":[]`), claims: claims(""),
			reason: webhook.ReasonCritHeader},
		{name: "crit header with b64 false", header: hdr("RS256", `,"b64":false,"crit":["b64"]`), claims: claims(""),
			reason: webhook.ReasonCritHeader},

		{name: "exp as a string", header: hdr("RS256", ""), claims: claims(fmt.Sprintf(`,"exp":"%d"`, now+300)),
			reason: webhook.ReasonClaimNotNumeric, inErr: "exp claim is a string"},
		{name: "iat as a string", header: hdr("RS256", ""), claims: claims(fmt.Sprintf(`,"iat":"%d"`, now)),
			reason: webhook.ReasonClaimNotNumeric, inErr: "iat claim is a string"},
		{name: "iat null", header: hdr("RS256", ""), claims: claims(`,"iat":null`),
			reason: webhook.ReasonClaimNotNumeric, inErr: "iat claim is null"},
		{name: "nbf as a string", header: hdr("RS256", ""), claims: claims(fmt.Sprintf(`,"nbf":"%d"`, now)),
			reason: webhook.ReasonClaimNotNumeric, inErr: "nbf claim"},
		{name: "missing iat", header: hdr("RS256", ""), claims: claimsWithout("iat", ""),
			reason: webhook.ReasonMissingClaim, inErr: "no iat claim"},

		{name: "exp in year 9999, recent iat", header: hdr("RS256", ""), claims: claims(`,"exp":253402300799`)},
		{name: "exp in year 9999, iat within max age", header: hdr("RS256", ""),
			claims: claims(fmt.Sprintf(`,"exp":253402300799,"iat":%d`, now-int64((23*time.Hour).Seconds())))},
		{name: "exp in year 9999, iat beyond max age", header: hdr("RS256", ""),
			claims: claims(fmt.Sprintf(`,"exp":253402300799,"iat":%d`, now-int64((24*time.Hour+2*time.Minute).Seconds()))),
			reason: webhook.ReasonTooOld, inErr: "webhook.max_token_age"},
		{name: "iat in the year 1", header: hdr("RS256", ""),
			claims: claims(`,"exp":253402300799,"iat":-62135596800`), reason: webhook.ReasonTooOld},
		{name: "iat far in the future", header: hdr("RS256", ""),
			claims: claims(`,"exp":253402300799,"iat":253402300000`), reason: webhook.ReasonNotYetValid},

		{name: "two data claims", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-1","payload":{"sessionId":"sess-1"}},"data":{"eventId":"evt-2","payload":{"sessionId":"sess-2"}}`),
			reason: webhook.ReasonDuplicateKey, inErr: `"data" appears more than once`},
		{name: "two data claims, one escaped", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-1","payload":{"sessionId":"sess-1"}},"d\u0061ta":{"eventId":"evt-2"}`),
			reason: webhook.ReasonDuplicateKey},
		{name: "data and Data (encoding/json folds case, other readers do not)", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-1","payload":{"sessionId":"sess-1"}},"Data":{"eventId":"evt-2","payload":{"sessionId":"sess-2"}}`),
			reason: webhook.ReasonDuplicateKey, inErr: `"Data" appears more than once`},
		{name: "exp and EXP", header: hdr("RS256", ""), claims: claims(fmt.Sprintf(`,"EXP":%d`, now+1e9)),
			reason: webhook.ReasonDuplicateKey},
		{name: "duplicate exp", header: hdr("ES256", ""), claims: claims(fmt.Sprintf(`,"exp":%d,"exp":%d`, now+300, now+600)),
			reason: webhook.ReasonDuplicateKey},
		{name: "duplicate kid in header", header: fmt.Appendf(nil, `{"alg":"RS256","kid":"other","kid":%q}`, ks.KID("RS256")),
			claims: claims(""), reason: webhook.ReasonDuplicateKey, inErr: `"kid"`},
		{name: "duplicate alg in header", header: fmt.Appendf(nil, `{"alg":"HS256","kid":%q,"alg":"RS256"}`, ks.KID("RS256")),
			claims: claims(""), reason: webhook.ReasonDuplicateKey, inErr: `"alg"`},
		{name: "duplicate sessionId deep in data", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-1","payload":{"sessionId":"sess-1","nested":[{"a":{"sessionId":"x","sessionId":"y"}}]}}`),
			reason: webhook.ReasonDuplicateKey, inErr: `"sessionId"`},
		{name: "duplicate among many members", header: hdr("RS256", ""),
			claims: claims(`,"data":{` + manyMembers(40) + `,"m7":0}`), reason: webhook.ReasonDuplicateKey, inErr: `"m7"`},

		{name: "invalid UTF-8 in eventId", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-` + "\xff\xfe" + `","payload":{"sessionId":"sess-1"}}`),
			reason: webhook.ReasonInvalidUTF8},
		{name: "escaped lone surrogate in eventId", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"evt-\ud800","payload":{"sessionId":"sess-1"}}`),
			reason: webhook.ReasonInvalidUTF8, inErr: "surrogate"},
		{name: "invalid UTF-8 in the header", header: hdr("RS256", `,"x":"`+"\xc3\x28"+`"`), claims: claims(""),
			reason: webhook.ReasonInvalidUTF8, inErr: "JOSE header"},
		{name: "overlong UTF-8 encoding", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"` + "\xc0\xaf" + `","payload":{"sessionId":"sess-1"}}`),
			reason: webhook.ReasonInvalidUTF8},

		{name: "data after the claims object", header: hdr("RS256", ""), claims: append(claims(""), ` {"data":{}}`...),
			reason: webhook.ReasonMalformed, inErr: "data after the JSON object"},
		{name: "claims not an object", header: hdr("RS256", ""), claims: []byte(`["data"]`),
			reason: webhook.ReasonMalformed},
		{name: "trailing comma", header: hdr("RS256", ""), claims: []byte(`{"iss":"x",}`), reason: webhook.ReasonMalformed},
		{name: "deeply nested data", header: hdr("RS256", ""),
			claims: claims(`,"data":{"eventId":"e","x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`),
			reason: webhook.ReasonMalformed, inErr: "nested deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			alg := "RS256"
			var hm map[string]any
			if json.Unmarshal(tc.header, &hm) == nil && hm["alg"] == "ES256" {
				alg = "ES256"
			}
			tok := ks.SignRaw(t, alg, tc.header, tc.claims)
			claims, err := h.v.Verify(t.Context(), tok)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Verify: unexpected error %v", err)
				}
				if claims == nil || len(claims.Data) == 0 {
					t.Fatal("no claims returned")
				}
				return
			}
			var ve *webhook.VerificationError
			if !errors.As(err, &ve) || !errors.Is(err, webhook.ErrInvalidToken) {
				t.Fatalf("Verify error %v is not a *VerificationError", err)
			}
			if ve.Reason != tc.reason {
				t.Fatalf("reason = %q (%v), want %q", ve.Reason, err, tc.reason)
			}
			if tc.inErr != "" && !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("error %q does not say %q", err, tc.inErr)
			}
			if claims != nil {
				t.Fatal("claims returned for a rejected token")
			}
		})
	}
	for code, want := range map[string]float64{
		"duplicate_key": 9, "invalid_utf8": 4, "crit_header": 3, "claim_not_numeric": 4, "too_old": 2,
	} {
		if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": code}); got != want {
			t.Errorf("verifications_total{result=%q} = %v, want %v", code, got, want)
		}
	}
}

func manyMembers(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"m%d":%d`, i, i)
	}
	return strings.Join(parts, ",")
}

// TestMaxTokenAgeIsConfigurable checks that webhook.max_token_age, not a constant, bounds iat.
func TestMaxTokenAgeIsConfigurable(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	cfg := testConfig(ks.Serve(t))
	cfg.MaxTokenAge = time.Minute
	cfg.ClockSkew = 10 * time.Second
	h := newHarness(t, cfg)
	tests := []struct {
		name   string
		age    time.Duration
		reason string
	}{
		{name: "within max age", age: 30 * time.Second},
		{name: "within max age plus skew", age: 65 * time.Second},
		{name: "beyond max age plus skew", age: 2 * time.Minute, reason: webhook.ReasonTooOld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := ks.Sign(t, "ES256", claimsWith(func(c jwt.MapClaims) {
				c["iat"] = time.Now().Add(-tc.age).Unix()
				c["exp"] = time.Now().Add(time.Hour).Unix()
			}))
			_, err := h.v.Verify(t.Context(), tok)
			var ve *webhook.VerificationError
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.reason != "" && (!errors.As(err, &ve) || ve.Reason != tc.reason):
				t.Fatalf("err = %v, want reason %q", err, tc.reason)
			}
		})
	}
}

// TestUnknownKidWhileJWKSDown covers the key-rotation half of issue 9 problem 6: IDnow rotates its
// keys; with the JWKS reachable the new key is fetched and used, with the JWKS down a token
// signed by the newer key is ErrKeysUnavailable (503, retried by IDnow) instead of a 401 that
// loses the webhook, and once the JWKS is back the retried token verifies.
func TestUnknownKidWhileJWKSDown(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	cfg := testConfig(ks.Serve(t))
	cfg.JWKSRefetchMinInterval = 200 * time.Millisecond
	h := newHarness(t, cfg)
	sign := func() string {
		return ks.Sign(t, "RS256", webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
	}

	// Rotation with the JWKS reachable: the unknown kid triggers a refetch that finds it.
	ks.Rotate(t)
	if _, err := h.v.Verify(t.Context(), sign()); err != nil {
		t.Fatalf("new key with the JWKS reachable: %v", err)
	}

	// Another rotation while the JWKS host is down, later than the refetch interval (rotations are
	// rare; within the interval the successful fetch before still speaks for the JWKS).
	ks.Rotate(t)
	ks.SetAvailable(false)
	time.Sleep(cfg.JWKSRefetchMinInterval + 50*time.Millisecond)
	tok := sign()
	for attempt := range 3 { // the first attempt refetches, the next ones are rate-limited
		_, err := h.v.Verify(t.Context(), tok)
		if !errors.Is(err, webhook.ErrKeysUnavailable) || errors.Is(err, webhook.ErrInvalidToken) {
			t.Fatalf("attempt %d with the JWKS down: err = %v, want ErrKeysUnavailable and not ErrInvalidToken", attempt, err)
		}
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("error %q does not carry the JWKS fetch failure", err)
		}
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": "keys_unavailable"}); got != 3 {
		t.Errorf("verifications keys_unavailable = %v, want 3", got)
	}
	if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": "unknown_kid"}); got != 0 {
		t.Errorf("verifications unknown_kid = %v, want 0", got)
	}

	// JWKS back: IDnow's retry gets through once the refetch interval allows a new fetch.
	ks.SetAvailable(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.v.Verify(t.Context(), tok)
		if err == nil {
			break
		}
		if !errors.Is(err, webhook.ErrKeysUnavailable) {
			t.Fatalf("retry with the JWKS back: err = %v, want success or ErrKeysUnavailable", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("token with the new key never verified after the JWKS came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// With the JWKS reachable again, a kid it does not hold is the sender's fault.
	bogus := signWith(t, jwt.SigningMethodRS256, mustRSA(t), map[string]any{"kid": "never-published"},
		webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s", "e")))
	time.Sleep(cfg.JWKSRefetchMinInterval) // let the refetch for this kid happen and succeed
	_, err := h.v.Verify(t.Context(), bogus)
	var ve *webhook.VerificationError
	if !errors.As(err, &ve) || ve.Reason != webhook.ReasonUnknownKey || errors.Is(err, webhook.ErrKeysUnavailable) {
		t.Fatalf("unknown kid with the JWKS reachable: err = %v, want %q", err, webhook.ReasonUnknownKey)
	}
}

// TestVerificationSeriesPreCreated checks that every result label, including the rejection
// reasons added for strict tokens, exists at 0 before the first webhook, so alerts and rate()
// see the first occurrence.
func TestVerificationSeriesPreCreated(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	h := newHarness(t, testConfig(ks.Serve(t)))
	for _, code := range []string{
		"ok", "malformed", "missing_kid", "unknown_kid", "key_mismatch", "bad_signature", "alg_not_allowed",
		"expired", "not_yet_valid", "wrong_issuer", "wrong_audience", "missing_claim", "claim_not_numeric",
		"too_old", "crit_header", "duplicate_key", "invalid_utf8", "missing_data", "invalid_data",
		"static_header", "keys_unavailable", "canceled", "other",
	} {
		if got := metricValue(t, h.reg, "idnow_connector_webhook_verifications_total", map[string]string{"result": code}); got != 0 {
			t.Errorf("verifications_total{result=%q} = %v at start, want 0", code, got)
		}
	}
}
