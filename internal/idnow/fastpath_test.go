package idnow

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
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
		got, err := readBody(resp, tc.limit)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
