package idnow

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testClientID     = "client-1"
	testClientSecret = "s3cret"
)

// fakeIDnow is a minimal IDnow platform: a client-credentials token endpoint, OIDC
// discovery and whatever API handlers a test registers under /api/v1. API handlers only
// run for requests bearing a token the fake issued and has not revoked.
type fakeIDnow struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	// authStyle is "basic" or "post": how the token endpoint expects credentials.
	authStyle     string
	tokenLifetime atomic.Int64 // seconds; 0 omits expires_in
	tokenDelay    atomic.Int64 // nanoseconds the token endpoint waits before answering
	tokenStatus   atomic.Int64 // when non-zero the token endpoint answers this status

	tokenHits atomic.Int64
	seq       atomic.Int64

	mu      sync.Mutex
	valid   map[string]bool
	hits    map[string]int
	authSeq []string // Authorization headers seen by API handlers, in order
	targets []string // raw request targets (RequestURI) of every request, in order
}

func newFake(t *testing.T) *fakeIDnow {
	t.Helper()
	return startFake(t, httptest.NewServer)
}

// newTLSFake is newFake over https; newTestClient trusts its certificate, so the client can
// run with production settings (idnow.allow_insecure_http false).
func newTLSFake(t *testing.T) *fakeIDnow {
	t.Helper()
	return startFake(t, httptest.NewTLSServer)
}

func startFake(t *testing.T, start func(http.Handler) *httptest.Server) *fakeIDnow {
	t.Helper()
	f := &fakeIDnow{t: t, mux: http.NewServeMux(), authStyle: AuthStyleBasic, valid: map[string]bool{}, hits: map[string]int{}}
	f.tokenLifetime.Store(3600)
	f.mux.HandleFunc("POST /oidc/token", f.token)
	f.mux.HandleFunc("GET /oidc/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":         f.srv.URL + "/oidc",
			"token_endpoint": f.srv.URL + "/oidc/token",
			"jwks_uri":       f.srv.URL + "/oidc/.well-known/jwks.json",
		})
	})
	f.srv = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.targets = append(f.targets, r.RequestURI)
		f.mu.Unlock()
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// requestTargets returns the raw request targets the fake has received so far.
func (f *fakeIDnow) requestTargets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.targets)
}

func (f *fakeIDnow) token(w http.ResponseWriter, r *http.Request) {
	f.tokenHits.Add(1)
	if d := time.Duration(f.tokenDelay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if s := f.tokenStatus.Load(); s != 0 {
		writeJSON(w, int(s), map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	var id, secret string
	switch f.authStyle {
	case AuthStyleBasic:
		var ok bool
		if id, secret, ok = r.BasicAuth(); !ok || r.PostForm.Get("client_secret") != "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
	default:
		if _, _, ok := r.BasicAuth(); ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	tok := fmt.Sprintf("tok-%d", f.seq.Add(1))
	f.mu.Lock()
	f.valid[tok] = true
	f.mu.Unlock()
	body := map[string]any{"access_token": tok, "token_type": "Bearer"}
	if l := f.tokenLifetime.Load(); l > 0 {
		body["expires_in"] = l
	}
	writeJSON(w, http.StatusOK, body)
}

// revokeAll makes every issued token invalid, as a key rotation on IDnow's side would.
func (f *fakeIDnow) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.valid = map[string]bool{}
}

// handle registers an authenticated API handler; pattern paths are relative to /api/v1.
func (f *fakeIDnow) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	full := method + " /api/v1" + path
	f.mux.HandleFunc(full, func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		f.mu.Lock()
		f.hits[pattern]++
		f.authSeq = append(f.authSeq, auth)
		ok := f.valid[strings.TrimPrefix(auth, "Bearer ")]
		f.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "invalid_token"})
			return
		}
		h(w, r)
	})
}

func (f *fakeIDnow) hitCount(pattern string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[pattern]
}

func (f *fakeIDnow) config() Config {
	cfg := DefaultConfig()
	cfg.APIURL = f.srv.URL + "/api/v1"
	cfg.TokenURL = f.srv.URL + "/oidc/token"
	cfg.ClientID = testClientID
	cfg.ClientSecret = testClientSecret
	cfg.AuthStyle = f.authStyle
	cfg.Timeout = 2 * time.Second
	cfg.Retry.InitialBackoff = 5 * time.Millisecond
	cfg.Retry.MaxBackoff = 20 * time.Millisecond
	cfg.RateLimit = 0
	// The plain fake serves http, which production settings refuse; the TLS fake runs with
	// production settings.
	cfg.AllowInsecureHTTP = f.srv.TLS == nil
	return cfg
}

// newTestClient builds a client for f; mutate adjusts the config first; deps, when given, are
// the test's own (its Registry is replaced by the returned one).
func newTestClient(t *testing.T, f *fakeIDnow, mutate func(*Config), given ...Deps) (*Client, *prometheus.Registry) {
	t.Helper()
	cfg := f.config()
	if mutate != nil {
		mutate(&cfg)
	}
	var deps Deps
	if len(given) > 0 {
		deps = given[0]
	}
	reg := prometheus.NewRegistry()
	deps.Registry = reg
	if f.srv.TLS != nil && deps.HTTPClient == nil {
		// Trust the fake's certificate unless the test brings its own client.
		deps.HTTPClient = f.srv.Client()
	}
	c, err := New(t.Context(), cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c, reg
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// metricValue reads a counter or gauge without prometheus/testutil (whose diff dependency
// is not in go.sum).
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("metric is neither counter nor gauge")
	return 0
}

// seriesCount counts the series of a metric family in reg.
func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
