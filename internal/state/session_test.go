package state

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state/statetest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// idShapes are event ids of the kinds the packed form treats differently.
var idShapes = []string{
	"4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f", // lower-case UUID: 16 bytes
	"4F9D3C2E-8A1B-4C7D-9E0F-1A2B3C4D5E6F", // upper-case UUID
	"12345678-1234-1234-1234-123456789012", // digits only
	"4f9d3c2e-8a1b-4C7D-9e0f-1a2b3c4d5e6f", // mixed case: kept as text
	"4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6g", // not hex
	"4f9d3c2e_8a1b-4c7d-9e0f-1a2b3c4d5e6f", // not a UUID layout
	ReconcileEventID("ses-1", "COMPLETED"),
	"bench.sessions.r1-mem-17", "bench.sessions.r1-mem-25017", "bench.sessions.r1-mem-2501", // shared prefixes
	"e", "e-ü-0001", strings.Repeat("x", 300), "",
}

func TestSessionRoundTrip(t *testing.T) {
	updated := time.Date(2026, 11, 1, 12, 0, 0, 123_000_000, time.UTC)
	for _, st := range []*schemas.SessionState{
		{SessionID: "s", EnrichedEventIDs: []string{}, UpdatedAt: updated},
		{SessionID: "s", LatestStatus: sp("COMPLETED"), Outcome: sp("accepted"), EnrichedEventIDs: idShapes, UpdatedAt: updated},
		{SessionID: "s", LatestStatus: sp("on_hold"), Outcome: sp(""), EnrichedEventIDs: []string{"a", "a", "b"}, UpdatedAt: updated},
		{SessionID: "s", LatestStatus: sp(""), EnrichedEventIDs: manyIDs("x", MaxEventIDs+6), UpdatedAt: updated},
		{SessionID: "s", LatestStatus: sp("RUNNING"), Outcome: sp("partial"), EnrichedEventIDs: []string{"e"}, UpdatedAt: updated},
		{SessionID: "s", Outcome: sp("rejected"), EnrichedEventIDs: []string{"e"}, UpdatedAt: updated},
	} {
		got := FromState(st).State("s")
		if !reflect.DeepEqual(got, st) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, st)
		}
	}
	if got := FromState(nil); got != (Session{}) {
		t.Errorf("FromState(nil) = %+v, want the zero Session", got)
	}
	if ids := (Session{}).State("s").EnrichedEventIDs; ids == nil || len(ids) != 0 {
		t.Errorf("the zero Session's ids = %#v, want an empty list (the schema's default)", ids)
	}
}

// TestSessionPackedSize pins what the packed form costs per id, the point of the type, and the
// size of a Session (a Store's map slot holds one per session).
func TestSessionPackedSize(t *testing.T) {
	if size := unsafe.Sizeof(Session{}); size > 40 {
		t.Errorf("a Session takes %d bytes, want at most 40", size)
	}
	for _, tc := range []struct {
		name    string
		ids     []string
		maxSize int
	}{
		{"UUIDs", uuids(40), 40 * 17},
		{"ids with a shared prefix", manyIDs("bench.sessions.r1764654321000000000-mem-", 40), 40 * 8},
		{"reconciliation ids", []string{ReconcileEventID("s", "CREATED"), ReconcileEventID("s", "COMPLETED")}, 2 * 38},
	} {
		s := FromState(&schemas.SessionState{EnrichedEventIDs: tc.ids})
		text := 0
		for _, id := range tc.ids {
			text += len(id)
		}
		t.Logf("%s: %d ids, %d bytes of text, packed %d bytes", tc.name, len(tc.ids), text, len(s.ids))
		if len(s.ids) > tc.maxSize {
			t.Errorf("%s: packed into %d bytes, want at most %d", tc.name, len(s.ids), tc.maxSize)
		}
	}
}

func TestSessionApplyBound(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var s Session
	ids := uuids(MaxEventIDs + 10)
	for i, id := range ids {
		s = s.Apply(id, "RUNNING", "", now)
		if n, _ := s.count(); n != min(i+1, MaxEventIDs) {
			t.Fatalf("after %d ids n = %d, want %d", i+1, n, min(i+1, MaxEventIDs))
		}
	}
	if s.ids != FromState(s.State("s")).ids {
		t.Fatal("the bounded list packs differently from the same ids packed afresh")
	}
	if got, want := s.State("s").EnrichedEventIDs, ids[10:]; !slices.Equal(got, want) {
		t.Fatalf("bounded ids = %v, want the last %d", got, MaxEventIDs)
	}
	if d := s.Decide(ids[9], "RUNNING"); d.Skip != "" {
		t.Errorf("an id dropped by the bound is still skipped: %+v", d)
	}
	if d := s.Decide(ids[10], "RUNNING"); d.Skip != SkipAlreadyEnriched {
		t.Errorf("the oldest kept id is not skipped: %+v", d)
	}
	// A restored record with more ids than the bound keeps them until the next Apply, which
	// bounds them also when the id is among them (as Apply on SessionState did).
	over := FromState(&schemas.SessionState{EnrichedEventIDs: manyIDs("r", MaxEventIDs+5)})
	if n, _ := over.count(); n != MaxEventIDs+5 {
		t.Fatalf("FromState dropped ids: n = %d", n)
	}
	again := over.Apply(fmt.Sprintf("r%d", MaxEventIDs+4), "", "", now)
	if got := again.State("s").EnrichedEventIDs; len(got) != MaxEventIDs || got[0] != "r5" {
		t.Fatalf("re-applied known id: %d ids from %s, want %d from r5", len(got), got[0], MaxEventIDs)
	}
}

// TestSessionDecideMatchesState: Decide and Apply on a Session say what they say on the
// SessionState it stands for, over a sequence of events with redeliveries and late statuses.
func TestSessionDecideMatchesState(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	events := []struct{ id, status string }{
		{"e1", "CREATED"}, {"e1", "CREATED"}, {"e2", "running"}, {"e0", "CREATED"}, {"e3", "COMPLETED"},
		{"rec-x", "completed"}, {"e4", "ABORTED"}, {"e5", "ON_HOLD"}, {"e6", ""}, {"e2", "COMPLETED"},
	}
	var s Session
	st := &schemas.SessionState{SessionID: "s", EnrichedEventIDs: []string{}}
	want := []Decision{{}, {Skip: SkipAlreadyEnriched}, {}, {OutOfOrder: true}, {}, {Skip: SkipStatusEnriched}, {}, {}, {}, {Skip: SkipAlreadyEnriched}}
	for i, e := range events {
		d := s.Decide(e.id, e.status)
		if d != want[i] {
			t.Errorf("event %d (%s %s): %+v, want %+v", i, e.id, e.status, d, want[i])
		}
		if ds := Decide(st, e.id, e.status); ds != d {
			t.Errorf("event %d: Session says %+v, SessionState %+v", i, d, ds)
		}
		if d.Skip == "" {
			s = s.Apply(e.id, e.status, "accepted", now)
			st = Apply(st, "s", e.id, e.status, "accepted", now)
		}
		if got := s.State("s"); !reflect.DeepEqual(got, st) {
			t.Fatalf("event %d: Session %+v, SessionState %+v", i, got, st)
		}
		if s.ids != FromState(st).ids {
			t.Fatalf("event %d: Apply packed %q, FromState %q", i, s.ids, FromState(st).ids)
		}
	}
	if *st.LatestStatus != "COMPLETED" || *st.Outcome != "accepted" || len(st.EnrichedEventIDs) != 7 {
		t.Fatalf("final state %+v", st)
	}
}

// TestSessionKeepsNoCallerStrings: a Session and the Store hold copies of what they were given.
// A decoded record's strings share the decoder's buffers with other records; a state kept for
// the session's lifetime must not keep them alive (a 1 000 000-event drain grew past 600 MiB).
func TestSessionKeepsNoCallerStrings(t *testing.T) {
	buf := "ses-1|evt-0001|4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f|ON_HOLD|partial|COMPLETED|accepted"
	part := strings.Split(buf, "|") // substrings of buf, as decoded strings are of a slab
	st := &schemas.SessionState{SessionID: part[0], LatestStatus: &part[3], Outcome: &part[4], EnrichedEventIDs: []string{part[1], part[2]}}
	s := FromState(st).Apply(part[1], part[5], part[6], time.Now())
	s2 := FromState(st).Apply("evt-2", "RUNNING", part[4], time.Now())
	store := NewStore()
	store.parts[0] = map[string]Session{}
	store.Put(0, part[0], s)
	for _, held := range statetest.HeldStrings(store.parts) {
		assertNotIn(t, held, buf)
	}
	for _, held := range statetest.HeldStrings([]Session{FromState(st), s2}) {
		assertNotIn(t, held, buf)
	}
}

// TestRestoreKeepsNoDecodedStrings: restoring a partition keeps no string of the decoded records.
func TestRestoreKeepsNoDecodedStrings(t *testing.T) {
	codec, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := &recordingDecoder{dec: codec}
	m := map[string]Session{}
	for i, st := range []*schemas.SessionState{
		{SessionID: "a", LatestStatus: sp("ON_HOLD"), Outcome: sp("partial"), EnrichedEventIDs: []string{"e1", "e2"}, UpdatedAt: time.Now()},
		{SessionID: "b", LatestStatus: sp("COMPLETED"), Outcome: sp("accepted"), EnrichedEventIDs: uuids(3), UpdatedAt: time.Now()},
	} {
		v, err := codec.Encode(st)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: "t", Offset: int64(i), Key: []byte(st.SessionID), Value: v}
		if err := restoreRecord(t.Context(), m, dec, r); err != nil {
			t.Fatal(err)
		}
		if got := m[st.SessionID].State(st.SessionID); !slices.Equal(got.EnrichedEventIDs, st.EnrichedEventIDs) || *got.Outcome != *st.Outcome {
			t.Fatalf("restored %+v, want %+v", got, st)
		}
	}
	if len(dec.decoded) == 0 {
		t.Fatal("the decoder saw no strings")
	}
	for _, held := range statetest.HeldStrings(m) {
		for _, d := range dec.decoded {
			assertNotIn(t, held, d)
		}
	}
}

// recordingDecoder notes every string of the SessionStates it decodes.
type recordingDecoder struct {
	dec     Decoder
	decoded []string
}

func (r *recordingDecoder) Decode(ctx context.Context, b []byte, v any) error {
	err := r.dec.Decode(ctx, b, v)
	r.decoded = append(r.decoded, statetest.HeldStrings(v)...)
	return err
}

func assertNotIn(t *testing.T, held, src string) {
	t.Helper()
	if statetest.Overlaps(held, src) {
		t.Errorf("held string %q shares memory with %q", held, src)
	}
}

func manyIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return ids
}

func uuids(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", uint32(i*2654435761), i*7919%65536, i%4096, (i*31)%4096, uint64(i)*0x9e3779b97f4a7c15>>16)
	}
	return ids
}

func BenchmarkSessionApply(b *testing.B) {
	now := time.Now()
	var s Session
	ids := uuids(40)
	for _, id := range ids[:39] {
		s = s.Apply(id, "RUNNING", "", now)
	}
	b.ReportAllocs()
	for b.Loop() {
		if s.Decide(ids[39], "COMPLETED").Skip != "" {
			b.Fatal("skipped")
		}
		_ = s.Apply(ids[39], "COMPLETED", "accepted", now)
	}
}

// BenchmarkFromState is the restore's cost per record beyond the decode: a record with 4 ids.
func BenchmarkFromState(b *testing.B) {
	st := &schemas.SessionState{SessionID: "s", LatestStatus: sp("COMPLETED"), Outcome: sp("accepted"),
		EnrichedEventIDs: manyIDs("bench-session-00000001-event-", 4), UpdatedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		_ = FromState(st)
	}
}
