package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProductionModesNeedBrokers is issue 9 problem 4 as an operator meets it: an ingress or
// enricher whose IDNOW_CONNECTOR_KAFKA__BROKERS went missing stops at start-up and says so.
func TestProductionModesNeedBrokers(t *testing.T) {
	p := writeConfig(t, "log:\n  format: text\n")
	for _, mode := range []string{"ingress", "enricher"} {
		t.Run(mode, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(t.Context(), []string{mode, "--config", p}, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), "kafka.brokers is empty (environment: IDNOW_CONNECTOR_KAFKA__BROKERS)") {
				t.Fatalf("want a start-up error naming kafka.brokers, got %v (log: %s)", err, stderr.String())
			}
		})
	}
}

// TestBareNumberDurationRefused is issue 9 problem 5's example: `produce_timeout: 5` was five
// nanoseconds. From the file and from the environment it is now an error showing the fix.
func TestBareNumberDurationRefused(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		p := writeConfig(t, "ingress:\n  produce_timeout: 5\n")
		err := run(t.Context(), []string{"run", "--config", p}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "ingress.produce_timeout") || !strings.Contains(err.Error(), `"5s"`) {
			t.Fatalf("want an error naming ingress.produce_timeout and showing \"5s\", got %v", err)
		}
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv("IDNOW_CONNECTOR_INGRESS__PRODUCE_TIMEOUT", "5")
		p := writeConfig(t, "log:\n  format: text\n")
		err := run(t.Context(), []string{"run", "--config", p}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "ingress.produce_timeout") || !strings.Contains(err.Error(), `"5s"`) {
			t.Fatalf("want an error naming ingress.produce_timeout and showing \"5s\", got %v", err)
		}
	})
}
