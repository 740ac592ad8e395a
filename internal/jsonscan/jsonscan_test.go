package jsonscan

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var cases = []string{
	`{}`, `[]`, ` { "a" : 1 , "b" : [ 1 , { "c" : "}" } ] , "a" : null } `,
	`{"k\"ey":"v\\","\u00e9":"\ud800","x":-1.5e+10,"t":true,"f":false}`,
	"{\"bad\xff\":\"\xfe\"}", `[1,"two",[3],{"four":4},null]`, `"str"`, `12`, `{"a":{}}`,
}

// reference takes v apart with encoding/json: object members (decoded keys, raw values in
// order) or array elements.
func reference(t *testing.T, v []byte) (keys []string, values []string) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(v))
	tok, err := dec.Token()
	if err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		if tok == json.Delim('{') {
			k, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k.(string))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		values = append(values, string(raw))
	}
	return keys, values
}

// TestMembersAndElementsMatchDecoding: keys, values and elements are what encoding/json reads.
func TestMembersAndElementsMatchDecoding(t *testing.T) {
	for _, c := range cases {
		v := []byte(c)
		var keys, values []string
		var err error
		switch bytes.TrimSpace(v)[0] {
		case '{':
			err = Members(v, func(k, val []byte) error {
				s, err := Unquote(k)
				keys, values = append(keys, s), append(values, string(val))
				return err
			})
		case '[':
			err = Elements(v, func(val []byte) error { values = append(values, string(val)); return nil })
		default:
			if Members(v, nil) == nil || Elements(v, nil) == nil {
				t.Errorf("%s: a scalar taken apart as object or array", c)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		wantKeys, wantValues := reference(t, v)
		if !reflect.DeepEqual(keys, wantKeys) || !reflect.DeepEqual(values, wantValues) {
			t.Errorf("%s:\n got  %q %q\n want %q %q", c, keys, values, wantKeys, wantValues)
		}
	}
}

// TestMalformedDoesNotPanic: text that is not JSON gives an error or some result, no panic.
func TestMalformedDoesNotPanic(t *testing.T) {
	for _, c := range []string{``, `{`, `{"a`, `{"a":`, `{"a":1`, `{"a" 1}`, `[1,`, `[1 2]`, `{"a":"\`, `{1:2}`, `[`, `{"a":}`} {
		_ = Members([]byte(c), func(k, v []byte) error { _, _ = Unquote(k); return nil })
		_ = Elements([]byte(c), func([]byte) error { return nil })
		_ = IsCompact([]byte(c))
	}
}

func TestIsCompact(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":"b c"}`: true, `{"a": 1}`: false, "{\"a\":\"x\\\" \"}": true, "[1,\n2]": false, `"\\" `: false,
	} {
		if got := IsCompact([]byte(in)); got != want {
			t.Errorf("IsCompact(%q) = %v, want %v", in, got, want)
		}
	}
}

var validCases = []string{
	``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[01]`, `[-]`, `[-0]`, `[1.]`, `[1.5e]`, `[1e+5]`, `[1E-0]`, `[.5]`,
	`"\u12"`, `"\u12g4"`, `"\uABCD"`, `"\x"`, "\"a\tb\"", "\"\xff\"", `tru`, `true `, ` null`, `nul`, `falsey`, `{"a" 1}`,
	`{"a":}`, `{,}`, `[1 2]`, `"\"`, `"\\"`, `{"a":[{"b":[true,false,null,"x",-1.2e-3]}]}`, `1 2`, `{} {}`, "\x00", `[1]]`,
	`{"a":1}}`, `"\/"`,
}

// TestValidMatchesEncodingJSON: Valid accepts exactly what json.Valid accepts.
func TestValidMatchesEncodingJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range append(validCases, deep(10000), deep(10001), strings.Repeat(`{"a":`, 10001)+"1"+strings.Repeat("}", 10001)) {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid = %v", c, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range append(validCases, cases...) {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid = %v", b, got, want)
		}
	})
}

// TestObjectMembers: keys come back as their decoded text (escapes resolved), values as raw
// bytes, duplicates in document order, appended to what dst holds; a non-object is malformed.
func TestObjectMembers(t *testing.T) {
	got, err := ObjectMembers([]Member{{Key: []byte("kept")}}, []byte(` {"a\u00e9":1, "b" : [2], "a\u00e9":"x"} `))
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{{Key: []byte("kept")}, {Key: []byte("aé"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("[2]")}, {Key: []byte("aé"), Value: []byte(`"x"`)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	if _, err := ObjectMembers(nil, []byte(`[1]`)); err == nil {
		t.Fatal("an array was taken for an object")
	}
}
