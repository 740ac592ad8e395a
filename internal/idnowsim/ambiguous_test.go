package idnowsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCreateTimeout checks faults.create_timeout_rate: the create is performed (the session
// exists, with its metadata, visible in the flow's list and in /_sim/sessions) while the caller
// gets no answer until it gives up, or 504 after create_timeout_hang.
func TestCreateTimeout(t *testing.T) {
	sim := startSim(t, func(c *Config) {
		c.StepDelay = time.Hour
		c.Faults.CreateTimeoutRate = 1
		c.Faults.CreateTimeoutHang = 50 * time.Millisecond
	})
	c := testClient(t)
	tok := getToken(t, c, sim)
	body := `{"metadata":{"subjectId":"customer-9","connectorCommandId":"cmd-1"}}`
	r := do(t, c, http.MethodPost, sim.APIURL()+"/flows/flw-auto-ident/live/sessions", tok, strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
	if r.code != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504 (%s)", r.code, r.body)
	}
	// A client that gives up first gets nothing at all.
	short := &http.Client{Transport: c.Transport, Timeout: 20 * time.Millisecond}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, sim.APIURL()+"/flows/flw-auto-ident/live/sessions", strings.NewReader(`{"metadata":{"connectorCommandId":"cmd-2"}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := short.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("want a client timeout, got %d", resp.StatusCode)
	}
	var ue interface{ Timeout() bool }
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("want a timeout error, got %v", err)
	}
	if st := sim.Stats(); st.CreateTimeouts != 2 || st.SessionsCreated != 2 {
		t.Fatalf("stats: %d create timeouts, %d sessions; want 2 and 2", st.CreateTimeouts, st.SessionsCreated)
	}
	var found int
	for _, s := range sim.Sessions() {
		if s.Metadata["connectorCommandId"] == "cmd-1" && s.Metadata["subjectId"] == "customer-9" {
			found++
		}
	}
	if found != 1 {
		t.Fatalf("sessions with cmd-1 metadata: %d, want 1", found)
	}
	list := do(t, c, http.MethodGet, sim.APIURL()+"/flows/flw-auto-ident/live/sessions?sortBy=createdAt&sortDesc=true", tok, nil, nil).json(t)
	content, _ := list["content"].([]any)
	if len(content) != 2 {
		t.Fatalf("flow lists %d sessions, want 2", len(content))
	}
	md, _ := content[1].(map[string]any)["metadata"].(map[string]any)
	if md["connectorCommandId"] != "cmd-1" {
		t.Fatalf("oldest listed session's metadata %v, want connectorCommandId cmd-1", md)
	}
	got := do(t, c, http.MethodGet, sim.URL()+"/_sim/sessions?metadata.connectorCommandId=cmd-2", "", nil, nil).json(t)
	if ss, _ := got["sessions"].([]any); len(ss) != 1 {
		t.Fatalf("/_sim/sessions filtered by cmd-2: %v", got)
	}
}

func TestCreateTimeoutValidate(t *testing.T) {
	f := DefaultConfig().Faults
	f.CreateTimeoutRate = 1.5
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "create_timeout_rate") {
		t.Fatalf("rate 1.5: %v", err)
	}
	f.CreateTimeoutRate, f.CreateTimeoutHang = 0.2, 0
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "create_timeout_hang") {
		t.Fatalf("no hang: %v", err)
	}
}
