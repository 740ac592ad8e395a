package idnow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenProvider caches one client-credentials token and refreshes it before expiry.
//
// It plays the role of oauth2.ReuseTokenSourceWithExpiry but adds what that type lacks and
// this client needs: waiting callers honour their own context (ReuseTokenSource holds a
// mutex for the whole fetch), a forced refresh after a 401 that invalidates only the token
// that failed, and one shared fetch for all concurrent callers that no single caller's
// cancellation can abort.
type tokenProvider struct {
	cc      clientcredentials.Config
	hc      *http.Client
	timeout time.Duration
	early   time.Duration
	now     func() time.Time
	base    context.Context
	m       *metrics
	log     *slog.Logger

	wg sync.WaitGroup

	mu        sync.Mutex
	tok       *oauth2.Token
	fetchedAt time.Time
	inflight  *tokenFetch
}

type tokenFetch struct {
	done chan struct{}
	tok  *oauth2.Token
	err  error
}

// valid reports whether t can still be used, refreshing early by min(early, lifetime/2) so
// short-lived tokens are still used for half their life.
func (p *tokenProvider) valid(t *oauth2.Token, fetchedAt time.Time) bool {
	if t == nil || t.AccessToken == "" {
		return false
	}
	if t.Expiry.IsZero() {
		// No expires_in: use the token until the API answers 401.
		return true
	}
	early := p.early
	if half := t.Expiry.Sub(fetchedAt) / 2; half < early {
		early = half
	}
	return p.now().Before(t.Expiry.Add(-early))
}

// token returns a valid access token, starting or joining one shared fetch when needed.
func (p *tokenProvider) token(ctx context.Context) (string, error) {
	p.mu.Lock()
	if p.valid(p.tok, p.fetchedAt) {
		t := p.tok.AccessToken
		p.mu.Unlock()
		return t, nil
	}
	f := p.inflight
	if f == nil {
		if err := p.base.Err(); err != nil {
			p.mu.Unlock()
			return "", fmt.Errorf("idnow client closed: %w", err)
		}
		f = &tokenFetch{done: make(chan struct{})}
		p.inflight = f
		p.wg.Add(1)
		// The fetch is shared by every caller waiting for a token; its span (when traced)
		// goes under the span of the caller that started it.
		go p.fetch(f, trace.SpanContextFromContext(ctx))
	}
	p.mu.Unlock()
	select {
	case <-f.done:
		if f.err != nil {
			return "", f.err
		}
		return f.tok.AccessToken, nil
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

// invalidate drops the cached token if it is still the one that failed, so concurrent 401s
// on the same token cause one refresh, not one each.
func (p *tokenProvider) invalidate(failed string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tok != nil && p.tok.AccessToken == failed {
		p.tok = nil
	}
}

// fetch runs in its own goroutine under the provider's lifetime context and idnow.timeout.
func (p *tokenProvider) fetch(f *tokenFetch, parent trace.SpanContext) {
	defer p.wg.Done()
	ctx := p.base
	if parent.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, parent)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, p.hc)
	start := p.now()
	began := time.Now()
	tok, err := p.cc.Token(ctx)
	p.m.duration.WithLabelValues(EndpointToken).Observe(time.Since(began).Seconds())
	if err == nil && tok.AccessToken == "" {
		err = fmt.Errorf("%w: token endpoint answered without access_token", ErrDecode)
	}
	if err != nil {
		err = p.tokenError(ctx, err)
		p.m.tokenRefreshes.WithLabelValues("error").Inc()
		p.log.WarnContext(ctx, "idnow token fetch failed", slog.String("token_url", p.cc.TokenURL), slog.Any("err", err))
	} else {
		p.m.tokenRefreshes.WithLabelValues("success").Inc()
		p.m.requests.WithLabelValues(EndpointToken, "2xx").Inc()
		p.log.DebugContext(ctx, "idnow token fetched", slog.Time("expiry", tok.Expiry))
	}
	p.mu.Lock()
	if err == nil {
		p.tok, p.fetchedAt = tok, start
	}
	p.inflight = nil
	f.tok, f.err = tok, err
	close(f.done)
	p.mu.Unlock()
}

// tokenError turns oauth2's errors into APIErrors the classifier understands.
func (p *tokenProvider) tokenError(ctx context.Context, err error) error {
	apiErr := &APIError{Op: EndpointToken, Err: err}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		apiErr.StatusCode = re.Response.StatusCode
		apiErr.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), p.now())
		apiErr.Body = truncate(re.Body, maxErrorBody)
		p.m.requests.WithLabelValues(EndpointToken, statusClass(re.Response.StatusCode)).Inc()
		// Keep oauth2's message out: it embeds the response body.
		apiErr.Err = nil
		switch code := re.Response.StatusCode; {
		case code == http.StatusUnauthorized || (code == http.StatusBadRequest && strings.Contains(re.ErrorCode, "client")):
			apiErr.Err = fmt.Errorf("%w: the token endpoint rejected the client credentials; check idnow.client_id, idnow.client_secret and idnow.auth_style", ErrUnauthorized)
		case code >= 300 && code < 400:
			// The token client never follows redirects (see newTokenHTTPClient). Matching
			// ErrUnauthorized too tells callers that no call can authenticate until the
			// configuration changes, so they block rather than fail events one by one.
			apiErr.Err = fmt.Errorf("token endpoint %s answered a redirect to %s; redirects are not followed so the client credentials never leave the configured host: configure idnow.token_url to the final URL (%w, %w)",
				redactURL(p.cc.TokenURL), locationOf(re.Response), ErrInsecureURL, ErrUnauthorized)
		}
		return apiErr
	}
	p.m.requests.WithLabelValues(EndpointToken, "error").Inc()
	if p.base.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		apiErr.Err = fmt.Errorf("%w after %s: %w", ErrTimeout, p.timeout, err)
	}
	return apiErr
}

// discover reads token_endpoint from the OIDC discovery document under authURL.
func (c *Client) discover(ctx context.Context, authURL string) (string, error) {
	u := strings.TrimRight(authURL, "/") + "/.well-known/openid-configuration"
	var doc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	req := &request{endpoint: EndpointDiscovery, method: http.MethodGet, url: u, idempotent: true}
	err := c.doJSON(ctx, req, func(b []byte) error { return json.Unmarshal(b, &doc) })
	if err != nil {
		return "", err
	}
	if doc.TokenEndpoint == "" {
		return "", &APIError{Op: EndpointDiscovery, Err: fmt.Errorf("%w: discovery document at %s has no token_endpoint; set idnow.token_url", ErrDecode, u)}
	}
	if err := checkHTTPURL(doc.TokenEndpoint); err != nil {
		return "", &APIError{Op: EndpointDiscovery, Err: fmt.Errorf("%w: token_endpoint %q: %w", ErrDecode, doc.TokenEndpoint, err)}
	}
	if err := c.checkDiscoveredTokenURL(authURL, doc.TokenEndpoint); err != nil {
		return "", &APIError{Op: EndpointDiscovery, Err: err}
	}
	return doc.TokenEndpoint, nil
}

// checkDiscoveredTokenURL holds the discovered token endpoint to the rules of a configured
// one (https unless allowed) and to idnow.auth_url's origin: whoever can alter the discovery
// document (or answer in its place) must not be able to send the client secret elsewhere or
// downgrade it to plain text.
func (c *Client) checkDiscoveredTokenURL(authURL, tokenURL string) error {
	if err := c.cfg.checkScheme(tokenURL); err != nil {
		return fmt.Errorf("discovered token_endpoint %q: %w; or set idnow.token_url explicitly", tokenURL, err)
	}
	a, err := url.Parse(authURL)
	if err != nil {
		return fmt.Errorf("parse idnow.auth_url: %w", err)
	}
	t, err := url.Parse(tokenURL)
	if err != nil {
		return fmt.Errorf("%w: parse token_endpoint: %w", ErrDecode, err)
	}
	if origin(a) != origin(t) {
		return fmt.Errorf("%w: discovered token_endpoint %q is not on idnow.auth_url's origin %s, so the client secret is not sent there; if that endpoint is genuinely IDnow's, set idnow.token_url to it explicitly",
			ErrInsecureURL, tokenURL, origin(a))
	}
	return nil
}

// origin is scheme://host:port with the scheme and host lower-cased and the default port
// made explicit, so https://Auth.example and https://auth.example:443 compare equal.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// newTokenHTTPClient returns the client for token requests. It never follows a redirect:
// net/http would re-send a client_secret_post body on 307/308 and, to a host it considers
// the same, the Basic credentials; a token endpoint has no reason to redirect, so the
// 3xx is returned as is and reported by tokenError.
func newTokenHTTPClient(transport http.RoundTripper, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport:     transport,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// locationOf returns a redirect's target for error messages, without query or credentials.
func locationOf(resp *http.Response) string {
	loc, err := resp.Location()
	if err != nil {
		return "(no usable Location header)"
	}
	return redactURL(loc.String())
}

// redactURL drops user info, query and fragment (presigned signatures, tokens) from a URL
// that goes into an error or a log line.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := r.String()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		b = b[:n]
	}
	return append([]byte(nil), b...)
}
