package schemas

import (
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/avro"
)

// TestSessionStateRoundTrip checks the SessionState struct tags against its schema.
func TestSessionStateRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	in := &SessionState{SessionID: "s1", LatestStatus: ptr("COMPLETED"), Outcome: ptr("accepted"),
		EnrichedEventIDs: []string{"e1", "rec-00"}, UpdatedAt: now}
	b, err := SessionStateSchema().Avro.Encode(in)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	out := &SessionState{}
	if _, err := SessionStateSchema().Avro.Decode(b, out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	out.UpdatedAt = out.UpdatedAt.UTC()
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the value:\n in: %+v\nout: %+v", in, out)
	}
}

// TestOriginDefault checks that a SessionEvent written before origin existed reads as webhook,
// and an EnrichedSession as not out of order: the defaults consumers rely on.
func TestOriginDefault(t *testing.T) {
	text, err := os.ReadFile("history/session_event/v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	old, err := avro.Parse(string(text))
	if err != nil {
		t.Fatal(err)
	}
	b, err := old.Encode(&SessionEvent{EventID: "e", EventName: "session.created", SessionID: "s", ReceivedAt: time.Now(), DeliveryVariant: DeliveryJWTBody})
	if err != nil {
		t.Fatalf("encode with v1: %v", err)
	}
	resolved, err := avro.Resolve(old, SessionEventSchema().Avro)
	if err != nil {
		t.Fatal(err)
	}
	var ev SessionEvent
	if _, err := resolved.Decode(b, &ev); err != nil {
		t.Fatalf("decode v1 record with the current schema: %v", err)
	}
	if ev.Origin != OriginWebhook {
		t.Fatalf("origin of a v1 record = %q, want %q", ev.Origin, OriginWebhook)
	}
}
