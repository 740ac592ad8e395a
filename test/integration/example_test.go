//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
)

// TestPythonExample runs a simulator session stream through the pipeline (in registry mode when
// SCHEMA_REGISTRY_URL is set, single-object encoding otherwise) and then the data team's example
// in examples/python-duckdb: it lands the enriched topic in Parquet and DuckDB counts sessions
// per flow and outcome; the counts must be the simulator's. It needs the example's Python
// environment: EXAMPLES_PYTHON="$(scripts/examples-venv.sh)".
func TestPythonExample(t *testing.T) {
	python := os.Getenv("EXAMPLES_PYTHON")
	if python == "" {
		t.Skip("EXAMPLES_PYTHON is not set: EXAMPLES_PYTHON=\"$(scripts/examples-venv.sh)\" prepares the example's Python environment")
	}
	const sessions = 12
	seeds := brokers(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, seeds)
	sim := startSimulator(t)
	extra := settings{}
	registry := os.Getenv("SCHEMA_REGISTRY_URL")
	if registry != "" {
		extra["schema_registry.url"] = registry
	}
	icfg, hook := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	ingress := startChild(t, "ingress", "ingress", icfg.with(extra))
	if err := sim.SetWebhookURL(hook); err != nil {
		t.Fatal(err)
	}
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "example").with(extra))
	day := time.Now().UTC().Format(time.DateOnly)
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)
	enricher.stop()
	ingress.stop()

	type key struct{ flow, outcome string }
	want := map[key]int{}
	for _, s := range sim.Sessions() {
		outcome := idnow.NormalizeOutcome(s.Outcome)
		if outcome == "" {
			outcome = "(none)"
		}
		want[key{s.FlowID, outcome}]++
	}

	out := filepath.Join(t.TempDir(), "counts.json")
	cmd := exec.CommandContext(t.Context(), python, filepath.Join(root, "examples", "python-duckdb", "land_sessions.py"), "run",
		"--bootstrap", seeds[0], "--topic", p.enriched, "--group", uniqueName(t, "lander"),
		"--registry-url", registry, "--out-dir", t.TempDir(), "--day", day, "--json", out, "--timeout", "60")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	output, err := cmd.CombinedOutput()
	t.Logf("examples/python-duckdb/land_sessions.py run:\n%s", output)
	if err != nil {
		t.Fatalf("the example failed: %v", err)
	}
	var rows []struct {
		Flow     string `json:"flow_id"`
		Outcome  string `json:"outcome"`
		Sessions int    `json:"sessions"`
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("the example's JSON: %v", err)
	}
	got := map[key]int{}
	for _, r := range rows {
		got[key{r.Flow, r.Outcome}] = r.Sessions
	}
	if len(got) != len(want) {
		t.Errorf("the example found %d flow/outcome groups, the simulator ran %d: got %v, want %v", len(got), len(want), got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("flow %s, outcome %s: the example counts %d sessions, the simulator ran %d", k.flow, k.outcome, got[k], n)
		}
	}
}
