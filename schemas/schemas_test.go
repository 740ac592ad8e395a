package schemas

import (
	"reflect"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// TestRoundTrip encodes a fully populated value of each type and checks it decodes to itself, so a
// struct tag that does not match the schema fails here rather than in production.
func TestRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	tests := []struct {
		name   string
		schema Schema
		in     any
		out    any
	}{
		{
			name:   "SessionEvent",
			schema: SessionEventSchema(),
			in: &SessionEvent{
				EventID: "e1", EventName: "session.completed", EventVersion: ptr("1"), EventSequence: ptr(int64(3)),
				EventDeliverID: ptr("d1"), CreatedAt: &now, Environment: ptr("live"), FlowID: ptr("f1"),
				SessionID: "s1", SessionStatus: ptr("COMPLETED"), LastStepID: ptr("st"), LastStepType: ptr("t"),
				LastStepStatus: ptr("ok"), ReceivedAt: now, DeliveryVariant: DeliveryJWTBody, SignedToken: ptr("a.b.c"),
			},
			out: &SessionEvent{},
		},
		{
			name:   "SessionEvent/minimal",
			schema: SessionEventSchema(),
			in:     &SessionEvent{EventID: "e1", EventName: "x", SessionID: "s1", ReceivedAt: now, DeliveryVariant: DeliverySignatureHeader},
			out:    &SessionEvent{},
		},
		{
			name:   "EnrichedSession",
			schema: EnrichedSessionSchema(),
			in: &EnrichedSession{
				Event: TriggeringEvent{EventID: "e1", EventName: "session.completed", EventSequence: ptr(int64(2)), SessionStatus: ptr("COMPLETED"), CreatedAt: &now, ReceivedAt: now},
				Session: SessionDetails{
					SessionID: "s1", FlowID: ptr("f"), FlowVersion: ptr("3"), Environment: ptr("live"), Status: "COMPLETED", Terminal: true,
					Outcome: ptr("accepted"), OutcomeRaw: ptr("ACCEPTED"), SubjectID: ptr("sub"), CreatedAt: &now, StartedAt: &now,
					UpdatedAt: &now, CompletedAt: &now, ExpiresAt: &now,
					LastStep: &LastStep{StepID: ptr("a"), Verdict: ptr("OK")}, Metadata: map[string]string{"k": "v"}, Results: ptr(`{}`),
				},
				DataBlocksFetched: true,
				DataBlocks: []DataBlock{{
					ID: ptr("b1"), Type: "basicIdentity", StepID: ptr("s"), Clock: ptr(int64(1)), CreatedAt: &now, Status: "STORED",
					Content: ptr(`{"givenName":"A"}`), BasicIdentity: &BasicIdentity{GivenName: ptr("A")},
				}, {
					Type: "documentData", Status: "STORED", DocumentData: &DocumentData{DocumentType: ptr("PASSPORT")},
				}},
				FileRefs:   []FileRef{{VaultEntryID: "v1", DataBlockID: ptr("b1"), DataBlockType: "documentVerification", JSONPath: "$.front"}},
				Enrichment: EnrichmentInfo{EnrichedAt: now, ConnectorVersion: "dev", DataBlocksContent: "full", Truncation: ptr(TruncationContentDropped)},
			},
			out: &EnrichedSession{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.schema.Avro.Encode(tc.in)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if _, err := tc.schema.Avro.Decode(b, tc.out); err != nil {
				t.Fatalf("decode: %v", err)
			}
			normalizeTimes(reflect.ValueOf(tc.out))
			if !reflect.DeepEqual(tc.in, tc.out) {
				t.Fatalf("round trip changed the value:\n in: %+v\nout: %+v", tc.in, tc.out)
			}
		})
	}
}

// normalizeTimes converts decoded times to UTC so DeepEqual compares instants, not locations.
func normalizeTimes(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			if tm, ok := v.Interface().(*time.Time); ok {
				*tm = tm.UTC()
				return
			}
			normalizeTimes(v.Elem())
		}
	case reflect.Struct:
		if tm, ok := v.Addr().Interface().(*time.Time); ok {
			*tm = tm.UTC()
			return
		}
		for i := 0; i < v.NumField(); i++ {
			normalizeTimes(v.Field(i))
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			normalizeTimes(v.Index(i))
		}
	}
}
