package serde

import (
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestNewRecordCarriesTheStandardHeaders(t *testing.T) {
	value := []byte{0xC3, 0x01, 1, 2, 3}
	r := NewRecord("idnow.sessions", "ses-1", "evt-1", schemas.SessionEventSchema(), value)
	if r.Topic != "idnow.sessions" || string(r.Key) != "ses-1" || string(r.Value) != string(value) {
		t.Fatalf("record %s key %q value %x: want topic idnow.sessions, key ses-1 (the session id keeps a session on one partition), the value as given",
			r.Topic, r.Key, r.Value)
	}
	want := map[string]string{HeaderSchema: schemas.SessionEventName, HeaderEventID: "evt-1"}
	if len(r.Headers) != len(want) {
		t.Fatalf("headers %v: want exactly %v", r.Headers, want)
	}
	for _, h := range r.Headers {
		if want[h.Key] != string(h.Value) {
			t.Errorf("header %s = %q, want %q", h.Key, h.Value, want[h.Key])
		}
	}
	// The enricher's output names its own schema.
	if e := NewRecord("out", "ses-1", "evt-1", schemas.EnrichedSessionSchema(), nil); string(e.Headers[0].Value) != schemas.EnrichedSessionName {
		t.Errorf("enriched record schema header %q, want %s", e.Headers[0].Value, schemas.EnrichedSessionName)
	}
}
