// Package schemas holds the project's Avro data contract: the .avsc files (embedded), their parsed
// forms and the Go types that encode to and decode from them.
//
// The schemas are a public contract read by consumers in any language. Every released version is
// kept under history/<file>/v<N>.avsc (embedded, see history.go), and every change must stay
// FULL-compatible (backward and forward) with all of them; docs/data-contract.md has the policy,
// history_test.go and `make interop` (Apache Avro for Java) enforce it.
package schemas

import (
	_ "embed"
	"fmt"
	"time"

	"github.com/twmb/avro"
)

//go:embed session_event.avsc
var sessionEventAVSC string

//go:embed enriched_session.avsc
var enrichedSessionAVSC string

// Full names of the record schemas; they are also written into the records' schema header.
const (
	SessionEventName    = "io.idnow.connector.v1.SessionEvent"
	EnrichedSessionName = "io.idnow.connector.v1.EnrichedSession"
)

// Delivery variants recorded in SessionEvent.DeliveryVariant.
const (
	DeliveryJWTBody         = "jwt_body"
	DeliverySignatureHeader = "signature_header"
)

// Schema pairs a parsed Avro schema with its JSON text, full name and released versions.
type Schema struct {
	Avro     *avro.Schema
	Text     string
	FullName string
	// History holds every released version of the record, oldest first (history/<file>/vN.avsc).
	// Decoders resolve records written with any of them into Avro; the last one has the same
	// wire form as Avro (history_test.go checks this), so it differs at most in docs.
	History []Version
}

// SessionEventSchema returns the current SessionEvent schema.
func SessionEventSchema() Schema { return sessionEvent }

// EnrichedSessionSchema returns the current EnrichedSession schema.
func EnrichedSessionSchema() Schema { return enrichedSession }

var (
	sessionEvent    = mustSchema(sessionEventAVSC, SessionEventName)
	enrichedSession = mustSchema(enrichedSessionAVSC, EnrichedSessionName)
)

// mustSchema parses an embedded schema; a failure is a build defect caught by every test run.
func mustSchema(text, fullName string) Schema {
	s, err := avro.Parse(text)
	if err != nil {
		panic(fmt.Sprintf("schemas: embedded schema %s does not parse: %v", fullName, err))
	}
	return Schema{Avro: s, Text: text, FullName: fullName, History: history[fullName]}
}

// SessionEvent is one verified IDnow webhook event (schemas/session_event.avsc).
type SessionEvent struct {
	EventID         string     `avro:"eventId" json:"eventId"`
	EventName       string     `avro:"eventName" json:"eventName"`
	EventVersion    *string    `avro:"eventVersion" json:"eventVersion,omitempty"`
	EventSequence   *int64     `avro:"eventSequence" json:"eventSequence,omitempty"`
	EventDeliverID  *string    `avro:"eventDeliverId" json:"eventDeliverId,omitempty"`
	CreatedAt       *time.Time `avro:"createdAt" json:"createdAt,omitempty"`
	Environment     *string    `avro:"environment" json:"environment,omitempty"`
	FlowID          *string    `avro:"flowId" json:"flowId,omitempty"`
	SessionID       string     `avro:"sessionId" json:"sessionId"`
	SessionStatus   *string    `avro:"sessionStatus" json:"sessionStatus,omitempty"`
	LastStepID      *string    `avro:"lastStepId" json:"lastStepId,omitempty"`
	LastStepType    *string    `avro:"lastStepType" json:"lastStepType,omitempty"`
	LastStepStatus  *string    `avro:"lastStepStatus" json:"lastStepStatus,omitempty"`
	ReceivedAt      time.Time  `avro:"receivedAt" json:"receivedAt"`
	DeliveryVariant string     `avro:"deliveryVariant" json:"deliveryVariant"`
	SignedToken     *string    `avro:"signedToken" json:"signedToken,omitempty"`
	// Origin is OriginWebhook or OriginReconciliation.
	Origin string `avro:"origin" json:"origin"`
}

// EnrichedSession is a session's state read from the IDnow API after an event
// (schemas/enriched_session.avsc).
type EnrichedSession struct {
	Event             TriggeringEvent `avro:"event" json:"event"`
	Session           SessionDetails  `avro:"session" json:"session"`
	DataBlocksFetched bool            `avro:"dataBlocksFetched" json:"dataBlocksFetched"`
	DataBlocks        []DataBlock     `avro:"dataBlocks" json:"dataBlocks"`
	FileRefs          []FileRef       `avro:"fileRefs" json:"fileRefs"`
	Enrichment        EnrichmentInfo  `avro:"enrichment" json:"enrichment"`
	// OutOfOrder is true when the triggering event's status ranks below one already enriched.
	OutOfOrder bool `avro:"outOfOrder" json:"outOfOrder"`
	// Privacy says how privacy.mode protected the personal fields; nil in plain mode without
	// pseudonyms (internal/privacy, docs/privacy.md).
	Privacy *PrivacyEnvelope `avro:"privacy" json:"privacy,omitempty"`
}

// PrivacyEnvelope carries the encrypted values and pseudonyms of a record's personal fields.
type PrivacyEnvelope struct {
	// Mode is the privacy.mode that wrote the record: encrypt, drop or plain.
	Mode string `avro:"mode" json:"mode"`
	// KeyName is the topics.keys record key of the data keyset; nil when nothing was encrypted.
	KeyName *string `avro:"keyName" json:"keyName,omitempty"`
	// Encrypted maps a field path to the Tink AEAD ciphertext of its value.
	Encrypted map[string][]byte `avro:"encrypted" json:"encrypted"`
	// Pseudonyms maps a field path to the HMAC-SHA-256 pseudonym of its value, hex.
	Pseudonyms map[string]string `avro:"pseudonyms" json:"pseudonyms"`
}

// Values of PrivacyEnvelope.Mode (and of privacy.mode).
const (
	PrivacyPlain   = "plain"
	PrivacyEncrypt = "encrypt"
	PrivacyDrop    = "drop"
)

// TriggeringEvent identifies the SessionEvent an EnrichedSession answers.
type TriggeringEvent struct {
	EventID       string     `avro:"eventId" json:"eventId"`
	EventName     string     `avro:"eventName" json:"eventName"`
	EventSequence *int64     `avro:"eventSequence" json:"eventSequence,omitempty"`
	SessionStatus *string    `avro:"sessionStatus" json:"sessionStatus,omitempty"`
	CreatedAt     *time.Time `avro:"createdAt" json:"createdAt,omitempty"`
	ReceivedAt    time.Time  `avro:"receivedAt" json:"receivedAt"`
	Origin        string     `avro:"origin" json:"origin"`
}

// SessionDetails is the session as the IDnow API reported it.
type SessionDetails struct {
	SessionID   string            `avro:"sessionId" json:"sessionId"`
	FlowID      *string           `avro:"flowId" json:"flowId,omitempty"`
	FlowVersion *string           `avro:"flowVersion" json:"flowVersion,omitempty"`
	Environment *string           `avro:"environment" json:"environment,omitempty"`
	Status      string            `avro:"status" json:"status"`
	Terminal    bool              `avro:"terminal" json:"terminal"`
	Outcome     *string           `avro:"outcome" json:"outcome,omitempty"`
	OutcomeRaw  *string           `avro:"outcomeRaw" json:"outcomeRaw,omitempty"`
	SubjectID   *string           `avro:"subjectId" json:"subjectId,omitempty"`
	CreatedAt   *time.Time        `avro:"createdAt" json:"createdAt,omitempty"`
	StartedAt   *time.Time        `avro:"startedAt" json:"startedAt,omitempty"`
	UpdatedAt   *time.Time        `avro:"updatedAt" json:"updatedAt,omitempty"`
	CompletedAt *time.Time        `avro:"completedAt" json:"completedAt,omitempty"`
	ExpiresAt   *time.Time        `avro:"expiresAt" json:"expiresAt,omitempty"`
	LastStep    *LastStep         `avro:"lastStep" json:"lastStep,omitempty"`
	Metadata    map[string]string `avro:"metadata" json:"metadata"`
	Results     *string           `avro:"results" json:"results,omitempty"`
}

// LastStep is the session's last step in either of IDnow's two shapes.
type LastStep struct {
	StepID          *string `avro:"stepId" json:"stepId,omitempty"`
	StepDescription *string `avro:"stepDescription" json:"stepDescription,omitempty"`
	StepName        *string `avro:"stepName" json:"stepName,omitempty"`
	StepType        *string `avro:"stepType" json:"stepType,omitempty"`
	Verdict         *string `avro:"verdict" json:"verdict,omitempty"`
}

// DataBlock is one data block with its content as JSON text and typed well-known fields.
type DataBlock struct {
	ID            *string        `avro:"id" json:"id,omitempty"`
	Type          string         `avro:"type" json:"type"`
	StepID        *string        `avro:"stepId" json:"stepId,omitempty"`
	Clock         *int64         `avro:"clock" json:"clock,omitempty"`
	CreatedAt     *time.Time     `avro:"createdAt" json:"createdAt,omitempty"`
	Status        string         `avro:"status" json:"status"`
	Content       *string        `avro:"content" json:"content,omitempty"`
	BasicIdentity *BasicIdentity `avro:"basicIdentity" json:"basicIdentity,omitempty"`
	DocumentData  *DocumentData  `avro:"documentData" json:"documentData,omitempty"`
}

// BasicIdentity holds the typed fields of a basicIdentity block.
type BasicIdentity struct {
	GivenName  *string `avro:"givenName" json:"givenName,omitempty"`
	FamilyName *string `avro:"familyName" json:"familyName,omitempty"`
	BirthDate  *string `avro:"birthDate" json:"birthDate,omitempty"`
	Name       *string `avro:"name" json:"name,omitempty"`
}

// DocumentData holds the typed fields of a documentData block.
type DocumentData struct {
	DocumentType     *string `avro:"documentType" json:"documentType,omitempty"`
	DocumentNumber   *string `avro:"documentNumber" json:"documentNumber,omitempty"`
	ExpiryDate       *string `avro:"expiryDate" json:"expiryDate,omitempty"`
	IssuanceDate     *string `avro:"issuanceDate" json:"issuanceDate,omitempty"`
	IssuingCountry   *string `avro:"issuingCountry" json:"issuingCountry,omitempty"`
	IssuingAuthority *string `avro:"issuingAuthority" json:"issuingAuthority,omitempty"`
}

// FileRef is a vault file reference found inside a data block.
type FileRef struct {
	VaultEntryID  string  `avro:"vaultEntryId" json:"vaultEntryId"`
	DataBlockID   *string `avro:"dataBlockId" json:"dataBlockId,omitempty"`
	DataBlockType string  `avro:"dataBlockType" json:"dataBlockType"`
	JSONPath      string  `avro:"jsonPath" json:"jsonPath"`
}

// EnrichmentInfo records how and when the enrichment was made.
type EnrichmentInfo struct {
	EnrichedAt        time.Time `avro:"enrichedAt" json:"enrichedAt"`
	ConnectorVersion  string    `avro:"connectorVersion" json:"connectorVersion"`
	DataBlocksContent string    `avro:"dataBlocksContent" json:"dataBlocksContent"`
	// Truncation is nil for a complete record, else TruncationContentDropped or
	// TruncationMetadataOnly: what was left out to fit the output topic's record size limit.
	Truncation *string `avro:"truncation" json:"truncation,omitempty"`
}

// Values of EnrichmentInfo.Truncation, in the order the enricher degrades an oversized record.
const (
	// TruncationContentDropped: every data block's content JSON was removed; typed fields, block
	// metadata and file references were kept.
	TruncationContentDropped = "content_dropped"
	// TruncationMetadataOnly: data blocks and file references were removed; the triggering event,
	// the session details and the enrichment info were kept.
	TruncationMetadataOnly = "metadata_only"
)
