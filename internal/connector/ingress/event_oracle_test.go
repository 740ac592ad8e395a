package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// The event parser the ingress used before issue 16, kept as the oracle of FuzzEventReader: it
// decoded the verified data claim a second time with encoding/json. The event reader must map
// every data claim the verifier accepts exactly as it did.

// oracleString accepts a JSON string or number (IDnow's builds disagree on types) and keeps its text.
type oracleString struct {
	set   bool
	value string
	// badUTF8 is set when the JSON text held invalid UTF-8 or an escaped lone surrogate, which
	// encoding/json silently replaces with U+FFFD: the value is then not what the sender signed.
	badUTF8 bool
}

func (f *oracleString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		if err := json.Unmarshal(b, &f.value); err != nil {
			return err
		}
		f.badUTF8 = !utf8.Valid(b) || (strings.ContainsRune(f.value, utf8.RuneError) && !oracleLiteralReplacementChar(b))
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		f.value = string(b)
	default:
		return fmt.Errorf("want a string or number, got %.20s", b)
	}
	f.set = true
	return nil
}

func (f oracleString) ptr() *string {
	if !f.set || f.value == "" {
		return nil
	}
	v := f.value
	return &v
}

// oracleRawEvent is the IDnow webhook event (reference §7). Unknown fields are ignored; lastStep*
// fields are accepted both at the top level and inside payload because builds differ.
type oracleRawEvent struct {
	EventID        oracleString `json:"eventId"`
	EventVersion   oracleString `json:"eventVersion"`
	EventName      oracleString `json:"eventName"`
	EventDeliverID oracleString `json:"eventDeliverId"`
	EventSequence  oracleString `json:"eventSequence"`
	CreatedAt      oracleString `json:"createdAt"`
	Environment    oracleString `json:"environment"`
	SessionID      oracleString `json:"sessionId"`
	LastStepID     oracleString `json:"lastStepId"`
	LastStepType   oracleString `json:"lastStepType"`
	LastStepStatus oracleString `json:"lastStepStatus"`
	Payload        *struct {
		FlowID         oracleString `json:"flowId"`
		SessionID      oracleString `json:"sessionId"`
		SessionStatus  oracleString `json:"sessionStatus"`
		LastStepID     oracleString `json:"lastStepId"`
		LastStepType   oracleString `json:"lastStepType"`
		LastStepStatus oracleString `json:"lastStepStatus"`
	} `json:"payload"`
}

// oracleParseEvent maps the JSON of a verified webhook's `data` claim to a SessionEvent. Unknown event
// names and statuses pass through unchanged. A missing eventId or sessionId, one that does not
// match IDPattern, and invalid UTF-8 or control characters in any text field are a *FieldError
// naming the field.
func oracleParseEvent(data []byte) (*schemas.SessionEvent, error) {
	var raw oracleRawEvent
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
	if err := oracleCheckID("eventId", ev.EventID, raw.EventID.badUTF8); err != nil {
		return nil, err
	}
	if err := oracleCheckID(sessionField, ev.SessionID, sessionRaw.badUTF8); err != nil {
		return nil, err
	}
	// The other fields are stored, not used as keys or in URLs, so they keep IDnow's text as it
	// is; but text that is not what was signed (invalid UTF-8) or that could forge log lines and
	// headers downstream (control characters) is refused as well.
	others := []oracleTextField{
		{"eventDeliverId", raw.EventDeliverID}, {"eventName", raw.EventName}, {"eventVersion", raw.EventVersion},
		{"environment", raw.Environment}, {"lastStepId", raw.LastStepID}, {"lastStepType", raw.LastStepType},
		{"lastStepStatus", raw.LastStepStatus},
	}
	if p := raw.Payload; p != nil {
		others = append(others, oracleTextField{"payload.flowId", p.FlowID}, oracleTextField{"payload.sessionStatus", p.SessionStatus},
			oracleTextField{"payload.lastStepId", p.LastStepID}, oracleTextField{"payload.lastStepType", p.LastStepType},
			oracleTextField{"payload.lastStepStatus", p.LastStepStatus})
	}
	for _, o := range others {
		if err := oracleCheckText(o.field, o.v); err != nil {
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
		if at, ok := parseTime(raw.CreatedAt.value); ok {
			ev.CreatedAt = &at
		}
	}
	return ev, nil
}

// checkID holds an identifier to IDPattern, naming what is wrong with it.
func oracleCheckID(field, v string, badUTF8 bool) error {
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

// oracleTextField is a stored text field of the event and its name in errors.
type oracleTextField struct {
	field string
	v     oracleString
}

// checkText refuses invalid UTF-8 and control characters in a stored text field.
func oracleCheckText(field string, v oracleString) error {
	switch {
	case v.badUTF8 || !utf8.ValidString(v.value):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.ContainsFunc(v.value, unicode.IsControl):
		return &FieldError{Field: field, Reason: "contains control characters"}
	}
	return nil
}

// oracleLiteralReplacementChar reports whether the JSON string text b spells U+FFFD itself (as the
// character or as \ufffd), in which case a U+FFFD in the decoded value is genuine.
func oracleLiteralReplacementChar(b []byte) bool {
	return bytes.ContainsRune(b, utf8.RuneError) || bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
}
