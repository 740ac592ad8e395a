package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/tink-crypto/tink-go/v2/tink"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// ProtectedPaths are the EnrichedSession fields (schema paths, without array indexes) whose
// classification is personal, the fields privacy.mode encrypt and drop act on. A test compares
// the list with the schema's "idnow.pii" classification, so a personal field added to the
// schema fails the build until it is handled here.
var ProtectedPaths = []string{
	"session.subjectId",
	"session.metadata",
	"session.results",
	"dataBlocks.content",
	"dataBlocks.basicIdentity.givenName",
	"dataBlocks.basicIdentity.familyName",
	"dataBlocks.basicIdentity.birthDate",
	"dataBlocks.basicIdentity.name",
	"dataBlocks.documentData.documentNumber",
	"dataBlocks.documentData.expiryDate",
	"dataBlocks.documentData.issuanceDate",
	"dataBlocks.documentData.issuingAuthority",
}

// PseudonymFields are the fields privacy.pseudonymize may name: identifiers and names that
// analytics count, join and deduplicate on.
var PseudonymFields = []string{
	"session.subjectId",
	"dataBlocks.basicIdentity.givenName",
	"dataBlocks.basicIdentity.familyName",
	"dataBlocks.basicIdentity.birthDate",
	"dataBlocks.basicIdentity.name",
	"dataBlocks.documentData.documentNumber",
}

// HeaderKEK is the keys-topic record header naming where the wrapping KEK lives (never key
// material), so an operator sees which key manager a reader needs.
const HeaderKEK = "idnow.kek"

// AssociatedData is the AEAD associated data of the ciphertext of the field at path in a record
// of sessionID written to topic: topic NUL sessionId NUL path. Topic names and paths contain no
// NUL, so the three parts are unambiguous. A ciphertext moved to another record, another field
// or another topic fails authentication.
func AssociatedData(topic, sessionID, path string) []byte {
	b := make([]byte, 0, len(topic)+len(sessionID)+len(path)+2)
	b = append(b, topic...)
	b = append(b, 0)
	b = append(b, sessionID...)
	b = append(b, 0)
	return append(b, path...)
}

// slot is one personal field of one record: its path with array indexes, its schema path, and
// where its value lives (a *string field, or the metadata map).
type slot struct {
	path, schemaPath string
	sp               **string
	meta             *map[string]string
}

// get returns the field's value as text, and whether it is set.
func (s slot) get() (string, bool) {
	if s.meta != nil {
		if len(*s.meta) == 0 {
			return "", false
		}
		b, err := json.Marshal(*s.meta)
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	if *s.sp == nil {
		return "", false
	}
	return **s.sp, true
}

// set replaces the field's value; nil clears it (an empty map for metadata).
func (s slot) set(v *string) error {
	if s.meta == nil {
		*s.sp = v
		return nil
	}
	if v == nil {
		*s.meta = map[string]string{}
		return nil
	}
	m := map[string]string{}
	if err := json.Unmarshal([]byte(*v), &m); err != nil {
		return fmt.Errorf("session.metadata is not a JSON object of strings: %w", err)
	}
	*s.meta = m
	return nil
}

// Field names inside a data block, in slot order, and their schema paths.
var (
	identityFields = [...]string{"givenName", "familyName", "birthDate", "name"}
	documentFields = [...]string{"documentNumber", "expiryDate", "issuanceDate", "issuingAuthority"}
)

// blockPaths caches the indexed paths of the first data blocks ("dataBlocks[3].content", ...),
// so a record does not build them again: content, then identityFields, then documentFields.
var blockPaths = func() [][9]string {
	out := make([][9]string, 32)
	for i := range out {
		out[i] = makeBlockPaths(i)
	}
	return out
}()

func makeBlockPaths(i int) [9]string {
	pre := "dataBlocks[" + strconv.Itoa(i) + "]."
	var p [9]string
	p[0] = pre + "content"
	for j, f := range identityFields {
		p[1+j] = pre + "basicIdentity." + f
	}
	for j, f := range documentFields {
		p[5+j] = pre + "documentData." + f
	}
	return p
}

// slots lists the personal fields of es, in a fixed order. Optional records (basicIdentity,
// documentData) are listed only when present.
func slots(es *schemas.EnrichedSession) []slot {
	s := &es.Session
	out := make([]slot, 0, 3+9*len(es.DataBlocks))
	out = append(out,
		slot{path: "session.subjectId", schemaPath: "session.subjectId", sp: &s.SubjectID},
		slot{path: "session.metadata", schemaPath: "session.metadata", meta: &s.Metadata},
		slot{path: "session.results", schemaPath: "session.results", sp: &s.Results})
	for i := range es.DataBlocks {
		b := &es.DataBlocks[i]
		var p [9]string
		if i < len(blockPaths) {
			p = blockPaths[i]
		} else {
			p = makeBlockPaths(i)
		}
		out = append(out, slot{path: p[0], schemaPath: "dataBlocks.content", sp: &b.Content})
		if bi := b.BasicIdentity; bi != nil {
			out = append(out,
				slot{path: p[1], schemaPath: "dataBlocks.basicIdentity.givenName", sp: &bi.GivenName},
				slot{path: p[2], schemaPath: "dataBlocks.basicIdentity.familyName", sp: &bi.FamilyName},
				slot{path: p[3], schemaPath: "dataBlocks.basicIdentity.birthDate", sp: &bi.BirthDate},
				slot{path: p[4], schemaPath: "dataBlocks.basicIdentity.name", sp: &bi.Name})
		}
		if dd := b.DocumentData; dd != nil {
			out = append(out,
				slot{path: p[5], schemaPath: "dataBlocks.documentData.documentNumber", sp: &dd.DocumentNumber},
				slot{path: p[6], schemaPath: "dataBlocks.documentData.expiryDate", sp: &dd.ExpiryDate},
				slot{path: p[7], schemaPath: "dataBlocks.documentData.issuanceDate", sp: &dd.IssuanceDate},
				slot{path: p[8], schemaPath: "dataBlocks.documentData.issuingAuthority", sp: &dd.IssuingAuthority})
		}
	}
	return out
}

// Protector applies privacy.mode and privacy.pseudonymize to EnrichedSessions before they are
// encoded. It is safe for concurrent use.
type Protector struct {
	mode, scope string
	keysTopic   string
	ring        *Keyring
	pepper      *Pepper
	pseudo      map[string]bool
	kekSource   string
}

// ProtectorDeps are what a Protector needs besides its Config: Ring and Pepper are required
// when cfg.NeedsKeys (Ring for encrypt, Pepper for encrypt and pseudonyms); KeysTopic names
// topics.keys for the key records it returns.
type ProtectorDeps struct {
	Ring      *Keyring
	Pepper    *Pepper
	KeysTopic string
}

// NewProtector validates cfg and returns a Protector.
func NewProtector(cfg Config, d ProtectorDeps) (*Protector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("privacy config: %w", err)
	}
	if cfg.NeedsKeys() && d.Pepper == nil {
		return nil, errors.New("privacy: a pepper is required for encrypt mode and pseudonyms")
	}
	if cfg.Mode == schemas.PrivacyEncrypt && (d.Ring == nil || d.KeysTopic == "") {
		return nil, errors.New("privacy: encrypt mode needs a keyring and topics.keys")
	}
	p := &Protector{mode: cfg.Mode, scope: cfg.KeyScope, keysTopic: d.KeysTopic, ring: d.Ring, pepper: d.Pepper, pseudo: map[string]bool{}}
	for _, f := range cfg.Pseudonymize {
		p.pseudo[f] = true
	}
	if d.Ring != nil {
		p.kekSource = d.Ring.kek.Source
	}
	return p, nil
}

// Mode returns privacy.mode.
func (p *Protector) Mode() string { return p.mode }

// Protect rewrites es in place: pseudonyms for the configured fields, then, by mode, personal
// values encrypted into es.Privacy.Encrypted (encrypt) or removed (drop), their fields left
// null (empty for maps). topic is the topic the record is written to (part of the associated
// data). It returns the keys-topic records of data keys this process made and has not seen
// committed yet: produce them in the same transaction as the record.
func (p *Protector) Protect(ctx context.Context, topic string, es *schemas.EnrichedSession) ([]*kgo.Record, error) {
	if p.mode == schemas.PrivacyPlain && len(p.pseudo) == 0 {
		return nil, nil
	}
	env := &schemas.PrivacyEnvelope{Mode: p.mode, Encrypted: map[string][]byte{}, Pseudonyms: map[string]string{}}
	present := slots(es)
	for _, s := range present {
		if v, ok := s.get(); ok && p.pseudo[s.schemaPath] {
			env.Pseudonyms[s.path] = p.pepper.Pseudonym(s.schemaPath, v)
		}
	}
	var recs []*kgo.Record
	switch p.mode {
	case schemas.PrivacyDrop:
		for _, s := range present {
			if err := s.set(nil); err != nil {
				return nil, err
			}
		}
	case schemas.PrivacyEncrypt:
		var (
			a   tink.AEAD
			rec *KeyRecord
		)
		for _, s := range present {
			v, ok := s.get()
			if !ok {
				continue
			}
			if a == nil {
				ref := p.keyRef(es)
				name, ka, r, err := p.ring.ForWrite(ctx, ref)
				if err != nil {
					return nil, fmt.Errorf("data key: %w", err)
				}
				a, rec = ka, r
				env.KeyName = &name
			}
			ct, err := a.Encrypt([]byte(v), AssociatedData(topic, es.Session.SessionID, s.path))
			if err != nil {
				return nil, fmt.Errorf("encrypt %s: %w", s.path, err)
			}
			env.Encrypted[s.path] = ct
			if err := s.set(nil); err != nil {
				return nil, err
			}
		}
		if rec != nil {
			recs = append(recs, &kgo.Record{Topic: p.keysTopic, Key: []byte(rec.Name), Value: rec.Wrapped,
				Headers: []kgo.RecordHeader{{Key: HeaderKEK, Value: []byte(p.kekSource)}}})
		}
	}
	es.Privacy = env
	return recs, nil
}

// keyRef is the key reference of the record: its subject's under ScopeSubject when the session
// has a subjectId, else its session's.
func (p *Protector) keyRef(es *schemas.EnrichedSession) string {
	if p.scope == ScopeSubject && es.Session.SubjectID != nil && *es.Session.SubjectID != "" {
		return p.pepper.KeyRef(ScopeSubject, *es.Session.SubjectID)
	}
	return p.pepper.KeyRef(ScopeSession, es.Session.SessionID)
}

// DropEncrypted removes the encrypted values and pseudonyms whose path keep reports false, for a
// record shortened to fit the output limit (enrichment.truncation).
func DropEncrypted(es *schemas.EnrichedSession, keep func(path string) bool) {
	if es.Privacy == nil {
		return
	}
	maps.DeleteFunc(es.Privacy.Encrypted, func(p string, _ []byte) bool { return !keep(p) })
	maps.DeleteFunc(es.Privacy.Pseudonyms, func(p string, _ string) bool { return !keep(p) })
	if len(es.Privacy.Encrypted) == 0 {
		es.Privacy.KeyName = nil
	}
}

// KeyReader finds data keys by name for Open; *Keyring satisfies it.
type KeyReader interface {
	ForRead(name string) (tink.AEAD, error)
}

// Open decrypts es's encrypted values in place (read from topic) and clears the envelope's
// ciphertexts. A record whose key was erased returns an *ErasedError (errors.Is ErrErased) and
// is left as it was; a tampered ciphertext, or one moved from another record, field or topic,
// fails authentication with an error naming the field. Records without encrypted values are
// returned unchanged.
func Open(keys KeyReader, topic string, es *schemas.EnrichedSession) error {
	env := es.Privacy
	if env == nil || len(env.Encrypted) == 0 {
		return nil
	}
	if env.KeyName == nil {
		return errors.New("privacy.encrypted holds values but privacy.keyName is null")
	}
	a, err := keys.ForRead(*env.KeyName)
	if err != nil {
		return err
	}
	byPath := map[string]slot{}
	for _, s := range slots(es) {
		byPath[s.path] = s
	}
	paths := slices.Sorted(maps.Keys(env.Encrypted))
	plain := make(map[string]string, len(paths))
	for _, path := range paths {
		if _, ok := byPath[path]; !ok {
			return fmt.Errorf("privacy.encrypted names %q, which is no personal field of this record (written by a newer connector?)", path)
		}
		pt, err := a.Decrypt(env.Encrypted[path], AssociatedData(topic, es.Session.SessionID, path))
		if err != nil {
			return fmt.Errorf("decrypt %s of session %s: authentication failed (tampered, or moved from another record): %w", path, es.Session.SessionID, err)
		}
		plain[path] = string(pt)
	}
	for _, path := range paths {
		v := plain[path]
		if err := byPath[path].set(&v); err != nil {
			return err
		}
	}
	env.Encrypted = map[string][]byte{}
	return nil
}
