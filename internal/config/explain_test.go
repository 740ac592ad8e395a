package config

import (
	"strings"
	"testing"
	"time"
)

type creds struct {
	ClientID         string `koanf:"client_id"`
	ClientSecret     string `koanf:"client_secret"`
	ClientSecretFile string `koanf:"client_secret_file"`
	TokenURL         string `koanf:"token_url"`
	Password         string `koanf:"password"`
	KeepSignedToken  bool   `koanf:"keep_signed_token"`
}

type explained struct {
	Kafka inner `koanf:"kafka"`
	Auth  creds `koanf:"auth"`
}

func settingsByKey(t *testing.T, s []Setting) map[string]Setting {
	t.Helper()
	m := map[string]Setting{}
	for _, x := range s {
		m[x.Key] = x
	}
	return m
}

func TestExplainSources(t *testing.T) {
	p := writeFile(t, "kafka:\n  timeout: 250ms\n  brokers: [a:1, b:2]\nauth:\n  client_id: from-file\n")
	cfg := explained{Kafka: inner{Timeout: 5 * time.Second, Count: 3}}
	got, err := Explain(Source{Path: p, Required: true, Environ: []string{"IDNOW_CONNECTOR_KAFKA__BROKERS=x:9092", "IDNOW_CONNECTOR_AUTH__CLIENT_SECRET=s3cr3t"}}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := settingsByKey(t, got)
	want := map[string]Setting{
		"kafka.count":        {Key: "kafka.count", Value: "3", Source: "default"},
		"kafka.timeout":      {Key: "kafka.timeout", Value: "250ms", Source: "file"},
		"kafka.brokers":      {Key: "kafka.brokers", Value: "[x:9092]", Source: "env:IDNOW_CONNECTOR_KAFKA__BROKERS"},
		"auth.client_id":     {Key: "auth.client_id", Value: "from-file", Source: "file"},
		"auth.client_secret": {Key: "auth.client_secret", Value: Redacted, Source: "env:IDNOW_CONNECTOR_AUTH__CLIENT_SECRET"},
	}
	for k, w := range want {
		if m[k] != w {
			t.Errorf("%s: got %+v, want %+v", k, m[k], w)
		}
	}
	if len(got) != 10 {
		t.Errorf("want every leaf key (10), got %d: %+v", len(got), got)
	}
}

func TestExplainRedactsSecrets(t *testing.T) {
	p := writeFile(t, "auth:\n  client_secret: hunter2\n  password: hunter3\n  client_secret_file: /run/secrets/idnow\n  token_url: https://idnow.example/token\n  keep_signed_token: true\n")
	var cfg explained
	got, err := Explain(Source{Path: p, Required: true}, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := settingsByKey(t, got)
	for _, x := range got {
		if strings.Contains(x.Value, "hunter") {
			t.Errorf("%s shows a secret: %q", x.Key, x.Value)
		}
	}
	for key, want := range map[string]string{
		"auth.client_secret": Redacted, "auth.password": Redacted,
		"auth.client_secret_file": "/run/secrets/idnow", "auth.token_url": "https://idnow.example/token",
		"auth.keep_signed_token": "true", "kafka.brokers": "[]",
	} {
		if m[key].Value != want {
			t.Errorf("%s = %q, want %q", key, m[key].Value, want)
		}
	}
}

// TestLoadReportsEveryProblem: a type mismatch, an unknown key and a bad duration in one file
// are all reported, each as "key: given, expected", not only the first.
func TestLoadReportsEveryProblem(t *testing.T) {
	p := writeFile(t, "kafka:\n  count: many\n  brokerz: [a:1]\n  timeout: soon\n  create: maybe\n")
	got := defaults()
	err := Load(Source{Path: p, Required: true}, &got)
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{
		`kafka.count: "many" given, a whole number expected`,
		`kafka.create: "maybe" given, true or false expected`,
		"unknown key kafka.brokerz",
		`kafka.timeout: "soon" is not a duration`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 4 {
		t.Errorf("want one line per problem (4), got %d:\n%s", n, msg)
	}
}
