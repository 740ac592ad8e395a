package idnowsim

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a fast, deterministic configuration on a free port.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Seed = 42
	cfg.StepDelay = 5 * time.Millisecond
	cfg.StepJitter = 5 * time.Millisecond
	cfg.WebhookRetryBackoff = 5 * time.Millisecond
	cfg.DeletedBlockRate = 0
	return cfg
}

// startSim starts a simulator with testConfig modified by mutate and closes it at cleanup.
func startSim(t *testing.T, mutate func(*Config)) *Simulator {
	t.Helper()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	sim, err := New(cfg, Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := sim.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return sim
}

// testClient returns an HTTP client that does not follow redirects and leaves no idle
// connections behind (goleak).
func testClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

// do performs a request; token may be empty.
func do(t *testing.T, c *http.Client, method, u, token string, body io.Reader, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: b}
}

// getToken fetches an access token with client_secret_basic.
func getToken(t *testing.T, c *http.Client, sim *Simulator) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, sim.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	cfg := sim.Config()
	req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token body: %v", err)
	}
	return tok.AccessToken
}

// waitIdle waits for the simulator to settle, failing the test after a generous bound.
func waitIdle(t *testing.T, sim *Simulator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := sim.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v (stats %+v)", err, sim.Stats())
	}
}

// createSession creates a session through the API and returns its id.
func createSession(t *testing.T, c *http.Client, sim *Simulator, token, flowID, body string) string {
	t.Helper()
	r := do(t, c, http.MethodPost, sim.APIURL()+"/flows/"+flowID+"/live/sessions", token,
		strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	if r.code != http.StatusCreated {
		t.Fatalf("create session: %d %s", r.code, r.body)
	}
	ctxm, _ := r.json(t)["sessionContext"].(map[string]any)
	id, _ := ctxm["sessionId"].(string)
	if id == "" {
		t.Fatalf("create session: no sessionId in %s", r.body)
	}
	return id
}
