package enrich

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// benchInputs returns the new-shape golden session (parsed by the idnow client's own
// UnmarshalJSON) and the data blocks of testdata/api/new/datablocks.json as the client
// normalises them: five blocks, one deleted, one with three vault references.
func benchInputs(b *testing.B) (*idnow.Session, []idnow.DataBlock) {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "api", "new", "session.json"))
	if err != nil {
		b.Fatal(err)
	}
	var s idnow.Session
	if err := json.Unmarshal(raw, &s); err != nil {
		b.Fatal(err)
	}
	at := func(v string) time.Time {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	blocks := []idnow.DataBlock{
		{ID: "db-1", Type: "basicIdentity", StepID: "identity-input", Clock: 1, CreatedAt: at("2026-03-01T10:00:10Z"), Status: "STORED",
			Content: json.RawMessage(`{"givenName": "Erika", "familyName": "Mustermann", "birthDate": "1964-08-12"}`)},
		{ID: "db-2", Type: "documentData", StepID: "document-capture", Clock: 2, CreatedAt: at("2026-03-01T10:00:40Z"), Status: "STORED",
			Content: json.RawMessage(`{"documentType": "ID_CARD", "documentNumber": "T22000129", "expiryDate": "2031-08-01",
                  "issuanceDate": "2021-08-02", "issuingCountry": "DEU", "issuingAuthority": "Stadt Köln"}`)},
		{ID: "db-3", Type: "documentVerification", StepID: "document-check", Clock: 3, CreatedAt: at("2026-03-01T10:01:10Z"), Status: "STORED",
			Content: json.RawMessage(`{
        "verdict": {"status": "PASSED", "reason": null},
        "issues": [],
        "documents": [{"front": {"$ref": "vault", "$id": "vlt-front-1"}, "back": {"$ref": "vault", "$id": "vlt-back-1"}}],
        "report": {"$ref": "vault", "$id": "vlt-report-1"}
      }`),
			FileRefs: []idnow.FileRef{
				{VaultEntryID: "vlt-back-1", JSONPath: "$.documents[0].back"},
				{VaultEntryID: "vlt-front-1", JSONPath: "$.documents[0].front"},
				{VaultEntryID: "vlt-report-1", JSONPath: "$.report"},
			}},
		{ID: "db-4", Type: "selfie", StepID: "liveness", Clock: 4, CreatedAt: at("2026-03-01T10:01:20Z"), Status: "DELETED"},
		{ID: "db-5", Type: "outcomeStatus", StepID: "decision", Clock: 5, CreatedAt: at("2026-03-01T10:02:00Z"), Status: "STORED",
			Content: json.RawMessage(`{"outcome": "ACCEPTED"}`)},
	}
	return &s, blocks
}

// BenchmarkMap measures the enrichment mapping alone (API responses to EnrichedSession) under
// both content policies, and mapping plus single-object encoding: the enricher's CPU per event
// apart from the API calls and Kafka.
func BenchmarkMap(b *testing.B) {
	s, blocks := benchInputs(b)
	ev := testEvent(s.SessionID, "COMPLETED")
	now := time.Date(2026, 3, 1, 10, 2, 2, 0, time.UTC)
	policies := map[string]DataBlocksConfig{
		"full": {OnStatus: []string{"COMPLETED"}, Content: ContentFull},
		"none": {OnStatus: []string{"COMPLETED"}, Content: ContentNone},
	}
	for _, name := range []string{"full", "none"} {
		policy := policies[name]
		b.Run("content_"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out := Map(ev, s, blocks, true, policy, now, "bench"); len(out.DataBlocks) != len(blocks) {
					b.Fatalf("mapped %d blocks, want %d", len(out.DataBlocks), len(blocks))
				}
			}
		})
	}
	codec, err := serde.NewCodec(b.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("content_full+encode", func(b *testing.B) {
		policy := policies["full"]
		b.ReportAllocs()
		for b.Loop() {
			if _, err := codec.Encode(Map(ev, s, blocks, true, policy, now, "bench")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
