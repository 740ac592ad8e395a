package webhook_test

import (
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
)

func TestDefaultConfig(t *testing.T) {
	c := webhook.DefaultConfig()
	if c.ClockSkew != 30*time.Second || c.JWKSRefreshInterval != time.Hour ||
		c.JWKSRefetchMinInterval != 10*time.Second || c.JWKSTimeout != 5*time.Second ||
		c.MaxTokenAge != 24*time.Hour || c.AllowInsecureHTTP ||
		strings.Join(c.Algorithms, ",") != "RS256,ES256" {
		t.Fatalf("DefaultConfig() = %+v", c)
	}
	// The defaults alone are not enough: the required keys have no safe default.
	err := c.Validate()
	for _, key := range []string{"webhook.jwks_url", "webhook.issuer", "webhook.audience"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() of defaults = %v, want it to name %s", err, key)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() webhook.Config {
		c := webhook.DefaultConfig()
		c.JWKSURL = "https://auth.eu.platform.idnow.io/oidc/.well-known/jwks.json"
		c.Issuer = "https://auth.eu.platform.idnow.io/oidc"
		c.Audience = "https://receiver.example/webhooks/idnow"
		return c
	}
	tests := []struct {
		name    string
		mod     func(*webhook.Config)
		wantErr []string // substrings; empty means valid
	}{
		{name: "valid", mod: func(*webhook.Config) {}},
		{name: "http loopback URL for the simulator", mod: func(c *webhook.Config) {
			c.JWKSURL, c.AllowInsecureHTTP = "http://127.0.0.1:8081/jwks.json", true
		}},
		{name: "http URL when insecure http is allowed", mod: func(c *webhook.Config) {
			c.JWKSURL, c.AllowInsecureHTTP = "http://jwks.internal/jwks.json", true
		}},
		{name: "http URL refused by default", mod: func(c *webhook.Config) { c.JWKSURL = "http://127.0.0.1:8081/jwks.json" },
			wantErr: []string{"webhook.jwks_url", "plain http", "use an https URL", "idnow.allow_insecure_http"}},
		{name: "upper-case HTTP scheme refused by default", mod: func(c *webhook.Config) { c.JWKSURL = "HTTP://auth.example/jwks.json" },
			wantErr: []string{"plain http"}},
		{name: "long max token age", mod: func(c *webhook.Config) { c.MaxTokenAge = 7 * 24 * time.Hour }},
		{name: "zero max token age", mod: func(c *webhook.Config) { c.MaxTokenAge = 0 }, wantErr: []string{"webhook.max_token_age must be positive"}},
		{name: "negative max token age", mod: func(c *webhook.Config) { c.MaxTokenAge = -time.Hour }, wantErr: []string{"webhook.max_token_age"}},
		{name: "all asymmetric algorithms", mod: func(c *webhook.Config) {
			c.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
		}},
		{name: "zero clock skew", mod: func(c *webhook.Config) { c.ClockSkew = 0 }},
		{name: "static header with value", mod: func(c *webhook.Config) {
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "Authorization", Value: "Basic x"}
		}},
		{name: "static header with file", mod: func(c *webhook.Config) {
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "X-Webhook-Secret", ValueFile: "/run/secrets/hook"}
		}},
		{name: "missing jwks_url", mod: func(c *webhook.Config) { c.JWKSURL = "" }, wantErr: []string{"webhook.jwks_url is required"}},
		{name: "relative jwks_url", mod: func(c *webhook.Config) { c.JWKSURL = "/jwks.json" }, wantErr: []string{"webhook.jwks_url"}},
		{name: "ftp jwks_url", mod: func(c *webhook.Config) { c.JWKSURL = "ftp://host/jwks" }, wantErr: []string{"webhook.jwks_url"}},
		{name: "unparsable jwks_url", mod: func(c *webhook.Config) { c.JWKSURL = "https://bad host/%zz" }, wantErr: []string{"webhook.jwks_url"}},
		{name: "missing issuer", mod: func(c *webhook.Config) { c.Issuer = " " }, wantErr: []string{"webhook.issuer"}},
		{name: "missing audience", mod: func(c *webhook.Config) { c.Audience = "" }, wantErr: []string{"webhook.audience"}},
		{name: "negative clock skew", mod: func(c *webhook.Config) { c.ClockSkew = -time.Second }, wantErr: []string{"webhook.clock_skew"}},
		{name: "huge clock skew", mod: func(c *webhook.Config) { c.ClockSkew = time.Hour }, wantErr: []string{"webhook.clock_skew"}},
		{name: "no algorithms", mod: func(c *webhook.Config) { c.Algorithms = nil }, wantErr: []string{"webhook.algorithms is empty"}},
		{name: "alg none", mod: func(c *webhook.Config) { c.Algorithms = []string{"RS256", "none"} }, wantErr: []string{`webhook.algorithms contains "none"`}},
		{name: "HS256", mod: func(c *webhook.Config) { c.Algorithms = []string{"HS256"} }, wantErr: []string{`webhook.algorithms contains "HS256"`}},
		{name: "lower-case alg", mod: func(c *webhook.Config) { c.Algorithms = []string{"rs256"} }, wantErr: []string{`"rs256"`}},
		{name: "zero refresh interval", mod: func(c *webhook.Config) { c.JWKSRefreshInterval = 0 }, wantErr: []string{"webhook.jwks_refresh_interval"}},
		{name: "zero refetch interval", mod: func(c *webhook.Config) { c.JWKSRefetchMinInterval = 0 }, wantErr: []string{"webhook.jwks_refetch_min_interval"}},
		{name: "zero timeout", mod: func(c *webhook.Config) { c.JWKSTimeout = 0 }, wantErr: []string{"webhook.jwks_timeout"}},
		{name: "static value without name", mod: func(c *webhook.Config) { c.StaticHeader.Value = "x" }, wantErr: []string{"webhook.static_header.name is empty"}},
		{name: "static name without value", mod: func(c *webhook.Config) { c.StaticHeader.Name = "Authorization" }, wantErr: []string{"webhook.static_header.value_file is required"}},
		{name: "static value and file", mod: func(c *webhook.Config) {
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "Authorization", Value: "x", ValueFile: "/f"}
		}, wantErr: []string{"both set"}},
		{name: "static header name with space", mod: func(c *webhook.Config) {
			c.StaticHeader = webhook.StaticHeaderConfig{Name: "Bad Header", Value: "x"}
		}, wantErr: []string{"webhook.static_header.name"}},
		{name: "several problems reported together", mod: func(c *webhook.Config) { c.Issuer, c.Audience = "", "" },
			wantErr: []string{"webhook.issuer", "webhook.audience"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mod(&c)
			err := c.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}
