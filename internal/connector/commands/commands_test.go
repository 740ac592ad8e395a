package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testTopics = kafka.TopicsConfig{
	Sessions: "idnow.sessions", Enriched: "idnow.sessions.enriched", DLQ: "idnow.sessions.dlq",
	Commands: "idnow.commands", Replies: "idnow.commands.replies", CommandsState: "idnow.commands.state",
	Create: true, Partitions: 3, ReplicationFactor: -1,
}

type harness struct {
	t       *testing.T
	brokers []string
	sim     *idnowsim.Simulator
	api     *idnow.Client
	cmds    *serde.Codec
	replies *serde.Codec
	states  *serde.Codec
}

func newHarness(t *testing.T, mutate func(*idnowsim.Config)) *harness {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(testTopics.Partitions, testTopics.Commands, testTopics.Replies))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sc := idnowsim.DefaultConfig()
	sc.Listen, sc.Seed, sc.StepDelay = "127.0.0.1:0", 7, time.Hour
	if mutate != nil {
		mutate(&sc)
	}
	sim, err := idnowsim.New(sc, idnowsim.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	ic := idnow.DefaultConfig()
	ic.APIURL, ic.TokenURL, ic.ClientID, ic.ClientSecret = sim.APIURL(), sim.TokenURL(), "sim-client", "sim-secret"
	ic.AllowInsecureHTTP, ic.RateLimit, ic.Timeout = true, 0, 300*time.Millisecond
	ic.Retry = idnow.RetryConfig{MaxAttempts: 3, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond}
	api, err := idnow.New(t.Context(), ic, idnow.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(api.Close)
	h := &harness{t: t, brokers: c.ListenAddrs(), sim: sim, api: api}
	for _, p := range []struct {
		dst *(*serde.Codec)
		s   schemas.Schema
	}{{&h.cmds, schemas.CreateSessionCommandSchema()}, {&h.replies, schemas.CommandReplySchema()}, {&h.states, schemas.CommandStateSchema()}} {
		if *p.dst, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: p.s}, nil); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Group, cfg.InstanceID = "commands-test", "t1"
	cfg.RateLimit = 1000
	cfg.MaxPollRecords = 40
	cfg.RedirectAllowlist = []string{"https://onboarding.example.com/done"}
	cfg.LookupDelay, cfg.LookupClockSkew = 20*time.Millisecond, time.Second
	cfg.GiveUpAfter = 20 * time.Second
	cfg.Retry = retry.Config{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	cfg.SessionTimeout, cfg.TransactionTimeout, cfg.ShutdownTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	return cfg
}

type runningCommander struct {
	c      *Commander
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) start(cfg Config) *runningCommander {
	h.t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(h.brokers...), kgo.RequiredAcks(kgo.AllISRAcks())}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, Deps{KafkaOpts: opts, TableOpts: opts, Topics: testTopics, API: h.api, Environment: "live",
		Commands: h.cmds, Replies: h.replies, States: h.states, StatesDecoder: h.states, Registry: reg,
		Log: testLog(h.t)})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningCommander{c: c, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

func (r *runningCommander) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("Run did not return")
	}
}

// testLog writes errors to the test log; COMMANDS_TEST_VERBOSE=1 adds everything from info up.
func testLog(t *testing.T) *slog.Logger {
	level := slog.LevelError
	if os.Getenv("COMMANDS_TEST_VERBOSE") != "" {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ptr[T any](v T) *T { return &v }

// produce writes commands (encoded) and raw values, keyed by subject.
func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(h.t.Context(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) command(key string, cmd *schemas.CreateSessionCommand) *kgo.Record {
	h.t.Helper()
	if cmd.Input == nil {
		cmd.Input = map[string]string{}
	}
	if cmd.Metadata == nil {
		cmd.Metadata = map[string]string{"subjectId": key}
	}
	v, err := h.cmds.Encode(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	return &kgo.Record{Topic: testTopics.Commands, Key: []byte(key), Value: v}
}

// readReplies reads committed replies until n arrived (or the timeout), keyed by command id
// (several replies for one id are all kept, in order).
func (h *harness) readReplies(n int, timeout time.Duration) (map[string][]*schemas.CommandReply, int) {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(testTopics.Replies),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(h.t.Context(), timeout)
	defer cancel()
	out := map[string][]*schemas.CommandReply{}
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, r := range fs.Records() {
			var rep schemas.CommandReply
			if err := h.replies.Decode(ctx, r.Value, &rep); err != nil {
				h.t.Fatalf("reply does not decode: %v", err)
			}
			if got := kafka.Header(r, HeaderCommandID); got != rep.CommandID {
				h.t.Fatalf("reply header %s=%q, value commandId %q", HeaderCommandID, got, rep.CommandID)
			}
			out[rep.CommandID] = append(out[rep.CommandID], &rep)
			got++
		}
	}
	return out, got
}

// sessionsByCommand counts the simulator's sessions per connectorCommandId.
func (h *harness) sessionsByCommand() map[string]int {
	out := map[string]int{}
	for _, s := range h.sim.Sessions() {
		if id := s.Metadata[schemas.MetadataCommandID]; id != "" {
			out[id]++
		}
	}
	return out
}

// TestCommands answers valid and invalid commands, once each, and repeats from the record.
func TestCommands(t *testing.T) {
	h := newHarness(t, nil)
	past := time.Now().Add(-time.Minute)
	r := h.start(testConfig())
	h.produce(
		h.command("subj-1", &schemas.CreateSessionCommand{CommandID: "by-id", FlowID: ptr("flw-auto-ident"),
			Input:       map[string]string{"basicIdentity": `{"givenName":"Erika","familyName":"Mustermann"}`},
			RedirectURL: ptr("https://onboarding.example.com/done?x=1"), State: ptr("st-1")}),
		h.command("subj-2", &schemas.CreateSessionCommand{CommandID: "by-name", FlowName: ptr("  autoident ")}),
		h.command("subj-3", &schemas.CreateSessionCommand{CommandID: "unknown-name", FlowName: ptr("No such flow")}),
		h.command("subj-4", &schemas.CreateSessionCommand{CommandID: "bad-redirect", FlowID: ptr("flw-auto-ident"), RedirectURL: ptr("https://evil.example.net/done")}),
		h.command("subj-5", &schemas.CreateSessionCommand{CommandID: "late", FlowID: ptr("flw-auto-ident"), Deadline: &past}),
		h.command("subj-6", &schemas.CreateSessionCommand{CommandID: "two-flows", FlowID: ptr("flw-auto-ident"), FlowName: ptr("AutoIdent")}),
		h.command("subj-7", &schemas.CreateSessionCommand{CommandID: "unknown-id", FlowID: ptr("flw-nope")}),
		h.command("subj-8", &schemas.CreateSessionCommand{CommandID: "wrong-env", FlowID: ptr("flw-auto-ident"), Environment: ptr("staging")}),
		h.command("subj-9", &schemas.CreateSessionCommand{CommandID: "bad-input", FlowID: ptr("flw-auto-ident"), Input: map[string]string{"basicIdentity": `[1]`}}),
		&kgo.Record{Topic: testTopics.Commands, Key: []byte("subj-10"), Value: []byte("not avro at all"),
			Headers: []kgo.RecordHeader{{Key: HeaderCommandID, Value: []byte("garbage")}}},
		// The same command id again, same key: answered from the record.
		h.command("subj-1", &schemas.CreateSessionCommand{CommandID: "by-id", FlowID: ptr("flw-auto-ident")}),
	)
	got, n := h.readReplies(11, 30*time.Second)
	if n != 11 {
		t.Fatalf("got %d replies, want 11: %v", n, got)
	}
	want := map[string]string{"unknown-name": schemas.ReasonUnknownFlow, "bad-redirect": schemas.ReasonRedirectNotAllowed,
		"late": schemas.ReasonDeadlinePassed, "two-flows": schemas.ReasonMalformed, "unknown-id": schemas.ReasonUnknownFlow,
		"wrong-env": schemas.ReasonEnvironmentMismatch, "bad-input": schemas.ReasonMalformed, "garbage": schemas.ReasonMalformed}
	for id, reason := range want {
		reps := got[id]
		if len(reps) != 1 || reps[0].Outcome != schemas.OutcomeFailed || reps[0].Failed.Reason != reason {
			t.Errorf("%s: replies %+v, want one failed %s", id, reps, reason)
			continue
		}
		if msg := reps[0].Failed.Message; strings.Contains(msg, "Erika") || msg == "" {
			t.Errorf("%s: message %q", id, msg)
		}
	}
	for _, id := range []string{"by-id", "by-name"} {
		reps := got[id]
		if len(reps) == 0 || reps[0].Outcome != schemas.OutcomeCreated || reps[0].Created.PlayerURL == nil ||
			!strings.Contains(*reps[0].Created.PlayerURL, "/player/?token=") || reps[0].Replayed {
			t.Fatalf("%s: first reply %+v", id, reps)
		}
	}
	if reps := got["by-id"]; len(reps) != 2 || !reps[1].Replayed || reps[1].Created.SessionID != reps[0].Created.SessionID {
		t.Fatalf("repeated by-id: %+v", reps)
	}
	if got["by-name"][0].Created.FlowID != "flw-auto-ident" {
		t.Fatalf("by-name resolved to %s", got["by-name"][0].Created.FlowID)
	}
	sessions := h.sessionsByCommand()
	if len(sessions) != 2 || sessions["by-id"] != 1 || sessions["by-name"] != 1 {
		t.Fatalf("sessions per command: %v", sessions)
	}
	for _, s := range h.sim.Sessions() {
		if s.Metadata[schemas.MetadataCommandID] == "by-id" && s.Metadata["subjectId"] != "subj-1" {
			t.Fatalf("session metadata %v lost subjectId", s.Metadata)
		}
	}
	if v := testutil.ToFloat64(r.c.m.replayed); v != 1 {
		t.Fatalf("replayed metric %v, want 1", v)
	}
	if v := testutil.ToFloat64(r.c.m.replies.WithLabelValues("failed", "malformed")); v != 3 {
		t.Fatalf("failed/malformed replies %v, want 3", v)
	}
}

// TestAmbiguousCreates makes half of the creates ambiguous (performed, answer withheld until
// the client times out), restarts the role mid-run, and checks one session per command.
func TestAmbiguousCreates(t *testing.T) {
	h := newHarness(t, func(c *idnowsim.Config) {
		c.Faults.CreateTimeoutRate = 0.5
		c.Faults.CreateTimeoutHang = 5 * time.Second
	})
	const n = 60
	var recs []*kgo.Record
	for i := range n {
		cmd := &schemas.CreateSessionCommand{CommandID: fmt.Sprintf("cmd-%03d", i)}
		if i%2 == 0 {
			cmd.FlowName = ptr("Age verification")
		} else {
			cmd.FlowID = ptr("flw-basic-identity")
		}
		recs = append(recs, h.command(fmt.Sprintf("subj-%d", i%7), cmd))
	}
	h.produce(recs[:n/2]...)
	r := h.start(testConfig())
	// Stop it while it works, as a crash would leave it (no reply for part of the batch).
	deadline := time.Now().Add(20 * time.Second)
	for h.sim.Stats().SessionsCreated < 10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r.stop(t)
	h.produce(recs[n/2:]...)
	h.start(testConfig())
	got, cnt := h.readReplies(n, 60*time.Second)
	if cnt != n || len(got) != n {
		t.Fatalf("%d replies for %d command ids, want %d", cnt, len(got), n)
	}
	recoveredN := 0
	for id, reps := range got {
		if len(reps) != 1 || reps[0].Outcome != schemas.OutcomeCreated {
			t.Fatalf("%s: %+v", id, reps)
		}
		if reps[0].Created.Recovered {
			recoveredN++
		}
	}
	sessions := h.sessionsByCommand()
	for id, k := range sessions {
		if k != 1 {
			t.Errorf("command %s has %d sessions", id, k)
		}
	}
	if len(sessions) != n {
		t.Fatalf("%d commands have a session, want %d", len(sessions), n)
	}
	st := h.sim.Stats()
	if st.CreateTimeouts == 0 || recoveredN == 0 {
		t.Fatalf("no ambiguous create happened (create timeouts %d, recovered %d)", st.CreateTimeouts, recoveredN)
	}
	t.Logf("%d sessions, %d ambiguous creates, %d recovered replies", st.SessionsCreated, st.CreateTimeouts, recoveredN)
}

// TestIntentFromEarlierOwner: an intent without a reply (an owner died mid-call) and a session
// carrying the command id: the command is answered with that session, without a create, even
// though its deadline passed in between.
func TestIntentFromEarlierOwner(t *testing.T) {
	h := newHarness(t, nil)
	api := h.api
	s, err := api.CreateSession(t.Context(), "flw-auto-ident", idnow.CreateSessionRequest{Metadata: map[string]string{schemas.MetadataCommandID: "orphan"}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Add(-time.Second)
	v, err := h.states.Encode(&schemas.CommandState{CommandID: "orphan", FlowID: ptr("flw-auto-ident"), AttemptedAt: &at, UpdatedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cfg := testConfig()
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), testTopics.Partitions, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact,delete")}, testTopics.CommandsState); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: testTopics.CommandsState, Key: []byte("orphan"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Its deadline has passed meanwhile: the session the earlier owner created is still the answer.
	past := time.Now().Add(-time.Millisecond)
	h.produce(h.command("subj-o", &schemas.CreateSessionCommand{CommandID: "orphan", FlowName: ptr("AutoIdent"), Deadline: &past}))
	h.start(cfg)
	got, n := h.readReplies(1, 30*time.Second)
	if n != 1 || got["orphan"][0].Created == nil || got["orphan"][0].Created.SessionID != s.SessionID || !got["orphan"][0].Created.Recovered ||
		got["orphan"][0].Created.PlayerURL != nil {
		t.Fatalf("reply %+v, want the existing session %s, recovered, no player URL", got["orphan"], s.SessionID)
	}
	if k := h.sessionsByCommand()["orphan"]; k != 1 {
		t.Fatalf("%d sessions for orphan", k)
	}
}

func TestClassifyCreate(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want createClass
	}{
		{"429", &idnow.APIError{StatusCode: 429}, createNotPerformed},
		{"503", &idnow.APIError{StatusCode: 503}, createNotPerformed},
		{"401", &idnow.APIError{StatusCode: 401}, createNotPerformed},
		{"400", &idnow.APIError{StatusCode: 400}, createRejected},
		{"404", &idnow.APIError{StatusCode: 404}, createRejected},
		{"403", &idnow.APIError{StatusCode: 403}, createRejected},
		{"500", &idnow.APIError{StatusCode: 500}, createAmbiguous},
		{"504", &idnow.APIError{StatusCode: 504}, createAmbiguous},
		{"timeout", &idnow.APIError{Err: fmt.Errorf("%w: x", idnow.ErrTimeout)}, createAmbiguous},
		{"reset", &idnow.APIError{Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}, createAmbiguous},
		{"eof", &idnow.APIError{Err: io.ErrUnexpectedEOF}, createAmbiguous},
		{"undecodable 2xx", &idnow.APIError{Err: idnow.ErrDecode}, createAmbiguous},
		{"dial", &idnow.APIError{Err: &net.OpError{Op: "dial", Err: errors.New("no route")}}, createNotPerformed},
		{"token", &idnow.APIError{Op: "token", Err: idnow.ErrUnauthorized}, createNotPerformed},
		{"invalid id", &idnow.APIError{Err: idnow.ErrInvalidID}, createRejected},
	}
	for _, tt := range tests {
		if got := classifyCreate(tt.err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRedirectAllowed(t *testing.T) {
	var list []allowed
	for _, p := range []string{"https://onboarding.example.com/idnow/", "http://localhost:3000"} {
		a, err := parseAllowed(p)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, a)
	}
	tests := map[string]bool{
		"https://onboarding.example.com/idnow/done?x=1":  true,
		"https://ONBOARDING.example.com/idnow/done":      true,
		"https://onboarding.example.com/other":           false,
		"http://onboarding.example.com/idnow/done":       false,
		"https://onboarding.example.com.evil.io/idnow/":  false,
		"https://onboarding.example.com/idnow/../admin":  false,
		"https://user@onboarding.example.com/idnow/done": false,
		"http://localhost:3000/anything":                 true,
		"http://localhost:3001/anything":                 false,
		"/idnow/done":                                    false,
	}
	for u, want := range tests {
		if got := redirectAllowed(list, u); got != want {
			t.Errorf("%s: %v, want %v", u, got, want)
		}
	}
	if _, err := parseAllowed("onboarding.example.com"); err == nil {
		t.Fatal("a bare host was accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := map[string]func(*Config){
		"commands.rate_limit":         func(c *Config) { c.RateLimit = 0 },
		"commands.redirect_allowlist": func(c *Config) { c.RedirectAllowlist = []string{"ftp://x"} },
		"commands.dedupe_window":      func(c *Config) { c.DedupeWindow = time.Second },
		"commands.lookup_pages":       func(c *Config) { c.LookupPages = 0 },
		"commands.concurrency":        func(c *Config) { c.Concurrency = 0 },
		"commands.group":              func(c *Config) { c.Group = "" },
	}
	for key, mutate := range tests {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// TestUnpagedFlowList resolves a flow name against a simulator answering the flow list the way
// older builds do: everything at once, without a page object.
func TestUnpagedFlowList(t *testing.T) {
	h := newHarness(t, func(c *idnowsim.Config) { c.FlowsPaging = idnowsim.PagingUnpaged })
	h.start(testConfig())
	h.produce(h.command("subj-u", &schemas.CreateSessionCommand{CommandID: "unpaged", FlowName: ptr("Reusable identity")}))
	got, n := h.readReplies(1, 30*time.Second)
	if n != 1 || got["unpaged"][0].Created == nil || got["unpaged"][0].Created.FlowID != "flw-reusable-id" {
		t.Fatalf("reply %+v, want a session of flw-reusable-id", got["unpaged"])
	}
}

// TestRebalance runs two members: a second one joins while the first works (ambiguous creates
// slow it down), then the first stops. Partitions move twice mid-batch; every command still gets
// one reply and one session.
func TestRebalance(t *testing.T) {
	h := newHarness(t, func(c *idnowsim.Config) {
		c.Faults.CreateTimeoutRate = 0.3
		c.Faults.CreateTimeoutHang = 5 * time.Second
	})
	const n = 90
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, h.command(fmt.Sprintf("subj-%d", i%11), &schemas.CreateSessionCommand{CommandID: fmt.Sprintf("rb-%03d", i), FlowID: ptr("flw-auto-ident")}))
	}
	h.produce(recs...)
	cfg1, cfg2 := testConfig(), testConfig()
	cfg1.MaxPollRecords, cfg2.MaxPollRecords = 10, 10
	cfg2.InstanceID = "t2"
	r1 := h.start(cfg1)
	deadline := time.Now().Add(20 * time.Second)
	for h.sim.Stats().SessionsCreated < 15 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h.start(cfg2)
	for h.sim.Stats().SessionsCreated < 45 && time.Now().Before(deadline.Add(20*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	r1.stop(t)
	got, cnt := h.readReplies(n, 60*time.Second)
	if cnt != n || len(got) != n {
		t.Fatalf("%d replies for %d command ids, want %d", cnt, len(got), n)
	}
	for id, reps := range got {
		if len(reps) != 1 || reps[0].Outcome != schemas.OutcomeCreated {
			t.Fatalf("%s: %+v", id, reps)
		}
	}
	sessions := h.sessionsByCommand()
	for id, k := range sessions {
		if k != 1 {
			t.Errorf("command %s has %d sessions", id, k)
		}
	}
	if len(sessions) != n {
		t.Fatalf("%d commands have a session, want %d", len(sessions), n)
	}
}

// TestUnavailable: IDnow answers every call 503 (provably not performed); the command is tried
// again until commands.give_up_after and then answered unavailable, with no session anywhere.
func TestUnavailable(t *testing.T) {
	h := newHarness(t, func(c *idnowsim.Config) {
		c.Faults.Rate503 = 1
		c.Faults.RetryAfter = time.Second
	})
	cfg := testConfig()
	cfg.GiveUpAfter = 2 * time.Second
	r := h.start(cfg)
	h.produce(h.command("subj-x", &schemas.CreateSessionCommand{CommandID: "down", FlowID: ptr("flw-auto-ident")}))
	got, n := h.readReplies(1, 30*time.Second)
	if n != 1 || got["down"][0].Failed == nil || got["down"][0].Failed.Reason != schemas.ReasonUnavailable ||
		!strings.Contains(got["down"][0].Failed.Message, "commands.give_up_after") {
		t.Fatalf("reply %+v, want failed unavailable naming commands.give_up_after", got["down"])
	}
	if st := h.sim.Stats(); st.SessionsCreated != 0 || st.Faults503 < 2 {
		t.Fatalf("simulator: %d sessions, %d injected 503s; want none and several attempts", st.SessionsCreated, st.Faults503)
	}
	if v := testutil.ToFloat64(r.c.m.ambiguous); v != 0 {
		t.Fatalf("a 503 counted as ambiguous (%v): it proves the create was not performed", v)
	}
}
