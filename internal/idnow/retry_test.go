package idnow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// scripted answers the i-th request (0-based) with statuses[i], the last status repeating;
// a status of 200 answers with a RUNNING session.
func scripted(hits *atomic.Int64, retryAfter string, statuses ...int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		i := int(hits.Add(1)) - 1
		status := statuses[min(i, len(statuses)-1)]
		if status == http.StatusOK || status == http.StatusCreated {
			writeRaw(w, status, `{"sessionId":"s1","sessionStatus":"RUNNING","sessionContext":{"sessionId":"s1"}}`)
			return
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		writeJSON(w, status, map[string]string{"code": "E" + http.StatusText(status)})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int64
	f.handle("GET /live/sessions/{id}", scripted(&hits, "1", http.StatusTooManyRequests, http.StatusOK))
	c, _ := newTestClient(t, f, nil) // backoff alone would wait ~5ms
	start := time.Now()
	if _, err := c.GetSession(t.Context(), "s1"); err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if el := time.Since(start); el < 950*time.Millisecond {
		t.Fatalf("retried after %v, want >= Retry-After of 1s", el)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2", n)
	}
	if got := metricValue(t, c.m.retries.WithLabelValues(EndpointGetSession)); got != 1 {
		t.Fatalf("retries_total = %v, want 1", got)
	}
}

func TestRetryStatuses(t *testing.T) {
	tests := []struct {
		name        string
		statuses    []int
		maxAttempts int
		wantHits    int64
		wantErr     func(error) bool
	}{
		{"503 retried then success", []int{503, 503, 200}, 6, 3, func(err error) bool { return err == nil }},
		{"500 and 502 and 504 retried", []int{500, 502, 504, 200}, 6, 4, func(err error) bool { return err == nil }},
		{"404 not retried", []int{404}, 6, 1, func(err error) bool { return IsPermanent(err) && errors.Is(err, ErrNotFound) }},
		{"400 not retried", []int{400}, 6, 1, IsPermanent},
		{"403 not retried", []int{403}, 6, 1, func(err error) bool { return IsPermanent(err) && errors.Is(err, ErrForbidden) }},
		{"422 not retried", []int{422}, 6, 1, IsPermanent},
		{"max attempts exhausted stays retryable", []int{502}, 4, 4, IsRetryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			var hits atomic.Int64
			f.handle("GET /live/sessions/{id}", scripted(&hits, "", tt.statuses...))
			c, _ := newTestClient(t, f, func(c *Config) { c.Retry.MaxAttempts = tt.maxAttempts })
			_, err := c.GetSession(t.Context(), "sess-42")
			if !tt.wantErr(err) {
				t.Fatalf("err = %v (retryable %v, permanent %v)", err, IsRetryable(err), IsPermanent(err))
			}
			if err != nil && (!strings.Contains(err.Error(), "sess-42") || !strings.Contains(err.Error(), EndpointGetSession)) {
				t.Fatalf("error %q does not name the call and session", err)
			}
			if n := hits.Load(); n != tt.wantHits {
				t.Fatalf("hits = %d, want %d", n, tt.wantHits)
			}
		})
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int64
	f.handle("GET /live/sessions/{id}", scripted(&hits, "", http.StatusServiceUnavailable))
	c, _ := newTestClient(t, f, func(c *Config) {
		c.Retry.MaxAttempts = 0 // until the context is done
		c.Retry.InitialBackoff = 10 * time.Second
		c.Retry.MaxBackoff = 10 * time.Second
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		// Cancel once the client is waiting to retry (the retry counter moves before the wait).
		for {
			var m dto.Metric
			if c.m.retries.WithLabelValues(EndpointGetSession).Write(&m) == nil && m.GetCounter().GetValue() >= 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	_, err := c.GetSession(ctx, "sess-1")
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("GetSession returned after %v, want promptly after cancel", el)
	}
	if !errors.Is(err, context.Canceled) || IsRetryable(err) || IsPermanent(err) {
		t.Fatalf("err = %v, want context.Canceled, neither retryable nor permanent", err)
	}
	if !strings.Contains(err.Error(), "sess-1") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %q should name the session and the last attempt", err)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("hits = %d, want 1", n)
	}
}

func TestRetryAfterBeyondDeadlineReturnsNow(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int64
	f.handle("GET /live/sessions/{id}", scripted(&hits, "60", http.StatusTooManyRequests))
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.GetSession(ctx, "s1")
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("returned after %v, want at once: waiting 60s cannot fit a 3s deadline", el)
	}
	var apiErr *APIError
	if !IsRetryable(err) || !errors.Is(err, ErrRateLimited) || !errors.As(err, &apiErr) || apiErr.RetryAfter != time.Minute {
		t.Fatalf("err = %v, want the retryable 429 carrying Retry-After 1m", err)
	}
}

func TestAttemptTimeoutRetried(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int64
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		sessionHandler(w, r)
	})
	c, _ := newTestClient(t, f, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	if _, err := c.GetSession(t.Context(), "s1"); err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2", n)
	}
	if got := metricValue(t, c.m.requests.WithLabelValues(EndpointGetSession, "error")); got != 1 {
		t.Fatalf("requests_total{error} = %v, want 1", got)
	}
}

func TestConnectionResetRetried(t *testing.T) {
	f := newFake(t)
	var hits atomic.Int64
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		sessionHandler(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	if _, err := c.GetSession(t.Context(), "s1"); err != nil {
		t.Fatalf("GetSession: %v", err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2", n)
	}
}

func TestCreateSessionRetriesOnlyWhenSafe(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		wantHits int64
		wantErr  func(error) bool
	}{
		{"503 means not processed: retried", []int{503, 201}, 2, func(err error) bool { return err == nil }},
		{"429 means not processed: retried", []int{429, 201}, 2, func(err error) bool { return err == nil }},
		{"500 may have created it: returned, still retryable", []int{500, 201}, 1, IsRetryable},
		{"504 may have created it: returned", []int{504, 201}, 1, IsRetryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			var hits atomic.Int64
			f.handle("POST /flows/{flow}/live/sessions", scripted(&hits, "", tt.statuses...))
			c, _ := newTestClient(t, f, nil)
			_, err := c.CreateSession(t.Context(), "flow-1", CreateSessionRequest{})
			if !tt.wantErr(err) {
				t.Fatalf("err = %v", err)
			}
			if n := hits.Load(); n != tt.wantHits {
				t.Fatalf("hits = %d, want %d", n, tt.wantHits)
			}
		})
	}
}
