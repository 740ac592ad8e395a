package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing/tracingtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// childEnv marks a run of this test binary as the idnow-connector command itself (see
// TestMain): the trace test starts its ingress and enricher this way, as separate processes,
// without building the binary first.
const childEnv = "TEST_RUN_AS_IDNOW_CONNECTOR" // not IDNOW_CONNECTOR_*: that prefix is configuration

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	traceIssuer   = "https://idnow.example.test/oidc"
	traceAudience = "https://connector.example.test/webhooks/idnow"
)

// TestOneWebhookOneTraceAcrossProcesses is issue 15's tracing acceptance test: an ingress and an
// enricher run as two processes with tracing turned on by the standard OTEL_* variables,
// exporting over OTLP/HTTP to a receiver in this test; one webhook posted to the ingress yields
// exactly one trace, in which the enricher's span is the child of the ingress's send span (the
// context travelled in the Kafka record headers), the IDnow API calls are children of the
// enricher's span, and so is the commit of the enriched record. Kafka (kfake) and IDnow (the
// simulator) run in the test process, so the whole pipeline needs nothing installed.
func TestOneWebhookOneTraceAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two connector processes")
	}
	receiver := tracingtest.NewReceiver(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	// The simulator only serves the API here: its own webhooks go to a sink, and the session
	// stays CREATED, so the one webhook this test posts is the only one the ingress sees.
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(sink.Close)
	sim := simtest.Start(t, func(c *idnowsim.Config) {
		c.Sessions = 0
		c.StepDelay = time.Hour
		c.StepJitter = 0
		c.WebhookURL = sink.URL
	})
	sessionID := sim.CreateSessions(1)[0]
	keys := webhooktest.NewKeySet(t)
	jwks := keys.Serve(t)

	simCfg := sim.Config()
	config := fmt.Sprintf(`log:
  format: json
kafka:
  brokers: [%q]
admin:
  listen: 127.0.0.1:0
ingress:
  listen: 127.0.0.1:0
webhook:
  jwks_url: %q
  issuer: %q
  audience: %q
idnow:
  api_url: %q
  token_url: %q
  client_id: %q
  client_secret: %q
  environment: %q
  allow_insecure_http: true
`, cluster.ListenAddrs()[0], jwks, traceIssuer, traceAudience, sim.APIURL(), sim.TokenURL(), simCfg.ClientID, simCfg.ClientSecret, simCfg.Environment)
	cfgPath := writeConfig(t, config)
	env := []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + receiver.URL,
		"OTEL_BSP_SCHEDULE_DELAY=100", // milliseconds: export at once, not after 5 s
	}
	ingress := startChild(t, "ingress", cfgPath, env)
	enricher := startChild(t, "enricher", cfgPath, env)
	ingressURL := ingress.waitLog(t, "ingress listening", "addr")
	ingress.waitReady(t)
	enricher.waitReady(t)

	eventID := "ev-trace-1"
	token := keys.Sign(t, "RS256", webhooktest.Claims(traceIssuer, traceAudience, webhooktest.Event(sessionID, eventID)))
	resp, err := http.Post("http://"+ingressURL+"/webhooks/idnow", "application/jwt", strings.NewReader(token))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"accepted"`) {
		t.Fatalf("webhook answered %d %s", resp.StatusCode, body)
	}

	byName := func(spans []tracingtest.Span, service, name string) []tracingtest.Span {
		var out []tracingtest.Span
		for _, s := range spans {
			if s.Service == service && s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	receiver.WaitFor(t, 30*time.Second, func(s []tracingtest.Span) bool {
		return len(byName(s, "idnow-connector-enricher", "commit idnow.sessions.enriched")) > 0 &&
			len(byName(s, "idnow-connector-ingress", "send idnow.sessions")) > 0
	})
	// Stop both processes: their shutdown flushes whatever is still queued.
	ingress.stop(t)
	enricher.stop(t)
	spans := receiver.Spans()

	traces := map[string]bool{}
	for _, s := range spans {
		traces[s.TraceID] = true
	}
	if len(traces) != 1 {
		t.Fatalf("spans of %d traces, want exactly one for one webhook: %v", len(traces), spans)
	}
	one := func(service, name string) tracingtest.Span {
		t.Helper()
		got := byName(spans, service, name)
		if len(got) != 1 {
			t.Fatalf("%d spans %q from %s, want 1 (all: %v)", len(got), name, service, spans)
		}
		return got[0]
	}
	webhook := one("idnow-connector-ingress", "POST /webhooks/idnow")
	send := one("idnow-connector-ingress", "send idnow.sessions")
	process := one("idnow-connector-enricher", "process idnow.sessions")
	getSession := one("idnow-connector-enricher", "idnow get_session")
	commit := one("idnow-connector-enricher", "commit idnow.sessions.enriched")
	links := []struct {
		child, parent tracingtest.Span
	}{{send, webhook}, {process, send}, {getSession, process}, {commit, process}}
	for _, l := range links {
		if l.child.ParentSpanID != l.parent.SpanID {
			t.Errorf("%s (%s): parent %s, want %s (%s)", l.child.Name, l.child.Service, l.child.ParentSpanID, l.parent.SpanID, l.parent.Name)
		}
	}
	if webhook.ParentSpanID != "" {
		t.Errorf("the webhook span has a parent %s; it starts the trace", webhook.ParentSpanID)
	}
	if webhook.Attrs["idnow.event_id"] != eventID || webhook.Attrs["idnow.webhook.result"] != "accepted" || webhook.Attrs["http.response.status_code"] != "200" {
		t.Errorf("webhook span attributes %v", webhook.Attrs)
	}
	if process.Kind != "consumer" || getSession.Kind != "client" || getSession.Attrs["http.response.status_code"] != "200" || commit.Attrs["idnow.enrich.committed"] != "true" {
		t.Errorf("enricher spans: process %s %v, get_session %s %v, commit %v", process.Kind, process.Attrs, getSession.Kind, getSession.Attrs, commit.Attrs)
	}
	for _, s := range spans {
		if s.ParentSpanID == "" && s.SpanID != webhook.SpanID {
			t.Errorf("another root span in the trace: %+v", s)
		}
	}
}

// child is one connector process started from this test binary.
type child struct {
	name   string
	cmd    *exec.Cmd
	done   chan error    // Wait's result, received once (stop, waitLog)
	exited chan struct{} // closed once Wait returned; cmd.ProcessState is safe to read after it

	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func startChild(t *testing.T, mode, cfgPath string, env []string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], mode, "--config", cfgPath)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{name: mode, cmd: cmd, done: make(chan error, 1), exited: make(chan struct{})}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			_ = json.Unmarshal(sc.Bytes(), &m)
			c.mu.Lock()
			c.raw.Write(append(sc.Bytes(), '\n'))
			if m != nil {
				c.lines = append(c.lines, m)
			}
			c.mu.Unlock()
		}
	}()
	go func() {
		<-scanned
		err := cmd.Wait()
		close(c.exited)
		c.done <- err
	}()
	t.Cleanup(func() {
		// Not cmd.ProcessState: Wait writes it in the goroutine above, a race when the test
		// failed before stop.
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			c.mu.Lock()
			t.Logf("%s log:\n%s", c.name, c.raw.String())
			c.mu.Unlock()
		}
	})
	return c
}

// waitLog waits for a log line with message msg and returns its key attribute.
func (c *child) waitLog(t *testing.T, msg, key string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, l := range c.lines {
			if l["msg"] == msg {
				v, _ := l[key].(string)
				c.mu.Unlock()
				return v
			}
		}
		c.mu.Unlock()
		select {
		case err := <-c.done:
			t.Fatalf("%s exited before logging %q: %v", c.name, msg, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not log %q", c.name, msg)
	return ""
}

// waitReady waits until the process's /readyz answers 200.
func (c *child) waitReady(t *testing.T) {
	t.Helper()
	admin := c.waitLog(t, "connector started", "admin")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 30 s", c.name)
}

// stop sends SIGTERM-like interrupt and waits for a clean exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("%s exited with %v", c.name, err)
		}
	case <-ctx.Done():
		t.Fatalf("%s did not stop within 30 s", c.name)
	}
}
