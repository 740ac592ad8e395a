package enrich

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// decodedField is the reference blockFields.get must agree with: the content decoded into
// map[string]json.RawMessage and the field read from it with encoding/json (what Map did
// before it walked the bytes).
func decodedField(content []byte, key string) *string {
	var f map[string]json.RawMessage
	if json.Unmarshal(content, &f) != nil {
		return nil
	}
	raw, ok := f[key]
	if !ok {
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '{' || raw[0] == '[' || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return &s
	}
	s := string(raw)
	if _, err := strconv.ParseFloat(s, 64); err != nil && s != "true" && s != "false" {
		return nil
	}
	return &s
}

// compactedReference is compactJSON without its shortcut.
func compactedReference(raw []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// contentCases are block contents where reading fields from the bytes could differ from
// decoding: duplicate keys, escaped keys and values, invalid UTF-8, whitespace, numbers
// encoding/json keeps as text, non-objects and text that is not JSON.
var contentCases = []string{
	`{"givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12"}`,
	` { "givenName" : "Erika" , "givenName" : "Eri\"ka" } `,
	`{"\u0067ivenName":"escaped key","givenName":"plain"}`,
	`{"givenName":"plain","\u0067ivenName":"escaped key wins, it is last"}`,
	"{\"givenName\":\"bad\xffutf8\",\"familyName\xff\":\"x\"}",
	`{"documentNumber":1e400,"expiryDate":-0.0,"issuanceDate":true,"issuingCountry":null}`,
	`{"documentType":{"a":1},"issuingCountry":["DEU"],"issuingAuthority":"Stadt K\u00f6ln"}`,
	`{"givenName":"\ud800","familyName":"\ud83d\ude00"}`,
	`[{"givenName":"x"}]`,
	`null`,
	`"text"`,
	`{"givenName":"x"`,
	`{"givenName":"x"} trailing`,
	`not json`,
	``,
	"{\n  \"givenName\": \"with spaces\",\n\t\"x\": [1, 2]\n}",
	`{"s":"a \" } , ] still string","givenName":"y"}`,
}

var contentKeys = []string{"givenName", "familyName", "birthDate", "name", "documentType", "documentNumber",
	"expiryDate", "issuanceDate", "issuingCountry", "issuingAuthority", "s", "x"}

func checkContent(t *testing.T, content []byte) {
	t.Helper()
	f := contentFields(content)
	for _, k := range contentKeys {
		if got, want := f.get(k), decodedField(content, k); !reflect.DeepEqual(got, want) {
			t.Fatalf("content %q field %q: got %v, want %v", content, k, deref(got), deref(want))
		}
	}
	if got, want := compactJSON(content), compactedReference(content); got != want {
		t.Fatalf("compactJSON(%q) = %q, want %q", content, got, want)
	}
}

// TestContentFieldsMatchDecoding: the typed fields and the compacted content are what
// encoding/json gives for the same bytes.
func TestContentFieldsMatchDecoding(t *testing.T) {
	for _, c := range contentCases {
		checkContent(t, []byte(c))
	}
	deep := strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)
	checkContent(t, []byte(deep))
}

func FuzzContentFields(f *testing.F) {
	for _, c := range contentCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		checkContent(t, content)
	})
}
