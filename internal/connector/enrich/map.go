package enrich

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/jsonscan"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Map builds the EnrichedSession for event ev from the session details s and, when fetched is
// true, the data blocks the API returned. policy decides which blocks are kept and whether their
// content ships; now is the enrichment time and version the connector version.
//
// Times are truncated to milliseconds in UTC, the precision of Avro timestamp-millis, so the
// result equals what a consumer decodes. Blocks with status DELETED carry no content and no
// typed fields. With content none, only metadata and the typed fields that hold no personal data
// (documentData's documentType, issuingCountry and issuingAuthority) ship; file references are
// vault ids, not personal data, and are listed under both policies.
func Map(ev *schemas.SessionEvent, s *idnow.Session, blocks []idnow.DataBlock, fetched bool, policy DataBlocksConfig, now time.Time, version string) *schemas.EnrichedSession {
	content := policy.Content
	if content == "" {
		content = ContentFull
	}
	out := &schemas.EnrichedSession{
		Event: schemas.TriggeringEvent{
			EventID:       ev.EventID,
			EventName:     ev.EventName,
			EventSequence: ev.EventSequence,
			SessionStatus: ev.SessionStatus,
			CreatedAt:     msPtr(ev.CreatedAt),
			ReceivedAt:    ms(ev.ReceivedAt),
			Origin:        origin(ev.Origin),
		},
		Session:           mapSession(ev, s),
		DataBlocksFetched: fetched,
		DataBlocks:        []schemas.DataBlock{},
		FileRefs:          []schemas.FileRef{},
		Enrichment: schemas.EnrichmentInfo{
			EnrichedAt:        ms(now),
			ConnectorVersion:  version,
			DataBlocksContent: content,
		},
	}
	if !fetched {
		return out
	}
	// Sized once: appending block by block reallocated both lists several times per event.
	refs := 0
	for i := range blocks {
		refs += len(blocks[i].FileRefs)
	}
	out.DataBlocks = make([]schemas.DataBlock, 0, len(blocks))
	out.FileRefs = make([]schemas.FileRef, 0, refs)
	for _, b := range blocks {
		if !policy.includes(b.Type) {
			continue
		}
		db := schemas.DataBlock{
			ID:        str(b.ID),
			Type:      b.Type,
			StepID:    str(b.StepID),
			CreatedAt: msPtr(timePtr(b.CreatedAt)),
			Status:    b.Status,
		}
		if b.Clock != 0 {
			clock := b.Clock
			db.Clock = &clock
		}
		deleted := strings.EqualFold(b.Status, idnow.DataBlockDeleted) || len(b.Content) == 0
		if !deleted {
			// Only two block types have typed fields; the others' content is not parsed.
			switch {
			case strings.EqualFold(b.Type, "basicIdentity") && content == ContentFull:
				fields := contentFields(b.Content)
				db.BasicIdentity = &schemas.BasicIdentity{
					GivenName: fields.get("givenName"), FamilyName: fields.get("familyName"),
					BirthDate: fields.get("birthDate"), Name: fields.get("name"),
				}
			case strings.EqualFold(b.Type, "documentData"):
				fields := contentFields(b.Content)
				dd := &schemas.DocumentData{
					DocumentType: fields.get("documentType"), IssuingCountry: fields.get("issuingCountry"),
					IssuingAuthority: fields.get("issuingAuthority"),
				}
				if content == ContentFull {
					dd.DocumentNumber = fields.get("documentNumber")
					dd.ExpiryDate = fields.get("expiryDate")
					dd.IssuanceDate = fields.get("issuanceDate")
				}
				db.DocumentData = dd
			}
			if content == ContentFull {
				db.Content = str(compactJSON(b.Content))
			}
			for _, r := range b.FileRefs {
				out.FileRefs = append(out.FileRefs, schemas.FileRef{
					VaultEntryID: r.VaultEntryID, DataBlockID: str(b.ID), DataBlockType: b.Type, JSONPath: r.JSONPath,
				})
			}
		}
		out.DataBlocks = append(out.DataBlocks, db)
	}
	return out
}

func mapSession(ev *schemas.SessionEvent, s *idnow.Session) schemas.SessionDetails {
	d := schemas.SessionDetails{
		SessionID:   s.SessionID,
		FlowID:      str(s.FlowID),
		FlowVersion: str(s.FlowVersion),
		Environment: str(s.Environment),
		Status:      string(s.Status),
		Terminal:    s.Status.IsTerminal(),
		SubjectID:   str(s.SubjectID),
		CreatedAt:   msPtr(timePtr(s.CreatedAt)),
		StartedAt:   msPtr(s.StartedAt),
		UpdatedAt:   msPtr(timePtr(s.UpdatedAt)),
		CompletedAt: msPtr(s.CompletedAt),
		ExpiresAt:   msPtr(timePtr(s.ExpiresAt)),
		Metadata:    map[string]string{},
	}
	if d.SessionID == "" {
		d.SessionID = ev.SessionID
	}
	if s.Outcome != "" {
		d.Outcome = str(s.NormalizedOutcome())
		d.OutcomeRaw = str(s.Outcome)
	}
	if l := s.LastStep; l != nil {
		d.LastStep = &schemas.LastStep{
			StepID: str(l.StepID), StepDescription: str(l.StepDescription),
			StepName: str(l.StepName), StepType: str(l.StepType), Verdict: str(l.Verdict),
		}
	}
	for k, v := range s.Metadata {
		d.Metadata[k] = v
	}
	if len(s.Results) > 0 {
		d.Results = str(compactJSON(s.Results))
	}
	return d
}

// compactJSON returns raw without insignificant whitespace, so equal content gives equal text
// whatever the API's formatting; text that is not JSON passes through unchanged. Answers are
// usually compact already, and then raw is the result without a validating pass over it.
func compactJSON(raw json.RawMessage) string {
	if jsonscan.IsCompact(raw) {
		return string(raw)
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

// blockFields is a block's top-level content members in document order, kept raw until a
// typed field asks for one.
// blockFields are the top-level members of a block's content, in document order.
type blockFields []jsonscan.Member

// contentFields reads the top level of a block's content; content that is not a JSON object
// (IDnow documents objects only) yields no typed fields rather than an error, as the raw content
// still ships. It reads what decoding into map[string]json.RawMessage would, without building
// the map.
func contentFields(content json.RawMessage) blockFields {
	if !jsonscan.Valid(content) {
		return nil
	}
	f, err := jsonscan.ObjectMembers(nil, content)
	if err != nil {
		return nil
	}
	return f
}

// get returns a typed field as text: strings as they are, numbers and booleans as their JSON
// text (builds disagree on types), nil for absent, null or structured values. Of a key given
// twice the last value counts, as when decoding into a map.
func (f blockFields) get(key string) *string {
	var raw json.RawMessage
	found := false
	for i := len(f) - 1; i >= 0 && !found; i-- {
		if string(f[i].Key) == key {
			raw, found = f[i].Value, true
		}
	}
	if !found {
		return nil
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == '{' || raw[0] == '[' || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		s, err := jsonscan.Unquote(raw)
		if err != nil {
			return nil
		}
		return &s
	}
	s := string(raw)
	if _, err := strconv.ParseFloat(s, 64); err != nil && s != "true" && s != "false" {
		return nil
	}
	return &s
}

// str returns nil for the empty string, so absent fields encode as Avro null.
func str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func msPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	v := ms(*t)
	return &v
}

// origin names where the event came from; records written before the field existed (or by a
// producer that left it empty) are webhooks, as the schema's default says.
func origin(o string) string {
	if o == "" {
		return schemas.OriginWebhook
	}
	return o
}
