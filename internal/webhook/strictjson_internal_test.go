package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckJSONObject(t *testing.T) {
	many := func(n int, extra string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"k%d":%d`, i, i)
		}
		return "{" + strings.Join(parts, ",") + extra + "}"
	}
	tests := []struct {
		name    string
		in      string
		wantErr error // nil: valid
	}{
		{name: "empty object", in: `{}`},
		{name: "whitespace around", in: " \t\r\n{ \"a\" : [ 1 , -0.5e+3 , true , false , null , \"s\" , { } , [ ] ] }\n"},
		{name: "numbers", in: `{"a":0,"b":-1,"c":1.25,"d":1e9,"e":1E-9,"f":-0.0e0,"g":123456789012345678901234567890}`},
		{name: "escapes", in: `{"a":"\" \\ \/ \b \f \n \r \t \u0041 \u00e9 \ud83d\ude00"}`},
		{name: "raw multibyte UTF-8", in: "{\"name\":\"Jürgen 日本 😀\"}"},
		{name: "same name in sibling and nested objects", in: `{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}`},
		{name: "names that differ only after escaping differ", in: `{"a\n":1,"a":2}`},
		{name: "many distinct names", in: many(200, "")},
		{name: "depth at the limit", in: strings.Repeat(`{"a":`, maxJSONDepth) + "1" + strings.Repeat("}", maxJSONDepth)},

		{name: "duplicate", in: `{"a":1,"a":2}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate with different values and types", in: `{"data":{"x":1},"iss":"i","data":null}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate through an escape", in: `{"data":1,"d\u0061ta":2}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate differing in case", in: `{"data":{"eventId":"A"},"Data":{"eventId":"B"}}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate claim in upper case", in: `{"exp":1,"iat":1,"EXP":99999999999}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate nested, differing in case", in: `{"data":{"eventId":"A","EventID":"B"}}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate through the Kelvin sign", in: "{\"kid\":1,\"\u212aid\":2}", wantErr: errJSONDuplicateKey},
		{name: "duplicate through an escaped slash", in: `{"a/b":1,"a\/b":2}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate nested in an array", in: `{"a":[1,{"b":{"c":1,"c":1}}]}`, wantErr: errJSONDuplicateKey},
		{name: "duplicate after the pairwise limit", in: many(100, `,"k3":0`), wantErr: errJSONDuplicateKey},
		{name: "duplicate right at the pairwise limit", in: many(linearKeyLimit, `,"k0":0`), wantErr: errJSONDuplicateKey},
		{name: "duplicate inside the pairwise limit", in: many(linearKeyLimit-1, `,"k14":0`), wantErr: errJSONDuplicateKey},

		{name: "invalid byte", in: "{\"a\":\"\xff\"}", wantErr: errJSONInvalidUTF8},
		{name: "invalid byte in a name", in: "{\"\xfe\":1}", wantErr: errJSONInvalidUTF8},
		{name: "truncated sequence", in: "{\"a\":\"\xe6\x97\"}", wantErr: errJSONInvalidUTF8},
		{name: "encoded surrogate", in: "{\"a\":\"\xed\xa0\x80\"}", wantErr: errJSONInvalidUTF8},
		{name: "lone high surrogate", in: `{"a":"\ud800"}`, wantErr: errJSONInvalidUTF8},
		{name: "lone low surrogate", in: `{"a":"\udc00x"}`, wantErr: errJSONInvalidUTF8},
		{name: "high surrogate then non-surrogate", in: `{"a":"\ud800\u0041"}`, wantErr: errJSONInvalidUTF8},
		{name: "two high surrogates", in: `{"a":"\ud800\ud800"}`, wantErr: errJSONInvalidUTF8},

		{name: "empty input", in: ``, wantErr: errJSONSyntax},
		{name: "array at the top", in: `[]`, wantErr: errJSONSyntax},
		{name: "string at the top", in: `"{}"`, wantErr: errJSONSyntax},
		{name: "two objects", in: `{}{}`, wantErr: errJSONSyntax},
		{name: "trailing garbage", in: `{"a":1}x`, wantErr: errJSONSyntax},
		{name: "unterminated", in: `{"a":1`, wantErr: errJSONSyntax},
		{name: "unterminated string", in: `{"a":"x}`, wantErr: errJSONSyntax},
		{name: "trailing comma in object", in: `{"a":1,}`, wantErr: errJSONSyntax},
		{name: "trailing comma in array", in: `{"a":[1,]}`, wantErr: errJSONSyntax},
		{name: "unquoted name", in: `{a:1}`, wantErr: errJSONSyntax},
		{name: "single quotes", in: `{'a':1}`, wantErr: errJSONSyntax},
		{name: "missing colon", in: `{"a" 1}`, wantErr: errJSONSyntax},
		{name: "leading zero", in: `{"a":01}`, wantErr: errJSONSyntax},
		{name: "plus sign", in: `{"a":+1}`, wantErr: errJSONSyntax},
		{name: "bare dot", in: `{"a":1.}`, wantErr: errJSONSyntax},
		{name: "bare exponent", in: `{"a":1e}`, wantErr: errJSONSyntax},
		{name: "NaN", in: `{"a":NaN}`, wantErr: errJSONSyntax},
		{name: "bad literal", in: `{"a":tru}`, wantErr: errJSONSyntax},
		{name: "control character", in: "{\"a\":\"x\ty\"}", wantErr: errJSONSyntax},
		{name: "bad escape", in: `{"a":"\x"}`, wantErr: errJSONSyntax},
		{name: "short unicode escape", in: `{"a":"\u12"}`, wantErr: errJSONSyntax},
		{name: "comment", in: `{"a":1 /* x */}`, wantErr: errJSONSyntax},
		{name: "too deep", in: strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1), wantErr: errJSONSyntax},
		{name: "too deep in arrays", in: `{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + "}", wantErr: errJSONSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkJSONObject([]byte(tc.in), nil)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("checkJSONObject(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("checkJSONObject(%q) = %v, want %v", tc.in, err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), "at byte") {
				t.Errorf("error %q does not say where", err)
			}
		})
	}
}

func TestCheckJSONObjectReportsTopLevelMembers(t *testing.T) {
	type member struct {
		name string
		kind JSONKind
	}
	var got []member
	in := `{"exp":1,"i\u0061t":"2","nbf":null,"data":{"exp":"nested, not reported"},"aud":["a"],"ok":true}`
	if err := checkJSONObject([]byte(in), func(name []byte, kind JSONKind) {
		got = append(got, member{string(name), kind})
	}); err != nil {
		t.Fatal(err)
	}
	want := []member{{"exp", KindNumber}, {"iat", KindString}, {"nbf", KindNull}, {"data", KindObject}, {"aud", KindArray}, {"ok", KindBool}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members = %v, want %v", got, want)
	}
}

// TestScanClaimsReportsDataMembers: the data claim (matched as encoding/json matches it,
// ignoring case) comes back as its JSON text, and visit sees the members of the data object and
// of the objects directly inside it, in order, with unescaped names and the values' text;
// deeper members, array elements and other claims are not reported.
func TestScanClaimsReportsDataMembers(t *testing.T) {
	in := `{"iss":"x","obj":{"eventId":"no"},"Data": {"eventId":"e\"1", "n":-1.5e3,` +
		`"p\u0061yload":{"sessionId":"s","deep":{"eventId":"no"},"l":[1]},"arr":[{"eventId":"no"}],"z":null} ,"exp":1}`
	var got []string
	data, err := scanClaims([]byte(in), nil, func(m DataMember) {
		got = append(got, fmt.Sprintf("%s/%s=%s(%s)", m.Parent, m.Name, m.Raw, m.Kind))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`/eventId="e\"1"(a string)`,
		`/n=-1.5e3(a number)`,
		`payload/sessionId="s"(a string)`,
		`payload/deep={"eventId":"no"}(an object)`,
		`payload/l=[1](an array)`,
		`/payload={"sessionId":"s","deep":{"eventId":"no"},"l":[1]}(an object)`,
		`/arr=[{"eventId":"no"}](an array)`,
		`/z=null(null)`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("members:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(string(data), `{"eventId"`) || !strings.HasSuffix(string(data), `"z":null}`) {
		t.Fatalf("data = %s, want the data object's text", data)
	}
	// A data claim that is not an object is returned, not visited.
	data, err = scanClaims([]byte(`{"data":[{"eventId":"no"}]}`), nil, func(m DataMember) { t.Errorf("visited %s", m.Name) })
	if err != nil || string(data) != `[{"eventId":"no"}]` {
		t.Fatalf("data = %s, %v", data, err)
	}
}

// loneSurrogateEscape matches \u escapes of UTF-16 surrogates, which encoding/json decodes to
// U+FFFD without complaint; the reference below cannot see them, so such inputs are compared one
// way only.
var loneSurrogateEscape = regexp.MustCompile(`\\u[dD][89a-fA-F]`)

// FuzzCheckJSONObject holds the scanner to encoding/json: whatever it accepts, encoding/json
// accepts with the same meaning (valid UTF-8, no repeated names per a token walk), and whatever
// encoding/json reads unambiguously it accepts too.
func FuzzCheckJSONObject(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1,"a":2}`, `{"a":{"b":[1,2,{"c":"d"}]}}`, `{"d\u0061ta":1,"data":2}`, "{\"a\":\"\xff\"}",
		`{"a":"\ud83d\ude00"}`, `{"a":"\ud800"}`, `{"exp":"1","iat":1.5e9}`, ` {"a" : [ ] } `, `{"a":-0.1E+2}`,
		`[1]`, `{"a":1}x`, `{"a":01}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSONObject(b, nil)
		trimmed := bytes.TrimLeft(b, " \t\r\n")
		isObject := len(trimmed) > 0 && trimmed[0] == '{'
		valid := json.Valid(b)
		if err == nil {
			if !valid || !isObject || !utf8.Valid(b) {
				t.Fatalf("accepted %q, which encoding/json rejects or is not a UTF-8 object", b)
			}
			if dup, found := referenceDuplicate(t, b); found {
				t.Fatalf("accepted %q with the repeated name %q", b, dup)
			}
			return
		}
		if errors.Is(err, errJSONSyntax) && valid && isObject && !strings.Contains(err.Error(), "nested deeper") {
			t.Fatalf("syntax error %v for %q, which encoding/json accepts", err, b)
		}
		if valid && isObject && utf8.Valid(b) && !loneSurrogateEscape.Match(b) && !strings.Contains(err.Error(), "nested deeper") &&
			!referenceHasDuplicate(t, b) {
			t.Fatalf("rejected %q (%v), which is unambiguous", b, err)
		}
	})
}

// referenceHasDuplicate reports whether referenceDuplicate finds a repeated name.
func referenceHasDuplicate(t *testing.T, b []byte) bool {
	_, found := referenceDuplicate(t, b)
	return found
}

// referenceDuplicate walks b with encoding/json's tokenizer and returns the first name repeated in
// one object, and whether there is one (the name itself may be empty: {"":0,"":0}). Names are
// compared with strings.EqualFold, as encoding/json matches them to struct fields.
func referenceDuplicate(t *testing.T, b []byte) (string, bool) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		names     map[string]bool
		isObject  bool
		expectKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return "", false
		}
		if err != nil {
			t.Fatalf("reference walk of valid JSON %q: %v", b, err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.isObject && top.expectKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].isObject {
					stack[len(stack)-1].expectKey = true
				}
				continue
			}
			name := tok.(string)
			for prev := range top.names {
				if strings.EqualFold(prev, name) {
					return name, true
				}
			}
			top.names[name] = true
			top.expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{names: map[string]bool{}, isObject: true, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value (or a closed array) completes a member of the enclosing object.
		if len(stack) > 0 && stack[len(stack)-1].isObject {
			stack[len(stack)-1].expectKey = true
		}
	}
}
