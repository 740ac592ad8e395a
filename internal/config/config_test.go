package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Brokers []string      `koanf:"brokers"`
	Timeout time.Duration `koanf:"timeout"`
	Create  bool          `koanf:"create"`
	Count   int           `koanf:"count"`
}

type root struct {
	Kafka    inner             `koanf:"kafka"`
	Name     string            `koanf:"name"`
	Statuses []string          `koanf:"statuses"`
	Labels   map[string]string `koanf:"labels"`
}

func defaults() root {
	return root{Kafka: inner{Timeout: 5 * time.Second, Count: 3}, Name: "default", Statuses: []string{"COMPLETED", "ABORTED"}}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     []string
		want    func(*root)
		wantErr string
	}{
		{name: "defaults only", want: func(*root) {}},
		{name: "file overrides, durations parse", file: "kafka:\n  timeout: 250ms\n  brokers: [a:1, b:2]\nname: x\n",
			want: func(r *root) {
				r.Kafka.Timeout = 250 * time.Millisecond
				r.Kafka.Brokers = []string{"a:1", "b:2"}
				r.Name = "x"
			}},
		{name: "env overrides file, lists comma-separated", file: "kafka:\n  brokers: [a:1]\n",
			env: []string{"IDNOW_CONNECTOR_KAFKA__BROKERS=x:9092,y:9092", "IDNOW_CONNECTOR_KAFKA__CREATE=true", "IDNOW_CONNECTOR_KAFKA__TIMEOUT=2m", "OTHER=1"},
			want: func(r *root) {
				r.Kafka.Brokers = []string{"x:9092", "y:9092"}
				r.Kafka.Create = true
				r.Kafka.Timeout = 2 * time.Minute
			}},
		{name: "a shorter list replaces the default", file: "statuses: [RUNNING]\n",
			want: func(r *root) { r.Statuses = []string{"RUNNING"} }},
		{name: "maps take any key", file: "labels:\n  team: data\n", want: func(r *root) { r.Labels = map[string]string{"team": "data"} }},
		{name: "unknown file key named", file: "kafka:\n  brokerz: [a:1]\n", wantErr: "kafka.brokerz"},
		{name: "unknown env key named", env: []string{"IDNOW_CONNECTOR_KAFKA__TIMEOUTS=1s"}, wantErr: "kafka.timeouts"},
		{name: "bad duration", file: "kafka:\n  timeout: soon\n", wantErr: "timeout"},
		{name: "bad int", env: []string{"IDNOW_CONNECTOR_KAFKA__COUNT=many"}, wantErr: "count"},
		{name: "bad yaml", file: "kafka: [\n", wantErr: "config file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := Source{Environ: tc.env}
			if tc.file != "" {
				src.Path, src.Required = writeFile(t, tc.file), true
			}
			got := defaults()
			err := Load(src, &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	cfg := defaults()
	if err := Load(Source{Path: missing}, &cfg); err != nil {
		t.Fatalf("optional missing file: %v", err)
	}
	if err := Load(Source{Path: missing, Required: true}, &cfg); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("required missing file: want error naming it, got %v", err)
	}
}

// TestDurationsNeedAUnit reproduces issue 9 problem 5: `timeout: 5` used to load as five
// nanoseconds. A bare number other than 0 is now an error naming the key, the value and the form
// to use, from the file and from the environment alike.
func TestDurationsNeedAUnit(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     []string
		want    time.Duration
		wantErr []string
	}{
		{name: "file integer", file: "kafka:\n  timeout: 5\n", wantErr: []string{"kafka.timeout", "bare number 5", `"5s"`}},
		{name: "file float", file: "kafka:\n  timeout: 1.5\n", wantErr: []string{"kafka.timeout", "bare number 1.5", `"1.5s"`}},
		{name: "file quoted number", file: "kafka:\n  timeout: \"30\"\n", wantErr: []string{"kafka.timeout", "bare number 30", `"30s"`}},
		{name: "env number", env: []string{"IDNOW_CONNECTOR_KAFKA__TIMEOUT=5"}, wantErr: []string{"kafka.timeout", "bare number 5", `"5s"`}},
		{name: "env word", env: []string{"IDNOW_CONNECTOR_KAFKA__TIMEOUT=soon"}, wantErr: []string{"kafka.timeout", `"soon"`, `"5s"`}},
		{name: "file zero", file: "kafka:\n  timeout: 0\n", want: 0},
		{name: "env zero", env: []string{"IDNOW_CONNECTOR_KAFKA__TIMEOUT=0"}, want: 0},
		{name: "file with unit", file: "kafka:\n  timeout: 1h30m\n", want: 90 * time.Minute},
		{name: "env with unit", env: []string{"IDNOW_CONNECTOR_KAFKA__TIMEOUT=250ms"}, want: 250 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := Source{Environ: tc.env}
			if tc.file != "" {
				src.Path, src.Required = writeFile(t, tc.file), true
			}
			got := defaults()
			err := Load(src, &got)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("loaded timeout %v, want an error", got.Kafka.Timeout)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Kafka.Timeout != tc.want {
				t.Fatalf("timeout = %v, want %v", got.Kafka.Timeout, tc.want)
			}
		})
	}
}

// TestBareNumbersStillDecodeIntoNumbers guards the hook's scope: only time.Duration fields are
// strict; an int key still takes a bare number.
func TestBareNumbersStillDecodeIntoNumbers(t *testing.T) {
	got := defaults()
	if err := Load(Source{Environ: []string{"IDNOW_CONNECTOR_KAFKA__COUNT=5"}}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Kafka.Count != 5 {
		t.Fatalf("count = %d, want 5", got.Kafka.Count)
	}
}
