package idnow

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParseNewerBlocksMatchesGeneralPath: the one-pass decode of newer-shape answers gives
// exactly what the block-by-block path gives, and declines every other shape.
func TestParseNewerBlocksMatchesGeneralPath(t *testing.T) {
	newer, err := os.ReadFile("../connector/enrich/testdata/api/new/datablocks.json")
	if err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile("../connector/enrich/testdata/api/old/datablocks.json")
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(newer, &top); err != nil {
		t.Fatal(err)
	}
	bare := top["dataBlocks"]
	for name, body := range map[string][]byte{"object": newer, "bare array": bare} {
		fast, ok := parseNewerBlocks(body)
		if !ok {
			t.Fatalf("%s: the newer shape took the general path", name)
		}
		slow, err := parseDataBlocksAnyShape(body)
		if err != nil {
			t.Fatal(err)
		}
		if len(fast) == 0 || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s: one-pass decode differs from the general path:\n%+v\n%+v", name, fast, slow)
		}
	}
	for name, body := range map[string]string{
		"older shape": string(older), "null list": `{"dataBlocks":null}`, "no list": `{"other":[]}`,
		"invalid": `{"dataBlocks":[{"content":{}}`, "mixed": `[{"datablockId":"a","content":{}},{"id":"b","type":"x","name":"n"}]`,
	} {
		if _, ok := parseNewerBlocks([]byte(body)); ok {
			t.Errorf("%s: taken by the one-pass decode, want the general path", name)
		}
	}
	mixed, err := parseDataBlocks([]byte(`[{"datablockId":"a","content":{}},{"id":"b","type":"x","name":"n"}]`))
	if err != nil || len(mixed) != 2 || mixed[1].ID != "b" {
		t.Errorf("mixed answer: %+v, %v", mixed, err)
	}
}

// TestReadBody: a body is read whole whatever its Content-Length says, and never beyond limit.
func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		length int64
		limit  int64
		want   string
	}{
		{"exact", "abcdef", 6, 100, "abcdef"},
		{"unknown length", "abcdef", -1, 100, "abcdef"},
		{"longer than announced", "abcdef", 3, 100, "abcdef"},
		{"shorter than announced", "abc", 10, 100, "abc"},
		{"limit", "abcdefghij", 3, 5, "abcde"},
		{"limit, length over it", "abcdefghij", 10, 5, "abcde"},
		{"empty", "", 0, 100, ""},
	} {
		resp := &http.Response{Body: io.NopCloser(strings.NewReader(tc.body)), ContentLength: tc.length}
		got, err := readBody(resp, tc.limit, nil)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

// TestConnectionsReusedAboveDefaultIdlePool: with more requests in flight than net/http's
// default pool of 100 idle connections, a second wave of requests reuses the first wave's
// connections instead of dialling (and, in production, TLS-handshaking) new ones.
func TestConnectionsReusedAboveDefaultIdlePool(t *testing.T) {
	const inFlight = 150
	var dials atomic.Int64
	f := startFake(t, func(h http.Handler) *httptest.Server {
		srv := httptest.NewUnstartedServer(h)
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				dials.Add(1)
			}
		}
		srv.Start()
		return srv
	})
	var arrived sync.WaitGroup
	gate := make(chan struct{})
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-gate
		writeJSON(w, http.StatusOK, map[string]any{"sessionId": r.PathValue("id"), "sessionStatus": "RUNNING"})
	})
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.MaxInFlight = inFlight; cfg.Timeout = 20 * time.Second })
	if err := c.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	wave := func() {
		arrived.Add(inFlight)
		gate = make(chan struct{})
		var done sync.WaitGroup
		for i := range inFlight {
			done.Go(func() {
				if _, err := c.GetSession(t.Context(), fmt.Sprintf("ses-%d", i)); err != nil {
					t.Error(err)
				}
			})
		}
		arrived.Wait() // every request holds its own connection now
		close(gate)
		done.Wait()
	}
	wave()
	first := dials.Load()
	wave()
	if again := dials.Load() - first; again != 0 {
		t.Fatalf("the second wave of %d requests dialled %d new connections (first wave: %d)", inFlight, again, first)
	}
}

// TestAnswersDoNotAliasPooledBuffers: answer bodies are read into pooled buffers that later
// answers overwrite, so nothing a call returns may point into its body.
func TestAnswersDoNotAliasPooledBuffers(t *testing.T) {
	f := newFake(t)
	answer := func(id string) (session, blocks string) {
		x := strings.Repeat(id, 8)
		session = `{"sessionId":"` + x + `","flowId":"` + x + `","sessionStatus":"COMPLETED","outcome":"` + x + `","metadata":{"k":"` + x + `","o":{"a":"` + x + `"}},` +
			`"lastStep":{"stepId":"` + x + `","verdict":"` + x + `"},"results":{"r":"` + x + `"}}`
		blocks = `{"dataBlocks":[{"datablockId":"` + x + `","type":"t` + x + `","createdBy":{"stepId":"` + x + `"},"status":"STORED",` +
			`"content":{"v":"` + x + `","f":{"$ref":"vault","$id":"` + x + `"}}}]}`
		return session, blocks
	}
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		s, _ := answer(r.PathValue("id"))
		_, _ = io.WriteString(w, s)
	})
	f.handle("GET /live/sessions/{id}/datablocks", func(w http.ResponseWriter, r *http.Request) {
		_, b := answer(r.PathValue("id"))
		_, _ = io.WriteString(w, b)
	})
	c, _ := newTestClient(t, f, nil)
	type answers struct {
		s      *Session
		blocks []DataBlock
	}
	read := func(id string) answers {
		s, err := c.GetSession(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := c.GetDataBlocks(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return answers{s, blocks}
	}
	show := func(a answers) string {
		s := *a.s
		s.LastStep = nil // printed by value below, not as an address
		return fmt.Sprintf("%+v %+v %+v %s", s, *a.s.LastStep, a.blocks, a.blocks[0].Content)
	}
	first := read("a")
	want := show(first)
	for range 20 {
		read("b")
	}
	if got := show(first); got != want || strings.Contains(got, "bbbb") {
		t.Fatalf("the first answers changed after later calls:\n%s\nwas\n%s", got, want)
	}
	if again := show(read("a")); again != want {
		t.Fatalf("the same answer decodes differently:\n%s\n%s", again, want)
	}
}
