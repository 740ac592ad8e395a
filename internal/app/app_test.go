package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The HTTP client's idle keep-alive connections to the servers the test stopped.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// testConfig is `make run` shrunk for a test: every listener on 127.0.0.1:0, an in-memory
// embedded broker, a simulator generating a few sessions quickly.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Log.Format = "text"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Ingress.Listen = "127.0.0.1:0"
	cfg.Kafka.Embedded.Listen = "127.0.0.1:0"
	cfg.Kafka.Embedded.DataDir = ""
	cfg.Simulator.Enabled = true
	cfg.Simulator.Listen = "127.0.0.1:0"
	cfg.Simulator.Sessions = 3
	cfg.Simulator.Rate = 50
	cfg.Simulator.StepDelay = 20 * time.Millisecond
	cfg.Simulator.StepJitter = 0
	cfg.Simulator.Seed = 7
	return cfg
}

// TestRunLifecycle starts the `run` mode from a test, checks that simulated webhooks arrive as
// decodable SessionEvents and that readiness reports, then shuts down cleanly.
func TestRunLifecycle(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	a, err := New(testConfig(), ModeRun, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	if err := a.Simulator().WaitIdle(ctx); err != nil {
		t.Fatalf("simulator did not finish its sessions: %v", err)
	}
	// Every session's lifecycle ends in a terminal event; at least 3 sessions x 3 events.
	var out bytes.Buffer
	tcfg := testConfig()
	if err := Tail(ctx, tcfg, TailOptions{Topic: tcfg.Topics.Sessions, Brokers: a.Brokers(), FromBeginning: true, Max: 9}, &out); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	n := 0
	for sc.Scan() {
		var line tailLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line.Schema != "io.idnow.connector.v1.SessionEvent" || line.DecodeError != "" {
			t.Fatalf("record not decoded: %s", sc.Text())
		}
		n++
	}
	if n != 9 {
		t.Fatalf("tail printed %d records, want 9", n)
	}
	// The enricher turns the same events into EnrichedSessions (read_committed).
	out.Reset()
	if err := Tail(ctx, tcfg, TailOptions{Topic: tcfg.Topics.Enriched, Brokers: a.Brokers(), FromBeginning: true, Max: 9}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), `"schema":"io.idnow.connector.v1.EnrichedSession"`); got != 9 {
		t.Fatalf("%d enriched records decoded, want 9:\n%s", got, out.String())
	}
	// Every role reports ready once it has joined its group; the commands role has nothing to
	// consume here, so it may join after the enricher has already done its work.
	var (
		status int
		body   []byte
	)
	for ready := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if (status == 200 && strings.Contains(string(body), `"ready":true`)) || time.Now().After(ready) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != 200 || !strings.Contains(string(body), `"ready":true`) {
		t.Fatalf("/readyz = %d %s", status, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// startApp starts a and runs it in the background; stop ends the run as SIGTERM would and
// returns Run's error. The test's end stops it too.
func startApp(t *testing.T, a *App, ctx context.Context) (stop func() error) {
	t.Helper()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestStartFailsCleanly(t *testing.T) {
	cfg := testConfig()
	cfg.Kafka.Embedded.Enabled = true
	cfg.Topics.Create = false
	a, err := New(cfg, ModeIngress, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "idnow.sessions") {
		t.Fatalf("want a start-up error naming the missing topic, got %v", err)
	}
}

// TestSchemaRegistryEncoding runs the pipeline with a schema registry (srfake): records are in
// the Confluent wire format under <topic>-value subjects, and tail still decodes them.
func TestSchemaRegistryEncoding(t *testing.T) {
	reg := srfake.New()
	defer reg.Close()
	cfg := testConfig()
	cfg.SchemaRegistry.URL = reg.URL()
	a, err := New(cfg, ModeRun, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	}()
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	subjects, err := cl.Subjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The commands role (in run by default) registers its three schemas too.
	if strings.Join(subjects, ",") != "idnow.commands-value,idnow.commands.replies-value,idnow.commands.state-value,"+
		"idnow.sessions-value,idnow.sessions.enriched-value,idnow.sessions.state-value" {
		t.Fatalf("registered subjects %v", subjects)
	}
	for _, topic := range []string{cfg.Topics.Sessions, cfg.Topics.Enriched} {
		var out bytes.Buffer
		if err := Tail(ctx, cfg, TailOptions{Topic: topic, Brokers: a.Brokers(), FromBeginning: true, Max: 3}, &out); err != nil {
			t.Fatal(err)
		}
		if strings.Count(out.String(), `"schema":"io.idnow.connector.v1.`) != 3 || strings.Contains(out.String(), "decodeError") {
			t.Fatalf("%s: records not decoded:\n%s", topic, out.String())
		}
		raw := readRaw(t, a.Brokers(), topic)
		if raw[0] != 0 {
			t.Fatalf("%s: first byte %#x, want the Confluent magic byte 0", topic, raw[0])
		}
	}
}

// readRaw returns the value of the first committed record of topic.
func readRaw(t *testing.T, brokers []string, topic string) []byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollRecords(ctx, 1)
		if ctx.Err() != nil {
			t.Fatalf("no record on %s", topic)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0].Value
		}
	}
}

// TestEmbeddedBrokerOnlyOnRequest reproduces issue 9 problem 4: with kafka.brokers empty every
// mode started the development broker, so an ingress pod that lost IDNOW_CONNECTOR_KAFKA__BROKERS
// acknowledged webhooks into a broker on its own disk. Now only `run` does that by itself; the
// ingress and enricher modes refuse to start unless kafka.embedded.enabled asks for it.
func TestEmbeddedBrokerOnlyOnRequest(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, mode := range []Mode{ModeIngress, ModeEnricher} {
		t.Run(string(mode)+" without brokers fails", func(t *testing.T) {
			_, err := New(testConfig(), mode, log, "test")
			for _, want := range []string{"kafka.brokers", "IDNOW_CONNECTOR_KAFKA__BROKERS", "kafka.embedded.enabled"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error should name %s, got %v", want, err)
				}
			}
		})
	}
	for _, mode := range []Mode{ModeRun, ModeIngress, ModeEnricher} {
		t.Run(string(mode)+" starts the embedded broker", func(t *testing.T) {
			cfg := testConfig()
			cfg.Kafka.Embedded.Enabled = mode != ModeRun // run needs no request
			a, err := New(cfg, mode, log, "test")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			stop := startApp(t, a, ctx)
			defer func() {
				if err := stop(); err != nil {
					t.Error(err)
				}
				http.DefaultClient.CloseIdleConnections()
			}()
			if len(a.Brokers()) == 0 || !strings.HasPrefix(a.Brokers()[0], "127.0.0.1:") {
				t.Fatalf("embedded broker not started: brokers %v", a.Brokers())
			}
		})
	}
}

// TestListenerLossStopsTheProcess kills each listener's socket out from under the running app:
// the process must stop with an error naming the part, not run on without it.
func TestListenerLossStopsTheProcess(t *testing.T) {
	for _, part := range []string{"admin", "ingress"} {
		t.Run(part, func(t *testing.T) {
			cfg := testConfig()
			cfg.Simulator.Enabled = false
			cfg.Kafka.Embedded.Enabled = true
			cfg.Webhook.JWKSURL = "https://127.0.0.1:1/jwks" // never reached: the test ends first
			cfg.Webhook.Issuer, cfg.Webhook.Audience = "https://idnow.test", "https://connector.test/webhooks/idnow"
			a, err := New(cfg, ModeIngress, slog.New(slog.DiscardHandler), "test")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			// Kill the socket under the running app (Close from outside, as a lost fd would).
			switch part {
			case "admin":
				_ = a.admin.Close()
			case "ingress":
				_ = a.ingress.Close()
			}
			select {
			case err = <-done:
			case <-ctx.Done():
				t.Fatal("the app kept running without its listener")
			}
			var f *lifecycle.Failure
			if !errors.As(err, &f) || f.Part != part {
				t.Fatalf("Run = %v, want a failure naming %s", err, part)
			}
			if !strings.Contains(err.Error(), part+": ") || !strings.Contains(err.Error(), "serve on") {
				t.Fatalf("error %q does not say what happened to %s", err, part)
			}
		})
	}
}

// TestStopBudgetMatchesTheGroup: the budget deployments are sized from (StopBudget) is the one
// the running process's lifecycle.Group allows itself.
func TestStopBudgetMatchesTheGroup(t *testing.T) {
	cfg := testConfig()
	cfg.Enrich.ShutdownTimeout = 50 * time.Second // above the old fixed ingress+15s budget
	a, err := New(cfg, ModeRun, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	defer func() { _ = stop() }()
	if got, want := a.group.Budget(), StopBudget(cfg, ModeRun); got != want {
		t.Fatalf("group budget %s, StopBudget %s", got, want)
	}
	if StopBudget(cfg, ModeRun) <= cfg.Enrich.ShutdownTimeout+cfg.Ingress.ShutdownTimeout {
		t.Fatalf("StopBudget %s does not cover both parts' shutdown timeouts", StopBudget(cfg, ModeRun))
	}
}
