package idnow

// The transport: what every call shares. One attempt is one HTTP exchange under the rate
// limit, an in-flight slot, a bearer token and a per-attempt timeout, with metrics; one call
// is a plain loop of attempts (withRetry) that refreshes the token once on 401 and retries
// what the classifier (errors.go) calls retryable, with internal/retry's backoff.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

const userAgent = "idnow-kafka-connector"

var (
	jsonValue      = []string{"application/json"}
	userAgentValue = []string{userAgent}
)

// request describes one logical call; attempts are derived from it.
type request struct {
	endpoint     string
	method       string
	url          string
	body         []byte
	sessionID    string
	vaultEntryID string
	// idempotent calls are retried on every retryable error; others only when the server
	// provably did not act (see safeToRetry).
	idempotent bool
	// auth adds the bearer token and enables the one forced refresh on 401.
	auth bool
	// acceptRedirect treats 3xx as success (get_file) instead of an error.
	acceptRedirect bool
}

func (r *request) apiError(status int, err error) *APIError {
	return &APIError{Op: r.endpoint, SessionID: r.sessionID, VaultEntryID: r.vaultEntryID, StatusCode: status, Err: err}
}

// doJSON runs req with retries and hands each 2xx body (size-limited) to decode. The body is
// read into a pooled buffer that is reused once decode returns: decode must not keep it (the
// decoders copy what they keep; encoding/json copies json.RawMessage values).
func (c *Client) doJSON(ctx context.Context, req *request, decode func([]byte) error) error {
	return c.withRetry(ctx, req, func(ctx context.Context) (string, error) {
		return c.attempt(ctx, req, func(resp *http.Response) error {
			bp := bodyBuffers.Get().(*[]byte)
			body, err := readBody(resp, c.cfg.MaxResponseSize+1, (*bp)[:0])
			defer func() {
				if cap(body) <= maxPooledBody {
					*bp = body[:0]
					bodyBuffers.Put(bp)
				}
			}()
			if err != nil {
				return fmt.Errorf("read body: %w", err)
			}
			if int64(len(body)) > c.cfg.MaxResponseSize {
				return ErrResponseTooLarge
			}
			if err := decode(body); err != nil {
				if errors.Is(err, ErrDecode) {
					return err
				}
				return fmt.Errorf("%w: %w", ErrDecode, err)
			}
			return nil
		})
	})
}

// bodyBuffers holds answer buffers for reuse; larger ones (a huge data-block list) are left to
// the garbage collector rather than kept alive by the pool.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBody = 64 << 10

// readBody appends at most limit bytes of resp's body to buf, growing it once to the
// announced Content-Length when the server sent one (io.ReadAll grows from 512 bytes, copying
// a data-block answer of a few dozen KiB several times). A body longer or shorter than
// announced is still read to its end.
func readBody(resp *http.Response, limit int64, buf []byte) ([]byte, error) {
	r := io.LimitReader(resp.Body, limit)
	if n := resp.ContentLength; n > 0 && n < limit {
		// One byte more than announced, so reading the end needs no growth.
		buf = slices.Grow(buf, int(n)+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 512)
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		switch {
		case errors.Is(err, io.EOF):
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
}

// attempt performs one HTTP exchange: rate limit, in-flight slot, token, per-attempt
// timeout, metrics. handle runs on an accepted response while the slot and timeout still
// apply; the body is closed afterwards. It returns the token it used so a 401 can
// invalidate exactly that token.
func (c *Client) attempt(ctx context.Context, req *request, handle func(*http.Response) error) (string, error) {
	if c.limiter != nil {
		if err := c.limiter.Wait(ctx); err != nil {
			// Wait fails early when the caller's deadline cannot fit the wait: that is the
			// caller's deadline, not a fault of the call.
			return "", req.apiError(0, ctxOr(ctx, fmt.Errorf("rate limiter: %w: %w", context.DeadlineExceeded, err)))
		}
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return "", req.apiError(0, context.Cause(ctx))
	}
	c.m.inFlight.Inc()
	defer func() {
		c.m.inFlight.Dec()
		<-c.sem
	}()

	var token string
	if req.auth {
		var err error
		if token, err = c.tokens.token(ctx); err != nil {
			return "", req.apiError(0, err)
		}
	}

	actx, cancel := context.WithTimeout(c.withEndpoint(ctx, req.endpoint), c.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, req.url, body)
	if err != nil {
		// A request that cannot be built is permanent (classify: no network or status cause).
		return token, req.apiError(0, fmt.Errorf("build request: %w", err))
	}
	// Canonical keys and shared values: Header.Set would canonicalise each key and allocate
	// each value per request. Nothing appends to these one-element slices in place (Add
	// would copy them).
	hreq.Header = make(http.Header, 8)
	hreq.Header["Accept"] = jsonValue
	hreq.Header["User-Agent"] = userAgentValue
	if req.body != nil {
		hreq.Header["Content-Type"] = jsonValue
	}
	if token != "" {
		hreq.Header["Authorization"] = []string{"Bearer " + token}
	}

	start := time.Now()
	resp, err := c.api.Do(hreq)
	if err != nil {
		c.m.requests.WithLabelValues(req.endpoint, "error").Inc()
		c.m.duration.WithLabelValues(req.endpoint).Observe(time.Since(start).Seconds())
		return token, req.apiError(0, c.attemptErr(ctx, actx, err))
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		_ = resp.Body.Close()
	}()
	c.m.requests.WithLabelValues(req.endpoint, statusClass(resp.StatusCode)).Inc()

	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if req.acceptRedirect && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		ok = true
	}
	if !ok {
		c.m.duration.WithLabelValues(req.endpoint).Observe(time.Since(start).Seconds())
		apiErr := req.apiError(resp.StatusCode, nil)
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			key := "idnow.api_url"
			if req.endpoint == EndpointDiscovery {
				key = "idnow.auth_url"
			}
			apiErr.Err = fmt.Errorf("%w: answered a redirect to %s, which is not followed (it could take the bearer token to another host or to plain http): set %s to the final URL",
				ErrInsecureURL, locationOf(resp), key)
		}
		apiErr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), c.now())
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		apiErr.Body = b
		return token, apiErr
	}
	err = handle(resp)
	c.m.duration.WithLabelValues(req.endpoint).Observe(time.Since(start).Seconds())
	if err != nil {
		return token, req.apiError(0, c.attemptErr(ctx, actx, err))
	}
	return token, nil
}

// attemptErr separates the caller's cancellation (returned as is) from this attempt's own
// timeout (ErrTimeout, retryable).
func (c *Client) attemptErr(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctxOr(ctx, err)
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w after %s: %w", ErrTimeout, c.cfg.Timeout, err)
	}
	return err
}

// ctxOr returns the context's cause when it is done, else err.
func ctxOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// withRetry runs one logical call: attempts via op, one forced token refresh on 401, and
// retries of retryable failures with capped exponential backoff with jitter, honouring
// Retry-After (up to idnow.retry.max_retry_after) and the caller's context. op returns the
// token it used so a 401 invalidates exactly that token.
func (c *Client) withRetry(ctx context.Context, req *request, op func(context.Context) (string, error)) error {
	b := c.cfg.Retry.backoff().NewBackOff()
	refreshed := false
	for attempt := 1; ; attempt++ {
		used, err := op(ctx)
		if req.auth && isStatus(err, http.StatusUnauthorized) {
			if !refreshed {
				// Tokens can be revoked or rotated before their expiry: refresh once per call.
				refreshed = true
				c.tokens.invalidate(used)
				c.log.DebugContext(ctx, "idnow answered 401, refreshing token", slog.String("endpoint", req.endpoint))
				_, err = op(ctx)
			}
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
				apiErr.Err = fmt.Errorf("%w: the API rejected a freshly fetched token; check idnow.client_id/idnow.client_secret, the API client's permissions, and that idnow.environment (%s) is the client's environment", ErrUnauthorized, c.cfg.Environment)
				return err
			}
		}
		if err == nil {
			return nil
		}
		if !c.shouldRetry(req, attempt, err) {
			return err
		}
		wait := b.NextAfter(retryAfterOf(err), c.cfg.Retry.MaxRetryAfter)
		if !retry.FitsDeadline(ctx, wait) {
			// Waiting would outlive the caller: hand back the retryable error now.
			return err
		}
		if ctx.Err() == nil {
			c.m.retries.WithLabelValues(req.endpoint).Inc()
			c.log.DebugContext(ctx, "retrying idnow call", slog.String("endpoint", req.endpoint), slog.String("session_id", req.sessionID),
				slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.Any("err", err))
		}
		if cause := retry.Wait(ctx, wait); cause != nil {
			// The caller gave up between attempts: name the call and keep what the last
			// attempt saw, which is what an operator needs to know. The last error is text,
			// not wrapped: a wrapped ErrTimeout or 503 would make the classifier call the
			// caller's own cancellation retryable.
			return req.apiError(0, fmt.Errorf("%w (last attempt: %v)", cause, err)) //nolint:errorlint // see above: only the cause may match errors.Is
		}
	}
}

// shouldRetry reports whether another attempt may succeed and is allowed: the classifier says
// retryable, a non-idempotent request provably had no effect, and idnow.retry.max_attempts
// (0 = no limit) is not used up.
func (c *Client) shouldRetry(req *request, attempt int, err error) bool {
	if classify(err) != classRetryable {
		return false
	}
	if !req.idempotent && !safeToRetry(err) {
		return false
	}
	return c.cfg.Retry.MaxAttempts == 0 || attempt < c.cfg.Retry.MaxAttempts
}

func retryAfterOf(err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}

func isStatus(err error, code int) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == code
}

// safeToRetry reports whether a non-idempotent request provably had no effect: the server
// refused it outright (429, 503) or the connection was never established.
func safeToRetry(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) && (apiErr.StatusCode == http.StatusTooManyRequests || apiErr.StatusCode == http.StatusServiceUnavailable) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}
