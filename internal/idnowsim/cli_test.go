package idnowsim

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the CLI goroutine and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunCLI(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- RunCLI(ctx, []string{"--listen", "127.0.0.1:0", "--sessions", "3", "--rate", "100",
			"--step-delay", "1ms", "--seed", "9", "--client-secret", "cli-secret",
			"--webhook-header", "X-Test: yes"}, out, slog.New(slog.DiscardHandler))
	}()

	var base string
	re := regexp.MustCompile(`base URL\s+(http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for base == "" && time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		time.Sleep(5 * time.Millisecond)
	}
	if base == "" {
		cancel()
		t.Fatalf("no banner; output %q, result %v", out.String(), <-done)
	}
	for _, want := range []string{"client secret  cli-secret", "/oidc/token", "seed 9", "curl"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
	c := testClient(t)
	if r := do(t, c, http.MethodGet, base+"/oidc/.well-known/openid-configuration", "", nil, nil); r.code != 200 {
		t.Fatalf("discovery: %d", r.code)
	}
	r := do(t, c, http.MethodGet, base+"/metrics", "", nil, nil)
	if r.code != 200 || !strings.Contains(string(r.body), "idnow_sim_api_requests_total") && !strings.Contains(string(r.body), "idnow_sim_sessions_created_total") {
		t.Fatalf("metrics: %d", r.code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunCLI: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunCLI did not return after cancel")
	}
}

func TestRunCLIErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
		{"invalid value", []string{"--webhook-variant", "xml"}, "simulator.webhook_variant"},
		{"bad header", []string{"--webhook-header", "novalue"}, "Name: value"},
		{"extra args", []string{"--listen", "127.0.0.1:0", "extra"}, "unexpected arguments"},
		{"help", []string{"-h"}, flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := RunCLI(t.Context(), tt.args, &out, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunCLI = %v, want an error containing %q", err, tt.want)
			}
			if tt.name == "help" && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("help error %v does not wrap flag.ErrHelp", err)
			}
		})
	}
}
