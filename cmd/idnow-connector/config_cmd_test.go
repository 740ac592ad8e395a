package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestConfigCheckReportsThreePlantedErrors: an unknown key, a type mismatch and a value a
// section's Validate refuses are reported together, and the command fails.
func TestConfigCheckReportsThreePlantedErrors(t *testing.T) {
	p := writeConfig(t, "log:\n  format: xml\nkafka:\n  brokerz: [a:9092]\ningress:\n  max_concurrent: lots\nsimulator:\n  enabled: true\n")
	var out bytes.Buffer
	err := run(t.Context(), []string{"config", "check", "--config", p}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "3 problem(s)") {
		t.Fatalf("want a failure counting 3 problems, got %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`log.format "xml" must be json or text`,
		"unknown key kafka.brokerz",
		`ingress.max_concurrent: "lots" given, a whole number expected`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestConfigCheckPasses(t *testing.T) {
	p := writeConfig(t, "simulator:\n  enabled: true\n")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"config", "check", "--config", p}, &out, io.Discard); err != nil {
		t.Fatalf("want a clean check, got %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "configuration OK for run") {
		t.Errorf("got %q", out.String())
	}
}

func TestConfigPrintSourcesAndSecrets(t *testing.T) {
	p := writeConfig(t, "log:\n  format: text\nidnow:\n  client_secret: hunter2\n  client_secret_file: /run/secrets/idnow\nwebhook:\n  static_header:\n    name: X-Shared\n    value: hunter4\nsimulator:\n  webhook_headers:\n    X-Shared: hunter5\n")
	t.Setenv("IDNOW_CONNECTOR_LOG__LEVEL", "debug")
	t.Setenv("IDNOW_CONNECTOR_KAFKA__SASL__PASSWORD", "hunter3")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"config", "print", "--config", p}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "hunter") {
		t.Fatalf("a secret is printed:\n%s", out.String())
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			rows[f[0]] = f[1:]
		}
	}
	for key, want := range map[string][2]string{
		"log.level":                {"debug", "env:IDNOW_CONNECTOR_LOG__LEVEL"},
		"log.format":               {"text", "file"},
		"kafka.client_id":          {"idnow-connector", "default"},
		"idnow.client_secret":      {"<redacted>", "file"},
		"idnow.client_secret_file": {"/run/secrets/idnow", "file"},
		"kafka.sasl.password":      {"<redacted>", "env:IDNOW_CONNECTOR_KAFKA__SASL__PASSWORD"},
		"log.progress_interval":    {"10s", "default"},
	} {
		if got := rows[key]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: got %v, want %v", key, got, want)
		}
	}
}

func TestVersionSpellings(t *testing.T) {
	var first string
	for _, arg := range []string{"version", "--version", "-version"} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{arg}, &out, io.Discard); err != nil {
			t.Fatalf("%s: %v", arg, err)
		}
		if !strings.HasPrefix(out.String(), "idnow-connector dev\ngo: go1.") {
			t.Errorf("%s: got %q", arg, out.String())
		}
		if first == "" {
			first = out.String()
		} else if out.String() != first {
			t.Errorf("%s prints %q, version prints %q", arg, out.String(), first)
		}
	}
}

// TestConfigCheckTracingEnv: a wrong OTEL_* variable is a problem config check lists, as it
// would stop start-up.
func TestConfigCheckTracingEnv(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "jaeger")
	p := writeConfig(t, "log:\n  format: text\nsimulator:\n  enabled: true\n")
	var out bytes.Buffer
	err := run(t.Context(), []string{"config", "check", "--config", p}, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), `OTEL_TRACES_EXPORTER="jaeger" is not supported`) {
		t.Fatalf("config check: err %v, output:\n%s", err, out.String())
	}
	err = run(t.Context(), []string{"run", "--config", p}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
		t.Fatalf("run started with a wrong OTEL_TRACES_EXPORTER: %v", err)
	}
}
