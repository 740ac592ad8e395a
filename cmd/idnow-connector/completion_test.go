package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bashComplete sources the generated script in a real bash and returns what it offers for
// the words typed so far (the last one being completed).
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "completion.bash")
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prog := "source " + p + "\nCOMP_WORDS=(idnow-connector " + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		string(rune('0'+len(words))) + "\n_idnow_connector\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.CommandContext(t.Context(), "bash", "--norc", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"completion", "bash"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	script := out.String()
	tests := []struct {
		words []string
		want  string
	}{
		{[]string{"dl"}, "dlq-replay"},
		{[]string{"ta"}, "tail"},
		{[]string{"tail", "--unt"}, "--until-end"},
		{[]string{"tail", "--format", "pr"}, "pretty"},
		{[]string{"config", "ch"}, "check"},
		{[]string{"config", "check", "--mo"}, "--mode"},
		{[]string{"doctor", "--ab"}, "--abort"},
		{[]string{"sim", "--webhook-var"}, "--webhook-variant"},
		{[]string{"completion", "z"}, "zsh"},
	}
	for _, tc := range tests {
		got := bashComplete(t, script, tc.words...)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%v: offered %v, want [%s]", tc.words, got, tc.want)
		}
	}
}

// TestCompletionZsh: the zsh script names every command and every flag the commands' -h
// print; where zsh is installed it must also parse.
func TestCompletionZsh(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"completion", "zsh"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	script := out.String()
	for _, want := range []string{"'tail:", "'dlq-replay:", "'config:", "'--until-end[", "'--since[", "'--abort[", "'1:subcommand:(print check)'", "'--format[", ":format:(json pretty)"} {
		if !strings.Contains(script, want) {
			t.Errorf("zsh script lacks %q", want)
		}
	}
	if _, err := exec.LookPath("zsh"); err == nil {
		cmd := exec.CommandContext(t.Context(), "zsh", "-n")
		cmd.Stdin = strings.NewReader(script)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("zsh -n: %v\n%s", err, b)
		}
	}
}

func TestCompletionBadShell(t *testing.T) {
	if err := run(t.Context(), []string{"completion", "fish"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "bash or zsh") {
		t.Fatalf("got %v", err)
	}
}
