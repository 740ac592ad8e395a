package idnow

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

// Auth styles accepted by idnow.auth_style.
const (
	// AuthStyleBasic sends the client credentials as HTTP Basic auth (client_secret_basic).
	AuthStyleBasic = "basic"
	// AuthStylePost sends the client credentials as form fields (client_secret_post).
	AuthStylePost = "post"
)

// Logical environments accepted by idnow.environment.
const (
	// EnvironmentLive is the production logical environment inside an IDnow host.
	EnvironmentLive = "live"
	// EnvironmentStaging is the staging logical environment inside an IDnow host.
	EnvironmentStaging = "staging"
)

// Data-block path forms accepted by idnow.datablocks_path. The reference documents both.
const (
	// DataBlocksEnvironmentFirst selects GET /{env}/sessions/{id}/datablocks.
	DataBlocksEnvironmentFirst = "environment_first"
	// DataBlocksSessionFirst selects GET /sessions/{id}/{env}/datablocks (quickstart form).
	DataBlocksSessionFirst = "session_first"
)

// Flow-listing path forms accepted by idnow.flows_path. The reference documents both.
const (
	// FlowsPathEnvironment selects GET /flows/{env}.
	FlowsPathEnvironment = "environment"
	// FlowsPathPlain selects GET /flows (quickstart form).
	FlowsPathPlain = "plain"
)

// Config is the `idnow.*` configuration section.
type Config struct {
	// APIURL is the API base including the version, e.g. https://api.eu.platform.idnow.io/api/v1.
	APIURL string `koanf:"api_url"`
	// AuthURL is the OIDC issuer base, e.g. https://auth.eu.platform.idnow.io/oidc; the token
	// endpoint is discovered from <auth_url>/.well-known/openid-configuration when TokenURL is empty.
	AuthURL string `koanf:"auth_url"`
	// TokenURL is the explicit OAuth2 token endpoint; it wins over discovery.
	TokenURL string `koanf:"token_url"`
	// ClientID is the API client id; it belongs to exactly one logical environment.
	ClientID string `koanf:"client_id"`
	// ClientSecret is the API client secret. Prefer ClientSecretFile in deployments.
	ClientSecret string `koanf:"client_secret"`
	// ClientSecretFile names a file holding the client secret (trailing newline trimmed).
	ClientSecretFile string `koanf:"client_secret_file"`
	// AuthStyle is "basic" (client_secret_basic, default) or "post" (client_secret_post).
	AuthStyle string `koanf:"auth_style"`
	// Environment is the logical environment written into API paths: "live" (default) or "staging".
	Environment string `koanf:"environment"`
	// DataBlocksPath selects the data-block path form: "environment_first" (default) or "session_first".
	DataBlocksPath string `koanf:"datablocks_path"`
	// FlowsPath selects the flow-listing path form: "environment" (default) or "plain".
	FlowsPath string `koanf:"flows_path"`
	// Timeout bounds each HTTP attempt (token fetches included); default 10s.
	Timeout time.Duration `koanf:"timeout"`
	// TokenEarlyRefresh renews a token this long before it expires (capped at half its
	// lifetime, so short-lived tokens still get used); default 1m.
	TokenEarlyRefresh time.Duration `koanf:"token_early_refresh"`
	// MaxInFlight caps concurrent API requests from this client; default 64.
	MaxInFlight int `koanf:"max_in_flight"`
	// RateLimit is the client-side request rate in requests per second; default 50, 0 = unlimited.
	RateLimit float64 `koanf:"rate_limit"`
	// RateBurst is the token-bucket burst for RateLimit; default 100.
	RateBurst int `koanf:"rate_burst"`
	// Retry is the retry policy for retryable failures.
	Retry RetryConfig `koanf:"retry"`
	// MaxFileSize caps the bytes GetFile will stream; default 50 MiB.
	MaxFileSize int64 `koanf:"max_file_size"`
	// MaxResponseSize caps the bytes read from one JSON API response; default 16 MiB.
	MaxResponseSize int64 `koanf:"max_response_size"`
	// AllowInsecureHTTP lets api_url, auth_url, token_url, a discovered token endpoint and
	// presigned file URLs use plain http, and lets presigned file downloads reach loopback,
	// private and link-local addresses. Default false: IDnow is https-only and its storage
	// hosts are public, so either would mean a misconfiguration or an attack. Only for the
	// simulator and test servers; `run` with simulator.enabled sets it by itself.
	AllowInsecureHTTP bool `koanf:"allow_insecure_http"`
}

// RetryConfig is the `idnow.retry.*` section: capped exponential backoff with jitter.
type RetryConfig struct {
	// MaxAttempts counts all attempts including the first; default 6, 0 = until the context is done.
	MaxAttempts int `koanf:"max_attempts"`
	// InitialBackoff is the first backoff interval; default 200ms.
	InitialBackoff time.Duration `koanf:"initial_backoff"`
	// MaxBackoff caps one backoff interval; default 30s.
	MaxBackoff time.Duration `koanf:"max_backoff"`
	// MaxRetryAfter caps how long a server's Retry-After may make the client wait; default 5m.
	// It exists so a bogus Retry-After of hours cannot stall a worker; the caller's context
	// still bounds every wait.
	MaxRetryAfter time.Duration `koanf:"max_retry_after"`
}

// backoff is the shape of the waits between attempts. The jitter of ±50% spreads the retries
// of many workers hit by the same outage; the fields stay flat here (rather than embedding
// retry.Config) so idnow.RetryConfig literals elsewhere keep compiling.
func (c RetryConfig) backoff() retry.Config {
	return retry.Config{InitialBackoff: c.InitialBackoff, MaxBackoff: c.MaxBackoff, Multiplier: 2, Jitter: 0.5}
}

// DefaultConfig returns the documented defaults. APIURL, the token endpoint (TokenURL or
// AuthURL) and the credentials have no default and must be set.
func DefaultConfig() Config {
	return Config{
		AuthStyle:         AuthStyleBasic,
		Environment:       EnvironmentLive,
		DataBlocksPath:    DataBlocksEnvironmentFirst,
		FlowsPath:         FlowsPathEnvironment,
		Timeout:           10 * time.Second,
		TokenEarlyRefresh: time.Minute,
		MaxInFlight:       64,
		RateLimit:         50,
		RateBurst:         100,
		Retry: RetryConfig{
			MaxAttempts:    6,
			InitialBackoff: 200 * time.Millisecond,
			MaxBackoff:     30 * time.Second,
			MaxRetryAfter:  5 * time.Minute,
		},
		MaxFileSize:     50 << 20,
		MaxResponseSize: 16 << 20,
	}
}

// Validate reports every configuration problem at once; each message names the full key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.APIURL == "" {
		add("idnow.api_url is required: set it to the API base, e.g. https://api.eu.platform.idnow.io/api/v1")
	} else if err := c.checkEndpointURL(c.APIURL); err != nil {
		add("idnow.api_url %q is invalid: %w", c.APIURL, err)
	}
	switch {
	case c.TokenURL != "":
		if err := c.checkEndpointURL(c.TokenURL); err != nil {
			add("idnow.token_url %q is invalid: %w", c.TokenURL, err)
		}
	case c.AuthURL != "":
		if err := c.checkEndpointURL(c.AuthURL); err != nil {
			add("idnow.auth_url %q is invalid: %w", c.AuthURL, err)
		}
	default:
		add("idnow.token_url or idnow.auth_url is required: set idnow.auth_url to the OIDC base (e.g. https://auth.eu.platform.idnow.io/oidc) for discovery, or idnow.token_url to the token endpoint")
	}
	if c.ClientID == "" {
		add("idnow.client_id is required: set it to the API client id created in the IDnow dashboard")
	}
	switch {
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		add("idnow.client_secret and idnow.client_secret_file are both set: keep only one")
	case c.ClientSecret == "" && c.ClientSecretFile == "":
		add("idnow.client_secret or idnow.client_secret_file is required: set one to the API client secret")
	}
	switch c.AuthStyle {
	case AuthStyleBasic, AuthStylePost:
	default:
		add("idnow.auth_style %q is invalid: use %q (client_secret_basic) or %q (client_secret_post)", c.AuthStyle, AuthStyleBasic, AuthStylePost)
	}
	switch c.Environment {
	case EnvironmentLive, EnvironmentStaging:
	default:
		add("idnow.environment %q is invalid: use %q or %q, the environment the API client was created for", c.Environment, EnvironmentLive, EnvironmentStaging)
	}
	switch c.DataBlocksPath {
	case DataBlocksEnvironmentFirst, DataBlocksSessionFirst:
	default:
		add("idnow.datablocks_path %q is invalid: use %q (/{env}/sessions/{id}/datablocks) or %q (/sessions/{id}/{env}/datablocks)", c.DataBlocksPath, DataBlocksEnvironmentFirst, DataBlocksSessionFirst)
	}
	switch c.FlowsPath {
	case FlowsPathEnvironment, FlowsPathPlain:
	default:
		add("idnow.flows_path %q is invalid: use %q (/flows/{env}) or %q (/flows)", c.FlowsPath, FlowsPathEnvironment, FlowsPathPlain)
	}
	if c.Timeout <= 0 {
		add("idnow.timeout must be positive (e.g. 10s), got %s", c.Timeout)
	}
	if c.TokenEarlyRefresh < 0 {
		add("idnow.token_early_refresh must not be negative (e.g. 1m), got %s", c.TokenEarlyRefresh)
	}
	if c.MaxInFlight <= 0 {
		add("idnow.max_in_flight must be at least 1 (e.g. 64), got %d", c.MaxInFlight)
	}
	if c.RateLimit < 0 {
		add("idnow.rate_limit must be 0 (unlimited) or a positive requests/s value, got %g", c.RateLimit)
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		add("idnow.rate_burst must be at least 1 when idnow.rate_limit is set, got %d", c.RateBurst)
	}
	if c.Retry.MaxAttempts < 0 {
		add("idnow.retry.max_attempts must be 0 (until the context is done) or positive, got %d", c.Retry.MaxAttempts)
	}
	if err := c.Retry.backoff().Validate("idnow.retry"); err != nil {
		errs = append(errs, err)
	}
	if c.Retry.MaxRetryAfter <= 0 {
		add("idnow.retry.max_retry_after must be positive (e.g. 5m), got %s", c.Retry.MaxRetryAfter)
	}
	if c.MaxFileSize <= 0 {
		add("idnow.max_file_size must be positive bytes (e.g. 52428800), got %d", c.MaxFileSize)
	}
	if c.MaxResponseSize <= 0 {
		add("idnow.max_response_size must be positive bytes (e.g. 16777216), got %d", c.MaxResponseSize)
	}
	return errors.Join(errs...)
}

// LogValue keeps the client secret out of logs when a Config is logged with slog.
func (c Config) LogValue() slog.Value {
	secret := ""
	if c.ClientSecret != "" {
		secret = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("api_url", c.APIURL),
		slog.String("auth_url", c.AuthURL),
		slog.String("token_url", c.TokenURL),
		slog.String("client_id", c.ClientID),
		slog.String("client_secret", secret),
		slog.String("client_secret_file", c.ClientSecretFile),
		slog.String("auth_style", c.AuthStyle),
		slog.String("environment", c.Environment),
		slog.String("datablocks_path", c.DataBlocksPath),
		slog.String("flows_path", c.FlowsPath),
		slog.Duration("timeout", c.Timeout),
		slog.Int("max_in_flight", c.MaxInFlight),
		slog.Float64("rate_limit", c.RateLimit),
		slog.Int("retry_max_attempts", c.Retry.MaxAttempts),
		slog.Bool("allow_insecure_http", c.AllowInsecureHTTP),
	)
}

// errInsecureHint tells the operator both ways out of a refused http URL.
const errInsecureHint = "use the https URL; only a local simulator or test server may use http, and then set idnow.allow_insecure_http: true"

// checkEndpointURL checks an API, token or discovery URL: absolute, http(s), and https
// unless idnow.allow_insecure_http is set.
func (c Config) checkEndpointURL(raw string) error {
	if err := checkHTTPURL(raw); err != nil {
		return err
	}
	return c.checkScheme(raw)
}

// checkScheme refuses plain http unless idnow.allow_insecure_http is set. raw has already
// passed checkHTTPURL.
func (c Config) checkScheme(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if !strings.EqualFold(u.Scheme, "https") && !c.AllowInsecureHTTP {
		return fmt.Errorf("%w: plain http would expose the client secret and personal data in transit; %s", ErrInsecureURL, errInsecureHint)
	}
	return nil
}

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https") {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("host is missing")
	}
	return nil
}
