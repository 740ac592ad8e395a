package schemas

import (
	_ "embed"
	"time"
)

//go:embed archived_session.avsc
var archivedSessionAVSC string

// ArchivedSessionName is the full name of the ArchivedSession record schema.
const ArchivedSessionName = "io.idnow.connector.v1.ArchivedSession"

var archivedSession = mustSchema(archivedSessionAVSC, ArchivedSessionName)

// ArchivedSessionSchema returns the current ArchivedSession schema (the records of topics.archived).
func ArchivedSessionSchema() Schema { return archivedSession }

// ArchivedSession is one session's evidence archived in object storage
// (schemas/archived_session.avsc).
type ArchivedSession struct {
	SessionID            string    `avro:"sessionId" json:"sessionId"`
	Environment          string    `avro:"environment" json:"environment"`
	SessionStatus        string    `avro:"sessionStatus" json:"sessionStatus"`
	SubjectID            *string   `avro:"subjectId" json:"subjectId,omitempty"`
	Storage              string    `avro:"storage" json:"storage"`
	ManifestKey          string    `avro:"manifestKey" json:"manifestKey"`
	ManifestSHA256       string    `avro:"manifestSha256" json:"manifestSha256"`
	ManifestSigned       bool      `avro:"manifestSigned" json:"manifestSigned"`
	SigningKeyID         *string   `avro:"signingKeyId" json:"signingKeyId,omitempty"`
	FilesArchived        int32     `avro:"filesArchived" json:"filesArchived"`
	FilesMissing         int32     `avro:"filesMissing" json:"filesMissing"`
	BytesArchived        int64     `avro:"bytesArchived" json:"bytesArchived"`
	EnrichedEventID      string    `avro:"enrichedEventId" json:"enrichedEventId"`
	EnrichedRecordSHA256 string    `avro:"enrichedRecordSha256" json:"enrichedRecordSha256"`
	ArchivedAt           time.Time `avro:"archivedAt" json:"archivedAt"`
	ConnectorVersion     string    `avro:"connectorVersion" json:"connectorVersion"`
}
