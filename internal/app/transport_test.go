package app

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// captureHandler keeps every record it is given.
type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *captureHandler) WithGroup(string) slog.Handler      { return h }

// lines returns "LEVEL key" per record, and fails on a record without a key or whose message
// does not name it.
func (h *captureHandler) lines(t *testing.T) []string {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		var key string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "key" {
				key = a.Value.String()
			}
			return true
		})
		if key == "" || !strings.Contains(r.Message, key) {
			t.Errorf("log line %q does not name its key (key attribute %q)", r.Message, key)
		}
		out = append(out, r.Level.String()+" "+key)
	}
	slices.Sort(out)
	return out
}

// secureConfig is a production-shaped configuration with every transport encrypted and
// verified, and both listeners on loopback: it must log nothing.
func secureConfig() Config {
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = []string{"kafka-1.internal:9093"}
	cfg.Kafka.TLS.Enabled = true
	cfg.Kafka.SASL = kafkaSASL("SCRAM-SHA-512")
	cfg.SchemaRegistry.URL = "https://registry.internal:8081"
	cfg.Webhook.JWKSURL = "https://auth.eu.platform.idnow.io/oidc/.well-known/jwks.json"
	cfg.IDnow.APIURL = "https://api.eu.platform.idnow.io/api/v1"
	cfg.IDnow.AuthURL = "https://auth.eu.platform.idnow.io/oidc"
	cfg.Ingress.Listen = "127.0.0.1:8080"
	cfg.Admin.Listen = "127.0.0.1:9090"
	return cfg
}

// TestTransportWarnings reproduces issue 9 problem 7: an http IDnow URL, Kafka
// insecure_skip_verify and SASL PLAIN without TLS were accepted without a word. Each plain-text
// or unverified transport the mode uses now gets exactly one WARN line naming its key.
func TestTransportWarnings(t *testing.T) {
	tests := []struct {
		name string
		mode Mode
		mod  func(*Config)
		want []string
	}{
		{name: "all secure", mode: ModeRun, mod: func(*Config) {}},
		{name: "http idnow urls", mode: ModeEnricher, mod: func(c *Config) {
			c.IDnow.AllowInsecureHTTP = true
			c.IDnow.APIURL = "http://idnow-proxy.internal/api/v1"
			c.IDnow.TokenURL = "http://idnow-proxy.internal/token"
			c.IDnow.AuthURL = "http://idnow-proxy.internal/oidc"
		}, want: []string{"WARN idnow.api_url", "WARN idnow.auth_url", "WARN idnow.token_url"}},
		{name: "idnow urls are not the ingress's business", mode: ModeIngress, mod: func(c *Config) {
			c.IDnow.APIURL = "http://idnow-proxy.internal/api/v1"
		}},
		{name: "http jwks", mode: ModeIngress, mod: func(c *Config) {
			c.Webhook.JWKSURL = "http://auth.internal/jwks.json"
		}, want: []string{"WARN webhook.jwks_url"}},
		{name: "jwks is not the enricher's business", mode: ModeEnricher, mod: func(c *Config) {
			c.Webhook.JWKSURL = "http://auth.internal/jwks.json"
		}},
		{name: "kafka skip verify", mode: ModeIngress, mod: func(c *Config) {
			c.Kafka.TLS.InsecureSkipVerify = true
		}, want: []string{"WARN kafka.tls.insecure_skip_verify"}},
		{name: "sasl plain without tls", mode: ModeEnricher, mod: func(c *Config) {
			c.Kafka.TLS.Enabled = false
			c.Kafka.SASL = kafkaSASL("PLAIN")
		}, want: []string{"WARN kafka.sasl.mechanism"}},
		{name: "scram without tls", mode: ModeEnricher, mod: func(c *Config) {
			c.Kafka.TLS.Enabled = false
		}, want: []string{"WARN kafka.sasl.mechanism"}},
		{name: "plain kafka", mode: ModeIngress, mod: func(c *Config) {
			c.Kafka.TLS.Enabled = false
			c.Kafka.SASL = kafkaSASL("")
		}, want: []string{"WARN kafka.tls.enabled"}},
		{name: "loopback transports are fine", mode: ModeRun, mod: func(c *Config) {
			c.Kafka.Brokers = []string{"127.0.0.1:9092", "localhost:9093"}
			c.Kafka.TLS.Enabled = false
			c.SchemaRegistry.URL = "http://127.0.0.1:8081"
			c.IDnow.APIURL = "http://localhost:8000/api/v1"
			c.Webhook.JWKSURL = "http://[::1]:8000/jwks.json"
		}},
		{name: "http schema registry", mode: ModeIngress, mod: func(c *Config) {
			c.SchemaRegistry.URL = "http://registry.internal:8081"
		}, want: []string{"WARN schema_registry.url"}},
		{name: "listeners on all interfaces", mode: ModeRun, mod: func(c *Config) {
			c.Ingress.Listen = ":8080"
			c.Admin.Listen = "0.0.0.0:9090"
		}, want: []string{"INFO admin.listen", "INFO ingress.listen"}},
		{name: "the enricher has no ingress listener", mode: ModeEnricher, mod: func(c *Config) {
			c.Ingress.Listen = ":8080"
		}},
		{name: "everything at once", mode: ModeRun, mod: func(c *Config) {
			c.Kafka.TLS.InsecureSkipVerify = true
			c.SchemaRegistry.URL = "http://registry.internal:8081"
			c.Webhook.JWKSURL = "http://auth.internal/jwks.json"
			c.IDnow.TokenURL = "http://auth.internal/token"
			c.Ingress.Listen = ":8080"
		}, want: []string{"INFO ingress.listen", "WARN idnow.token_url", "WARN kafka.tls.insecure_skip_verify", "WARN schema_registry.url", "WARN webhook.jwks_url"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := secureConfig()
			tc.mod(&cfg)
			h := &captureHandler{}
			logTransportNotes(t.Context(), slog.New(h), cfg, tc.mode)
			if got := h.lines(t); !slices.Equal(got, tc.want) {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTransportWarningsRedactPasswords: a URL's password must not reach the log.
func TestTransportWarningsRedactPasswords(t *testing.T) {
	cfg := secureConfig()
	cfg.SchemaRegistry.URL = "http://user:s3cret@registry.internal:8081"
	h := &captureHandler{}
	logTransportNotes(t.Context(), slog.New(h), cfg, ModeIngress)
	if len(h.recs) != 1 || strings.Contains(h.recs[0].Message, "s3cret") {
		t.Fatalf("want one redacted line, got %v", h.recs)
	}
}

// TestStartLogsTransportWarnings checks Start itself writes the notes, first thing: here the
// admin port is taken, so Start fails right after them without contacting anything.
func TestStartLogsTransportWarnings(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := testConfig()
	cfg.Admin.Listen = taken.Addr().String()
	cfg.SchemaRegistry.URL = "http://registry.internal:8081"
	h := &captureHandler{}
	a, err := New(cfg, ModeRun, slog.New(h), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err == nil {
		t.Fatal("start-up on a taken admin port succeeded")
	}
	if got := h.lines(t); !slices.Equal(got, []string{"WARN schema_registry.url"}) {
		t.Fatalf("Start logged %q, want the schema registry warning", got)
	}
}

func kafkaSASL(mechanism string) kafka.SASLConfig {
	if mechanism == "" {
		return kafka.SASLConfig{}
	}
	return kafka.SASLConfig{Mechanism: mechanism, Username: "connector", Password: "pw"}
}

// TestTransportWarningNamesRegistryCredentials: a bearer token sent over plain http is as exposed
// as a password, and the warning says so.
func TestTransportWarningNamesRegistryCredentials(t *testing.T) {
	for _, tc := range []struct {
		name      string
		user, tok string
		want      bool
	}{
		{"no credentials", "", "", false},
		{"basic auth", "connector", "", true},
		{"bearer token file", "", "/var/run/secrets/registry-token", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.SchemaRegistry.URL = "http://registry.internal:8081"
			cfg.SchemaRegistry.Username, cfg.SchemaRegistry.BearerTokenFile = tc.user, tc.tok
			h := &captureHandler{}
			logTransportNotes(t.Context(), slog.New(h), cfg, ModeEnricher)
			var msg string
			for _, r := range h.recs {
				if strings.Contains(r.Message, "schema_registry.url") {
					msg = r.Message
				}
			}
			if msg == "" {
				t.Fatal("no schema_registry.url warning")
			}
			if got := strings.Contains(msg, "with the registry credentials"); got != tc.want {
				t.Fatalf("warning %q: mentions credentials = %v, want %v", msg, got, tc.want)
			}
		})
	}
}
