// Package webhooktest is test support for code that receives IDnow webhooks: it holds signing keys,
// serves their JWKS over httptest and signs webhook tokens shaped like IDnow's (reference §7).
//
// Keys are generated once per KeySet (and per Rotate), never per signature, so Sign is cheap
// enough for benchmarks. Nothing here is meant for production code.
package webhooktest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// rsaBits is the size of generated RSA keys: the smallest size the verifier accepts, which keeps
// key generation quick.
const rsaBits = 2048

// KeySet holds one RS256 and one ES256 signing key, each with its own kid, and publishes their
// public halves as a JWKS. It is safe for concurrent use; Rotate replaces both keys.
type KeySet struct {
	mu     sync.RWMutex
	rsaKey *rsa.PrivateKey
	rsaKID string
	ecKey  *ecdsa.PrivateKey
	ecKID  string
	jwks   []byte
	down   bool

	hits atomic.Int64
}

// NewKeySet generates a KeySet with one RS256 and one ES256 key.
func NewKeySet(t testing.TB) *KeySet {
	t.Helper()
	k := &KeySet{}
	k.Rotate(t)
	return k
}

// Rotate generates new keys with new kids and publishes only them: tokens signed before the
// rotation no longer verify once a verifier has refetched the JWKS.
func (k *KeySet) Rotate(t testing.TB) {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		t.Fatalf("webhooktest: generate RSA key: %v", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("webhooktest: generate EC key: %v", err)
	}
	rsaKID, ecKID := "rsa-"+randomHex(t, 8), "ec-"+randomHex(t, 8)
	jwks, err := buildJWKS(
		jwkEntry{key: &rsaKey.PublicKey, kid: rsaKID, alg: jwkset.AlgRS256},
		jwkEntry{key: &ecKey.PublicKey, kid: ecKID, alg: jwkset.AlgES256},
	)
	if err != nil {
		t.Fatalf("webhooktest: %v", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rsaKey, k.rsaKID, k.ecKey, k.ecKID, k.jwks = rsaKey, rsaKID, ecKey, ecKID, jwks
}

// JWKS returns the current public JWKS as JSON.
func (k *KeySet) JWKS() []byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return append([]byte(nil), k.jwks...)
}

// KID returns the kid of the current key for alg ("RS256" or "ES256"), or "" for any other alg.
func (k *KeySet) KID(alg string) string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	switch alg {
	case "RS256":
		return k.rsaKID
	case "ES256":
		return k.ecKID
	default:
		return ""
	}
}

// PublicKey returns the current public key for alg ("RS256" or "ES256"), or nil for any other
// alg. Tests use it to forge tokens, e.g. HS256 with the RSA public key as the HMAC secret.
func (k *KeySet) PublicKey(alg string) crypto.PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	switch alg {
	case "RS256":
		return &k.rsaKey.PublicKey
	case "ES256":
		return &k.ecKey.PublicKey
	default:
		return nil
	}
}

// Serve starts an httptest server on 127.0.0.1 that serves the current JWKS (rotations show
// immediately) and returns its URL. Every request is counted in Hits. The server is closed when
// the test ends.
func (k *KeySet) Serve(t testing.TB) (url string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits.Add(1)
		k.mu.RLock()
		down, body := k.down, k.jwks
		k.mu.RUnlock()
		if down {
			http.Error(w, "JWKS host unavailable (webhooktest)", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/oidc/.well-known/jwks.json"
}

// SetAvailable switches the servers started by Serve between serving the JWKS (true, the
// initial state) and answering 503 (false), to simulate a JWKS host outage.
func (k *KeySet) SetAvailable(up bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = !up
}

// Hits returns how many requests the servers started by Serve have received.
func (k *KeySet) Hits() int64 { return k.hits.Load() }

// Sign returns a compact JWT over claims, signed with the current key for alg ("RS256" or
// "ES256") and carrying that key's kid.
func (k *KeySet) Sign(t testing.TB, alg string, claims jwt.Claims) string {
	t.Helper()
	k.mu.RLock()
	var (
		method jwt.SigningMethod
		key    crypto.Signer
		kid    string
	)
	switch alg {
	case "RS256":
		method, key, kid = jwt.SigningMethodRS256, k.rsaKey, k.rsaKID
	case "ES256":
		method, key, kid = jwt.SigningMethodES256, k.ecKey, k.ecKID
	}
	k.mu.RUnlock()
	if method == nil {
		t.Fatalf("webhooktest: Sign: unsupported alg %q (use RS256 or ES256)", alg)
	}
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("webhooktest: sign %s token: %v", alg, err)
	}
	return s
}

// SignRaw returns a compact JWS over exactly the given header and claims bytes, signed with the
// current key for alg ("RS256" or "ES256"). Unlike Sign it re-encodes nothing, so tests can craft
// validly signed tokens that no JSON encoder would produce: duplicate member names, invalid UTF-8,
// a crit header, a string exp. The header must name the key itself, e.g.
// fmt.Sprintf(`{"alg":"RS256","kid":%q}`, ks.KID("RS256")).
func (k *KeySet) SignRaw(t testing.TB, alg string, header, claims []byte) string {
	t.Helper()
	k.mu.RLock()
	var (
		method jwt.SigningMethod
		key    crypto.Signer
	)
	switch alg {
	case "RS256":
		method, key = jwt.SigningMethodRS256, k.rsaKey
	case "ES256":
		method, key = jwt.SigningMethodES256, k.ecKey
	}
	k.mu.RUnlock()
	if method == nil {
		t.Fatalf("webhooktest: SignRaw: unsupported alg %q (use RS256 or ES256)", alg)
	}
	signingInput := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := method.Sign(signingInput, key)
	if err != nil {
		t.Fatalf("webhooktest: sign raw %s token: %v", alg, err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Event returns a realistic IDnow webhook event (reference §7) for a completed session: the value
// IDnow puts under the token's data claim.
func Event(sessionID, eventID string) map[string]any {
	return map[string]any{
		"eventId":        eventID,
		"eventVersion":   "1.0",
		"eventName":      "session.completed",
		"eventDeliverId": newUUID(),
		"eventSequence":  3,
		"createdAt":      time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"environment":    "live",
		"payload": map[string]any{
			"flowId":        "7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b4c3a",
			"sessionId":     sessionID,
			"sessionStatus": "COMPLETED",
		},
		"lastStepId":     "identity-check",
		"lastStepType":   "DocumentVerification",
		"lastStepStatus": "COMPLETED",
	}
}

// Claims returns webhook token claims: iss, aud, iat now, exp in five minutes, and data.
func Claims(iss, aud string, data any) jwt.MapClaims {
	now := time.Now()
	// Times are float64 seconds, the type jwt.MapClaims' getters expect (JSON numbers decode to it),
	// so the claims work both signed and inspected directly.
	return jwt.MapClaims{
		"iss":  iss,
		"aud":  aud,
		"iat":  float64(now.Unix()),
		"exp":  float64(now.Add(5 * time.Minute).Unix()),
		"data": data,
	}
}

type jwkEntry struct {
	key any
	kid string
	alg jwkset.ALG
}

// buildJWKS renders public keys as a JWKS document with kid, alg and use=sig on every entry, the
// way OIDC providers publish them.
func buildJWKS(entries ...jwkEntry) ([]byte, error) {
	ctx := context.Background()
	store := jwkset.NewMemoryStorage()
	for _, e := range entries {
		jwk, err := jwkset.NewJWKFromKey(e.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: e.kid, ALG: e.alg, USE: jwkset.UseSig},
		})
		if err != nil {
			return nil, fmt.Errorf("build JWK %s: %w", e.kid, err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, fmt.Errorf("store JWK %s: %w", e.kid, err)
		}
	}
	b, err := store.JSONPublic(ctx)
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	return b, nil
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("webhooktest: random bytes: %v", err)
	}
	return hex.EncodeToString(b)
}

// newUUID returns a random RFC 9562 version 4 UUID, the format IDnow uses for ids.
func newUUID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error on supported platforms (Go 1.24+ crashes instead).
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
