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
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/time/rate"
)

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
	traced   bool // API calls are traced (tracing.go)
}

// Deps are what the client needs from its caller; every field is optional.
type Deps struct {
	// Registry receives the client's metrics; nil: not registered.
	Registry prometheus.Registerer
	// Log receives operational logs; nil discards them.
	Log *slog.Logger
	// HTTPClient's Transport is used for the API (e.g. for a proxy or custom TLS). Its redirect
	// policy and timeout are not used: the client sets its own per request. Unless
	// idnow.allow_insecure_http is set, the Transport must be an *http.Transport: presigned
	// downloads use a clone of it whose dialling is held to public addresses. Nil: a clone of
	// http.DefaultTransport.
	HTTPClient *http.Client
	// Clock replaces time.Now for token expiry decisions, so tests can expire tokens without
	// sleeping. Nil: time.Now.
	Clock func() time.Time
	// Tracer, when set, makes every API exchange and token fetch a client span (otelhttp)
	// under the caller's span; nil: no spans.
	Tracer trace.TracerProvider
}

// New builds a client. When idnow.token_url is empty it resolves the token endpoint from
// the OIDC discovery document under idnow.auth_url, so New contacts the auth host (with the
// usual retries, bounded by ctx); otherwise New does no I/O besides reading
// idnow.client_secret_file.
func New(ctx context.Context, cfg Config, deps Deps) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("idnow config: %w", err)
	}
	reg, log := deps.Registry, deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := deps.Clock
	if now == nil {
		now = time.Now
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
	custom := deps.HTTPClient != nil && deps.HTTPClient.Transport != nil
	if custom {
		transport = deps.HTTPClient.Transport
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.MaxInFlight
		// The default transport keeps 100 idle connections in all: with more requests in
		// flight than that, every burst would close connections and dial (and TLS-handshake)
		// new ones. The API, the token endpoint and downloads may be different hosts.
		t.MaxIdleConns = max(t.MaxIdleConns, 3*cfg.MaxInFlight)
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
	apiTransport, tokenTransport := transport, transport
	if deps.Tracer != nil {
		apiTransport, tokenTransport = traceTransports(deps.Tracer, transport)
	}
	base, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:     cfg,
		apiBase: strings.TrimRight(cfg.APIURL, "/"),
		// API calls never follow redirects: the only documented redirect (files) must be
		// followed by hand so the bearer token never reaches the presigned host.
		api: &http.Client{
			Transport:     apiTransport,
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
		now:    now,
		cancel: cancel,
		traced: deps.Tracer != nil,
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
		hc:      newTokenHTTPClient(tokenTransport, cfg.Timeout),
		timeout: cfg.Timeout,
		early:   cfg.TokenEarlyRefresh,
		now:     now,
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
