package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tink-crypto/tink-go/v2/tink"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Encryption is what privacy.mode encrypt gives the archiver: every object is encrypted under
// the data key of the record's subject before it is uploaded. Nil Deps.Encryption archives the
// files as IDnow served them.
type Encryption struct {
	// Keys finds the data key a record names (privacy.keyName) in the keys topic.
	Keys *privacy.KeyFinder
	// Pepper names the objects (privacy.Pepper.ObjectName) and the key references of records
	// that name no data key.
	Pepper *privacy.Pepper
	// KeyScope is privacy.key_scope, for records that name no data key.
	KeyScope string
	// KeysTopic is topics.keys and KEKSource the KEK's description (privacy.HeaderKEK), for the
	// key records of data keys the archiver makes itself.
	KeysTopic string
	KEKSource string
	// KeysOpts are the client options (brokers, TLS, SASL) of the plain producer that commits
	// the data keys the archiver makes to topics.keys.
	KeysOpts []kgo.Opt
}

// dataKey is the data key a session's objects are encrypted under.
type dataKey struct {
	name string
	aead tink.AEAD
}

// errErasedSession marks a session whose data key was erased: it is not archived.
var errErasedSession = errors.New("the session's data key was erased")

// sessionKey returns the data key of es: the key its record names (the enricher encrypted its
// personal fields under it), or, for a record that names none (written before privacy.mode
// encrypt was turned on, or without any personal value), the subject's (or session's) current
// key, made when there is none and committed to the keys topic before any byte is encrypted
// under it. A named key that is erased, or for a record naming none a key reference with an
// erased key, returns errErasedSession: archiving evidence of an erased person would undo the
// erasure. Key-manager and keys-topic failures are retried until ctx ends.
func (a *Archiver) sessionKey(ctx context.Context, es *schemas.EnrichedSession) (*dataKey, error) {
	enc := a.deps.Encryption
	b := a.cfg.Retry.NewBackOff()
	for {
		k, err := a.sessionKeyOnce(ctx, es)
		if err == nil || errors.Is(err, errErasedSession) {
			return k, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.m.retries.WithLabelValues(stageKey).Inc()
		wait := b.NextBackOff()
		a.log.Warn("finding the session's data key failed; retrying", slog.String("session_id", es.Session.SessionID),
			slog.String("keys_topic", enc.KeysTopic), slog.Duration("wait", wait), slog.Any("err", err))
		if err := retry.Wait(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (a *Archiver) sessionKeyOnce(ctx context.Context, es *schemas.EnrichedSession) (*dataKey, error) {
	enc := a.deps.Encryption
	if es.Privacy != nil && es.Privacy.KeyName != nil && *es.Privacy.KeyName != "" {
		name := *es.Privacy.KeyName
		k, err := enc.Keys.Find(ctx, name)
		if errors.Is(err, privacy.ErrErased) {
			return nil, fmt.Errorf("%w: %w", errErasedSession, err)
		}
		if err != nil {
			return nil, fmt.Errorf("data key %s: %w", name, err)
		}
		return &dataKey{name: name, aead: k}, nil
	}
	ref := enc.Pepper.KeyRef(privacy.ScopeSession, es.Session.SessionID)
	if enc.KeyScope == privacy.ScopeSubject && es.Session.SubjectID != nil && *es.Session.SubjectID != "" {
		ref = enc.Pepper.KeyRef(privacy.ScopeSubject, *es.Session.SubjectID)
	}
	if err := enc.Keys.Fresh(ctx); err != nil {
		return nil, err
	}
	if enc.Keys.Ring().RefErased(ref) {
		// The subject was erased (`erase --subject` tombstoned its keys): a record naming no key
		// is taken to be from before the erasure (a lagging or replaying archiver), and a fresh
		// key would archive the erased person's evidence again, readable. A new session of the
		// person after the erasure with personal values names the new key the enricher made for
		// it and does not come here; one without any personal value does, and is not archived
		// either (docs/archive.md, Limits).
		return nil, fmt.Errorf("%w: a data key of %s was erased and the record names none", errErasedSession, ref)
	}
	name, k, rec, err := enc.Keys.Ring().ForWrite(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("data key for %s: %w", ref, err)
	}
	if rec != nil {
		if err := a.commitKey(ctx, rec); err != nil {
			return nil, err
		}
	}
	return &dataKey{name: name, aead: k}, nil
}

// commitKey produces a data key the archiver made to the keys topic and waits for it, on its
// own and not in the batch's transaction: that transaction commits only after the whole batch
// is archived (minutes with large videos), and `idnow-connector erase` would not see the key
// until then, so after an erasure completed the key would appear and make the subject's
// evidence readable again. Committed first, the key is in the keys topic before any byte is
// encrypted under it; a key whose session then fails to archive is an orphan, harmless.
func (a *Archiver) commitKey(ctx context.Context, rec *privacy.KeyRecord) error {
	enc := a.deps.Encryption
	r := &kgo.Record{Topic: enc.KeysTopic, Key: []byte(rec.Name), Value: rec.Wrapped,
		Headers: []kgo.RecordHeader{{Key: privacy.HeaderKEK, Value: []byte(enc.KEKSource)}}}
	if err := a.keyProducer.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("commit data key %s to %s: %w", rec.Name, enc.KeysTopic, err)
	}
	enc.Keys.Ring().Committed(rec.Name)
	return nil
}

// keyLive reports whether the data key name is still live (the keys topic is read again when
// the last read is older than the finder's maximum age). Keys-topic failures are retried until
// ctx ends.
func (a *Archiver) keyLive(ctx context.Context, name string) (bool, error) {
	b := a.cfg.Retry.NewBackOff()
	for {
		live, err := a.deps.Encryption.Keys.Live(ctx, name)
		if err == nil {
			return live, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		a.m.retries.WithLabelValues(stageKey).Inc()
		wait := b.NextBackOff()
		a.log.Warn("checking the session's data key failed; retrying", slog.String("key_name", name), slog.Duration("wait", wait), slog.Any("err", err))
		if err := retry.Wait(ctx, wait); err != nil {
			return false, err
		}
	}
}

// seal encrypts the plaintext digests of a session's files under its data key.
func seal(k *dataKey, sessionID string, files []SealedFile) (*ManifestEncryption, error) {
	raw, err := json.Marshal(files)
	if err != nil {
		return nil, fmt.Errorf("encode sealed digests: %w", err)
	}
	ct, err := k.aead.Encrypt(raw, privacy.ManifestAssociatedData(sessionID))
	if err != nil {
		return nil, fmt.Errorf("seal the plaintext digests: %w", err)
	}
	return &ManifestEncryption{Scheme: privacy.ObjectScheme, KeyName: k.name, Sealed: ct}, nil
}

// Unseal decrypts a version 2 manifest's plaintext digests with its data key.
func Unseal(m *Manifest, dek tink.AEAD) ([]SealedFile, error) {
	if m.Encryption == nil {
		return nil, errors.New("the manifest is not encrypted")
	}
	raw, err := dek.Decrypt(m.Encryption.Sealed, privacy.ManifestAssociatedData(m.SessionID))
	if err != nil {
		return nil, fmt.Errorf("unseal the plaintext digests of session %s (tampered, or moved from another manifest): %w", m.SessionID, err)
	}
	var files []SealedFile
	if err := json.Unmarshal(raw, &files); err != nil {
		return nil, fmt.Errorf("sealed digests do not parse: %w", err)
	}
	return files, nil
}
