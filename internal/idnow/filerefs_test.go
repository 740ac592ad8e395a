package idnow

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// decodedFileRefs is the reference findFileRefs must agree with: decode the content into Go
// values with encoding/json and walk them (what findFileRefs did before it walked the bytes).
func decodedFileRefs(content []byte) ([]FileRef, error) {
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var refs []FileRef
	walkDecoded(v, "$", &refs)
	return refs, nil
}

func walkDecoded(v any, path string, refs *[]FileRef) {
	switch x := v.(type) {
	case map[string]any:
		if ref, _ := x["$ref"].(string); strings.EqualFold(ref, "vault") {
			if id, _ := x["$id"].(string); id != "" {
				*refs = append(*refs, FileRef{VaultEntryID: id, JSONPath: path})
				return
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkDecoded(x[k], decodedChildPath(path, k), refs)
		}
	case []any:
		for i, e := range x {
			walkDecoded(e, path+"["+strconv.Itoa(i)+"]", refs)
		}
	}
}

var identKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// decodedChildPath is childPath as it was written before isIdent replaced the expression.
func decodedChildPath(parent, key string) string {
	if identKey.MatchString(key) {
		return parent + "." + key
	}
	return parent + "['" + strings.ReplaceAll(strings.ReplaceAll(key, `\`, `\\`), `'`, `\'`) + "']"
}

// fileRefCases are contents whose references are easy to get wrong when walking the bytes:
// duplicate keys, escaped and non-ASCII keys, invalid UTF-8, references that are not
// strings, whitespace everywhere, huge numbers and deep nesting.
var fileRefCases = []string{
	`{"givenName":"A","familyName":"B"}`,
	`{"front":{"$ref":"vault","$id":"v1"}}`,
	`{"front":{"\u0024r\u0065f":"vault","$id":"v2"}}`,
	`{"note":"\u00e9","x":[{"$ref":"vault","$id":"v3"}]}`,
	` { "a" : [ { "$ref" : "VAULT" , "$id" : "v4" } , 1e999 , -0.5 , true , null ] } `,
	`{"a":{"$ref":"vault","$id":"v5"},"a":{"$ref":"vault","$id":"v6"}}`,
	`{"a":{"$ref":"vault","$id":"v7","$id":""}}`,
	`{"a":{"$ref":"vault","$ref":"other","$id":"v8"}}`,
	`{"a":{"$ref":"other","$ref":"vault","$id":"v9"}}`,
	`{"a":{"$ref":"vault","$id":12}}`,
	`{"a":{"$ref":["vault"],"$id":"v10","b":{"$ref":"vault","$id":"v11"}}}`,
	`{"k\"ey":{"$ref":"vault","$id":"v12"},"k'ey":{"$ref":"vault","$id":"v13"},"k\\ey":{"$ref":"vault","$id":"v14"}}`,
	"{\"bad\xffkey\":{\"$ref\":\"vault\",\"$id\":\"v\xfe15\"}}",
	`{"ä":{"$ref":"vault","$id":"v16"},"a":{"$ref":"vault","$id":"v17"},"\u0061":{"$ref":"vault","$id":"v18"}}`,
	`[{"$ref":"vault","$id":"v19"},[[{"$ref":"vault","$id":"v20"}]]]`,
	`{"$ref":"vault","$id":"top"}`,
	`{"":{"$ref":"vault","$id":"e"},"_":{"$ref":"vault","$id":"u"},"a1":{"$ref":"vault","$id":"a1"},"1a":{"$ref":"vault","$id":"1a"},"a-b":[{"$ref":"vault","$id":"ab"}],"Z_9":{"$ref":"vault","$id":"z"}}`,
	`"ref"`,
	`12345678901234567890123456789012345678901234567890`,
	`{"x":"a ref } ] { [ \" still in the string","y":{"$ref":"vault","$id":"v21"}}`,
	`{"\ud800":{"$ref":"vault","$id":"\ud800\udc00"}}`,
	strings.Repeat(`{"a":[`, 500) + `{"$ref":"vault","$id":"deep"}` + strings.Repeat(`]}`, 500),
}

// TestFindFileRefsMatchesDecoding: walking the bytes finds what decoding finds.
func TestFindFileRefsMatchesDecoding(t *testing.T) {
	for _, c := range fileRefCases {
		checkFileRefs(t, []byte(c))
	}
}

func checkFileRefs(t *testing.T, content []byte) {
	t.Helper()
	if !json.Valid(content) {
		// findFileRefs is only given validated content; it must not panic on anything else.
		_, _ = findFileRefs(content)
		return
	}
	want, err := decodedFileRefs(content)
	if err != nil {
		t.Fatalf("reference decode of %q: %v", content, err)
	}
	got, err := findFileRefs(content)
	if err != nil {
		t.Fatalf("findFileRefs(%q): %v", content, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("findFileRefs(%q)\n got  %+v\n want %+v", content, got, want)
	}
}

func FuzzFindFileRefs(f *testing.F) {
	for _, c := range fileRefCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		checkFileRefs(t, content)
	})
}
