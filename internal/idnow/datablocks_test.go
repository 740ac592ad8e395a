package idnow

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// Response bodies of both documented shapes, shared with the client tests.
const (
	newerDataBlocks = `{"dataBlocks":[
		{"datablockId":"db-1","type":"basicIdentity","createdBy":{"stepId":"step-1","clock":3},"createdAt":"2026-01-02T03:04:05Z","status":"STORED",
		 "content":{"givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12"}},
		{"datablockId":"db-2","type":"documentVerification","createdBy":{"stepId":"step-2","clock":"4"},"createdAt":1767323045000,"status":"STORED",
		 "content":{"verdict":{"status":"PASSED"},"issues":[],"images":[{"$ref":"vault","$id":"v-front"},{"$ref":"vault","$id":"v-back"}],"report":{"file":{"$ref":"vault","$id":"v-report"}}}},
		{"datablockId":"db-3","type":"documentData","createdBy":{"stepId":"step-2","clock":5},"createdAt":"2026-01-02T03:04:05Z","status":"DELETED","content":null},
		{"datablockId":"db-4","type":"somethingNew","createdBy":{"stepId":"step-9"},"content":{"weird key":{"$ref":"vault","$id":"v-9"}},"unknownEnvelope":1}
	]}`
	olderDataBlocks = `{"datablocks":[
		{"type":"BasicIdentity","createdByStep":"step-1","createdAt":"2026-01-02T03:04:05Z","givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12","name":"Erika Mustermann"},
		{"type":"DocumentVerification","createdByStep":"step-2","createdAt":"2026-01-02T03:04:05Z","verdict":{"status":"PASSED"},"front":{"$ref":"vault","$id":"v-front"}}
	]}`
)

func TestParseDataBlocksNewer(t *testing.T) {
	got, err := parseDataBlocks([]byte(newerDataBlocks))
	if err != nil {
		t.Fatalf("parseDataBlocks: %v", err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := []DataBlock{
		{ID: "db-1", Type: "basicIdentity", StepID: "step-1", Clock: 3, CreatedAt: created, Status: DataBlockStored,
			Content: json.RawMessage(`{"givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12"}`)},
		{ID: "db-2", Type: "documentVerification", StepID: "step-2", Clock: 4, CreatedAt: created, Status: DataBlockStored,
			Content:  json.RawMessage(`{"verdict":{"status":"PASSED"},"issues":[],"images":[{"$ref":"vault","$id":"v-front"},{"$ref":"vault","$id":"v-back"}],"report":{"file":{"$ref":"vault","$id":"v-report"}}}`),
			FileRefs: []FileRef{{VaultEntryID: "v-front", JSONPath: "$.images[0]"}, {VaultEntryID: "v-back", JSONPath: "$.images[1]"}, {VaultEntryID: "v-report", JSONPath: "$.report.file"}}},
		{ID: "db-3", Type: "documentData", StepID: "step-2", Clock: 5, CreatedAt: created, Status: DataBlockDeleted},
		{ID: "db-4", Type: "somethingNew", StepID: "step-9", Status: DataBlockStored,
			Content:  json.RawMessage(`{"weird key":{"$ref":"vault","$id":"v-9"}}`),
			FileRefs: []FileRef{{VaultEntryID: "v-9", JSONPath: "$['weird key']"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseDataBlocksOlder(t *testing.T) {
	got, err := parseDataBlocks([]byte(olderDataBlocks))
	if err != nil {
		t.Fatalf("parseDataBlocks: %v", err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := []DataBlock{
		{Type: "basicIdentity", StepID: "step-1", CreatedAt: created, Status: DataBlockStored,
			Content: json.RawMessage(`{"birthDate":"1964-08-12","familyName":"Mustermann","givenName":"Erika","name":"Erika Mustermann"}`)},
		{Type: "documentVerification", StepID: "step-2", CreatedAt: created, Status: DataBlockStored,
			Content:  json.RawMessage(`{"front":{"$ref":"vault","$id":"v-front"},"verdict":{"status":"PASSED"}}`),
			FileRefs: []FileRef{{VaultEntryID: "v-front", JSONPath: "$.front"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseDataBlocksEdgeCases(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantLen int
		wantErr bool
	}{
		{"bare array", `[{"type":"BasicIdentity","createdByStep":"s","givenName":"x"}]`, 1, false},
		{"empty list", `{"dataBlocks":[]}`, 0, false},
		{"null list", `{"dataBlocks":null}`, 0, false},
		{"missing key", `{"blocks":[]}`, 0, true},
		{"not json", `<html>`, 0, true},
		{"empty body", ``, 0, true},
		{"element not object", `{"dataBlocks":[1]}`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDataBlocks([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			if len(got) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tt.wantLen)
			}
		})
	}
}

func TestCamelType(t *testing.T) {
	for in, want := range map[string]string{
		"BasicIdentity":        "basicIdentity",
		"basicIdentity":        "basicIdentity",
		"AuthenticationResult": "authenticationResult",
		"":                     "",
		" Credentials ":        "credentials",
	} {
		if got := camelType(in); got != want {
			t.Errorf("camelType(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFindFileRefsFastPath checks the shortcut for blocks without references keeps finding
// references spelled with JSON escapes.
func TestFindFileRefsFastPath(t *testing.T) {
	tests := []struct {
		content string
		want    int
	}{
		{`{"givenName":"A","familyName":"B"}`, 0},
		{`{"front":{"$ref":"vault","$id":"v1"}}`, 1},
		{`{"front":{"\u0024r\u0065f":"vault","$id":"v2"}}`, 1},
		{`{"note":"\u00e9","x":[{"$ref":"vault","$id":"v3"}]}`, 1},
	}
	for _, tc := range tests {
		refs, err := findFileRefs([]byte(tc.content))
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != tc.want {
			t.Errorf("findFileRefs(%s) found %d refs, want %d", tc.content, len(refs), tc.want)
		}
	}
}
