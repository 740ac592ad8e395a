package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults of the webhook section. They are exported so that the root config documentation and the
// sample config.yaml can quote them instead of repeating literals.
const (
	// DefaultClockSkew is the leeway granted on exp, iat and nbf. IDnow's clocks and ours are both
	// NTP-synchronised; 30 s covers ordinary drift without widening the replay window much.
	DefaultClockSkew = 30 * time.Second
	// DefaultJWKSRefreshInterval is how often the JWKS is re-read in the background so that revoked
	// keys disappear even when no token with an unknown kid arrives.
	DefaultJWKSRefreshInterval = time.Hour
	// DefaultJWKSRefetchMinInterval bounds refetches triggered by unknown kids, so a flood of forged
	// tokens cannot turn the receiver into a load generator against IDnow's JWKS host.
	DefaultJWKSRefetchMinInterval = 10 * time.Second
	// DefaultJWKSTimeout bounds one JWKS HTTP request.
	DefaultJWKSTimeout = 5 * time.Second
	// DefaultMaxTokenAge bounds how long after its iat a token is accepted, whatever its exp says.
	// IDnow signs each delivery when it sends it and retries for far less than a day, so an older
	// token is a replay (or a token minted with a far-future exp) rather than a late delivery.
	DefaultMaxTokenAge = 24 * time.Hour
	// MaxClockSkew is the largest accepted clock_skew: a larger leeway would let expired tokens be
	// replayed for longer than any real clock drift explains.
	MaxClockSkew = 5 * time.Minute
)

// asymmetricAlgorithms are the JWS algorithms the verifier can be configured to accept. Only
// RSA and ECDSA signatures qualify: "none" is unsigned and the HS* family would turn a public key
// into a shared secret (the classic algorithm-confusion attack).
var asymmetricAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
}

// Config is the `webhook.*` config section: how signed IDnow webhooks are verified.
type Config struct {
	// JWKSURL is IDnow's JWKS endpoint, e.g.
	// https://auth.eu.platform.idnow.io/oidc/.well-known/jwks.json. Required.
	JWKSURL string `koanf:"jwks_url"`
	// Issuer is the expected `iss` claim. Required.
	Issuer string `koanf:"issuer"`
	// Audience is the expected `aud` claim, configured per webhook endpoint at IDnow (in practice
	// the receiver's URL). Required.
	Audience string `koanf:"audience"`
	// ClockSkew is the leeway applied to exp, iat and nbf. Default 30s.
	ClockSkew time.Duration `koanf:"clock_skew"`
	// Algorithms are the accepted JWS algorithms. Default ["RS256","ES256"]. Only asymmetric
	// algorithms (RS*, PS*, ES*) are allowed; none and HS* are rejected by Validate.
	Algorithms []string `koanf:"algorithms"`
	// JWKSRefreshInterval is the period of the background JWKS refresh. Default 1h.
	JWKSRefreshInterval time.Duration `koanf:"jwks_refresh_interval"`
	// JWKSRefetchMinInterval is the minimum spacing of refetches triggered by an unknown kid.
	// Default 10s.
	JWKSRefetchMinInterval time.Duration `koanf:"jwks_refetch_min_interval"`
	// JWKSTimeout bounds each JWKS HTTP request. Default 5s.
	JWKSTimeout time.Duration `koanf:"jwks_timeout"`
	// MaxTokenAge bounds now - iat (plus ClockSkew): older tokens are rejected even when their exp
	// lies far ahead. Default 24h.
	MaxTokenAge time.Duration `koanf:"max_token_age"`
	// StaticHeader is an optional extra header IDnow sends with every webhook.
	StaticHeader StaticHeaderConfig `koanf:"static_header"`
	// AllowInsecureHTTP permits an http:// JWKSURL. It is not a key of its own: the application
	// copies idnow.allow_insecure_http into it (the simulator and tests serve their JWKS over plain
	// http). Without it only https is accepted, because whoever can alter the JWKS response can
	// sign webhooks.
	AllowInsecureHTTP bool `koanf:"-"`
}

// StaticHeaderConfig is the `webhook.static_header.*` section: an extra static header configured
// on the IDnow webhook endpoint (e.g. `Authorization: Basic ...`) that every delivery must carry.
type StaticHeaderConfig struct {
	// Name is the header name; empty disables the check.
	Name string `koanf:"name"`
	// Value is the expected header value. It is a secret: never logged.
	Value string `koanf:"value"`
	// ValueFile is an alternative to Value: the secret is read from this file when the verifier
	// is created, with one trailing newline trimmed.
	ValueFile string `koanf:"value_file"`
}

// DefaultConfig returns the section with every optional key at its default. The required keys
// (jwks_url, issuer, audience) are left empty on purpose: there is no safe guess for them.
func DefaultConfig() Config {
	return Config{
		ClockSkew:              DefaultClockSkew,
		Algorithms:             []string{"RS256", "ES256"},
		JWKSRefreshInterval:    DefaultJWKSRefreshInterval,
		JWKSRefetchMinInterval: DefaultJWKSRefetchMinInterval,
		JWKSTimeout:            DefaultJWKSTimeout,
		MaxTokenAge:            DefaultMaxTokenAge,
	}
}

// Validate checks the section and reports every problem at once, each naming its full config key
// and how to fix it.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch u, err := url.Parse(c.JWKSURL); {
	case strings.TrimSpace(c.JWKSURL) == "":
		add("webhook.jwks_url is required: set it to IDnow's JWKS endpoint, e.g. https://auth.eu.platform.idnow.io/oidc/.well-known/jwks.json")
	case err != nil:
		add("webhook.jwks_url %q is not a valid URL: %w", c.JWKSURL, err)
	case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		add("webhook.jwks_url %q must be an absolute http(s) URL with a host, e.g. https://auth.eu.platform.idnow.io/oidc/.well-known/jwks.json", c.JWKSURL)
	case u.Scheme == "http" && !c.AllowInsecureHTTP:
		add("webhook.jwks_url %q uses plain http, so anyone on the path could substitute signing keys and forge webhooks: use an https URL, or set idnow.allow_insecure_http: true for development only", c.JWKSURL)
	}
	if strings.TrimSpace(c.Issuer) == "" {
		add("webhook.issuer is required: set it to the iss claim IDnow puts in webhook tokens (the OIDC issuer, e.g. https://auth.eu.platform.idnow.io/oidc)")
	}
	if strings.TrimSpace(c.Audience) == "" {
		add("webhook.audience is required: set it to the audience configured for this webhook endpoint at IDnow (usually the receiver's public URL)")
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		add("webhook.clock_skew %s is out of range: use a duration between 0s and %s (default %s)", c.ClockSkew, MaxClockSkew, DefaultClockSkew)
	}
	if len(c.Algorithms) == 0 {
		add("webhook.algorithms is empty: list at least one of %s (default RS256, ES256)", strings.Join(asymmetricAlgorithms, ", "))
	}
	for _, alg := range c.Algorithms {
		if !slices.Contains(asymmetricAlgorithms, alg) {
			add("webhook.algorithms contains %q, which is not allowed: only asymmetric algorithms (%s) are accepted; none and HS* would let anyone forge webhooks", alg, strings.Join(asymmetricAlgorithms, ", "))
		}
	}
	if c.JWKSRefreshInterval <= 0 {
		add("webhook.jwks_refresh_interval must be positive (default %s)", DefaultJWKSRefreshInterval)
	}
	if c.JWKSRefetchMinInterval <= 0 {
		add("webhook.jwks_refetch_min_interval must be positive (default %s): it rate-limits JWKS refetches caused by unknown kids", DefaultJWKSRefetchMinInterval)
	}
	if c.JWKSTimeout <= 0 {
		add("webhook.jwks_timeout must be positive (default %s)", DefaultJWKSTimeout)
	}
	if c.MaxTokenAge <= 0 {
		add("webhook.max_token_age must be positive (default %s): it bounds how old (now - iat) an accepted token may be", DefaultMaxTokenAge)
	}
	errs = append(errs, c.StaticHeader.validate()...)
	return errors.Join(errs...)
}

func (s StaticHeaderConfig) validate() []error {
	if s.Name == "" {
		if s.Value != "" || s.ValueFile != "" {
			return []error{errors.New("webhook.static_header.value or value_file is set but webhook.static_header.name is empty: set the header name or remove the value")}
		}
		return nil
	}
	var errs []error
	if !validHeaderName(s.Name) {
		errs = append(errs, fmt.Errorf("webhook.static_header.name %q is not a valid HTTP header name: use letters, digits and - (e.g. Authorization or X-Webhook-Secret)", s.Name))
	}
	switch {
	case s.Value == "" && s.ValueFile == "":
		errs = append(errs, errors.New("webhook.static_header.value or webhook.static_header.value_file is required when webhook.static_header.name is set"))
	case s.Value != "" && s.ValueFile != "":
		errs = append(errs, errors.New("webhook.static_header.value and webhook.static_header.value_file are both set: keep only one"))
	}
	return errs
}

// validHeaderName reports whether name is an RFC 9110 token, the grammar of header field names.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
