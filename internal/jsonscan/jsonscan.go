// Package jsonscan walks JSON text that encoding/json has already validated (a json.RawMessage
// cut from a decoded document, or text json.Valid accepted) without decoding it into Go values.
//
// encoding/json validates every input it is given before decoding it, so taking a validated
// document apart with it again (into map[string]any to look for a key, into
// map[string]json.RawMessage to read three fields) reads each byte twice more and allocates a
// map per object. The functions here only find where values begin and end; what they return
// is what encoding/json would have produced for the same text (keys decoded the same way,
// values as the raw bytes a json.RawMessage would hold), which the tests check against it.
//
// Text that is not valid JSON gives ErrMalformed or a result that is not meaningful, never a
// panic: callers must validate untrusted text first.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrMalformed reports text that is not the valid JSON the caller promised.
var ErrMalformed = errors.New("jsonscan: malformed JSON")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the offset just past the string token that starts at b[i] ('"').
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++ // the escaped byte cannot end the string
		case '"':
			return j + 1, nil
		}
	}
	return 0, ErrMalformed
}

// valueEnd returns the offset just past the value that starts at b[i] (no leading space).
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, ErrMalformed
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := stringEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, ErrMalformed
	default: // number, true, false, null
		j := i
		for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return 0, ErrMalformed
		}
		return j, nil
	}
}

// Members calls fn with the key (the quoted string token, see Unquote) and the value (its raw
// bytes, as a json.RawMessage would hold them) of each member of the object obj, in document
// order; duplicate keys are all reported. obj that is not an object gives ErrMalformed.
func Members(obj []byte, fn func(key, value []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ErrMalformed
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return ErrMalformed
		}
		kEnd, err := stringEnd(obj, i)
		if err != nil {
			return err
		}
		j := skipSpace(obj, kEnd)
		if j >= len(obj) || obj[j] != ':' {
			return ErrMalformed
		}
		vStart := skipSpace(obj, j+1)
		vEnd, err := valueEnd(obj, vStart)
		if err != nil {
			return err
		}
		if err := fn(obj[i:kEnd], obj[vStart:vEnd]); err != nil {
			return err
		}
		i = skipSpace(obj, vEnd)
		switch {
		case i < len(obj) && obj[i] == ',':
			i = skipSpace(obj, i+1)
		case i < len(obj) && obj[i] == '}':
			return nil
		default:
			return ErrMalformed
		}
	}
}

// Member is one member of an object: its key's text (see Text) and its value's raw bytes.
type Member struct {
	Key   []byte
	Value []byte
}

// ObjectMembers returns the members of the object obj in document order, each key as Text
// gives it (duplicate keys all kept, as Members reports them), appended to dst.
func ObjectMembers(dst []Member, obj []byte) ([]Member, error) {
	err := Members(obj, func(k, v []byte) error {
		key, err := Text(k)
		if err != nil {
			return err
		}
		dst = append(dst, Member{Key: key, Value: v})
		return nil
	})
	return dst, err
}

// Elements calls fn with the raw bytes of each element of the array arr, in order. arr that is
// not an array gives ErrMalformed.
func Elements(arr []byte, fn func(value []byte) error) error {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return ErrMalformed
	}
	i = skipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		end, err := valueEnd(arr, i)
		if err != nil {
			return err
		}
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		switch {
		case i < len(arr) && arr[i] == ',':
			i = skipSpace(arr, i+1)
		case i < len(arr) && arr[i] == ']':
			return nil
		default:
			return ErrMalformed
		}
	}
}

// Unquote decodes the string token s as encoding/json does (escapes resolved, invalid UTF-8
// replaced by U+FFFD). A token without escapes that is valid UTF-8 is its own text, so only
// the others go through encoding/json.
func Unquote(s []byte) (string, error) {
	if inner, ok := ownText(s); ok {
		return string(inner), nil
	}
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", ErrMalformed
	}
	var out string
	if err := json.Unmarshal(s, &out); err != nil {
		return "", err
	}
	return out, nil
}

// Text is Unquote for callers that compare or sort keys as bytes: a token that is its own
// text comes back as a slice of s, without a copy.
func Text(s []byte) ([]byte, error) {
	if inner, ok := ownText(s); ok {
		return inner, nil
	}
	out, err := Unquote(s)
	return []byte(out), err
}

// ownText returns the inside of the string token s when that is already its decoded text.
func ownText(s []byte) ([]byte, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return nil, false
	}
	inner := s[1 : len(s)-1]
	return inner, bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner)
}

// IsCompact reports whether text holds no whitespace outside strings, so that json.Compact
// would return it unchanged: for valid JSON, Compact removes exactly that whitespace; for
// anything else it fails, and a caller that keeps such text as it is gets the same bytes too.
func IsCompact(text []byte) bool {
	inString := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && isSpace(c):
			return false
		}
	}
	return true
}
