//go:build integration

package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TestCommandExamples runs the producers of docs/commands.md against a commands process, the
// real broker and the simulator: examples/go-commands always, examples/python-commands when
// EXAMPLES_PYTHON is set (EXAMPLES_PYTHON="$(scripts/examples-venv.sh)"), in registry mode when
// SCHEMA_REGISTRY_URL is set. Each must print the player URL of a session the simulator holds
// for its command; `idnow-connector create-session` is run the same way.
func TestCommandExamples(t *testing.T) {
	seeds := brokers(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	sim := simtestStart(t)
	topics, cfg := commandsRig(t, seeds, sim)
	registry := os.Getenv("SCHEMA_REGISTRY_URL")
	if registry != "" {
		cfg["schema_registry.url"] = registry
	}
	startChild(t, "commands", "commands", cfg)

	goBin := filepath.Join(t.TempDir(), "go-commands")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", goBin, "./examples/go-commands")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/go-commands: %v\n%s", err, out)
	}
	type run struct {
		name string
		cmd  []string
		env  []string
	}
	runs := []run{
		{"create-session", []string{connectorBinary(t), "create-session", "--flow", "Age verification", "--subject", "subject-cli"},
			cfg.environ()},
	}
	if registry == "" {
		// The Go example writes single-object encoding only, as its doc says.
		runs = append(runs, run{"go", []string{goBin, "--brokers", seeds[0], "--commands-topic", topics.Commands, "--replies-topic", topics.Replies,
			"--flow", "AutoIdent", "--subject", "subject-go"}, os.Environ()})
	}
	if python := os.Getenv("EXAMPLES_PYTHON"); python != "" {
		runs = append(runs, run{"python", []string{python, filepath.Join(root, "examples", "python-commands", "create_session.py"),
			"--bootstrap", seeds[0], "--commands-topic", topics.Commands, "--replies-topic", topics.Replies, "--registry-url", registry,
			"--flow", "bank account check", "--subject", "subject-py"}, append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")})
	} else {
		t.Log("EXAMPLES_PYTHON is not set: the Python example is skipped (EXAMPLES_PYTHON=\"$(scripts/examples-venv.sh)\")")
	}
	for _, r := range runs {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, r.cmd[0], r.cmd[1:]...)
		cmd.Dir, cmd.Env = t.TempDir(), r.env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		began := time.Now()
		out, err := cmd.Output()
		cancel()
		t.Logf("%s (%s): stdout %q, stderr:\n%s", r.name, time.Since(began).Round(time.Millisecond), out, stderr.String())
		if err != nil {
			t.Fatalf("%s failed: %v", r.name, err)
		}
		url := strings.TrimSpace(string(out))
		if !strings.HasPrefix(url, sim.URL()+"/player/?token=") {
			t.Fatalf("%s printed %q, want a player URL of the simulator", r.name, url)
		}
		subject := "subject-" + map[string]string{"create-session": "cli", "go": "go", "python": "py"}[r.name]
		n := 0
		for _, s := range sim.Sessions() {
			if s.Metadata["subjectId"] == subject && s.Metadata[schemas.MetadataCommandID] != "" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: the simulator holds %d sessions for %s, want 1", r.name, n, subject)
		}
	}
}

// simtestStart starts a simulator whose sessions stay CREATED (the examples only create them).
func simtestStart(t testing.TB) *idnowsim.Simulator {
	t.Helper()
	return startSimulator(t, func(c *idnowsim.Config) { c.StepDelay = time.Hour })
}
