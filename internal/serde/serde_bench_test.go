package serde

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func benchPtr[T any](v T) *T { return &v }

// benchEvent is a fully populated SessionEvent with a token-sized signedToken, the record the
// ingress writes for every webhook.
func benchEvent() *schemas.SessionEvent {
	now := time.UnixMilli(1_772_359_320_500).UTC()
	token := string(make([]byte, 900))
	return &schemas.SessionEvent{
		EventID: "4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f", EventName: "session.completed", EventVersion: benchPtr("1.0"),
		EventSequence: benchPtr(int64(3)), EventDeliverID: benchPtr("9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), CreatedAt: &now,
		Environment: benchPtr("live"), FlowID: benchPtr("7f3c2a9e-51d4-4b8e-9a0c-2d6e8f1b4c3a"),
		SessionID: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", SessionStatus: benchPtr("COMPLETED"),
		LastStepID: benchPtr("identity-check"), LastStepType: benchPtr("DocumentVerification"),
		LastStepStatus: benchPtr("COMPLETED"), ReceivedAt: now, DeliveryVariant: schemas.DeliveryJWTBody, SignedToken: &token,
	}
}

// benchEnriched is an EnrichedSession with one basicIdentity block and full content.
func benchEnriched() *schemas.EnrichedSession {
	now := time.UnixMilli(1_772_359_320_500).UTC()
	return &schemas.EnrichedSession{
		Event: schemas.TriggeringEvent{EventID: "4f9d3c2e-8a1b-4c7d-9e0f-1a2b3c4d5e6f", EventName: "session.completed",
			EventSequence: benchPtr(int64(3)), SessionStatus: benchPtr("COMPLETED"), CreatedAt: &now, ReceivedAt: now},
		Session: schemas.SessionDetails{SessionID: "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", FlowID: benchPtr("flw-1"),
			Status: "COMPLETED", Terminal: true, Outcome: benchPtr("accepted"), CreatedAt: &now, UpdatedAt: &now,
			CompletedAt: &now, Metadata: map[string]string{"subjectId": "customer-42"}},
		DataBlocksFetched: true,
		DataBlocks: []schemas.DataBlock{{ID: benchPtr("db-1"), Type: "basicIdentity", Status: "STORED", CreatedAt: &now,
			Content:       benchPtr(`{"birthDate":"1964-08-12","familyName":"Mustermann","givenName":"Erika"}`),
			BasicIdentity: &schemas.BasicIdentity{GivenName: benchPtr("Erika"), FamilyName: benchPtr("Mustermann"), BirthDate: benchPtr("1964-08-12")}}},
		FileRefs:   []schemas.FileRef{},
		Enrichment: schemas.EnrichmentInfo{EnrichedAt: now, ConnectorVersion: "v1.0.0", DataBlocksContent: "full"},
	}
}

// benchCodecs returns a single-object codec and a Confluent wire-format codec (registered on an
// in-memory registry) for schema.
func benchCodecs(b *testing.B, schema schemas.Schema) map[string]*Codec {
	b.Helper()
	soe, err := NewCodec(b.Context(), CodecConfig{Schema: schema}, nil)
	if err != nil {
		b.Fatal(err)
	}
	reg := srfake.New()
	b.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		b.Fatal(err)
	}
	wire, err := NewCodec(b.Context(), CodecConfig{Schema: schema, Subject: "bench-value", Register: true}, cl)
	if err != nil {
		b.Fatal(err)
	}
	return map[string]*Codec{"single_object": soe, "confluent": wire}
}

// BenchmarkCodec measures framing plus Avro for both record types and both wire formats: the
// encode the ingress and enricher do per record, and the decode the enricher and tail do.
func BenchmarkCodec(b *testing.B) {
	types := []struct {
		name   string
		schema schemas.Schema
		value  any
		fresh  func() any
	}{
		{"SessionEvent", schemas.SessionEventSchema(), benchEvent(), func() any { return &schemas.SessionEvent{} }},
		{"EnrichedSession", schemas.EnrichedSessionSchema(), benchEnriched(), func() any { return &schemas.EnrichedSession{} }},
	}
	for _, typ := range types {
		codecs := benchCodecs(b, typ.schema)
		for _, format := range []string{"single_object", "confluent"} {
			c := codecs[format]
			data, err := c.Encode(typ.value)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(typ.name+"/"+format+"/encode", func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.AppendEncode(nil, typ.value); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(typ.name+"/"+format+"/decode", func(b *testing.B) {
				ctx := b.Context()
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				for b.Loop() {
					if err := c.Decode(ctx, data, typ.fresh()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
