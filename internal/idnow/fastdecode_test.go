package idnow

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sessionCases are session answers where reading the bytes could differ from encoding/json:
// keys in other case or escaped, fields given twice, values of other types, invalid UTF-8,
// nested objects where text is expected, huge numbers, whitespace.
var sessionCases = []string{
	`{"sessionId":"s-1","flowId":"f","flowVersion":3,"environment":"live","sessionStatus":"COMPLETED","subjectId":"u",
	  "outcome":"ACCEPTED","createdAt":"2026-01-02T03:04:05Z","startedAt":1767323045,"updatedAt":1767323045000,
	  "completedAt":null,"expiresAt":"2026-01-03","redirectUrl":null,"state":"st","lastStep":{"stepId":"x","verdict":{"status":"PASSED"}},
	  "metadata":{"subjectId":"m","n":1,"o":{"a":[1, 2]},"n":2},"results":{"r": 1}}`,
	`{"id":"s-2","status":"RUNNING","sessionContext":{"sessionId":"ctx","sessionStatus":"RUNNING","createdAt":"2026-01-02T03:04:05Z"}}`,
	`{"SessionId":"case","sessionId":"exact"}`,
	`{"sessionId":"first","sessionId":"second"}`,
	`{"sessionId":12}`,
	`{"sessionId":null,"flowId":null,"metadata":null,"lastStep":null,"sessionContext":null}`,
	`{"session\u0049d":"escaped"}`,
	"{\"sessionId\":\"bad\xffutf8\",\"flowId\":\"\\ud800\"}",
	`{"ſessionId":"long s","ſtatus":"x"}`,
	`{"metadata":[1],"sessionId":"s"}`,
	`{"metadata":{"a":1},"metadata":{"b":2}}`,
	`{"metadata":{"a\u0062":"esc","\u00e9":"e"}}`,
	`{"lastStep":"text"}`,
	`{"lastStep":{"stepName":"n","stepType":"t","verdict":"v"}}`,
	`{"lastStep":{"StepId":"case","stepId":"exact"}}`,
	`{"lastStep":{"verdict":"a","verdict":{"result":"b"}}}`,
	`{"lastStep":{"verdict":{"other":[1, 2]},"stepId":7}}`,
	`{"lastStep":[]}`,
	`{"sessionContext":{"SESSIONID":"x"}}`,
	`{"sessionContext":[]}`,
	`{"sessionContext":{"sessionId":"a","sessionId":"b"}}`,
	`{"outcome":{"nested":true},"state":[1,2],"flowVersion":1e400,"subjectId":true}`,
	`{"createdAt":"not a time","updatedAt":-5,"expiresAt":"2026-01-02T03:04:05.123+02:00","startedAt":"\u0032026-01-02"}`,
	` {"sessionId":"leading space"}`,
	`{"sessionId":"x"} `,
	`{"sessionId":"x"`,
	`[]`,
	`null`,
	`{}`,
	`{"unknown":{"deep":[1,{"sessionId":"not me"}]},"sessionId":"me"}`,
}

func checkSession(t *testing.T, body []byte) {
	t.Helper()
	var want sessionWire
	wantErr := json.Unmarshal(body, &want)
	got, err := decodeSessionWire(body)
	if (err != nil) != (wantErr != nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%q: error %v, encoding/json %v", body, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got  %+v\n want %+v", body, got, want)
	}
}

// TestSessionFastPathMatchesDecoding: the session fast path decodes what encoding/json does,
// and leaves to it what it cannot.
func TestSessionFastPathMatchesDecoding(t *testing.T) {
	for _, c := range sessionCases {
		checkSession(t, []byte(c))
	}
}

// TestFastPathsTaken: the documented answers (the enricher's test fixtures) take the fast
// paths; a fast path that always fell back would pass every equivalence test.
func TestFastPathsTaken(t *testing.T) {
	dir := filepath.Join("..", "connector", "enrich", "testdata", "api", "new")
	session, err := os.ReadFile(filepath.Join(dir, "session.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sessionFast(session); !ok {
		t.Error("the session fixture does not take the fast path")
	}
	if _, ok := sessionFast([]byte(sessionCases[0])); !ok {
		t.Error("the full session case does not take the fast path")
	}
	blocks, err := os.ReadFile(filepath.Join(dir, "datablocks.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range [][]byte{blocks, []byte(newerDataBlocks)} {
		if _, ok := parseNewerFast([]byte(strings.TrimSpace(string(body)))); !ok {
			t.Errorf("data blocks do not take the fast path: %.80s", body)
		}
	}
}

var blockCases = []string{
	newerDataBlocks,
	olderDataBlocks,
	`[{"datablockId":"a","content":{}},{"id":"b","type":"x","name":"n"}]`,
	`{"dataBlocks":[{"datablockId":"a","datablockId":"b","content":{}}]}`,
	`{"dataBlocks":[{"DatablockId":"a","content":{}}]}`,
	`{"DataBlocks":[{"datablockId":"a","content":{}}]}`,
	`{"dataBlocks":[{"datablockId":"a","content":{}}],"dataBlocks":[{"type":"t","createdBy":{}}]}`,
	`{"dataBlocks":[{"datablockId":1,"type":{"x":1},"status":"deleted","createdBy":{"stepId":2,"clock":"7.5"},"content":null}]}`,
	`{"dataBlocks":[{"createdBy":{"stepId":"a","stepId":"b","Clock":1}}]}`,
	`{"dataBlocks":[{"createdBy":"text"}]}`,
	`{"dataBlocks":[{"createdBy":null,"content":null}]}`,
	`{"dataBlocks":[null]}`,
	`{"dataBlocks":null}`,
	`{"dataBlocks":{}}`,
	`{"dataBlocks":[],"page":{"size":1}}`,
	"{\"dataBlocks\":[{\"type\":\"\xff\",\"content\":{\"k\xfe\":{\"$ref\":\"vault\",\"$id\":\"v\"}}}]}",
	`{"dataBlocks":[{"typ\u0065":"escaped","content":{"a":1}}]}`,
	`{"dataBlocks":[{"type":"t","content":  { "a" : [ 1 , 2 ] }  ,"createdAt":" 2026-01-02T03:04:05Z "}]}`,
	`{"dataBlocks":[{"content":{"x":{"$ref":"vault","$id":"v1"},"x":{"$ref":"vault","$id":"v2"}}}]}`,
}

func checkBlocks(t *testing.T, body []byte) {
	t.Helper()
	got, ok := parseNewerFast(body)
	if !ok {
		return
	}
	want, wantOK := parseNewerBlocks(body)
	if !wantOK || !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n fast %+v\n encoding/json (%v) %+v", body, got, wantOK, want)
	}
}

// TestDataBlocksFastPathMatchesDecoding: when the data-block fast path takes an answer, it
// gives what encoding/json's path gives.
func TestDataBlocksFastPathMatchesDecoding(t *testing.T) {
	for _, c := range blockCases {
		checkBlocks(t, []byte(strings.TrimSpace(c)))
	}
}

func FuzzSessionFastPath(f *testing.F) {
	for _, c := range sessionCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkSession(t, body) })
}

func FuzzDataBlocksFastPath(f *testing.F) {
	for _, c := range blockCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkBlocks(t, body) })
}

// TestFastPathFieldsMatchTheStructs: each fast path names every field its struct's JSON tags
// name, in order, so a field added to a struct cannot be skipped by the fast path unnoticed.
func TestFastPathFieldsMatchTheStructs(t *testing.T) {
	for _, tc := range []struct {
		v     any
		names []string
	}{
		{sessionWire{}, sessionFields},
		{newerBlock{}, newerBlockFields},
		{lastStepWire{}, lastStepFields},
		{sessionContext{}, sessionContextFields},
		{createdBy{}, createdByFields},
	} {
		typ := reflect.TypeOf(tc.v)
		var tags []string
		for i := range typ.NumField() {
			tags = append(tags, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
		}
		if !reflect.DeepEqual(tags, tc.names) {
			t.Errorf("%s: JSON tags %q, fast path names %q", typ.Name(), tags, tc.names)
		}
	}
}
