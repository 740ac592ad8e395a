package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

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
const maxIDLength = 256

// ParseEvent maps the JSON of a verified webhook's `data` claim to a SessionEvent. Unknown event
// names and statuses pass through unchanged; a missing eventId or sessionId is a *FieldError.
func ParseEvent(data []byte) (*schemas.SessionEvent, error) {
	var raw rawEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, &FieldError{Field: "data", Reason: "not a JSON event object: " + err.Error()}
	}
	ev := &schemas.SessionEvent{
		EventID:        strings.TrimSpace(raw.EventID.value),
		EventName:      raw.EventName.value,
		EventVersion:   raw.EventVersion.ptr(),
		EventDeliverID: raw.EventDeliverID.ptr(),
		Environment:    raw.Environment.ptr(),
		SessionID:      strings.TrimSpace(raw.SessionID.value),
		LastStepID:     raw.LastStepID.ptr(),
		LastStepType:   raw.LastStepType.ptr(),
		LastStepStatus: raw.LastStepStatus.ptr(),
	}
	if p := raw.Payload; p != nil {
		if s := strings.TrimSpace(p.SessionID.value); s != "" {
			ev.SessionID = s
		}
		ev.FlowID = p.FlowID.ptr()
		ev.SessionStatus = p.SessionStatus.ptr()
		ev.LastStepID = firstNonNil(ev.LastStepID, p.LastStepID.ptr())
		ev.LastStepType = firstNonNil(ev.LastStepType, p.LastStepType.ptr())
		ev.LastStepStatus = firstNonNil(ev.LastStepStatus, p.LastStepStatus.ptr())
	}
	switch {
	case ev.EventID == "":
		return nil, &FieldError{Field: "eventId", Reason: "missing or empty"}
	case len(ev.EventID) > maxIDLength:
		return nil, &FieldError{Field: "eventId", Reason: fmt.Sprintf("longer than %d bytes", maxIDLength)}
	case ev.SessionID == "":
		return nil, &FieldError{Field: "payload.sessionId", Reason: "missing or empty"}
	case len(ev.SessionID) > maxIDLength:
		return nil, &FieldError{Field: "payload.sessionId", Reason: fmt.Sprintf("longer than %d bytes", maxIDLength)}
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
