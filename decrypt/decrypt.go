// Package decrypt is the connector's one public Go API: it lets a consumer of
// idnow.sessions.enriched read records written with privacy.mode encrypt, given access to the
// key-encryption key (the KMS key, or the development keyset file) and to the keys topic.
//
// The rest of the connector is internal on purpose (README, "Architecture decisions"); this
// package is designed as a small surface of its own: a Reader built from the same settings the
// connector uses (privacy.kek_url or privacy.kek_keyset_file, topics.keys), and Decrypt on the
// schemas.EnrichedSession a consumer decoded. A record whose subject was erased gives an error
// matching ErrErased, to be handled as "gone", not retried.
//
//	r, err := decrypt.NewReader(ctx, decrypt.Config{KEKURL: "awskms:///alias/idnow-kek", KeysTopic: "idnow.keys"},
//		kgo.SeedBrokers("kafka:9092"))
//	...
//	switch err := r.Decrypt(ctx, rec.Topic, &es); {
//	case errors.Is(err, decrypt.ErrErased): // the person was erased: keep the record without its personal fields
//	case err != nil: // tampered, or the key manager failed
//	}
//
// A consumer following a busy topic decrypts each polled batch with DecryptAll, which reads the
// keys topic at most once per batch for the keys it has not seen yet.
//
// The evidence archive (docs/archive.md) encrypts its objects under the same data keys;
// OpenObject reads one, fetched with any storage client:
//
//	obj, _ := bucket.NewReader(ctx, key, nil) // or an S3 GetObject body
//	plain, info, err := r.OpenObject(ctx, obj)
//	// io.Copy(dst, plain): every 1 MiB segment is authenticated as it is read
package decrypt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// ErrErased matches (errors.Is) the error of a record whose data key was erased by
// `idnow-connector erase`: its personal fields can never be read again.
var ErrErased = privacy.ErrErased

// Config says where the keys are.
type Config struct {
	// KEKURL is a gocloud.dev/secrets URL of the key-encryption key (awskms://, gcpkms://,
	// azurekeyvault://, hashivault://), as privacy.kek_url. Exclusive with KEKKeysetFile.
	KEKURL string
	// KEKKeysetFile is the development keyset file, as privacy.kek_keyset_file.
	KEKKeysetFile string
	// KeysTopic is topics.keys; default idnow.keys.
	KeysTopic string
	// KMSTimeout bounds one key-manager call; default 10s.
	KMSTimeout time.Duration
	// KeyCacheSize bounds the unwrapped keys kept in memory (about 1.4 KiB each); default 10000.
	KeyCacheSize int
}

// Reader decrypts EnrichedSessions. It is safe for concurrent use.
type Reader struct {
	kek  *privacy.KEK
	ring *privacy.Keyring
	keys *privacy.KeysTopic
	mu   chanMutex
}

// chanMutex serialises catch-ups while letting a waiting caller give up with its context.
type chanMutex chan struct{}

func (m chanMutex) lock(ctx context.Context) error {
	select {
	case m <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (m chanMutex) unlock() { <-m }

// NewReader opens the key-encryption key and reads the keys topic to its end. kafkaOpts are the
// client options that reach the cluster (seed brokers, TLS, SASL); the reader adds its own
// consumer settings (read_committed).
func NewReader(ctx context.Context, cfg Config, kafkaOpts ...kgo.Opt) (*Reader, error) {
	pc := privacy.DefaultConfig()
	pc.KEKURL, pc.KEKKeysetFile = cfg.KEKURL, cfg.KEKKeysetFile
	if cfg.KMSTimeout > 0 {
		pc.KMSTimeout = cfg.KMSTimeout
	}
	if cfg.KeyCacheSize > 0 {
		pc.KeyCacheSize = cfg.KeyCacheSize
	}
	topic := cfg.KeysTopic
	if topic == "" {
		topic = "idnow.keys"
	}
	kek, err := privacy.OpenKEK(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	ring, err := privacy.NewKeyring(kek, pc.KeyCacheSize)
	if err != nil {
		_ = kek.Close()
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	r := &Reader{kek: kek, ring: ring, keys: privacy.NewKeysTopic(slices.Clone(kafkaOpts), topic, ring, nil), mu: make(chanMutex, 1)}
	if err := r.Refresh(ctx); err != nil {
		_ = kek.Close()
		return nil, err
	}
	return r, nil
}

// Refresh reads what the keys topic gained since the last read (new keys, erasures). Decrypt
// calls it by itself when a record names a key it does not know yet.
func (r *Reader) Refresh(ctx context.Context) error {
	if err := r.mu.lock(ctx); err != nil {
		return err
	}
	defer r.mu.unlock()
	if _, err := r.keys.CatchUp(ctx); err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	return nil
}

// Decrypt fills es's personal fields from its encrypted values, in place. topic is the topic
// the connector wrote the record to (topics.enriched; part of the associated data, so keep the
// original name when mirroring). A record without encrypted values is left as it is. Errors:
// ErrErased when the subject or session was erased; an authentication error naming the field
// when a ciphertext was altered or moved from another record.
func (r *Reader) Decrypt(ctx context.Context, topic string, es *schemas.EnrichedSession) error {
	if es.Privacy == nil || len(es.Privacy.Encrypted) == 0 {
		return nil
	}
	if es.Privacy.KeyName != nil && !r.ring.Known(*es.Privacy.KeyName) {
		// Written after the last read of the keys topic (the key commits with the record).
		if err := r.Refresh(ctx); err != nil {
			return err
		}
	}
	if err := privacy.Open(r.ring, topic, es); err != nil {
		if errors.Is(err, privacy.ErrErased) {
			return err
		}
		return fmt.Errorf("decrypt: %w", err)
	}
	return nil
}

// DecryptAll decrypts a polled batch of records of topic in place, reading the keys topic at
// most once for the whole batch (a consumer following a busy topic meets many keys it has not
// seen yet; Decrypt would read the keys topic once for each). errs[i] is Decrypt's error for
// records[i]: nil, one matching ErrErased, or the reason it failed.
func (r *Reader) DecryptAll(ctx context.Context, topic string, records []*schemas.EnrichedSession) (errs []error) {
	for _, es := range records {
		if es.Privacy != nil && len(es.Privacy.Encrypted) > 0 && es.Privacy.KeyName != nil && !r.ring.Known(*es.Privacy.KeyName) {
			if err := r.Refresh(ctx); err != nil {
				errs = make([]error, len(records))
				for i := range errs {
					errs[i] = err
				}
				return errs
			}
			break
		}
	}
	errs = make([]error, len(records))
	for i, es := range records {
		if err := privacy.Open(r.ring, topic, es); err != nil {
			if !errors.Is(err, privacy.ErrErased) {
				err = fmt.Errorf("decrypt: %w", err)
			}
			errs[i] = err
		}
	}
	return errs
}

// ObjectInfo is the clear-text header of an encrypted archive object: the data key that
// encrypts it, the session and the vault file it holds.
type ObjectInfo struct {
	KeyName      string
	SessionID    string
	VaultEntryID string
}

// OpenObject reads the header of an encrypted archive object (a file the archiver wrote under
// privacy.mode encrypt, key ending in .tink) from obj, finds its data key, and returns the
// reader of its plaintext. Reading authenticates every segment: a changed, truncated or moved
// object makes Read fail rather than return altered bytes, so copy to a temporary file and
// keep it only when io.Copy succeeded (and, for evidence, its SHA-256 matches the manifest's
// sealed digest; `idnow-connector archive get` does both). An erased subject's object returns
// an error matching ErrErased.
func (r *Reader) OpenObject(ctx context.Context, obj io.Reader) (io.Reader, ObjectInfo, error) {
	h, err := privacy.ReadObjectHeader(obj)
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("decrypt: %w", err)
	}
	info := ObjectInfo{KeyName: h.KeyName, SessionID: h.SessionID, VaultEntryID: h.VaultEntryID}
	if !r.ring.Known(h.KeyName) {
		if err := r.Refresh(ctx); err != nil {
			return nil, info, err
		}
	}
	dek, err := r.ring.ForRead(h.KeyName)
	if err != nil {
		if errors.Is(err, privacy.ErrErased) {
			return nil, info, err
		}
		return nil, info, fmt.Errorf("decrypt: %w", err)
	}
	pr, err := h.Decrypt(obj, dek)
	if err != nil {
		return nil, info, fmt.Errorf("decrypt: %w", err)
	}
	return pr, info, nil
}

// ObjectAssociatedData returns the associated data of an archive object's keyset and stream
// ("idnow.archive.v1" NUL sessionId NUL vaultEntryId), for readers that call Tink themselves.
func ObjectAssociatedData(sessionID, vaultEntryID string) []byte {
	return privacy.ObjectAssociatedData(sessionID, vaultEntryID)
}

// Close releases the key manager connection.
func (r *Reader) Close() error { return r.kek.Close() }

// AssociatedData returns the AEAD associated data of the field at path of a record of sessionID
// written to topic (topic NUL sessionId NUL path), for readers that call Tink themselves.
func AssociatedData(topic, sessionID, path string) []byte {
	return privacy.AssociatedData(topic, sessionID, path)
}
