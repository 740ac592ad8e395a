package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// FieldError reports a webhook event that lacks a field the connector cannot do without, or has
// one of an impossible type. It becomes a 400 naming the field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("event field %s: %s", e.Field, e.Reason) }

// field is one text field of the event: a JSON string (unescaped) or number (its text, as
// IDnow's builds disagree on types); null or absent leaves it unset.
type field struct {
	set   bool
	value string
}

// ptr points at the value, nil when unset or empty. The event keeps pointing into its reader,
// which saves an allocation per field.
func (f *field) ptr() *string {
	if !f.set || f.value == "" {
		return nil
	}
	return &f.value
}

// read sets f from a member's value, or says why it cannot hold one.
func (f *field) read(m webhook.DataMember) error {
	switch m.Kind {
	case webhook.KindNull:
		return nil
	case webhook.KindString:
		s := m.Raw[1 : len(m.Raw)-1]
		if bytes.IndexByte(s, '\\') < 0 {
			f.value = string(s)
		} else if err := json.Unmarshal(m.Raw, &f.value); err != nil {
			// The verifier's strict scan validated the string; this is not expected.
			return fmt.Errorf("%s: %w", m.Name, err)
		}
	case webhook.KindNumber:
		f.value = string(m.Raw)
	default:
		return fmt.Errorf("%s: want a string or number, got %.20s", m.Name, m.Raw)
	}
	f.set = true
	return nil
}

// The fields read from the data claim (reference §7), by position in eventReader.top; lastStep*
// fields are accepted both at the top level and inside payload because builds differ.
const (
	fEventID = iota
	fEventVersion
	fEventName
	fEventDeliverID
	fEventSequence
	fCreatedAt
	fEnvironment
	fSessionID
	fLastStepID
	fLastStepType
	fLastStepStatus
	numTopFields
)

var topNames = [numTopFields]string{"eventId", "eventVersion", "eventName", "eventDeliverId", "eventSequence",
	"createdAt", "environment", "sessionId", "lastStepId", "lastStepType", "lastStepStatus"}

// The fields of the payload object, by position in eventReader.payload.
const (
	pFlowID = iota
	pSessionID
	pSessionStatus
	pLastStepID
	pLastStepType
	pLastStepStatus
	numPayloadFields
)

var payloadNames = [numPayloadFields]string{"flowId", "sessionId", "sessionStatus", "lastStepId", "lastStepType", "lastStepStatus"}

// storedText is a stored text field checked by checkText, with its name in errors.
type storedText struct {
	name string
	i    int
}

// The stored text fields in the order they are checked (the first bad one is named).
var (
	storedTop = []storedText{{"eventDeliverId", fEventDeliverID}, {"eventName", fEventName}, {"eventVersion", fEventVersion},
		{"environment", fEnvironment}, {"lastStepId", fLastStepID}, {"lastStepType", fLastStepType}, {"lastStepStatus", fLastStepStatus}}
	storedPayload = []storedText{{"payload.flowId", pFlowID}, {"payload.sessionStatus", pSessionStatus},
		{"payload.lastStepId", pLastStepID}, {"payload.lastStepType", pLastStepType}, {"payload.lastStepStatus", pLastStepStatus}}
)

// eventReader builds the SessionEvent from the members of the data claim as the verifier's strict
// scan meets them (webhook.Verifier.VerifyData): the signed bytes are read once, by that scan,
// and the event is not parsed again. Unknown members are ignored. Names match as encoding/json
// matches struct fields (exact, else case-insensitively), which the scan's duplicate check
// already applies, so at most one member matches each field.
type eventReader struct {
	top        [numTopFields]field
	payload    [numPayloadFields]field
	hasPayload bool
	// err is the first member of a type no field can hold.
	err error
	// The event's eventSequence and createdAt point here (one allocation for the reader, not
	// one per field).
	sequence  int64
	createdAt time.Time
}

// visit is the webhook.DataMember callback.
func (r *eventReader) visit(m webhook.DataMember) {
	if r.err != nil {
		return
	}
	if m.Parent == nil {
		if matchName(m.Name, "payload") {
			switch m.Kind {
			case webhook.KindObject:
				r.hasPayload = true
			case webhook.KindNull:
			default:
				r.err = fmt.Errorf("payload: want an object, got %.20s", m.Raw)
			}
			return
		}
		if i := fieldIndex(topNames[:], m.Name); i >= 0 {
			r.err = r.top[i].read(m)
		}
		return
	}
	if matchName(m.Parent, "payload") {
		if i := fieldIndex(payloadNames[:], m.Name); i >= 0 {
			r.err = r.payload[i].read(m)
		}
	}
}

// matchName reports whether a member name selects the field called want.
func matchName(name []byte, want string) bool {
	return string(name) == want || bytes.EqualFold(name, []byte(want))
}

// fieldIndex is the position of the field name selects in names, or -1.
func fieldIndex(names []string, name []byte) int {
	for i, n := range names {
		if string(name) == n {
			return i
		}
	}
	for i, n := range names {
		if bytes.EqualFold(name, []byte(n)) {
			return i
		}
	}
	return -1
}

// maxIDLength bounds ids taken from the network: they become Kafka keys and dedupe entries.
const maxIDLength = 128

// IDPattern is the regular expression every accepted eventId and sessionId matches: the safe
// form of ids that become Kafka keys, record headers, dedupe entries and path segments of IDnow
// API URLs (/sessions/{sessionId}): an ASCII letter or digit, then up to 127 letters, digits, '_',
// '.', ':' or '-'. IDnow's ids are UUIDs; the pattern leaves room for other opaque ids while
// ruling out ".", "..", slashes, spaces, control characters and anything non-ASCII. isID
// implements it.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`

// event maps what the reader collected to a SessionEvent. Unknown event names and statuses pass
// through unchanged. A member of an impossible type is a *FieldError on data; a missing eventId
// or sessionId, one that does not match IDPattern, and invalid UTF-8 or control characters in any
// text field are a *FieldError naming the field.
func (r *eventReader) event() (*schemas.SessionEvent, error) {
	if r.err != nil {
		return nil, &FieldError{Field: "data", Reason: "not a JSON event object: " + r.err.Error()}
	}
	t, p := &r.top, &r.payload
	ev := &schemas.SessionEvent{
		EventID:        t[fEventID].value,
		EventName:      t[fEventName].value,
		EventVersion:   t[fEventVersion].ptr(),
		EventDeliverID: t[fEventDeliverID].ptr(),
		Environment:    t[fEnvironment].ptr(),
		SessionID:      t[fSessionID].value,
		LastStepID:     t[fLastStepID].ptr(),
		LastStepType:   t[fLastStepType].ptr(),
		LastStepStatus: t[fLastStepStatus].ptr(),
		Origin:         schemas.OriginWebhook,
	}
	if r.hasPayload {
		if p[pSessionID].value != "" {
			ev.SessionID = p[pSessionID].value
		}
		ev.FlowID = p[pFlowID].ptr()
		ev.SessionStatus = p[pSessionStatus].ptr()
		ev.LastStepID = firstNonNil(ev.LastStepID, p[pLastStepID].ptr())
		ev.LastStepType = firstNonNil(ev.LastStepType, p[pLastStepType].ptr())
		ev.LastStepStatus = firstNonNil(ev.LastStepStatus, p[pLastStepStatus].ptr())
	}
	sessionField := "sessionId"
	if (r.hasPayload && p[pSessionID].value != "") || ev.SessionID == "" {
		sessionField = "payload.sessionId"
	}
	if err := checkID("eventId", ev.EventID); err != nil {
		return nil, err
	}
	if err := checkID(sessionField, ev.SessionID); err != nil {
		return nil, err
	}
	// The other fields are stored, not used as keys or in URLs, so they keep IDnow's text as it
	// is; but text that could forge log lines and headers downstream (control characters) is
	// refused as well.
	for _, c := range storedTop {
		if err := checkText(c.name, t[c.i].value); err != nil {
			return nil, err
		}
	}
	if r.hasPayload {
		for _, c := range storedPayload {
			if err := checkText(c.name, p[c.i].value); err != nil {
				return nil, err
			}
		}
	}
	if t[fEventSequence].set {
		n, err := strconv.ParseInt(t[fEventSequence].value, 10, 64)
		if err != nil {
			return nil, &FieldError{Field: "eventSequence", Reason: "not an integer"}
		}
		r.sequence = n
		ev.EventSequence = &r.sequence
	}
	if t[fCreatedAt].set {
		// A timestamp we cannot read is not a reason to lose the event: it stays null.
		if at, ok := parseTime(t[fCreatedAt].value); ok {
			r.createdAt = at
			ev.CreatedAt = &r.createdAt
		}
	}
	return ev, nil
}

// checkID holds an identifier to IDPattern, naming what is wrong with it.
func checkID(field, v string) error {
	switch {
	case v == "":
		return &FieldError{Field: field, Reason: "missing or empty"}
	case !utf8.ValidString(v):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(v, unicode.IsControl):
		return &FieldError{Field: field, Reason: "contains control characters"}
	case len(v) > maxIDLength:
		return &FieldError{Field: field, Reason: fmt.Sprintf("longer than %d bytes", maxIDLength)}
	case !isID(v):
		return &FieldError{Field: field, Reason: fmt.Sprintf("%q does not match %s (a letter or digit, then letters, digits, '.', '_', ':' or '-')", v, IDPattern)}
	}
	return nil
}

// isID reports whether v matches IDPattern, without running the regular expression on every
// webhook (TestIsIDMatchesIDPattern holds the two together).
func isID(v string) bool {
	if v == "" || len(v) > maxIDLength {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == ':' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// checkText refuses invalid UTF-8 and control characters in a stored text field. The verifier's
// strict scan already refused invalid UTF-8 and lone surrogate escapes in the signed JSON; the
// check stays so that no path can store such text.
func checkText(field, v string) error {
	switch {
	case !utf8.ValidString(v):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(v, unicode.IsControl):
		return &FieldError{Field: field, Reason: "contains control characters"}
	}
	return nil
}

func firstNonNil(a, b *string) *string {
	if a != nil {
		return a
	}
	return b
}

// parseTime reads ISO 8601 / RFC 3339 text or epoch milliseconds; false when it is neither.
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), true
	}
	return time.Time{}, false
}
