package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// FieldError reports a webhook event that lacks a field the connector cannot do without, or has
// one of an impossible type. It becomes a 400 naming the field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("event field %s: %s", e.Field, e.Reason) }

// flexString accepts a JSON string or number (IDnow's builds disagree on types) and keeps its text.
type flexString struct {
	set   bool
	value string
	// badUTF8 is set when the JSON text held invalid UTF-8 or an escaped lone surrogate, which
	// encoding/json silently replaces with U+FFFD: the value is then not what the sender signed.
	badUTF8 bool
}

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		if err := json.Unmarshal(b, &f.value); err != nil {
			return err
		}
		f.badUTF8 = !utf8.Valid(b) || (strings.ContainsRune(f.value, utf8.RuneError) && !literalReplacementChar(b))
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		f.value = string(b)
	default:
		return fmt.Errorf("want a string or number, got %.20s", b)
	}
	f.set = true
	return nil
}

func (f flexString) ptr() *string {
	if !f.set || f.value == "" {
		return nil
	}
	v := f.value
	return &v
}

// rawEvent is the IDnow webhook event (reference §7). Unknown fields are ignored; lastStep*
// fields are accepted both at the top level and inside payload because builds differ.
type rawEvent struct {
	EventID        flexString `json:"eventId"`
	EventVersion   flexString `json:"eventVersion"`
	EventName      flexString `json:"eventName"`
	EventDeliverID flexString `json:"eventDeliverId"`
	EventSequence  flexString `json:"eventSequence"`
	CreatedAt      flexString `json:"createdAt"`
	Environment    flexString `json:"environment"`
	SessionID      flexString `json:"sessionId"`
	LastStepID     flexString `json:"lastStepId"`
	LastStepType   flexString `json:"lastStepType"`
	LastStepStatus flexString `json:"lastStepStatus"`
	Payload        *struct {
		FlowID         flexString `json:"flowId"`
		SessionID      flexString `json:"sessionId"`
		SessionStatus  flexString `json:"sessionStatus"`
		LastStepID     flexString `json:"lastStepId"`
		LastStepType   flexString `json:"lastStepType"`
		LastStepStatus flexString `json:"lastStepStatus"`
	} `json:"payload"`
}

// maxIDLength bounds ids taken from the network: they become Kafka keys and dedupe entries.
const maxIDLength = 128

// idPattern is the safe form of eventId and sessionId, which become Kafka keys, record headers,
// dedupe entries and path segments of IDnow API URLs (/sessions/{sessionId}): an ASCII letter or
// digit, then up to 127 letters, digits, '.', ':' or '-'. IDnow's ids are UUIDs; the
// pattern leaves room for other opaque ids while ruling out ".", "..", slashes, spaces, control
// characters and anything non-ASCII.
var idPattern = regexp.MustCompile(IDPattern)

// IDPattern is the regular expression every accepted eventId and sessionId matches.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`

// ParseEvent maps the JSON of a verified webhook's `data` claim to a SessionEvent. Unknown event
// names and statuses pass through unchanged. A missing eventId or sessionId, one that does not
// match IDPattern, and invalid UTF-8 or control characters in any text field are a *FieldError
// naming the field.
func ParseEvent(data []byte) (*schemas.SessionEvent, error) {
	var raw rawEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &FieldError{Field: "data", Reason: "not a JSON event object: " + err.Error()}
	}
	ev := &schemas.SessionEvent{
		EventID:        raw.EventID.value,
		EventName:      raw.EventName.value,
		EventVersion:   raw.EventVersion.ptr(),
		EventDeliverID: raw.EventDeliverID.ptr(),
		Environment:    raw.Environment.ptr(),
		SessionID:      raw.SessionID.value,
		LastStepID:     raw.LastStepID.ptr(),
		LastStepType:   raw.LastStepType.ptr(),
		LastStepStatus: raw.LastStepStatus.ptr(),
		Origin:         schemas.OriginWebhook,
	}
	if p := raw.Payload; p != nil {
		if p.SessionID.value != "" {
			ev.SessionID = p.SessionID.value
		}
		ev.FlowID = p.FlowID.ptr()
		ev.SessionStatus = p.SessionStatus.ptr()
		ev.LastStepID = firstNonNil(ev.LastStepID, p.LastStepID.ptr())
		ev.LastStepType = firstNonNil(ev.LastStepType, p.LastStepType.ptr())
		ev.LastStepStatus = firstNonNil(ev.LastStepStatus, p.LastStepStatus.ptr())
	}
	sessionField, sessionRaw := "sessionId", raw.SessionID
	if raw.Payload != nil && raw.Payload.SessionID.value != "" {
		sessionField, sessionRaw = "payload.sessionId", raw.Payload.SessionID
	} else if ev.SessionID == "" {
		sessionField = "payload.sessionId"
	}
	if err := checkID("eventId", ev.EventID, raw.EventID.badUTF8); err != nil {
		return nil, err
	}
	if err := checkID(sessionField, ev.SessionID, sessionRaw.badUTF8); err != nil {
		return nil, err
	}
	// The other fields are stored, not used as keys or in URLs, so they keep IDnow's text as it
	// is; but text that is not what was signed (invalid UTF-8) or that could forge log lines and
	// headers downstream (control characters) is refused as well.
	others := []textField{
		{"eventDeliverId", raw.EventDeliverID}, {"eventName", raw.EventName}, {"eventVersion", raw.EventVersion},
		{"environment", raw.Environment}, {"lastStepId", raw.LastStepID}, {"lastStepType", raw.LastStepType},
		{"lastStepStatus", raw.LastStepStatus},
	}
	if p := raw.Payload; p != nil {
		others = append(others, textField{"payload.flowId", p.FlowID}, textField{"payload.sessionStatus", p.SessionStatus},
			textField{"payload.lastStepId", p.LastStepID}, textField{"payload.lastStepType", p.LastStepType},
			textField{"payload.lastStepStatus", p.LastStepStatus})
	}
	for _, o := range others {
		if err := checkText(o.field, o.v); err != nil {
			return nil, err
		}
	}
	if raw.EventSequence.set {
		n, err := strconv.ParseInt(raw.EventSequence.value, 10, 64)
		if err != nil {
			return nil, &FieldError{Field: "eventSequence", Reason: "not an integer"}
		}
		ev.EventSequence = &n
	}
	if raw.CreatedAt.set {
		// A timestamp we cannot read is not a reason to lose the event: it stays null.
		ev.CreatedAt = parseTime(raw.CreatedAt.value)
	}
	return ev, nil
}

// checkID holds an identifier to IDPattern, naming what is wrong with it.
func checkID(field, v string, badUTF8 bool) error {
	switch {
	case v == "":
		return &FieldError{Field: field, Reason: "missing or empty"}
	case badUTF8 || !utf8.ValidString(v):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(v, unicode.IsControl):
		return &FieldError{Field: field, Reason: "contains control characters"}
	case len(v) > maxIDLength:
		return &FieldError{Field: field, Reason: fmt.Sprintf("longer than %d bytes", maxIDLength)}
	case !idPattern.MatchString(v):
		return &FieldError{Field: field, Reason: fmt.Sprintf("%q does not match %s (a letter or digit, then letters, digits, '.', ':' or '-')", v, IDPattern)}
	}
	return nil
}

// textField is a stored text field of the event and its name in errors.
type textField struct {
	field string
	v     flexString
}

// checkText refuses invalid UTF-8 and control characters in a stored text field.
func checkText(field string, v flexString) error {
	switch {
	case v.badUTF8 || !utf8.ValidString(v.value):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(v.value, unicode.IsControl):
		return &FieldError{Field: field, Reason: "contains control characters"}
	}
	return nil
}

// literalReplacementChar reports whether the JSON string text b spells U+FFFD itself (as the
// character or as \ufffd), in which case a U+FFFD in the decoded value is genuine.
func literalReplacementChar(b []byte) bool {
	return bytes.ContainsRune(b, utf8.RuneError) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
}

func firstNonNil(a, b *string) *string {
	if a != nil {
		return a
	}
	return b
}

// parseTime reads ISO 8601 / RFC 3339 text or epoch milliseconds; nil when it is neither.
func parseTime(s string) *time.Time {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			t = t.UTC()
			return &t
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		t := time.UnixMilli(ms).UTC()
		return &t
	}
	return nil
}
