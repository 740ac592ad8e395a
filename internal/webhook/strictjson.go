package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The JOSE header and the claims of a token are decoded by golang-jwt with encoding/json, which
// silently takes the last of duplicate member names, replaces invalid UTF-8 (and escaped lone
// surrogates) with U+FFFD and accepts strings where numbers belong. Another reader of the same
// token (a consumer re-verifying signedToken, an auditor) may resolve those cases differently and
// see another event than the one we wrote to Kafka. checkJSONObject therefore validates the exact
// decoded bytes once, strictly, before they are trusted: any ambiguity is a rejection, never a
// guess.

// maxJSONDepth bounds the nesting of header and claims. IDnow events nest a handful of levels; the
// bound keeps a crafted token from driving the recursive scanner (or encoding/json after it) deep.
const maxJSONDepth = 64

// linearKeyLimit is the number of member names per object compared pairwise; beyond it a set is
// built, so an object with thousands of members costs linear, not quadratic, time.
const linearKeyLimit = 16

var (
	// errJSONSyntax: the bytes are not one RFC 8259 JSON object.
	errJSONSyntax = errors.New("invalid JSON")
	// errJSONDuplicateKey: an object repeats a member name (after unescaping), at any depth.
	errJSONDuplicateKey = errors.New("duplicate JSON member name")
	// errJSONInvalidUTF8: a string holds bytes that are not UTF-8, or an escaped lone surrogate
	// (\ud800 without its pair), which decoders would replace with U+FFFD.
	errJSONInvalidUTF8 = errors.New("invalid UTF-8 in JSON string")
)

// JSONKind is the type of a JSON value, as reported for the members of the top-level object and
// of the data claim (DataMember).
type JSONKind uint8

// The kinds of JSON values; KindAbsent is the zero value, a member that is not there.
const (
	KindAbsent JSONKind = iota
	KindObject
	KindArray
	KindString
	KindNumber
	KindBool
	KindNull
)

func (k JSONKind) String() string {
	switch k {
	case KindObject:
		return "an object"
	case KindArray:
		return "an array"
	case KindString:
		return "a string"
	case KindNumber:
		return "a number"
	case KindBool:
		return "a boolean"
	case KindNull:
		return "null"
	default:
		return "absent"
	}
}

// checkJSONObject validates b as exactly one JSON object (RFC 8259; surrounding whitespace
// allowed) whose strings are valid UTF-8 without lone surrogate escapes and whose objects, at any
// depth, never repeat a member name. For every member of the top-level object it calls top with
// the unescaped name (valid only during the call) and the kind of the value. Errors match
// errJSONSyntax, errJSONDuplicateKey or errJSONInvalidUTF8 and carry the byte offset.
func checkJSONObject(b []byte, top func(name []byte, kind JSONKind)) error {
	_, err := scanClaims(b, top, nil)
	return err
}

// DataMember is one member of the token's data claim, met during the verifier's strict scan of
// the claims: a member of the data object itself (Parent nil), or of an object that is the value
// of one of its members (Parent is that member's name, e.g. "payload"). Deeper members and
// array elements are not reported. Name is unescaped and, like Raw, valid only during the call.
// Raw is the value's JSON text as signed (a string with its quotes and escapes); it has passed
// the strict checks (valid JSON, valid UTF-8, no lone surrogate escapes, no repeated names).
type DataMember struct {
	Parent []byte
	Name   []byte
	Kind   JSONKind
	Raw    []byte
}

// dataName is the folded (foldName) name of the data claim: encoding/json, and so any reader
// of the claims in Go, matches "Data" or "DATA" to it as well.
const dataName = "DATA"

// scanClaims is checkJSONObject that also returns the JSON text of the top-level member named
// data (compared as foldName compares names; nil when absent) and, when visit is set, reports
// the members of that object as DataMembers: the one pass that validates the claims also reads
// the event, so nobody has to parse it again.
func scanClaims(b []byte, top func(name []byte, kind JSONKind), visit func(DataMember)) (data []byte, err error) {
	s := scanners.Get().(*jsonScanner)
	*s = jsonScanner{b: b, top: top, visit: visit, names: s.names[:0]}
	err = s.run()
	data = s.data
	// Drop the references into this token before the scanner is reused.
	clear(s.names[:cap(s.names)])
	*s = jsonScanner{names: s.names[:0]}
	scanners.Put(s)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// scanners recycles scanners with room for the member names of typical webhook objects (the
// verifier is on the request path, twice per token); deeper or wider JSON grows a scanner's
// names as needed.
var scanners = sync.Pool{New: func() any { return &jsonScanner{names: make([][]byte, 0, 32)} }}

func (s *jsonScanner) run() error {
	s.skipSpace()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return s.fail(errJSONSyntax, "want a JSON object")
	}
	if _, err := s.value(1); err != nil {
		return err
	}
	s.skipSpace()
	if s.i != len(s.b) {
		return s.fail(errJSONSyntax, "data after the JSON object")
	}
	return nil
}

type jsonScanner struct {
	b   []byte
	i   int
	top func(name []byte, kind JSONKind)
	// names holds the member names of every object currently open, innermost last; each object
	// remembers where its own names start.
	names [][]byte
	// visit receives the data claim's members (DataMember) while inData, the scan of the
	// top-level data object, lasts; parent is the data member whose object value is being
	// scanned. data is the data member's JSON text once scanned.
	visit  func(DataMember)
	inData bool
	parent []byte
	data   []byte
}

func (s *jsonScanner) fail(kind error, what string) error {
	return fmt.Errorf("%w at byte %d: %s", kind, s.i, what)
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans the value starting at s.i (no leading whitespace) and returns its kind.
func (s *jsonScanner) value(depth int) (JSONKind, error) {
	if s.i >= len(s.b) {
		return KindAbsent, s.fail(errJSONSyntax, "unexpected end of input")
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return KindObject, s.object(depth)
	case c == '[':
		return KindArray, s.array(depth)
	case c == '"':
		_, _, err := s.str()
		return KindString, err
	case c == '-' || (c >= '0' && c <= '9'):
		return KindNumber, s.number()
	case c == 't':
		return KindBool, s.literal("true")
	case c == 'f':
		return KindBool, s.literal("false")
	case c == 'n':
		return KindNull, s.literal("null")
	default:
		return KindAbsent, s.fail(errJSONSyntax, fmt.Sprintf("unexpected character %q", c))
	}
}

func (s *jsonScanner) object(depth int) error {
	if depth > maxJSONDepth {
		return s.fail(errJSONSyntax, fmt.Sprintf("nested deeper than %d levels", maxJSONDepth))
	}
	s.i++ // '{'
	start := len(s.names)
	defer func() { s.names = s.names[:start] }()
	var set map[string]struct{}
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return s.fail(errJSONSyntax, "want a member name in double quotes")
		}
		at := s.i
		raw, escaped, err := s.str()
		if err != nil {
			return err
		}
		name := raw
		if escaped {
			// Rare: compare names as every decoder sees them, so "d\u0061ta" repeats "data".
			// The string was validated above, so encoding/json decodes it exactly.
			var dec string
			if err := json.Unmarshal(s.b[at:s.i], &dec); err != nil {
				return fmt.Errorf("%w at byte %d: member name: %w", errJSONSyntax, at, err)
			}
			name = []byte(dec)
		}
		// Names are compared as encoding/json matches them to struct fields: case-insensitively
		// (with its Unicode folds, e.g. U+212A KELVIN SIGN is "k"), last one winning. "data"
		// and "Data" would be one field to Go and two to a case-sensitive reader.
		shown := name
		name = foldName(name)
		own := s.names[start:]
		switch {
		case set != nil:
			if _, dup := set[string(name)]; dup {
				return duplicateName(at, shown)
			}
			set[string(name)] = struct{}{}
		case len(own) < linearKeyLimit:
			for _, prev := range own {
				if bytes.Equal(prev, name) {
					return duplicateName(at, shown)
				}
			}
		default:
			set = make(map[string]struct{}, 2*linearKeyLimit)
			for _, prev := range own {
				set[string(prev)] = struct{}{}
			}
			if _, dup := set[string(name)]; dup {
				return duplicateName(at, shown)
			}
			set[string(name)] = struct{}{}
		}
		s.names = append(s.names, name)

		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return s.fail(errJSONSyntax, "want ':' after a member name")
		}
		s.i++
		s.skipSpace()
		valStart := s.i
		isData := depth == 1 && string(name) == dataName
		switch {
		case isData:
			s.inData = s.visit != nil && s.i < len(s.b) && s.b[s.i] == '{'
		case depth == 2 && s.inData:
			s.parent = shown
		}
		kind, err := s.value(depth + 1)
		if err != nil {
			return err
		}
		switch {
		case isData:
			s.data, s.inData = s.b[valStart:s.i], false
		case depth == 2 && s.inData:
			s.parent = nil
			s.visit(DataMember{Name: shown, Kind: kind, Raw: s.b[valStart:s.i]})
		case depth == 3 && s.inData && s.parent != nil:
			// Only a data member's object value is scanned at depth 3 while inData: array
			// elements sit one level deeper.
			s.visit(DataMember{Parent: s.parent, Name: shown, Kind: kind, Raw: s.b[valStart:s.i]})
		}
		if depth == 1 && s.top != nil {
			s.top(shown, kind)
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return s.fail(errJSONSyntax, "unterminated object")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case '}':
			s.i++
			return nil
		default:
			return s.fail(errJSONSyntax, "want ',' or '}' after a member")
		}
	}
}

// foldName is the key two member names share exactly when bytes.EqualFold says they are equal,
// which is how encoding/json matches names to struct fields: every rune is replaced by the
// smallest rune of its Unicode simple-folding orbit ("k", "K" and U+212A KELVIN SIGN all become
// "K"; "s", "S" and U+017F LONG S become "S"). ASCII names, the usual case, take a fast path
// with the same result (the smallest of an ASCII letter's orbit is its upper case).
func foldName(name []byte) []byte {
	ascii := true
	for _, c := range name {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return bytes.ToUpper(name)
	}
	out := make([]byte, 0, len(name))
	for _, r := range string(name) {
		low := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			low = min(low, f)
		}
		out = utf8.AppendRune(out, low)
	}
	return out
}

// duplicateName reports a repeated member name. The name is quoted and cut short: it is chosen by
// whoever built the token and ends up in logs.
func duplicateName(at int, name []byte) error {
	const maxShown = 64
	shown := string(name)
	if len(shown) > maxShown {
		shown = string(bytes.ToValidUTF8(name[:maxShown], nil)) + "..."
	}
	return fmt.Errorf("%w at byte %d: %q appears more than once in the same object (names are compared ignoring case, as encoding/json matches them)", errJSONDuplicateKey, at, shown)
}

func (s *jsonScanner) array(depth int) error {
	if depth > maxJSONDepth {
		return s.fail(errJSONSyntax, fmt.Sprintf("nested deeper than %d levels", maxJSONDepth))
	}
	s.i++ // '['
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		if _, err := s.value(depth + 1); err != nil {
			return err
		}
		s.skipSpace()
		if s.i >= len(s.b) {
			return s.fail(errJSONSyntax, "unterminated array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.skipSpace()
		case ']':
			s.i++
			return nil
		default:
			return s.fail(errJSONSyntax, "want ',' or ']' after an array element")
		}
	}
}

// str scans the string starting at s.i ('"') and returns its raw contents (between the quotes)
// and whether it contains escapes.
func (s *jsonScanner) str() (raw []byte, escaped bool, err error) {
	s.i++ // opening quote
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, escaped, nil
		case c == '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return nil, false, err
			}
		case c < 0x20:
			return nil, false, s.fail(errJSONSyntax, "control character in a string (must be escaped)")
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, s.fail(errJSONInvalidUTF8, "byte sequence is not UTF-8")
			}
			s.i += size
		}
	}
	return nil, false, s.fail(errJSONSyntax, "unterminated string")
}

// escape scans one escape sequence starting at s.i ('\\'). A \u escape of a UTF-16 surrogate must
// be a high surrogate immediately followed by an escaped low one.
func (s *jsonScanner) escape() error {
	if s.i+1 >= len(s.b) {
		return s.fail(errJSONSyntax, "unterminated escape sequence")
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return nil
	case 'u':
	default:
		return s.fail(errJSONSyntax, fmt.Sprintf("invalid escape sequence \\%c", s.b[s.i+1]))
	}
	r, ok := hex4(s.b[s.i+2:])
	if !ok {
		return s.fail(errJSONSyntax, "\\u must be followed by four hex digits")
	}
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return s.fail(errJSONInvalidUTF8, "escaped lone low surrogate")
	case r >= 0xD800 && r <= 0xDBFF:
		rest := s.b[s.i+6:]
		if len(rest) < 2 || rest[0] != '\\' || rest[1] != 'u' {
			return s.fail(errJSONInvalidUTF8, "escaped high surrogate without its low surrogate")
		}
		lo, ok := hex4(rest[2:])
		if !ok {
			return fmt.Errorf("%w at byte %d: \\u must be followed by four hex digits", errJSONSyntax, s.i+6)
		}
		if lo < 0xDC00 || lo > 0xDFFF {
			return s.fail(errJSONInvalidUTF8, "escaped high surrogate without its low surrogate")
		}
		s.i += 12
	default:
		s.i += 6
	}
	return nil
}

// hex4 decodes four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? starting at s.i.
func (s *jsonScanner) number() error {
	if s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		s.digits()
	default:
		return s.fail(errJSONSyntax, "invalid number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.fail(errJSONSyntax, "invalid number: digits must follow '.'")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.fail(errJSONSyntax, "invalid number: digits must follow the exponent")
		}
	}
	return nil
}

func (s *jsonScanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

func (s *jsonScanner) literal(word string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return s.fail(errJSONSyntax, "invalid literal (want true, false or null)")
	}
	s.i += len(word)
	return nil
}
