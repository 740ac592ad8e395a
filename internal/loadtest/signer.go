package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Issuer and Audience are the iss and aud claims of the benchmark's webhook tokens; the targets
// are configured to expect them.
const (
	Issuer   = "http://127.0.0.1/idnow-bench/oidc"
	Audience = "http://127.0.0.1/idnow-bench/webhooks/idnow"
)

// Signer signs webhook tokens with one RS256 key, as IDnow does, and serves the public key as a
// JWKS on 127.0.0.1 so the targets verify them exactly as they would verify IDnow's.
type Signer struct {
	key  *rsa.PrivateKey
	kid  string
	jwks []byte
	srv  *http.Server
	url  string
	done chan struct{}
}

// NewSigner generates a 2048-bit RSA key (IDnow's key size) and starts the JWKS server.
func NewSigner() (*Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate RSA signing key: %w", err)
	}
	kidBytes := make([]byte, 8)
	if _, err := rand.Read(kidBytes); err != nil {
		return nil, fmt.Errorf("generate kid: %w", err)
	}
	s := &Signer{key: key, kid: "bench-" + hex.EncodeToString(kidBytes), done: make(chan struct{})}
	ctx := context.Background()
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: s.kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig},
	})
	if err != nil {
		return nil, fmt.Errorf("build JWK: %w", err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(ctx, jwk); err != nil {
		return nil, fmt.Errorf("store JWK: %w", err)
	}
	if s.jwks, err = store.JSONPublic(ctx); err != nil {
		return nil, fmt.Errorf("marshal JWKS: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the JWKS server: %w", err)
	}
	s.url = "http://" + ln.Addr().String() + "/oidc/.well-known/jwks.json"
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(s.jwks)
	})}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(fmt.Sprintf("loadtest: JWKS server: %v", err))
		}
	}()
	return s, nil
}

// JWKSURL is the URL the targets load the public key from.
func (s *Signer) JWKSURL() string { return s.url }

// Close stops the JWKS server.
func (s *Signer) Close() {
	_ = s.srv.Close()
	<-s.done
}

// Sign returns a webhook token (reference §7) for one event of one session, valid for ttl.
func (s *Signer) Sign(sessionID, eventID string, sequence int, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": Issuer, "aud": Audience,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		"data": map[string]any{
			"eventId":        eventID,
			"eventVersion":   "1.0",
			"eventName":      "session.completed",
			"eventDeliverId": eventID + "-d1",
			"eventSequence":  sequence,
			"createdAt":      now.UTC().Format("2006-01-02T15:04:05.000Z"),
			"environment":    "live",
			"payload": map[string]any{
				"flowId":        "7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b4c3a",
				"sessionId":     sessionID,
				"sessionStatus": "COMPLETED",
			},
			"lastStepId":     "identity-check",
			"lastStepType":   "DocumentVerification",
			"lastStepStatus": "COMPLETED",
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("sign webhook token: %w", err)
	}
	return out, nil
}

// SignMany signs n distinct tokens (event ids prefix-0 … prefix-(n-1), sessions shared by every
// four events, as a session emits several events) on every core. Signing happens before any
// timed window: RSA signing costs far more than verifying and must not be measured.
func (s *Signer) SignMany(prefix string, n int, ttl time.Duration) ([]string, error) {
	out := make([]string, n)
	workers := runtime.GOMAXPROCS(0)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				tok, err := s.Sign(fmt.Sprintf("%s-s%d", prefix, i/4), fmt.Sprintf("%s-e%d", prefix, i), i%4+1, ttl)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				out[i] = tok
			}
		}()
	}
	wg.Wait()
	return out, firstErr
}
