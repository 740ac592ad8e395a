package idnowsim

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// rsaKeyBits is the signing key size; 2048 is what OIDC providers commonly publish.
const rsaKeyBits = 2048

type signingKey struct {
	kid       string
	key       *rsa.PrivateKey
	retiredAt time.Time // zero while the key is the active one
}

// keyRing holds the active webhook signing key and the rotated-out keys still inside their grace
// period. The JWKS is served from a jwkset storage kept in step with the ring.
type keyRing struct {
	grace time.Duration

	mu     sync.Mutex
	active *signingKey
	old    []*signingKey
	store  *jwkset.MemoryJWKSet
}

func newKeyRing(grace time.Duration) (*keyRing, error) {
	kr := &keyRing{grace: grace, store: jwkset.NewMemoryStorage()}
	if err := kr.rotate(time.Now()); err != nil {
		return nil, err
	}
	return kr, nil
}

// rotate makes a fresh key active and retires the current one; retired keys stay published
// until their grace period ends so receivers can still verify webhooks already in flight.
func (kr *keyRing) rotate(now time.Time) error {
	key, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return fmt.Errorf("generate RSA signing key: %w", err)
	}
	var kidBytes [8]byte
	if _, err := rand.Read(kidBytes[:]); err != nil {
		return fmt.Errorf("generate key id: %w", err)
	}
	sk := &signingKey{kid: "sim-" + hex.EncodeToString(kidBytes[:]), key: key}
	jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.AlgRS256, KID: sk.kid, USE: jwkset.UseSig},
	})
	if err != nil {
		return fmt.Errorf("build JWK for key %s: %w", sk.kid, err)
	}

	kr.mu.Lock()
	defer kr.mu.Unlock()
	if err := kr.store.KeyWrite(context.Background(), jwk); err != nil {
		return fmt.Errorf("store JWK %s: %w", sk.kid, err)
	}
	if kr.active != nil {
		kr.active.retiredAt = now
		kr.old = append(kr.old, kr.active)
	}
	kr.active = sk
	kr.pruneLocked(now)
	return nil
}

// pruneLocked drops retired keys whose grace period is over.
func (kr *keyRing) pruneLocked(now time.Time) {
	kept := kr.old[:0]
	for _, k := range kr.old {
		if now.Sub(k.retiredAt) < kr.grace {
			kept = append(kept, k)
			continue
		}
		// A failed delete from in-memory storage only leaves a stale public key published.
		_, _ = kr.store.KeyDelete(context.Background(), k.kid)
	}
	kr.old = kept
}

// jwksJSON returns the public JWK Set as of now.
func (kr *keyRing) jwksJSON(ctx context.Context, now time.Time) (json.RawMessage, error) {
	kr.mu.Lock()
	kr.pruneLocked(now)
	kr.mu.Unlock()
	raw, err := kr.store.JSONPublic(ctx)
	if err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	return raw, nil
}

// kids returns the key ids currently published, active first.
func (kr *keyRing) kids() []string {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	out := []string{kr.active.kid}
	for i := len(kr.old) - 1; i >= 0; i-- {
		out = append(out, kr.old[i].kid)
	}
	return out
}

// sign signs claims with the active key as an RS256 JWT carrying its kid.
func (kr *keyRing) sign(claims jwt.Claims) (string, error) {
	kr.mu.Lock()
	k := kr.active
	kr.mu.Unlock()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("sign webhook JWT with key %s: %w", k.kid, err)
	}
	return s, nil
}
