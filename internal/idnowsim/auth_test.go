package idnowsim

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantKey string // substring of the error; empty = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"empty listen", func(c *Config) { c.Listen = "" }, "simulator.listen"},
		{"bad listen", func(c *Config) { c.Listen = "8091" }, "simulator.listen"},
		{"bad public url", func(c *Config) { c.PublicURL = "ftp://x" }, "simulator.public_url"},
		{"no client id", func(c *Config) { c.ClientID = "" }, "simulator.client_id"},
		{"no client secret", func(c *Config) { c.ClientSecret = "" }, "simulator.client_secret"},
		{"bad environment", func(c *Config) { c.Environment = "prod" }, "simulator.environment"},
		{"short token", func(c *Config) { c.TokenLifetime = time.Millisecond }, "simulator.token_lifetime"},
		{"bad webhook url", func(c *Config) { c.WebhookURL = "localhost:8080" }, "simulator.webhook_url"},
		{"bad variant", func(c *Config) { c.WebhookVariant = "xml" }, "simulator.webhook_variant"},
		{"bad header", func(c *Config) { c.WebhookHeaders = map[string]string{"Bad Name": "x"} }, "simulator.webhook_headers"},
		{"too many retries", func(c *Config) { c.WebhookRetries = 11 }, "simulator.webhook_retries"},
		{"sessions without rate", func(c *Config) { c.Sessions, c.Rate = 5, 0 }, "simulator.rate"},
		{"bad shape", func(c *Config) { c.DataBlocksShape = "newest" }, "simulator.datablocks_shape"},
		{"bad paging", func(c *Config) { c.FlowsPaging = "cursor" }, "simulator.flows_paging"},
		{"bad last step", func(c *Config) { c.LastStepVariant = "x" }, "simulator.last_step_variant"},
		{"bad outcome case", func(c *Config) { c.OutcomeCase = "title" }, "simulator.outcome_case"},
		{"rate above 1", func(c *Config) { c.Faults.Rate500 = 1.5 }, "simulator.faults.rate_500"},
		{"rates sum above 1", func(c *Config) { c.Faults.Rate429, c.Faults.Rate503 = 0.6, 0.6 }, "simulator.faults.rate_429"},
		{"slow without delay", func(c *Config) { c.Faults.RateSlow, c.Faults.SlowDelay = 0.1, 0 }, "simulator.faults.slow_delay"},
		{"shuffle without window", func(c *Config) { c.Shuffle, c.ShuffleWindow = true, 0 }, "simulator.shuffle_window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantKey) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantKey)
			}
		})
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	sim := startSim(t, nil)
	c := testClient(t)
	r := do(t, c, http.MethodGet, sim.URL()+"/oidc/.well-known/openid-configuration", "", nil, nil)
	if r.code != http.StatusOK {
		t.Fatalf("discovery: %d", r.code)
	}
	d := r.json(t)
	for key, want := range map[string]string{"issuer": sim.Issuer(), "token_endpoint": sim.TokenURL(), "jwks_uri": sim.JWKSURL()} {
		if d[key] != want {
			t.Errorf("discovery %s = %v, want %s", key, d[key], want)
		}
	}
	r = do(t, c, http.MethodGet, sim.JWKSURL(), "", nil, nil)
	keys, _ := r.json(t)["keys"].([]any)
	if r.code != http.StatusOK || len(keys) != 1 {
		t.Fatalf("JWKS: %d %s", r.code, r.body)
	}
	k := keys[0].(map[string]any)
	if k["kid"] != sim.KeyIDs()[0] || k["alg"] != "RS256" || k["kty"] != "RSA" || k["d"] != nil {
		t.Errorf("JWK = %v, want the public RS256 key %s", k, sim.KeyIDs()[0])
	}
}

func TestTokenEndpoint(t *testing.T) {
	sim := startSim(t, func(c *Config) {
		c.ClientID = "my client" // needs form-encoding in the Basic header
		c.ClientSecret = "s3cr&t"
		c.TokenLifetime = 90 * time.Second
	})
	c := testClient(t)
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	formHeader := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	basic := func(id, secret string) http.Header {
		req, _ := http.NewRequest(http.MethodPost, "/", nil)
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		return http.Header{"Content-Type": formHeader["Content-Type"], "Authorization": req.Header["Authorization"]}
	}
	tests := []struct {
		name      string
		method    string
		body      string
		header    http.Header
		wantCode  int
		wantError string
	}{
		{"basic", http.MethodPost, form("grant_type", "client_credentials"), basic("my client", "s3cr&t"), 200, ""},
		{"post", http.MethodPost, form("grant_type", "client_credentials", "client_id", "my client", "client_secret", "s3cr&t"), formHeader, 200, ""},
		{"basic wrong secret", http.MethodPost, form("grant_type", "client_credentials"), basic("my client", "nope"), 401, "invalid_client"},
		{"post wrong id", http.MethodPost, form("grant_type", "client_credentials", "client_id", "x", "client_secret", "s3cr&t"), formHeader, 401, "invalid_client"},
		{"no credentials", http.MethodPost, form("grant_type", "client_credentials"), formHeader, 401, "invalid_client"},
		{"unsupported grant", http.MethodPost, form("grant_type", "password"), basic("my client", "s3cr&t"), 400, "unsupported_grant_type"},
		{"missing grant", http.MethodPost, form(), basic("my client", "s3cr&t"), 400, "invalid_request"},
		{"two methods", http.MethodPost, form("grant_type", "client_credentials", "client_secret", "s3cr&t"), basic("my client", "s3cr&t"), 400, "invalid_request"},
		{"json body", http.MethodPost, `{"grant_type":"client_credentials"}`, http.Header{"Content-Type": {"application/json"}}, 400, "invalid_request"},
		{"GET", http.MethodGet, "", nil, 405, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, tt.method, sim.TokenURL(), "", strings.NewReader(tt.body), tt.header)
			if r.code != tt.wantCode {
				t.Fatalf("status %d, want %d (%s)", r.code, tt.wantCode, r.body)
			}
			m := r.json(t)
			if tt.wantError != "" {
				if m["error"] != tt.wantError {
					t.Fatalf("error %v, want %s", m["error"], tt.wantError)
				}
				return
			}
			if m["token_type"] != "Bearer" || m["expires_in"] != float64(90) || m["access_token"] == "" {
				t.Fatalf("token response %v", m)
			}
			tok := m["access_token"].(string)
			if got := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", tok, nil, nil); got.code != 200 {
				t.Fatalf("issued token refused: %d", got.code)
			}
		})
	}
	st := sim.Stats()
	if st.TokenRequestsBasic != 1 || st.TokenRequestsPost != 1 {
		t.Errorf("stats basic=%d post=%d, want 1 and 1", st.TokenRequestsBasic, st.TokenRequestsPost)
	}
}

func TestAPIAuthorization(t *testing.T) {
	sim := startSim(t, nil)
	c := testClient(t)
	tok := getToken(t, c, sim)

	tests := []struct {
		name  string
		path  string
		token string
		want  int
	}{
		{"no token", "/flows/live", "", 401},
		{"unknown token", "/flows/live", "not-a-token", 401},
		{"own environment", "/flows/live", tok, 200},
		{"other environment", "/flows/staging", tok, 403},
		{"other environment session", "/staging/sessions/x", tok, 403},
		{"unknown environment", "/flows/prod", tok, 404},
		{"unknown session", "/live/sessions/does-not-exist", tok, 404},
		{"unknown endpoint", "/nothing/here/at/all/really", tok, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, http.MethodGet, sim.APIURL()+tt.path, tt.token, nil, nil)
			if r.code != tt.want {
				t.Fatalf("status %d, want %d (%s)", r.code, tt.want, r.body)
			}
			if r.code == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// A revoked token is refused until the client fetches a new one (the 401-refresh path).
	sim.RevokeTokens()
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", tok, nil, nil); r.code != 401 {
		t.Fatalf("revoked token: %d, want 401", r.code)
	}
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", getToken(t, c, sim), nil, nil); r.code != 200 {
		t.Fatalf("fresh token: %d, want 200", r.code)
	}

	// An expired token is refused too; the expiry is moved into the past instead of waiting.
	tok = getToken(t, c, sim)
	sim.mu.Lock()
	info := sim.tokens[tok]
	info.expiresAt = time.Now().Add(-time.Second)
	sim.tokens[tok] = info
	sim.mu.Unlock()
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", tok, nil, nil); r.code != 401 {
		t.Fatalf("expired token: %d, want 401", r.code)
	}
}

func TestStagingClient(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.Environment = EnvStaging })
	c := testClient(t)
	tok := getToken(t, c, sim)
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/staging", tok, nil, nil); r.code != 200 {
		t.Fatalf("staging flows: %d", r.code)
	}
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", tok, nil, nil); r.code != 403 {
		t.Fatalf("live flows with a staging token: %d, want 403", r.code)
	}
	r := do(t, c, http.MethodGet, sim.APIURL()+"/flows", tok, nil, nil)
	content, _ := r.json(t)["content"].([]any)
	if r.code != 200 || len(content) == 0 || content[0].(map[string]any)["environment"] != EnvStaging {
		t.Fatalf("GET /flows for a staging client: %d %s", r.code, r.body)
	}
	ids := sim.CreateSessions(1)
	if r := do(t, c, http.MethodGet, sim.APIURL()+"/staging/sessions/"+ids[0], tok, nil, nil); r.code != 200 {
		t.Fatalf("generated staging session: %d", r.code)
	}
}
