// Package idnow is the client for the IDnow Trust Platform API: OAuth2 client credentials
// (explicit token URL or OIDC discovery), flows, sessions, data blocks and vault files.
//
// The IDnow documentation contradicts itself in places (paths, paging, response shapes,
// casing), so the client accepts every documented variant: paths are chosen by
// configuration, responses are parsed tolerantly and normalised into one set of types.
// Every call runs under a per-attempt timeout, a client-side rate limit and a cap on
// in-flight requests, and is retried with capped exponential backoff with jitter when the
// single classifier (IsRetryable / IsPermanent) says it may succeed later.
package idnow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"
)

const userAgent = "idnow-kafka-connector"

// maxFlowPages stops ListFlows from looping forever on a server whose paging never ends.
const maxFlowPages = 10000

// Client calls the IDnow platform API. It is safe for concurrent use; create one per process
// (per API client) and Close it on shutdown.
type Client struct {
	cfg      Config
	apiBase  string
	api      *http.Client
	download *http.Client
	tokens   *tokenProvider
	limiter  *rate.Limiter
	sem      chan struct{}
	m        *metrics
	log      *slog.Logger
	now      func() time.Time
	cancel   context.CancelFunc
}

type options struct {
	httpClient *http.Client
	now        func() time.Time
}

// Option customises New.
type Option func(*options)

// WithHTTPClient makes the client use hc's Transport (e.g. for a proxy or custom TLS). Its
// redirect policy and timeout are not used: the client sets its own per request. Unless
// idnow.allow_insecure_http is set, the Transport must be an *http.Transport: presigned
// downloads use a clone of it whose dialling is held to public addresses.
func WithHTTPClient(hc *http.Client) Option {
	return func(o *options) { o.httpClient = hc }
}

// WithClock replaces time.Now for token expiry decisions, so tests can expire tokens
// without sleeping.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// New builds a client. When idnow.token_url is empty it resolves the token endpoint from
// the OIDC discovery document under idnow.auth_url, so New contacts the auth host (with the
// usual retries, bounded by ctx); otherwise New does no I/O besides reading
// idnow.client_secret_file. reg receives the client's metrics (nil: not registered);
// log may be nil.
func New(ctx context.Context, cfg Config, reg prometheus.Registerer, log *slog.Logger, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("idnow config: %w", err)
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	secret := cfg.ClientSecret
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("idnow.client_secret_file: read: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
		if secret == "" {
			return nil, fmt.Errorf("idnow.client_secret_file %q is empty: write the API client secret into it", cfg.ClientSecretFile)
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}

	transport := http.RoundTripper(nil)
	custom := o.httpClient != nil && o.httpClient.Transport != nil
	if custom {
		transport = o.httpClient.Transport
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.MaxInFlight
		transport = t
	}
	// Presigned downloads get their own transport whose dialler refuses non-public addresses;
	// development setups (simulator, test servers on loopback) share the API's.
	download := transport
	if !cfg.AllowInsecureHTTP {
		base := transport
		if !custom {
			// Drop the default dial function so the check runs before connect, not after.
			t := transport.(*http.Transport).Clone()
			t.DialContext = nil
			base = t
		}
		if download, err = newDownloadTransport(base); err != nil {
			return nil, err
		}
	}
	base, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:     cfg,
		apiBase: strings.TrimRight(cfg.APIURL, "/"),
		// API calls never follow redirects: the only documented redirect (files) must be
		// followed by hand so the bearer token never reaches the presigned host.
		api: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		// The presigned download carries no credentials, but it must not follow redirects
		// either: the API's redirect to the presigned URL is the only hop allowed, so every
		// check on that URL (scheme, address) holds for the host actually read from.
		download: &http.Client{
			Transport:     download,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:    make(chan struct{}, cfg.MaxInFlight),
		m:      m,
		log:    log,
		now:    o.now,
		cancel: cancel,
	}
	if cfg.RateLimit > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst)
	}
	style := oauth2.AuthStyleInHeader
	if cfg.AuthStyle == AuthStylePost {
		style = oauth2.AuthStyleInParams
	}
	c.tokens = &tokenProvider{
		cc:      clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: secret, TokenURL: cfg.TokenURL, AuthStyle: style},
		hc:      newTokenHTTPClient(transport, cfg.Timeout),
		timeout: cfg.Timeout,
		early:   cfg.TokenEarlyRefresh,
		now:     o.now,
		base:    base,
		m:       m,
		log:     log,
	}
	if cfg.TokenURL == "" {
		tokenURL, err := c.discover(ctx, cfg.AuthURL)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("idnow: resolve token endpoint from idnow.auth_url: %w", err)
		}
		c.tokens.cc.TokenURL = tokenURL
		log.Info("idnow token endpoint discovered", slog.String("token_url", tokenURL))
	}
	return c, nil
}

// Close stops any background token fetch and releases idle connections. Calls made after
// Close fail when they need a new token.
func (c *Client) Close() {
	c.cancel()
	c.tokens.wg.Wait()
	c.api.CloseIdleConnections()
	c.download.CloseIdleConnections()
}

// TokenURL returns the token endpoint in use (configured or discovered).
func (c *Client) TokenURL() string { return c.tokens.cc.TokenURL }

// Token makes sure a valid access token is at hand, fetching one if needed (one attempt,
// no retries). Readiness checks use it as "the token endpoint answered".
func (c *Client) Token(ctx context.Context) error {
	if _, err := c.tokens.token(ctx); err != nil {
		return fmt.Errorf("idnow token: %w", err)
	}
	return nil
}

// ListFlows returns every flow of the configured environment, walking all pages when the
// server pages and taking the single answer when it does not.
func (c *Client) ListFlows(ctx context.Context) ([]Flow, error) {
	path := []string{"flows", c.cfg.Environment}
	if c.cfg.FlowsPath == FlowsPathPlain {
		path = []string{"flows"}
	}
	var all []Flow
	for page := 1; ; page++ {
		q := url.Values{"page": {strconv.Itoa(page)}, "size": {"100"}}
		var resp pagedList[Flow]
		req := &request{endpoint: EndpointListFlows, method: http.MethodGet, url: c.apiURL(q, path...), idempotent: true, auth: true}
		if err := c.doJSON(ctx, req, resp.decode); err != nil {
			return nil, err
		}
		all = append(all, resp.items...)
		if resp.page == nil || len(resp.items) == 0 || page >= resp.page.TotalPages {
			return all, nil
		}
		if page >= maxFlowPages {
			return nil, &APIError{Op: EndpointListFlows, Err: fmt.Errorf("%w: more than %d pages of flows", ErrDecode, maxFlowPages)}
		}
	}
}

// CreateSession starts a session of flowID in the configured environment. Because a POST is
// not idempotent, it is retried only when the server provably did not act on it (429, 503,
// connection refused); other retryable errors are returned for the caller to judge.
func (c *Client) CreateSession(ctx context.Context, flowID string, body CreateSessionRequest) (*CreatedSession, error) {
	if err := checkID(EndpointCreateSession, "flow id", flowID); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, &APIError{Op: EndpointCreateSession, Err: fmt.Errorf("encode request: %w", err)}
	}
	var out CreatedSession
	req := &request{endpoint: EndpointCreateSession, method: http.MethodPost, url: c.apiURL(nil, "flows", flowID, c.cfg.Environment, "sessions"), body: payload, auth: true}
	if err := c.doJSON(ctx, req, func(b []byte) error { return json.Unmarshal(b, &out) }); err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		return nil, &APIError{Op: EndpointCreateSession, Err: fmt.Errorf("%w: answer carries no sessionId", ErrDecode)}
	}
	return &out, nil
}

// GetSession reads a session's current details.
func (c *Client) GetSession(ctx context.Context, sessionID string) (*Session, error) {
	if err := checkID(EndpointGetSession, "session id", sessionID); err != nil {
		return nil, err
	}
	var out Session
	req := &request{endpoint: EndpointGetSession, method: http.MethodGet, url: c.apiURL(nil, c.cfg.Environment, "sessions", sessionID), sessionID: sessionID, idempotent: true, auth: true}
	if err := c.doJSON(ctx, req, func(b []byte) error { return json.Unmarshal(b, &out) }); err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		out.SessionID = sessionID
	}
	return &out, nil
}

// GetDataBlocks reads a session's data blocks, from the path form chosen by
// idnow.datablocks_path, and normalises both response shapes. The result holds personal
// data: never log it.
func (c *Client) GetDataBlocks(ctx context.Context, sessionID string) ([]DataBlock, error) {
	if err := checkID(EndpointGetDataBlocks, "session id", sessionID); err != nil {
		return nil, err
	}
	path := []string{c.cfg.Environment, "sessions", sessionID, "datablocks"}
	if c.cfg.DataBlocksPath == DataBlocksSessionFirst {
		path = []string{"sessions", sessionID, c.cfg.Environment, "datablocks"}
	}
	var out []DataBlock
	req := &request{endpoint: EndpointGetDataBlocks, method: http.MethodGet, url: c.apiURL(nil, path...), sessionID: sessionID, idempotent: true, auth: true}
	err := c.doJSON(ctx, req, func(b []byte) error {
		var err error
		out, err = parseDataBlocks(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListFlowSessions reads one page of a flow's sessions (documented by some builds only);
// reconciliation jobs use it to catch missed webhooks.
func (c *Client) ListFlowSessions(ctx context.Context, flowID string, page ListPage) (*SessionPage, error) {
	if err := checkID(EndpointListFlowSessions, "flow id", flowID); err != nil {
		return nil, err
	}
	q := url.Values{}
	if page.Page > 0 {
		q.Set("page", strconv.Itoa(page.Page))
	}
	if page.Size > 0 {
		q.Set("size", strconv.Itoa(page.Size))
	}
	if page.SortBy != "" {
		q.Set("sortBy", page.SortBy)
		q.Set("sortDesc", strconv.FormatBool(page.SortDesc))
	}
	var resp pagedList[Session]
	req := &request{endpoint: EndpointListFlowSessions, method: http.MethodGet, url: c.apiURL(q, "flows", flowID, c.cfg.Environment, "sessions"), idempotent: true, auth: true}
	if err := c.doJSON(ctx, req, resp.decode); err != nil {
		return nil, err
	}
	return &SessionPage{Sessions: resp.items, Page: resp.page}, nil
}

// checkID refuses an identifier that cannot stand as one API path segment. apiURL escapes
// every segment ("/", "?", "#", "%" and control characters included), but url.PathEscape
// leaves "." and ".." as they are, and servers and proxies resolve those as path navigation:
// GET /sessions/.. would address another resource. IDnow never issues such identifiers, so
// one means a malformed or crafted event.
func checkID(op, kind, id string) error {
	switch id {
	case "":
		return &APIError{Op: op, Err: fmt.Errorf("%w: %s is empty", ErrInvalidID, kind)}
	case ".", "..":
		return &APIError{Op: op, Err: fmt.Errorf("%w: %s %q is path navigation, not an identifier; the request was not sent", ErrInvalidID, kind, id)}
	}
	return nil
}

// apiURL joins escaped path segments onto idnow.api_url.
func (c *Client) apiURL(q url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.apiBase)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	return b.String()
}

// pagedList decodes {"content":[...],"page":{...}}, the same without page, or a bare array.
type pagedList[T any] struct {
	items []T
	page  *PageInfo
}

func (p *pagedList[T]) decode(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &p.items)
	}
	var w struct {
		Content  []T             `json:"content"`
		Flows    []T             `json:"flows"`
		Sessions []T             `json:"sessions"`
		Page     json.RawMessage `json:"page"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	switch {
	case w.Content != nil:
		p.items = w.Content
	case w.Flows != nil:
		p.items = w.Flows
	default:
		p.items = w.Sessions
	}
	if pg := bytes.TrimSpace(w.Page); len(pg) > 0 && pg[0] == '{' {
		var info struct {
			Size          flexString `json:"size"`
			Number        flexString `json:"number"`
			TotalElements flexString `json:"totalElements"`
			TotalPages    flexString `json:"totalPages"`
		}
		if err := json.Unmarshal(pg, &info); err != nil {
			return fmt.Errorf("page: %w", err)
		}
		atoi := func(s flexString) int64 { n, _ := strconv.ParseInt(string(s), 10, 64); return n }
		p.page = &PageInfo{Size: int(atoi(info.Size)), Number: int(atoi(info.Number)), TotalElements: atoi(info.TotalElements), TotalPages: int(atoi(info.TotalPages))}
	}
	return nil
}

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

// doJSON runs req with retries and hands each 2xx body (size-limited) to decode.
func (c *Client) doJSON(ctx context.Context, req *request, decode func([]byte) error) error {
	return c.withRetry(ctx, req, func(ctx context.Context) (string, error) {
		return c.attempt(ctx, req, func(resp *http.Response) error {
			body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseSize+1))
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

	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.method, req.url, body)
	if err != nil {
		return token, backoff.Permanent(req.apiError(0, fmt.Errorf("build request: %w", err)))
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", userAgent)
	if req.body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		hreq.Header.Set("Authorization", "Bearer "+token)
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
// Retry-After and the caller's context.
func (c *Client) withRetry(ctx context.Context, req *request, op func(context.Context) (string, error)) error {
	bo := &retryBackOff{exp: &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.Retry.InitialBackoff,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         c.cfg.Retry.MaxBackoff,
	}}
	refreshed := false
	attempts := 0
	var last error
	operation := func() (struct{}, error) {
		attempts++
		used, err := op(ctx)
		if req.auth && isStatus(err, http.StatusUnauthorized) {
			if !refreshed {
				// Tokens can be revoked or rotated before their expiry: refresh once.
				refreshed = true
				c.tokens.invalidate(used)
				c.log.Debug("idnow answered 401, refreshing token", slog.String("endpoint", req.endpoint))
				_, err = op(ctx)
			}
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized {
				apiErr.Err = fmt.Errorf("%w: the API rejected a freshly fetched token; check idnow.client_id/idnow.client_secret, the API client's permissions, and that idnow.environment (%s) is the client's environment", ErrUnauthorized, c.cfg.Environment)
				return struct{}{}, backoff.Permanent(err)
			}
		}
		if err == nil {
			return struct{}{}, nil
		}
		last = err
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			return struct{}{}, err
		}
		if classify(err) != classRetryable || (!req.idempotent && !safeToRetry(err)) {
			return struct{}{}, backoff.Permanent(err)
		}
		if c.cfg.Retry.MaxAttempts > 0 && attempts >= c.cfg.Retry.MaxAttempts {
			return struct{}{}, backoff.Permanent(err)
		}
		wait := bo.plan(retryAfterOf(err), c.cfg.Retry.MaxRetryAfter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			// Waiting would outlive the caller: hand back the retryable error now.
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	notify := func(err error, wait time.Duration) {
		c.m.retries.WithLabelValues(req.endpoint).Inc()
		c.log.Debug("retrying idnow call", slog.String("endpoint", req.endpoint), slog.String("session_id", req.sessionID),
			slog.Int("attempt", attempts), slog.Duration("wait", wait), slog.Any("error", err))
	}
	_, err := backoff.Retry(ctx, operation,
		backoff.WithBackOff(bo),
		backoff.WithNotify(notify),
		backoff.WithMaxElapsedTime(0),
	)
	if err == nil {
		return nil
	}
	if classify(err) == classContext {
		// backoff.Retry returns the bare context error when cancelled mid-wait; name the call.
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			return err
		}
		if last != nil {
			return req.apiError(0, fmt.Errorf("%w (last attempt: %v)", err, last))
		}
		return req.apiError(0, err)
	}
	return err
}

// retryBackOff is a capped exponential backoff whose next interval can be replaced by a
// server's Retry-After. plan computes the interval the operation is about to request, so the
// operation can compare it with the caller's deadline before backoff.Retry sleeps.
type retryBackOff struct {
	exp     *backoff.ExponentialBackOff
	planned time.Duration
	hasPlan bool
}

func (b *retryBackOff) Reset() { b.exp.Reset(); b.hasPlan = false }

func (b *retryBackOff) NextBackOff() time.Duration {
	if b.hasPlan {
		b.hasPlan = false
		return b.planned
	}
	return b.exp.NextBackOff()
}

func (b *retryBackOff) plan(retryAfter, maxRetryAfter time.Duration) time.Duration {
	next := b.exp.NextBackOff()
	if retryAfter > 0 {
		next = max(next, min(retryAfter, maxRetryAfter))
	}
	b.planned, b.hasPlan = next, true
	return next
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
