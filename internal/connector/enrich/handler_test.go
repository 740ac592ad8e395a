package enrich

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// fakeAPI is a SessionAPI answering from maps; a consumer-side fake is simpler than a server here.
type fakeAPI struct {
	sessions    map[string]*idnow.Session
	blocks      map[string][]idnow.DataBlock
	blockCalls  int
	sessionErr  error
	blocksError error
}

func (f *fakeAPI) GetSession(_ context.Context, id string) (*idnow.Session, error) {
	if f.sessionErr != nil {
		return nil, f.sessionErr
	}
	s, ok := f.sessions[id]
	if !ok {
		return nil, &idnow.APIError{Op: "get_session", SessionID: id, StatusCode: http.StatusNotFound}
	}
	return s, nil
}

func (f *fakeAPI) GetDataBlocks(_ context.Context, id string) ([]idnow.DataBlock, error) {
	f.blockCalls++
	if f.blocksError != nil {
		return nil, f.blocksError
	}
	return f.blocks[id], nil
}

func TestHandler(t *testing.T) {
	events, enriched := newCodecs(t)
	encode := func(ev *schemas.SessionEvent) []byte {
		b, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	api := &fakeAPI{
		sessions: map[string]*idnow.Session{
			"ses-done": {SessionID: "ses-done", Status: idnow.StatusCompleted, Outcome: "ACCEPTED"},
			"ses-run":  {SessionID: "ses-run", Status: idnow.StatusRunning},
		},
		blocks: map[string][]idnow.DataBlock{"ses-done": {{ID: "b1", Type: "basicIdentity", Status: "STORED", Content: json.RawMessage(`{"givenName":"A"}`)}}},
	}
	tests := []struct {
		name        string
		value       []byte
		api         *fakeAPI
		wantClass   string // expected Classify class of the error; empty = success
		wantStatus  string
		wantOutcome string
		wantBlocks  int
		wantFetched bool
	}{
		{name: "completed fetches blocks", value: encode(testEvent("ses-done", "COMPLETED")), api: api,
			wantStatus: "COMPLETED", wantOutcome: "accepted", wantBlocks: 1, wantFetched: true},
		{name: "running does not", value: encode(testEvent("ses-run", "RUNNING")), api: api,
			wantStatus: "RUNNING", wantOutcome: "none"},
		{name: "unknown session", value: encode(testEvent("ses-none", "COMPLETED")), api: api, wantClass: ClassSessionNotFound},
		{name: "garbage", value: []byte("garbage"), api: api, wantClass: ClassUndecodable},
		{name: "empty session id", value: encode(testEvent("", "COMPLETED")), api: api, wantClass: ClassUndecodable},
		{name: "session 503", value: encode(testEvent("ses-done", "COMPLETED")), api: &fakeAPI{sessionErr: &idnow.APIError{Op: "get_session", StatusCode: 503}}, wantClass: ClassServerError},
		{name: "blocks undecodable", value: encode(testEvent("ses-done", "COMPLETED")),
			api: &fakeAPI{sessions: api.sessions, blocksError: &idnow.APIError{Op: "get_datablocks", Err: idnow.ErrDecode}}, wantClass: ClassAPIResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(HandlerDeps{API: tc.api, Events: events, Enriched: enriched, Topic: "out",
				Policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}, Version: "v",
				Now: func() time.Time { return time.Unix(100, 0) }})
			res, err := h(t.Context(), &Message{Record: &kgo.Record{Topic: "in", Value: tc.value}})
			if tc.wantClass != "" {
				if err == nil {
					t.Fatalf("no error, want class %s", tc.wantClass)
				}
				if c := Classify(err); c.Class != tc.wantClass {
					t.Fatalf("class %s (%v), want %s", c.Class, err, tc.wantClass)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.wantStatus || res.Outcome != tc.wantOutcome || len(res.Records) != 1 {
				t.Fatalf("result %+v", res)
			}
			rec := res.Records[0]
			var es schemas.EnrichedSession
			if err := enriched.Decode(t.Context(), rec.Value, &es); err != nil {
				t.Fatal(err)
			}
			if rec.Topic != "out" || string(rec.Key) != es.Session.SessionID || kafka.Header(rec, serde.HeaderEventID) != es.Event.EventID ||
				kafka.Header(rec, serde.HeaderSchema) != schemas.EnrichedSessionName {
				t.Errorf("record envelope: topic %s key %s headers %v", rec.Topic, rec.Key, rec.Headers)
			}
			if es.DataBlocksFetched != tc.wantFetched || len(es.DataBlocks) != tc.wantBlocks || !es.Enrichment.EnrichedAt.Equal(time.Unix(100, 0)) {
				t.Errorf("enriched %+v", es)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	events, enriched := newCodecs(t)
	good := Deps{Topics: testTopics, API: &fakeAPI{}, Events: events, Enriched: enriched, Registry: prometheus.NewRegistry(), Log: discardLog()}
	tests := []struct {
		name string
		cfg  func(*Config)
		deps func(*Deps)
	}{
		{"bad config", func(c *Config) { c.Concurrency = 0 }, func(*Deps) {}},
		{"no api", func(*Config) {}, func(d *Deps) { d.API = nil }},
		{"no registry", func(*Config) {}, func(d *Deps) { d.Registry = nil }},
		{"bad topics", func(*Config) {}, func(d *Deps) { d.Topics.DLQ = d.Topics.Enriched }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, deps := testConfig("x"), good
			deps.Registry = prometheus.NewRegistry()
			tc.cfg(&cfg)
			tc.deps(&deps)
			if _, err := New(cfg, deps); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	e, err := New(testConfig("pod-3"), good)
	if err != nil {
		t.Fatal(err)
	}
	if e.TransactionalID() != "idnow-enricher-pod-3" {
		t.Errorf("transactional id %q", e.TransactionalID())
	}
	if err := e.Ready(t.Context()); err == nil {
		t.Error("Ready before joining the group")
	}
	if err := e.Run(canceledCtx()); err != nil {
		t.Errorf("Run on a canceled context: %v", err)
	}
	if err := e.Run(t.Context()); err == nil {
		t.Error("second Run accepted")
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
