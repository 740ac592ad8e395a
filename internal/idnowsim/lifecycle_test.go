package idnowsim

import (
	"context"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLegalTransition(t *testing.T) {
	tests := []struct {
		from, to string
		want     bool
	}{
		{"", StatusCreated, true},
		{"", StatusRunning, false},
		{StatusCreated, StatusRunning, true},
		{StatusCreated, StatusExpired, true},
		{StatusCreated, StatusCompleted, false},
		{StatusRunning, StatusCompleted, true},
		{StatusRunning, StatusAborted, true},
		{StatusRunning, StatusExpired, true},
		{StatusRunning, StatusError, true},
		{StatusRunning, StatusCreated, false},
		{StatusCompleted, StatusRunning, false},
		{StatusExpired, StatusRunning, false},
		{StatusError, StatusCompleted, false},
	}
	for _, tt := range tests {
		if got := LegalTransition(tt.from, tt.to); got != tt.want {
			t.Errorf("LegalTransition(%q, %q) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestLifecycle runs many generated and API-created sessions to their end and checks every
// path is legal, every terminal status is reached, and data blocks match the progress made.
func TestLifecycle(t *testing.T) {
	sim := startSim(t, func(c *Config) {
		c.Sessions, c.Rate = 150, 5000
		c.OutcomeCase = VariantMixed
	})
	c := testClient(t)
	tok := getToken(t, c, sim)
	for range 10 {
		createSession(t, c, sim, tok, "flw-basic-identity", "{}")
	}
	waitIdle(t, sim)

	sessions := sim.Sessions()
	if len(sessions) != 160 {
		t.Fatalf("%d sessions, want 160", len(sessions))
	}
	finals := map[string]int{}
	origins := map[string]int{}
	for _, s := range sessions {
		origins[s.Origin]++
		finals[s.Status]++
		prev := ""
		for _, st := range s.Transitions {
			if !LegalTransition(prev, st) {
				t.Fatalf("session %s: illegal %q -> %q in %v", s.SessionID, prev, st, s.Transitions)
			}
			prev = st
		}
		if !IsTerminal(s.Status) || s.CompletedAt.IsZero() {
			t.Fatalf("session %s not terminal: %+v", s.SessionID, s)
		}
		if (s.Status == StatusCompleted) != (s.Outcome != OutcomeNoOutcome) {
			t.Fatalf("session %s: status %s with outcome %s", s.SessionID, s.Status, s.Outcome)
		}
		// Blocks appear in step order; a completed session has all four.
		wantPrefix := []string{"basicIdentity", "documentData", "documentVerification", "outcomeStatus"}
		if !slices.Equal(s.DataBlockTypes, wantPrefix[:len(s.DataBlockTypes)]) {
			t.Fatalf("session %s blocks %v", s.SessionID, s.DataBlockTypes)
		}
		if s.Status == StatusCompleted && len(s.DataBlockTypes) != 4 {
			t.Fatalf("completed session %s has blocks %v", s.SessionID, s.DataBlockTypes)
		}
		if s.Status != StatusCompleted && slices.Contains(s.DataBlockTypes, "outcomeStatus") {
			t.Fatalf("%s session %s has an outcomeStatus block", s.Status, s.SessionID)
		}
		// One event per transition, numbered 1, 2, 3...
		if len(s.Events) != len(s.Transitions) {
			t.Fatalf("session %s: %d events for %d transitions", s.SessionID, len(s.Events), len(s.Transitions))
		}
		for i, e := range s.Events {
			if e.EventSequence != i+1 || e.SessionStatus != s.Transitions[i] || e.EventName != eventNames[s.Transitions[i]] {
				t.Fatalf("session %s event %d = %+v", s.SessionID, i, e)
			}
		}
	}
	for _, st := range []string{StatusCompleted, StatusAborted, StatusExpired, StatusError} {
		if finals[st] == 0 {
			t.Errorf("no session ended %s (finals %v)", st, finals)
		}
	}
	if origins[OriginAPI] != 10 || origins[OriginGenerator] != 150 {
		t.Errorf("origins %v", origins)
	}

	// The API shows the same state, with the outcome in the session's case variant.
	for _, s := range sessions[:20] {
		d := do(t, c, http.MethodGet, sim.APIURL()+"/live/sessions/"+s.SessionID, tok, nil, nil).json(t)
		if d["sessionStatus"] != s.Status || !strings.EqualFold(d["outcome"].(string), s.Outcome) {
			t.Fatalf("API %v vs snapshot %+v", d, s)
		}
	}
	if st := sim.Stats(); st.SessionsCreated != 160 || st.SessionsByStatus[StatusCreated]+st.SessionsByStatus[StatusRunning] != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	fates := func() []string {
		sim := startSim(t, func(c *Config) { c.Seed = 7 })
		ids := sim.CreateSessions(30)
		waitIdle(t, sim)
		var out []string
		for _, id := range ids {
			s, _ := sim.Session(id)
			out = append(out, id+":"+strings.Join(s.Transitions, ">")+":"+s.Outcome)
		}
		return out
	}
	a, b := fates(), fates()
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different runs:\n%v\n%v", a, b)
	}
}

func TestFaultInjection(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.Seed = 3 })
	c := testClient(t)
	tok := getToken(t, c, sim)

	// The decision itself, over many draws: rates are honoured within a few percent.
	f := Faults{Rate429: 0.1, Rate500: 0.05, Rate503: 0.2, RateSlow: 0.15}
	counts := map[faultKind]int{}
	slow := 0
	const n = 20000
	for range n {
		k, s := sim.drawFault(f)
		counts[k]++
		if s {
			slow++
		}
	}
	for _, tt := range []struct {
		name string
		got  int
		want float64
	}{{"429", counts[fault429], f.Rate429}, {"500", counts[fault500], f.Rate500}, {"503", counts[fault503], f.Rate503}, {"slow", slow, f.RateSlow}} {
		if got := float64(tt.got) / n; math.Abs(got-tt.want) > 0.02 {
			t.Errorf("%s rate %.3f, want %.3f ± 0.02", tt.name, got, tt.want)
		}
	}

	// Over HTTP: the responses carry the documented status codes and Retry-After.
	if err := sim.SetFaults(Faults{Rate429: 0.3, Rate503: 0.3, RetryAfter: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	const m = 300
	for range m {
		r := do(t, c, http.MethodGet, sim.APIURL()+"/flows/live", tok, nil, nil)
		codes[r.code]++
		if (r.code == 429 || r.code == 503) && r.header.Get("Retry-After") != "2" {
			t.Fatalf("%d with Retry-After %q, want 2", r.code, r.header.Get("Retry-After"))
		}
	}
	for _, code := range []int{200, 429, 503} {
		if got := float64(codes[code]) / m; math.Abs(got-map[int]float64{200: 0.4, 429: 0.3, 503: 0.3}[code]) > 0.1 {
			t.Errorf("status %d share %.2f (codes %v)", code, got, codes)
		}
	}
	if st := sim.Stats(); st.Faults429 != int64(codes[429]) || st.Faults503 != int64(codes[503]) {
		t.Errorf("stats %+v vs codes %v", st, codes)
	}
	// The token endpoint is never faulted: clients can always authenticate.
	getToken(t, c, sim)

	if err := sim.SetFaults(Faults{Rate500: 2}); err == nil {
		t.Fatal("SetFaults accepted a rate of 2")
	}
}

func TestSlowResponseHonoursClientCancel(t *testing.T) {
	sim := startSim(t, func(c *Config) { c.Faults.RateSlow, c.Faults.SlowDelay = 1, time.Hour })
	c := testClient(t)
	tok := getToken(t, c, sim)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sim.APIURL()+"/flows/live", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow response answered %d within the client's deadline", resp.StatusCode)
	}
	// Close (in cleanup) must not hang on the abandoned slow handler: goleak checks the rest.
}
