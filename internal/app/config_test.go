package app

import (
	"bytes"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/config"
)

// leafKeys lists every config key of a section struct by its koanf tags.
func leafKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("koanf"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct {
			keys = append(keys, leafKeys(ft, key)...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// TestConfigYAMLDocumentsEveryKey keeps config.yaml honest: it must list every key, and the
// values it shows must be the real defaults.
func TestConfigYAMLDocumentsEveryKey(t *testing.T) {
	k := koanf.New(".")
	if err := k.Load(file.Provider("../../config.yaml"), yaml.Parser()); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, key := range leafKeys(reflect.TypeOf(Config{}), "") {
		if !k.Exists(key) {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("config.yaml does not document: %s", strings.Join(missing, ", "))
	}
	got := DefaultConfig()
	if err := config.Load(config.Source{Path: "../../config.yaml", Required: true}, &got); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	nilEmpty(reflect.ValueOf(&got).Elem())
	nilEmpty(reflect.ValueOf(&want).Elem())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config.yaml's values differ from the defaults:\n file: %+v\n code: %+v", got, want)
	}
}

func TestLocalConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := config.Load(config.Source{Path: "../../deploy/local/config.yaml", Required: true}, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(ModeRun); err != nil {
		t.Fatalf("the make run configuration does not validate: %v", err)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	cfg := DefaultConfig()
	err := cfg.Validate(ModeIngress)
	for _, key := range []string{"webhook.jwks_url", "webhook.issuer", "webhook.audience"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("ingress without webhook settings: error should name %s, got %v", key, err)
		}
	}
	cfg.Log.Format = "xml"
	if err := cfg.Validate(ModeIngress); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("want log.format error, got %v", err)
	}
}

// nilEmpty turns empty slices and maps into nil ones: `[]` in YAML and a nil default mean the same.
func nilEmpty(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			nilEmpty(v.Field(i))
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 && v.CanSet() {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// TestLogsPrintDurationsAsText reproduces issue 9 problem 5 (logs half): slog's JSON handler
// printed a duration as integer nanoseconds.
func TestLogsPrintDurationsAsText(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := NewLogger(LogConfig{Level: "info", Format: format}, &buf)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("shutting down", "timeout", 45*time.Second, slog.Group("retry", "backoff", 250*time.Millisecond))
			out := buf.String()
			want := []string{`timeout=45s`, `retry.backoff=250ms`}
			if format == "json" {
				want = []string{`"timeout":"45s"`, `"retry":{"backoff":"250ms"}`}
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("log line %s does not contain %s", out, w)
				}
			}
		})
	}
}

// TestInsecureHTTPFollowsTheSimulator: the simulator serves plain http, so enabling it allows
// http IDnow URLs, and the webhook verifier always follows idnow.allow_insecure_http (one switch
// for everything that talks to IDnow).
func TestInsecureHTTPFollowsTheSimulator(t *testing.T) {
	tests := []struct {
		name      string
		simulator bool
		allow     bool
		want      bool
	}{
		{"production default", false, false, false},
		{"simulator", true, false, true},
		{"explicit", false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Simulator.Enabled = tc.simulator
			cfg.IDnow.AllowInsecureHTTP = tc.allow
			cfg.resolveInsecureHTTP()
			if cfg.IDnow.AllowInsecureHTTP != tc.want || cfg.Webhook.AllowInsecureHTTP != tc.want {
				t.Fatalf("idnow %v, webhook %v; want both %v", cfg.IDnow.AllowInsecureHTTP, cfg.Webhook.AllowInsecureHTTP, tc.want)
			}
		})
	}
	a, err := New(testConfig(), ModeRun, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !a.cfg.IDnow.AllowInsecureHTTP || !a.cfg.Webhook.AllowInsecureHTTP {
		t.Fatalf("New with the simulator: idnow %v, webhook %v; want both true", a.cfg.IDnow.AllowInsecureHTTP, a.cfg.Webhook.AllowInsecureHTTP)
	}
}
