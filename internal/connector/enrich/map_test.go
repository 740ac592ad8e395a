package enrich

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// apiFromDir serves testdata/api/<dir>/session.json and datablocks.json (404 when absent) behind
// a client-credentials token endpoint, and returns a real idnow.Client pointed at it: the
// golden tests start from raw API responses, through the client's tolerant parsing, to Map.
func apiFromDir(t *testing.T, dir string) *idnow.Client {
	t.Helper()
	base := filepath.Join("testdata", "api", dir)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"test-token","expires_in":3600,"token_type":"Bearer"}`))
	})
	serve := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer test-token" {
				http.Error(w, `{"code":"unauthorized"}`, http.StatusUnauthorized)
				return
			}
			b, err := os.ReadFile(filepath.Join(base, name))
			if err != nil {
				http.Error(w, `{"code":"not_found"}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(b)
		}
	}
	mux.HandleFunc("GET /api/v1/live/sessions/{id}", serve("session.json"))
	mux.HandleFunc("GET /api/v1/live/sessions/{id}/datablocks", serve("datablocks.json"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg := idnow.DefaultConfig()
	cfg.APIURL = srv.URL + "/api/v1"
	cfg.TokenURL = srv.URL + "/token"
	cfg.ClientID, cfg.ClientSecret = "client", "secret"
	cfg.AllowInsecureHTTP = true // httptest serves plain http
	cfg.Retry.MaxAttempts = 1
	cl, err := idnow.New(t.Context(), cfg, idnow.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func ptr[T any](v T) *T { return &v }

// testEvent is the triggering SessionEvent the golden cases share.
func testEvent(sessionID, status string) *schemas.SessionEvent {
	created := time.Date(2026, 3, 1, 10, 2, 0, 500_000_000, time.UTC)
	return &schemas.SessionEvent{
		EventID: "evt-" + sessionID, EventName: "session." + strings.ToLower(status), EventVersion: ptr("1"),
		EventSequence: ptr(int64(3)), CreatedAt: &created, Environment: ptr("live"), FlowID: ptr("flw-auto-ident"),
		SessionID: sessionID, SessionStatus: ptr(status),
		ReceivedAt:      time.Date(2026, 3, 1, 10, 2, 1, 250_999_000, time.UTC),
		DeliveryVariant: schemas.DeliveryJWTBody,
	}
}

func TestMapGolden(t *testing.T) {
	full := DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}
	enrichedAt := time.Date(2026, 3, 1, 10, 2, 2, 987_654_321, time.UTC)
	tests := []struct {
		name    string
		dir     string
		session string
		status  string // the status the event announced
		fetch   bool
		policy  DataBlocksConfig
	}{
		{name: "new_shape_full", dir: "new", session: "ses-new-1", status: "COMPLETED", fetch: true, policy: full},
		{name: "old_shape_full", dir: "old", session: "ses-old-1", status: "COMPLETED", fetch: true, policy: full},
		{name: "new_shape_content_none", dir: "new", session: "ses-new-1", status: "COMPLETED", fetch: true,
			policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentNone}},
		{name: "old_shape_content_none", dir: "old", session: "ses-old-1", status: "COMPLETED", fetch: true,
			policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentNone}},
		{name: "new_shape_include_filter", dir: "new", session: "ses-new-1", status: "COMPLETED", fetch: true,
			policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Include: []string{"documentVerification", "SELFIE"}, Content: ContentFull}},
		{name: "running_not_fetched", dir: "running", session: "ses-run-1", status: "RUNNING", fetch: false, policy: full},
		{name: "unknown_status_passthrough", dir: "unknown", session: "ses-unk-1", status: "ON_HOLD", fetch: false, policy: full},
	}
	codec, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := apiFromDir(t, tc.dir)
			ctx := t.Context()
			s, err := api.GetSession(ctx, tc.session)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.policy.fetchesBlocks(string(s.Status)); got != tc.fetch {
				t.Fatalf("policy fetches blocks for %s = %v, the case expects %v", s.Status, got, tc.fetch)
			}
			var blocks []idnow.DataBlock
			if tc.fetch {
				if blocks, err = api.GetDataBlocks(ctx, tc.session); err != nil {
					t.Fatal(err)
				}
			}
			got := Map(testEvent(tc.session, tc.status), s, blocks, tc.fetch, tc.policy, enrichedAt, "v1.2.3-test")

			rendered, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			rendered = append(rendered, '\n')
			golden := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, rendered, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestMapGolden -update to create it)", err)
			}
			if !bytes.Equal(rendered, want) {
				t.Errorf("Map output differs from %s (rerun with -update if the change is intended):\n got: %s\nwant: %s", golden, rendered, want)
			}

			// The record must fit the schema and come back unchanged: Map truncates times to the
			// schema's millisecond precision, so what a consumer decodes is what Map built.
			b, err := codec.Encode(got)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			var back schemas.EnrichedSession
			if err := codec.Decode(ctx, b, &back); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(normalizeTimes(&back), normalizeTimes(got)) {
				t.Errorf("Avro round trip changed the record:\n got: %+v\nwant: %+v", back, *got)
			}
		})
	}
}

// normalizeTimes renders a record as JSON so time.Time location pointers do not matter.
func normalizeTimes(e *schemas.EnrichedSession) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// TestMapPolicy checks the properties the golden files show, so a careless -update cannot bless
// a regression: personal data never ships with content none, DELETED blocks carry nothing, the
// include filter is honoured and file references point at their block.
func TestMapPolicy(t *testing.T) {
	api := apiFromDir(t, "new")
	ctx := t.Context()
	s, err := api.GetSession(ctx, "ses-new-1")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := api.GetDataBlocks(ctx, "ses-new-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		policy    DataBlocksConfig
		wantTypes []string
		wantRefs  int
	}{
		{"all full", DataBlocksConfig{Content: ContentFull}, []string{"basicIdentity", "documentData", "documentVerification", "selfie", "outcomeStatus"}, 3},
		{"all none", DataBlocksConfig{Content: ContentNone}, []string{"basicIdentity", "documentData", "documentVerification", "selfie", "outcomeStatus"}, 3},
		{"identity only", DataBlocksConfig{Include: []string{"basicidentity"}, Content: ContentFull}, []string{"basicIdentity"}, 0},
		{"verification only", DataBlocksConfig{Include: []string{"documentVerification"}, Content: ContentNone}, []string{"documentVerification"}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Map(testEvent("ses-new-1", "COMPLETED"), s, blocks, true, tc.policy, time.Now(), "test")
			var types []string
			for _, b := range got.DataBlocks {
				types = append(types, b.Type)
				if b.Status == idnow.DataBlockDeleted && (b.Content != nil || b.BasicIdentity != nil || b.DocumentData != nil) {
					t.Errorf("DELETED block %s carries content or typed fields", b.Type)
				}
				if tc.policy.Content == ContentNone {
					if b.Content != nil || b.BasicIdentity != nil {
						t.Errorf("content none: block %s ships content or basicIdentity", b.Type)
					}
					if d := b.DocumentData; d != nil && (d.DocumentNumber != nil || d.ExpiryDate != nil || d.IssuanceDate != nil) {
						t.Errorf("content none: documentData ships personal fields: %+v", *d)
					}
				} else if b.Status != idnow.DataBlockDeleted && b.Content == nil {
					t.Errorf("content full: stored block %s has no content", b.Type)
				}
			}
			if !reflect.DeepEqual(types, tc.wantTypes) {
				t.Errorf("block types = %v, want %v", types, tc.wantTypes)
			}
			if len(got.FileRefs) != tc.wantRefs {
				t.Errorf("file refs = %+v, want %d", got.FileRefs, tc.wantRefs)
			}
			for _, r := range got.FileRefs {
				if r.DataBlockType != "documentVerification" || r.DataBlockID == nil || *r.DataBlockID != "db-3" || !strings.HasPrefix(r.JSONPath, "$.") {
					t.Errorf("file ref %+v does not point into block db-3", r)
				}
			}
			if got.Enrichment.DataBlocksContent != tc.policy.Content {
				t.Errorf("enrichment.dataBlocksContent = %q, want %q", got.Enrichment.DataBlocksContent, tc.policy.Content)
			}
		})
	}
}

func TestBlockFieldsGet(t *testing.T) {
	f := contentFields(json.RawMessage(`{"s":"text","n":12,"b":true,"null":null,"obj":{"a":1},"arr":[1],"esc":"a\"b"}`))
	tests := []struct {
		key  string
		want *string
	}{
		{"s", ptr("text")}, {"n", ptr("12")}, {"b", ptr("true")}, {"null", nil}, {"obj", nil}, {"arr", nil},
		{"missing", nil}, {"esc", ptr(`a"b`)},
	}
	for _, tc := range tests {
		if got := f.get(tc.key); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("get(%q) = %v, want %v", tc.key, deref(got), deref(tc.want))
		}
	}
	if contentFields(json.RawMessage(`[1,2]`)).get("x") != nil {
		t.Error("non-object content must yield no typed fields")
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
