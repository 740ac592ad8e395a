package idnow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sessionHandler(w http.ResponseWriter, r *http.Request) {
	writeRaw(w, http.StatusOK, `{"sessionId":"`+r.PathValue("id")+`","sessionStatus":"RUNNING"}`)
}

func TestTokenAuthStyles(t *testing.T) {
	for _, style := range []string{AuthStyleBasic, AuthStylePost} {
		t.Run(style, func(t *testing.T) {
			f := newFake(t)
			f.authStyle = style
			f.handle("GET /live/sessions/{id}", sessionHandler)
			c, _ := newTestClient(t, f, nil)
			if _, err := c.GetSession(t.Context(), "s1"); err != nil {
				t.Fatalf("GetSession with %s credentials: %v", style, err)
			}
		})
	}
	t.Run("mismatched style is a clear permanent error", func(t *testing.T) {
		f := newFake(t)
		f.authStyle = AuthStylePost
		f.handle("GET /live/sessions/{id}", sessionHandler)
		c, _ := newTestClient(t, f, func(c *Config) { c.AuthStyle = AuthStyleBasic })
		_, err := c.GetSession(t.Context(), "s1")
		if !IsPermanent(err) || !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "idnow.client_id") {
			t.Fatalf("err = %v, want permanent ErrUnauthorized naming the credential keys", err)
		}
		if strings.Contains(err.Error(), testClientSecret) {
			t.Fatalf("error leaks the secret: %v", err)
		}
		if n := f.tokenHits.Load(); n != 1 {
			t.Fatalf("token endpoint hit %d times, want 1 (bad credentials are not retried)", n)
		}
	})
}

func TestTokenDiscovery(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", sessionHandler)
	c, _ := newTestClient(t, f, func(c *Config) { c.TokenURL = ""; c.AuthURL = f.srv.URL + "/oidc/" })
	if got, want := c.TokenURL(), f.srv.URL+"/oidc/token"; got != want {
		t.Fatalf("TokenURL() = %q, want %q", got, want)
	}
	if _, err := c.GetSession(t.Context(), "s1"); err != nil {
		t.Fatalf("GetSession: %v", err)
	}

	cfg := f.config()
	cfg.TokenURL = ""
	cfg.AuthURL = f.srv.URL + "/nothing-here"
	if _, err := New(t.Context(), cfg, Deps{}); err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "idnow.auth_url") {
		t.Fatalf("New with a wrong auth_url = %v, want a permanent error naming idnow.auth_url", err)
	}
}

func TestTokenCachedAndRefreshedBeforeExpiry(t *testing.T) {
	f := newFake(t)
	f.tokenLifetime.Store(600)
	f.handle("GET /live/sessions/{id}", sessionHandler)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c, _ := newTestClient(t, f, func(c *Config) { c.TokenEarlyRefresh = time.Minute }, Deps{Clock: clock})
	ctx := t.Context()
	for range 5 {
		if _, err := c.GetSession(ctx, "s1"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("token fetched %d times for 5 calls, want 1", n)
	}
	// 8 minutes later the token still has 2 minutes: cached.
	now.Add(int64(8 * time.Minute))
	if _, err := c.GetSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("token refetched with 2m left (early refresh 1m): %d fetches", n)
	}
	// 9.5 minutes in, inside the early-refresh window: refreshed before it expires.
	now.Add(int64(90 * time.Second))
	if _, err := c.GetSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if n := f.tokenHits.Load(); n != 2 {
		t.Fatalf("token fetched %d times, want 2 after entering the early-refresh window", n)
	}
	f.mu.Lock()
	last := f.authSeq[len(f.authSeq)-1]
	f.mu.Unlock()
	if last != "Bearer tok-2" {
		t.Fatalf("last call used %q, want the refreshed token", last)
	}
}

func TestShortLivedTokenUsedForHalfItsLife(t *testing.T) {
	f := newFake(t)
	f.tokenLifetime.Store(10) // 10s, shorter than twice the 1m early refresh
	f.handle("GET /live/sessions/{id}", sessionHandler)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	c, _ := newTestClient(t, f, nil, Deps{Clock: func() time.Time { return time.Unix(0, now.Load()) }})
	for range 3 {
		if _, err := c.GetSession(t.Context(), "s1"); err != nil {
			t.Fatal(err)
		}
		now.Add(int64(time.Second))
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("10s token fetched %d times within 3s, want 1", n)
	}
}

func TestTokenRefreshAfter401(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", sessionHandler)
	c, reg := newTestClient(t, f, nil)
	ctx := t.Context()
	if _, err := c.GetSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	f.revokeAll() // IDnow rotated keys: the cached, unexpired token is now rejected
	if _, err := c.GetSession(ctx, "s1"); err != nil {
		t.Fatalf("GetSession after revocation: %v", err)
	}
	if n := f.tokenHits.Load(); n != 2 {
		t.Fatalf("token fetched %d times, want 2", n)
	}
	f.mu.Lock()
	seq := append([]string(nil), f.authSeq...)
	f.mu.Unlock()
	if want := []string{"Bearer tok-1", "Bearer tok-1", "Bearer tok-2"}; strings.Join(seq, ",") != strings.Join(want, ",") {
		t.Fatalf("Authorization sequence %v, want %v", seq, want)
	}
	if got := metricValue(t, c.m.tokenRefreshes.WithLabelValues("success")); got != 2 {
		t.Fatalf("token refreshes = %v, want 2", got)
	}
	if n := seriesCount(t, reg, "idnow_connector_idnow_token_refreshes_total"); n != 1 {
		t.Fatalf("token refresh series = %d, want 1", n)
	}
}

func TestUnauthorizedTwiceIsClearPermanentError(t *testing.T) {
	f := newFake(t)
	f.mux.HandleFunc("GET /api/v1/live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits["401"]++
		f.mu.Unlock()
		writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "invalid_token"})
	})
	c, _ := newTestClient(t, f, nil)
	_, err := c.GetSession(t.Context(), "sess-7")
	if err == nil || !IsPermanent(err) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want permanent ErrUnauthorized", err)
	}
	for _, want := range []string{"get_session", "sess-7", "401", "idnow.client_id", "idnow.environment"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := f.hitCount("401"); n != 2 {
		t.Fatalf("API hit %d times, want 2 (one forced refresh, then stop)", n)
	}
	if n := f.tokenHits.Load(); n != 2 {
		t.Fatalf("token fetched %d times, want 2", n)
	}
}

func TestConcurrentCallersShareOneTokenFetch(t *testing.T) {
	f := newFake(t)
	f.tokenDelay.Store(int64(100 * time.Millisecond))
	f.handle("GET /live/sessions/{id}", sessionHandler)
	c, _ := newTestClient(t, f, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if _, err := c.GetSession(t.Context(), "s1"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("GetSession: %v", err)
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("token endpoint hit %d times by 50 concurrent callers, want 1", n)
	}
}

func TestTokenWaiterHonoursItsContext(t *testing.T) {
	f := newFake(t)
	f.tokenDelay.Store(int64(time.Second))
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Token(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || IsRetryable(err) || IsPermanent(err) {
		t.Fatalf("Token = %v, want the caller's deadline (neither retryable nor permanent)", err)
	}
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Fatalf("Token returned after %v, want promptly after the caller's deadline", el)
	}
	// The shared fetch was not aborted by that caller: a patient caller gets the token.
	if err := c.Token(t.Context()); err != nil {
		t.Fatalf("Token: %v", err)
	}
	if n := f.tokenHits.Load(); n != 1 {
		t.Fatalf("token endpoint hit %d times, want 1", n)
	}
}

func TestTokenEndpointUnavailableIsRetried(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", sessionHandler)
	f.tokenStatus.Store(http.StatusServiceUnavailable)
	c, _ := newTestClient(t, f, func(c *Config) { c.Retry.MaxAttempts = 3 })
	_, err := c.GetSession(t.Context(), "s1")
	if !IsRetryable(err) {
		t.Fatalf("err = %v, want retryable", err)
	}
	if n := f.tokenHits.Load(); n != 3 {
		t.Fatalf("token endpoint hit %d times, want 3 (max_attempts)", n)
	}
	if got := metricValue(t, c.m.tokenRefreshes.WithLabelValues("error")); got != 3 {
		t.Fatalf("token refresh errors = %v, want 3", got)
	}
	f.tokenStatus.Store(0)
	if _, err := c.GetSession(t.Context(), "s1"); err != nil {
		t.Fatalf("GetSession after recovery: %v", err)
	}
}
