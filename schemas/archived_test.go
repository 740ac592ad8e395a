package schemas

import (
	"reflect"
	"testing"
	"time"
)

// TestArchivedSessionRoundTrip checks the ArchivedSession struct tags against its schema.
func TestArchivedSessionRoundTrip(t *testing.T) {
	in := &ArchivedSession{
		SessionID: "s1", Environment: "live", SessionStatus: "COMPLETED", SubjectID: ptr("subj-1"),
		Storage: "s3://evidence", ManifestKey: "idnow/live/2026/12/s1/manifest.json", ManifestSHA256: "ab",
		ManifestSigned: true, SigningKeyID: ptr("0123456789abcdef"), FilesArchived: 4, FilesMissing: 1,
		BytesArchived: 1 << 30, EnrichedEventID: "e1", EnrichedRecordSHA256: "cd",
		ArchivedAt: time.UnixMilli(1764547200000).UTC(), ConnectorVersion: "v1",
	}
	b, err := ArchivedSessionSchema().Avro.Encode(in)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	out := &ArchivedSession{}
	if _, err := ArchivedSessionSchema().Avro.Decode(b, out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	out.ArchivedAt = out.ArchivedAt.UTC()
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
}
