package webhook

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

const (
	// maxJWKSBytes caps the JWKS response body. A real JWKS holds a handful of keys (a few KiB);
	// the cap keeps a misbehaving or hijacked host from exhausting memory.
	maxJWKSBytes = 1 << 20
	// minRSABits rejects RSA keys too short to be trusted for signatures.
	minRSABits = 2048
	// Retry schedule after a failed JWKS fetch. The first retry comes quickly so that a JWKS host
	// that was briefly unreachable at start-up does not keep the receiver unready for long; the cap
	// keeps a long outage from producing more than two requests a minute.
	retryInitialInterval = 500 * time.Millisecond
	retryMaxInterval     = 30 * time.Second
)

// errNoUsableKeys rejects a JWKS that parsed but holds nothing we could verify with. Such a
// response is treated as a failed refresh (old keys stay) rather than as a revocation of all keys,
// because a misconfigured JWKS host must not take webhook intake down.
var errNoUsableKeys = errors.New("JWKS holds no usable RSA or EC signing key")

// refreshCall is one JWKS fetch that any number of callers can wait for.
type refreshCall struct {
	done chan struct{}
	err  error
}

// keyCache is the jwkset.Storage behind the verifier's keyfunc. It keeps the JWKS in a
// jwkset.MemoryJWKSet and adds what the stock HTTP storage lacks for a webhook receiver: a
// non-blocking, rate-limited refetch on unknown kids that coalesces concurrent callers, retries
// with backoff while the JWKS host is down, and goroutines that Close waits for.
type keyCache struct {
	*jwkset.MemoryJWKSet

	url        string
	client     *http.Client
	timeout    time.Duration
	algorithms []string
	limiter    *rate.Limiter
	metrics    *metrics
	log        *slog.Logger

	// ctx ends with the verifier; every fetch and the refresh loop run under it.
	ctx context.Context
	wg  sync.WaitGroup

	mu       sync.Mutex
	inflight *refreshCall
	closed   bool
	kids     []string // kids of the current set, for change logging; guarded by mu

	count atomic.Int64
	// lastErr is the error of the latest finished fetch, nil after a success (as *fetchErr, since
	// atomic.Pointer needs one concrete type). While it is set, an unknown kid cannot be told from a
	// freshly rotated key that the JWKS would show.
	lastErr atomic.Pointer[fetchErr]
}

// fetchErr boxes the error of a failed JWKS fetch for keyCache.lastErr.
type fetchErr struct{ err error }

// KeyRead returns the key with the given kid. On a miss it joins a refresh already under way or,
// if the rate limiter allows, starts one, and looks again. It never queues behind the limiter:
// a token whose kid is still unknown is answered at once, so a flood of bogus kids costs neither
// JWKS requests nor request latency.
//
// A kid still unknown is jwkset.ErrKeyNotFound (the sender's fault, 401) only when the JWKS was
// read successfully by the latest fetch: it then really does not hold the key. When that fetch
// failed, or no keys were ever loaded, the answer is ErrKeysUnavailable (503, IDnow retries): the
// kid may belong to a key IDnow has just rotated in, and refusing it for good would lose the
// webhook.
func (c *keyCache) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := c.MemoryJWKSet.KeyRead(ctx, kid)
	if err == nil || !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	if call := c.startRefresh(true); call != nil {
		select {
		case <-call.done:
		case <-ctx.Done():
			return jwkset.JWK{}, fmt.Errorf("wait for JWKS refetch: %w", ctx.Err())
		}
		if jwk, err = c.MemoryJWKSet.KeyRead(ctx, kid); err == nil {
			return jwk, nil
		}
	}
	if c.count.Load() == 0 {
		return jwkset.JWK{}, fmt.Errorf("%w: no keys loaded from the JWKS yet", ErrKeysUnavailable)
	}
	if last := c.lastErr.Load(); last != nil {
		return jwkset.JWK{}, fmt.Errorf("%w: kid %q is not among the loaded keys and the JWKS cannot be fetched to look for it: %w",
			ErrKeysUnavailable, kid, last.err)
	}
	return jwkset.JWK{}, fmt.Errorf("%w: kid %q", jwkset.ErrKeyNotFound, kid)
}

// startRefresh returns the fetch under way or starts a new one. With limited set (a refetch
// triggered by an unknown kid) a new fetch only starts when the limiter has a token; nil means no
// fetch was started, either for that reason or because the cache is closed.
func (c *keyCache) startRefresh(limited bool) *refreshCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight != nil {
		return c.inflight
	}
	if c.closed {
		return nil
	}
	if limited && !c.limiter.Allow() {
		c.metrics.refetchLimited.Inc()
		return nil
	}
	call := &refreshCall{done: make(chan struct{})}
	c.inflight = call
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		call.err = c.refresh(c.ctx)
		c.mu.Lock()
		c.inflight = nil
		c.mu.Unlock()
		close(call.done)
	}()
	return call
}

// run refreshes the JWKS every refreshEvery and, after a failure, retries with capped exponential
// backoff. loaded tells whether the initial fetch succeeded.
func (c *keyCache) run(refreshEvery time.Duration, loaded bool) {
	defer c.wg.Done()
	b := retry.Config{InitialBackoff: retryInitialInterval, MaxBackoff: min(retryMaxInterval, refreshEvery), Multiplier: 2, Jitter: 0.2}.NewBackOff()
	wait := refreshEvery
	if !loaded {
		wait = b.NextBackOff()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		call := c.startRefresh(false)
		if call == nil {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-call.done:
		}
		if call.err != nil {
			wait = b.NextBackOff()
		} else {
			b.Reset()
			wait = refreshEvery
		}
		timer.Reset(wait)
	}
}

// close stops new fetches and waits for the refresh loop and any fetch in flight. The caller
// cancels c.ctx first so that both return promptly.
func (c *keyCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

// refresh fetches the JWKS once and, on success, replaces the key set. On failure the previous
// keys stay in place: a JWKS outage must not reject webhooks signed with keys we already trust.
func (c *keyCache) refresh(ctx context.Context) error {
	keys, err := c.fetch(ctx)
	if err != nil {
		if ctx.Err() == nil {
			// A fetch cut short by Close says nothing about the JWKS host.
			c.lastErr.Store(&fetchErr{err: err})
		}
		c.metrics.refreshes.WithLabelValues("error").Inc()
		c.log.Warn("webhook JWKS refresh failed; keeping the previous keys",
			"jwks_url", c.url, "keys_loaded", c.count.Load(), "err", err)
		return err
	}
	if err := c.KeyReplaceAll(ctx, keys); err != nil {
		c.metrics.refreshes.WithLabelValues("error").Inc()
		return fmt.Errorf("store JWKS keys: %w", err)
	}
	c.lastErr.Store(nil)
	kids := make([]string, len(keys))
	for i, k := range keys {
		kids[i] = k.Marshal().KID
	}
	slices.Sort(kids)
	c.mu.Lock()
	changed := !slices.Equal(kids, c.kids)
	c.kids = kids
	c.mu.Unlock()
	c.count.Store(int64(len(keys)))
	c.metrics.refreshes.WithLabelValues("ok").Inc()
	c.metrics.keys.Set(float64(len(keys)))
	c.metrics.lastSuccess.SetToCurrentTime()
	if changed {
		// Key ids are public (they are in every token header and in the JWKS itself).
		c.log.Info("webhook JWKS loaded", "jwks_url", c.url, "keys", len(keys), "kids", strings.Join(kids, ","))
	}
	return nil
}

// fetch downloads and parses the JWKS, keeping only keys usable for the configured algorithms.
func (c *keyCache) fetch(ctx context.Context) ([]jwkset.JWK, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("build JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if req.URL.Scheme == "https" && resp.Request != nil && resp.Request.URL.Scheme != "https" {
		// A redirect from https to plain http would let anyone on the path substitute keys.
		return nil, fmt.Errorf("fetch JWKS: refusing redirect from https to %s", resp.Request.URL.Scheme)
	}
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused; the body of an error page is not needed.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("fetch JWKS: unexpected HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read JWKS body: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("read JWKS body: larger than %d bytes", maxJWKSBytes)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	keys := c.usableKeys(set)
	if len(keys) == 0 {
		return nil, fmt.Errorf("decode JWKS with %d entries: %w", len(set.Keys), errNoUsableKeys)
	}
	return keys, nil
}

// usableKeys converts the JWKS entries into keys, skipping (with a log line) every entry that
// could never verify an accepted webhook: other key types, encryption keys, keys without kid,
// keys pinned to an algorithm we do not accept, weak RSA keys and duplicates. One bad entry does
// not invalidate the others, so IDnow adding a key type we do not know cannot break intake.
func (c *keyCache) usableKeys(set jwkset.JWKSMarshal) []jwkset.JWK {
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	seen := make(map[string]bool, len(set.Keys))
	for _, m := range set.Keys {
		skip := func(why string, args ...any) {
			c.log.Debug("webhook JWKS entry skipped", append([]any{"kid", m.KID, "kty", string(m.KTY), "reason", why}, args...)...)
		}
		switch {
		case m.KTY != jwkset.KtyRSA && m.KTY != jwkset.KtyEC:
			skip("key type is not RSA or EC")
			continue
		case m.KID == "":
			skip("no kid: tokens select keys by kid")
			continue
		case m.USE != "" && m.USE != jwkset.UseSig:
			skip("use is not sig")
			continue
		case m.ALG != "" && !slices.Contains(c.algorithms, string(m.ALG)):
			skip("alg not in webhook.algorithms", "alg", string(m.ALG))
			continue
		case m.ALG != "" && !algFitsKeyType(string(m.ALG), m.KTY):
			skip("alg does not fit the key type", "alg", string(m.ALG))
			continue
		case seen[m.KID]:
			c.log.Warn("webhook JWKS has a duplicate kid; using the first entry", "kid", m.KID)
			continue
		}
		// Private material, should a JWKS ever carry it, is deliberately not parsed.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			c.log.Warn("webhook JWKS entry is invalid; skipped", "kid", m.KID, "err", err)
			continue
		}
		if pub, ok := jwk.Key().(*rsa.PublicKey); ok && pub.N.BitLen() < minRSABits {
			c.log.Warn("webhook JWKS RSA key too short; skipped", "kid", m.KID, "bits", pub.N.BitLen(), "min_bits", minRSABits)
			continue
		}
		seen[m.KID] = true
		keys = append(keys, jwk)
	}
	return keys
}

// algFitsKeyType reports whether a JWS algorithm can be used with a key type: RS*/PS* need RSA
// keys, ES* need EC keys.
func algFitsKeyType(alg string, kty jwkset.KTY) bool {
	switch {
	case strings.HasPrefix(alg, "RS"), strings.HasPrefix(alg, "PS"):
		return kty == jwkset.KtyRSA
	case strings.HasPrefix(alg, "ES"):
		return kty == jwkset.KtyEC
	default:
		return false
	}
}
