package idnow

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	cfg := DefaultConfig()
	cfg.APIURL = "https://api.eu.platform.idnow.io/api/v1"
	cfg.AuthURL = "https://auth.eu.platform.idnow.io/oidc"
	cfg.ClientID = "id"
	cfg.ClientSecret = "secret"
	return cfg
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string // "" means valid
	}{
		{"valid with auth_url", func(*Config) {}, ""},
		{"valid with token_url only", func(c *Config) { c.AuthURL = ""; c.TokenURL = "https://auth/oidc/token" }, ""},
		{"valid with secret file", func(c *Config) { c.ClientSecret = ""; c.ClientSecretFile = "/run/secret" }, ""},
		{"valid unlimited rate", func(c *Config) { c.RateLimit = 0; c.RateBurst = 0 }, ""},
		{"valid unlimited attempts", func(c *Config) { c.Retry.MaxAttempts = 0 }, ""},
		{"missing api_url", func(c *Config) { c.APIURL = "" }, "idnow.api_url"},
		{"relative api_url", func(c *Config) { c.APIURL = "/api/v1" }, "idnow.api_url"},
		{"no token endpoint", func(c *Config) { c.AuthURL = "" }, "idnow.token_url or idnow.auth_url"},
		{"bad token_url", func(c *Config) { c.TokenURL = "ftp://x" }, "idnow.token_url"},
		{"missing client_id", func(c *Config) { c.ClientID = "" }, "idnow.client_id"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "idnow.client_secret or idnow.client_secret_file"},
		{"both secrets", func(c *Config) { c.ClientSecretFile = "/x" }, "idnow.client_secret_file are both set"},
		{"auth style", func(c *Config) { c.AuthStyle = "jwt" }, "idnow.auth_style"},
		{"environment", func(c *Config) { c.Environment = "prod" }, "idnow.environment"},
		{"datablocks path", func(c *Config) { c.DataBlocksPath = "x" }, "idnow.datablocks_path"},
		{"flows path", func(c *Config) { c.FlowsPath = "x" }, "idnow.flows_path"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "idnow.timeout"},
		{"early refresh", func(c *Config) { c.TokenEarlyRefresh = -time.Second }, "idnow.token_early_refresh"},
		{"max in flight", func(c *Config) { c.MaxInFlight = 0 }, "idnow.max_in_flight"},
		{"rate", func(c *Config) { c.RateLimit = -1 }, "idnow.rate_limit"},
		{"burst", func(c *Config) { c.RateBurst = 0 }, "idnow.rate_burst"},
		{"attempts", func(c *Config) { c.Retry.MaxAttempts = -1 }, "idnow.retry.max_attempts"},
		{"initial backoff", func(c *Config) { c.Retry.InitialBackoff = 0 }, "idnow.retry.initial_backoff"},
		{"max backoff", func(c *Config) { c.Retry.MaxBackoff = time.Millisecond }, "idnow.retry.max_backoff"},
		{"max retry after", func(c *Config) { c.Retry.MaxRetryAfter = 0 }, "idnow.retry.max_retry_after"},
		{"file size", func(c *Config) { c.MaxFileSize = 0 }, "idnow.max_file_size"},
		{"response size", func(c *Config) { c.MaxResponseSize = 0 }, "idnow.max_response_size"},
		{"http api_url", func(c *Config) { c.APIURL = "http://api.example/api/v1" }, "idnow.api_url"},
		{"http auth_url", func(c *Config) { c.AuthURL = "http://auth.example/oidc" }, "idnow.auth_url"},
		{"http token_url", func(c *Config) { c.TokenURL = "http://auth.example/oidc/token" }, "idnow.token_url"},
		{"valid upper-case https", func(c *Config) { c.APIURL = "HTTPS://api.example/api/v1" }, ""},
		{"valid http when allowed", func(c *Config) {
			c.AllowInsecureHTTP = true
			c.APIURL, c.AuthURL, c.TokenURL = "http://127.0.0.1:8080/api/v1", "http://127.0.0.1:8080/oidc", "http://127.0.0.1:8080/oidc/token"
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tt.wantKey)
			}
		})
	}
}

// Plain http is refused with an error that names the key and both ways out.
func TestConfigValidateRefusesHTTP(t *testing.T) {
	cfg := validConfig()
	cfg.APIURL = "http://api.example/api/v1"
	cfg.AuthURL = "http://auth.example/oidc"
	err := cfg.Validate()
	if !errors.Is(err, ErrInsecureURL) {
		t.Fatalf("Validate() = %v, want ErrInsecureURL", err)
	}
	for _, want := range []string{`idnow.api_url "http://api.example/api/v1"`, `idnow.auth_url "http://auth.example/oidc"`, "use the https URL", "idnow.allow_insecure_http: true"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, want it to contain %q", err, want)
		}
	}
	if DefaultConfig().AllowInsecureHTTP {
		t.Fatal("idnow.allow_insecure_http must default to false")
	}
}

func TestDefaultConfigNeedsOnlyEndpointsAndCredentials(t *testing.T) {
	err := DefaultConfig().Validate()
	if err == nil {
		t.Fatal("DefaultConfig().Validate() = nil, want errors for the unset required keys")
	}
	for _, key := range []string{"idnow.api_url", "idnow.client_id", "idnow.client_secret"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not name %s", err, key)
		}
	}
	for _, key := range []string{"idnow.timeout", "idnow.max_in_flight", "idnow.retry"} {
		if strings.Contains(err.Error(), key) {
			t.Errorf("error %q complains about defaulted %s", err, key)
		}
	}
}

func TestConfigLogValueRedactsSecret(t *testing.T) {
	cfg := validConfig()
	cfg.ClientSecret = "pa55-w0rd-xyz"
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", slog.Any("idnow", cfg))
	if strings.Contains(b.String(), cfg.ClientSecret) {
		t.Fatalf("log line %q contains the secret", b.String())
	}
	if !strings.Contains(b.String(), "[redacted]") {
		t.Fatalf("log line %q lacks the redaction marker", b.String())
	}
}

func TestNewReadsSecretFile(t *testing.T) {
	f := newFake(t)
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(testClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := newTestClient(t, f, func(c *Config) { c.ClientSecret = ""; c.ClientSecretFile = path })
	if err := c.Token(t.Context()); err != nil {
		t.Fatalf("Token with secret file: %v", err)
	}

	cfg := f.config()
	cfg.ClientSecret = ""
	cfg.ClientSecretFile = filepath.Join(t.TempDir(), "missing")
	if _, err := New(t.Context(), cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "idnow.client_secret_file") {
		t.Fatalf("New with missing secret file = %v, want an error naming idnow.client_secret_file", err)
	}
}
