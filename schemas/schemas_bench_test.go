package schemas

import (
	"testing"
	"time"
)

// benchSessionEvent is a SessionEvent as the ingress writes it: every optional field set and the
// signed token kept, which is the largest record the ingress produces.
func benchSessionEvent() *SessionEvent {
	now := time.UnixMilli(1_772_359_320_500).UTC()
	token := "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0wMTIzNDU2Nzg5YWJjZGVmIiwidHlwIjoiSldUIn0." +
		"eyJhdWQiOiJodHRwczovL2Nvbm5lY3Rvci5leGFtcGxlLnRlc3Qvd2ViaG9va3MvaWRub3ciLCJkYXRhIjp7fX0." +
		string(make([]byte, 342)) // an RS256 signature is 342 base64url characters
	return &SessionEvent{
		EventID: "4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f", EventName: "session.completed", EventVersion: ptr("1.0"),
		EventSequence: ptr(int64(3)), EventDeliverID: ptr("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), CreatedAt: &now,
		Environment: ptr("live"), FlowID: ptr("7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b4c3a"),
		SessionID: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", SessionStatus: ptr("COMPLETED"),
		LastStepID: ptr("identity-check"), LastStepType: ptr("DocumentVerification"), LastStepStatus: ptr("COMPLETED"),
		ReceivedAt: now, DeliveryVariant: DeliveryJWTBody, SignedToken: &token,
	}
}

// benchEnrichedSession is an EnrichedSession for a completed session with the two well-known data
// blocks, a verification block with file references and full content.
func benchEnrichedSession() *EnrichedSession {
	now := time.UnixMilli(1_772_359_320_500).UTC()
	return &EnrichedSession{
		Event: TriggeringEvent{EventID: "4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f", EventName: "session.completed",
			EventSequence: ptr(int64(3)), SessionStatus: ptr("COMPLETED"), CreatedAt: &now, ReceivedAt: now},
		Session: SessionDetails{
			SessionID: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", FlowID: ptr("7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b4c3a"),
			FlowVersion: ptr("3"), Environment: ptr("live"), Status: "COMPLETED", Terminal: true,
			Outcome: ptr("accepted"), OutcomeRaw: ptr("ACCEPTED"), SubjectID: ptr("customer-42"), CreatedAt: &now,
			StartedAt: &now, UpdatedAt: &now, CompletedAt: &now, ExpiresAt: &now,
			LastStep: &LastStep{StepID: ptr("decision"), StepDescription: ptr("Decision"), Verdict: ptr("ACCEPTED")},
			Metadata: map[string]string{"subjectId": "customer-42", "channel": "web", "attempt": "2"},
			Results:  ptr(`{"score":0.97,"checks":["document","liveness"]}`),
		},
		DataBlocksFetched: true,
		DataBlocks: []DataBlock{
			{ID: ptr("db-1"), Type: "basicIdentity", StepID: ptr("identity-input"), Clock: ptr(int64(1)), CreatedAt: &now,
				Status: "STORED", Content: ptr(`{"birthDate":"1964-08-12","familyName":"Mustermann","givenName":"Erika"}`),
				BasicIdentity: &BasicIdentity{GivenName: ptr("Erika"), FamilyName: ptr("Mustermann"), BirthDate: ptr("1964-08-12")}},
			{ID: ptr("db-2"), Type: "documentData", StepID: ptr("document-capture"), Clock: ptr(int64(2)), CreatedAt: &now,
				Status: "STORED", Content: ptr(`{"documentNumber":"T22000129","documentType":"ID_CARD","expiryDate":"2031-08-01","issuanceDate":"2021-08-02","issuingAuthority":"Stadt Köln","issuingCountry":"DEU"}`),
				DocumentData: &DocumentData{DocumentType: ptr("ID_CARD"), DocumentNumber: ptr("T22000129"), ExpiryDate: ptr("2031-08-01"),
					IssuanceDate: ptr("2021-08-02"), IssuingCountry: ptr("DEU"), IssuingAuthority: ptr("Stadt Köln")}},
			{ID: ptr("db-3"), Type: "documentVerification", StepID: ptr("document-check"), Clock: ptr(int64(3)), CreatedAt: &now,
				Status: "STORED", Content: ptr(`{"documents":[{"back":{"$id":"vlt-back-1","$ref":"vault"},"front":{"$id":"vlt-front-1","$ref":"vault"}}],"issues":[],"report":{"$id":"vlt-report-1","$ref":"vault"},"verdict":{"reason":null,"status":"PASSED"}}`)},
		},
		FileRefs: []FileRef{
			{VaultEntryID: "vlt-back-1", DataBlockID: ptr("db-3"), DataBlockType: "documentVerification", JSONPath: "$.documents[0].back"},
			{VaultEntryID: "vlt-front-1", DataBlockID: ptr("db-3"), DataBlockType: "documentVerification", JSONPath: "$.documents[0].front"},
			{VaultEntryID: "vlt-report-1", DataBlockID: ptr("db-3"), DataBlockType: "documentVerification", JSONPath: "$.report"},
		},
		Enrichment: EnrichmentInfo{EnrichedAt: now, ConnectorVersion: "v1.0.0", DataBlocksContent: "full"},
	}
}

// BenchmarkEncode measures plain Avro binary encoding (no framing) of both record types into a
// reused buffer, the way a producer loop would append records.
func BenchmarkEncode(b *testing.B) {
	cases := []struct {
		name   string
		schema Schema
		value  any
	}{
		{"SessionEvent", SessionEventSchema(), benchSessionEvent()},
		{"EnrichedSession", EnrichedSessionSchema(), benchEnrichedSession()},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			buf, err := tc.schema.Avro.AppendEncode(nil, tc.value)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if buf, err = tc.schema.Avro.AppendEncode(buf[:0], tc.value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode measures Avro binary decoding of both record types into a fresh value, the way
// a consumer decodes each record it polls.
func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name   string
		schema Schema
		value  any
		fresh  func() any
	}{
		{"SessionEvent", SessionEventSchema(), benchSessionEvent(), func() any { return &SessionEvent{} }},
		{"EnrichedSession", EnrichedSessionSchema(), benchEnrichedSession(), func() any { return &EnrichedSession{} }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			data, err := tc.schema.Avro.Encode(tc.value)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tc.schema.Avro.Decode(data, tc.fresh()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
