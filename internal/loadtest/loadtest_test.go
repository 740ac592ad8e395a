package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQuantile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(i + 1)
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", []time.Duration{ms(7)}, 0.999, ms(7)},
		{"median of 100", hundred, 0.5, ms(50)},
		{"p99 of 100", hundred, 0.99, ms(99)},
		{"p999 of 100 is the max", hundred, 0.999, ms(100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantile(tc.sorted, tc.q); got != tc.want {
				t.Fatalf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// TestLoadCountsAndBounds drives Load against a server that rejects every third token: every
// token is posted exactly once, rejections are errors with their status, and the run stops at
// the token bound well before its duration.
func TestLoadCountsAndBounds(t *testing.T) {
	var hits atomic.Int64
	seen := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		seen <- string(b)
		if r.Header.Get("Content-Type") != "application/jwt" {
			http.Error(w, "bad type", http.StatusUnsupportedMediaType)
			return
		}
		if strings.HasSuffix(string(b), "x") {
			http.Error(w, "rejected", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	tokens := make([]string, 30)
	for i := range tokens {
		tokens[i] = strings.Repeat("t", i+1)
		if i%3 == 0 {
			tokens[i] += "x"
		}
	}
	res, err := Load(t.Context(), LoadConfig{URL: srv.URL, Tokens: tokens, Concurrency: 4, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 30 || hits.Load() != 30 {
		t.Fatalf("requests = %d, server hits = %d, want 30 each", res.Requests, hits.Load())
	}
	close(seen)
	distinct := map[string]bool{}
	for s := range seen {
		distinct[s] = true
	}
	if len(distinct) != 30 {
		t.Fatalf("%d distinct tokens posted, want 30", len(distinct))
	}
	if res.Errors != 10 || res.ErrorKinds["http_401 rejected"] != 10 {
		t.Fatalf("errors = %d %v, want 10 × http_401", res.Errors, res.ErrorKinds)
	}
	if res.RPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P999 {
		t.Fatalf("implausible figures: %+v", res)
	}
}

func TestLoadRejectsBadConfig(t *testing.T) {
	for _, cfg := range []LoadConfig{
		{URL: "http://127.0.0.1:1", Tokens: []string{"a"}, Concurrency: 0, Duration: time.Second},
		{URL: "http://127.0.0.1:1", Tokens: nil, Concurrency: 1, Duration: time.Second},
		{URL: "http://127.0.0.1:1", Tokens: []string{"a"}, Concurrency: 1, Duration: 0},
	} {
		if _, err := Load(t.Context(), cfg); err == nil {
			t.Errorf("Load(%+v) accepted a config it cannot run", cfg)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ic := DefaultIngressConfig()
	ic.Exe = "/bin/true"
	ec := DefaultEnrichConfig()
	ec.Exe = "/bin/true"
	if err := ic.Validate(); err != nil {
		t.Fatalf("default ingress config: %v", err)
	}
	if err := ec.Validate(); err != nil {
		t.Fatalf("default enricher config: %v", err)
	}
	badIngress := []func(*IngressConfig){
		func(c *IngressConfig) { c.Exe = "" },
		func(c *IngressConfig) { c.Levels = []int{16, 0} },
		func(c *IngressConfig) { c.Duration = time.Hour },
		func(c *IngressConfig) { c.MaxRequests = 0 },
	}
	for i, mod := range badIngress {
		c := ic
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("ingress case %d: invalid config accepted", i)
		}
	}
	badEnrich := []func(*EnrichConfig){
		func(c *EnrichConfig) { c.Events = 0 },
		func(c *EnrichConfig) { c.Latency = 0 },
		func(c *EnrichConfig) { c.Concurrency = nil },
		func(c *EnrichConfig) { c.Deliveries = []string{"twice"} },
		func(c *EnrichConfig) { c.MemoryEvents = -1 },
		func(c *EnrichConfig) { c.StateStore = nil },
	}
	for i, mod := range badEnrich {
		c := ec
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("enricher case %d: invalid config accepted", i)
		}
	}
}

// TestSignerTokensVerify checks that tokens from the signer are accepted by the production
// verifier configuration the targets use, and that SignMany makes distinct event ids.
func TestSignerTokensVerify(t *testing.T) {
	s, err := NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	toks, err := s.SignMany("t", 8, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v := newTestVerifier(t, s.JWKSURL())
	ids := map[string]bool{}
	for _, tok := range toks {
		c, err := v.Verify(t.Context(), tok)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		ids[string(c.Data)] = true
	}
	if len(ids) != len(toks) {
		t.Fatalf("%d distinct events in %d tokens", len(ids), len(toks))
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := &tailBuffer{max: 8}
	_, _ = b.Write([]byte("0123456789"))
	_, _ = b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Fatalf("tail = %q, want %q", got, "456789ab")
	}
}

// TestBacklogEventsAreAllEnrichedWithState checks that the enricher benchmark's backlog compares
// like with like: with the state store on, no event of it is skipped (a repeated terminal status
// would be), so both settings enrich every event.
func TestBacklogEventsAreAllEnrichedWithState(t *testing.T) {
	const n, sessions = 20000, 6000
	st := map[int]*schemas.SessionState{}
	for i := range n {
		s := i % sessions
		id := fmt.Sprintf("e%d", i)
		status := backlogStatus(i, n, sessions, "COMPLETED")
		if d := state.Decide(st[s], id, status); d.Skip != "" || d.OutOfOrder {
			t.Fatalf("event %d (%s) of session %d: decision %+v, want enriched in order", i, status, s, d)
		}
		st[s] = state.Apply(st[s], fmt.Sprint(s), id, status, "", time.Now())
	}
	for s, x := range st {
		if x.LatestStatus == nil || *x.LatestStatus != "COMPLETED" {
			t.Fatalf("session %d ends with status %v, want COMPLETED", s, x.LatestStatus)
		}
	}
}

func TestRestoreConfigValidate(t *testing.T) {
	rc := DefaultRestoreConfig()
	rc.Exe = "/bin/true"
	if err := rc.Validate(); err != nil {
		t.Fatalf("default restore config: %v", err)
	}
	for i, mod := range []func(*RestoreConfig){
		func(c *RestoreConfig) { c.Exe = "" },
		func(c *RestoreConfig) { c.Sessions = 0 },
		func(c *RestoreConfig) { c.Partitions = 0 },
		func(c *RestoreConfig) { c.Versions = 0 },
		func(c *RestoreConfig) { c.Sessions, c.Versions = 1_000_000, 21 },
		func(c *RestoreConfig) { c.EventIDs = state.MaxEventIDs + 1 },
		func(c *RestoreConfig) { c.TxnRecords = 0 },
		func(c *RestoreConfig) { c.RunTimeout = 0 },
	} {
		c := rc
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("restore case %d: invalid config accepted", i)
		}
	}
}

// TestRestoreTargetRestoresTheFilledTopic runs the restore benchmark's two halves in process on
// an embedded broker: the transactional fill and the child's restore, which must find every
// session (read_committed over the commit markers) and report them on its READY line.
func TestRestoreTargetRestoresTheFilledTopic(t *testing.T) {
	e, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Listen: "127.0.0.1:0", Partitions: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := DefaultRestoreConfig()
	cfg.Sessions, cfg.Versions, cfg.Partitions, cfg.TxnRecords = 2500, 3, 3, 1000
	topic := "bench.restore.test"
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.TransactionalID("fill"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), 3, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := fillState(t.Context(), cl, topic, cfg); err != nil {
		t.Fatal(err)
	}
	tc := kafka.DefaultTopicsConfig()
	tc.State = topic
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- serveRestore(ctx, TargetSpec{Kind: TargetRestore, Brokers: e.Addrs(), Topics: tc, Partitions: []int32{0, 1, 2}}, pw)
		_ = pw.Close()
	}()
	line, rerr := bufio.NewReader(pr).ReadString('\n')
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatalf("no READY line from the restore target: %v", rerr)
	}
	var res RestoreResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, readyPrefix))), &res); err != nil {
		t.Fatalf("READY line %q: %v", line, err)
	}
	if res.Sessions != cfg.Sessions || res.Took <= 0 {
		t.Fatalf("restore reported %+v, want %d sessions and a positive duration", res, cfg.Sessions)
	}
}
