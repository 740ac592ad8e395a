package privacy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// ErrErased is returned (wrapped in an *ErasedError) for a record whose data key was erased: its
// tombstone is in the keys topic, or the key is gone from it altogether (compaction removed the
// tombstone). The record's personal fields can never be read again; that is the erasure.
var ErrErased = errors.New("data key erased")

// ErasedError names the erased key.
type ErasedError struct{ KeyName string }

func (e *ErasedError) Error() string { return fmt.Sprintf("data key %s was erased", e.KeyName) }

// Unwrap makes errors.Is(err, ErrErased) true.
func (e *ErasedError) Unwrap() error { return ErrErased }

// KeyRecord is a wrapped data keyset as it is stored in the keys topic: record key Name
// (<keyRef>/<key id>), value Wrapped (Tink's binary EncryptedKeyset, wrapped by the KEK).
type KeyRecord struct {
	Name    string
	Wrapped []byte
}

// RefOf returns the key reference part of a key name (everything before the last '/').
func RefOf(name string) string {
	ref, _, _ := strings.Cut(name, "/")
	return ref
}

// Keyring holds the data keys known from the keys topic and the ones this process created and
// has not seen committed yet. It is safe for concurrent use.
//
// Concurrency between enricher members: input is partitioned by session, not by subject, so two
// members can create a key for the same subject at the same time. Each key therefore has its
// own record key, <keyRef>/<random key id>: both survive compaction and both stay readable
// (a record names its key in privacy.keyName). Erasure tombstones every key of the reference.
type Keyring struct {
	kek *KEK

	mu      sync.Mutex
	byRef   map[string][]string // live key names per key reference, oldest known first
	wrapped map[string][]byte   // live key name -> wrapped keyset
	pending map[string]bool     // created here, not yet seen in the topic
	erased  map[string]bool     // seen tombstoned
	// erasedRefs are the key references with a key seen tombstoned: the subject (or session)
	// was erased, whatever keys it was given since.
	erasedRefs map[string]bool
	// creating holds a channel per key reference whose key is being made, so concurrent
	// events of one subject in this process make one key.
	creating map[string]chan struct{}
	aeads    *lru.Cache[string, tink.AEAD]

	ready     chan struct{}
	readyOnce sync.Once
	metrics   *keyMetrics // nil until Instrument
}

// NewKeyring returns an empty keyring unwrapping with kek and keeping at most cacheSize
// unwrapped keys in memory.
func NewKeyring(kek *KEK, cacheSize int) (*Keyring, error) {
	if kek == nil {
		return nil, errors.New("privacy: NewKeyring needs a key-encryption key")
	}
	c, err := lru.New[string, tink.AEAD](max(cacheSize, 1))
	if err != nil {
		return nil, fmt.Errorf("key cache: %w", err)
	}
	return &Keyring{kek: kek, byRef: map[string][]string{}, wrapped: map[string][]byte{}, pending: map[string]bool{},
		erased: map[string]bool{}, erasedRefs: map[string]bool{}, creating: map[string]chan struct{}{}, aeads: c, ready: make(chan struct{})}, nil
}

// MarkReady says the keys topic was read to its end once; ForWrite waits for it, so a process
// that just started does not make new keys for subjects that already have one.
func (k *Keyring) MarkReady() { k.readyOnce.Do(func() { close(k.ready) }) }

// Apply records one keys-topic record: a wrapped key, or a tombstone (nil value) erasing it.
func (k *Keyring) Apply(name string, value []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ref := RefOf(name)
	if value == nil {
		delete(k.wrapped, name)
		delete(k.pending, name)
		k.byRef[ref] = slices.DeleteFunc(k.byRef[ref], func(n string) bool { return n == name })
		if len(k.byRef[ref]) == 0 {
			delete(k.byRef, ref)
		}
		if !k.erased[name] && k.metrics != nil {
			k.metrics.erasedSeen.Inc()
		}
		k.erased[name] = true
		k.erasedRefs[ref] = true
		k.aeads.Remove(name)
		return
	}
	delete(k.pending, name)
	delete(k.erased, name)
	if _, ok := k.wrapped[name]; !ok {
		k.byRef[ref] = append(k.byRef[ref], name)
	}
	k.wrapped[name] = slices.Clone(value)
}

// Committed records that the caller committed the key name, which ForWrite made here, to the
// keys topic itself: ForWrite stops returning its record. A key erased meanwhile stays erased.
func (k *Keyring) Committed(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.pending, name)
}

// ForWrite returns the data key to encrypt under for ref. rec is non-nil when the key was made
// by this process and not yet seen committed in the keys topic: the caller produces rec in the
// same transaction as the records encrypted under it (the enricher), or on its own before
// encrypting anything and then calls Committed (the archiver); producing it twice is harmless,
// the value is the same and the topic is compacted.
func (k *Keyring) ForWrite(ctx context.Context, ref string) (name string, a tink.AEAD, rec *KeyRecord, err error) {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return "", nil, nil, fmt.Errorf("waiting for the keys topic to be read: %w", ctx.Err())
	}
	for {
		k.mu.Lock()
		if names := k.byRef[ref]; len(names) > 0 {
			name = k.pick(names)
			wrapped, pending := k.wrapped[name], k.pending[name]
			k.mu.Unlock()
			a, err := k.aead(name, wrapped)
			if err != nil {
				return "", nil, nil, err
			}
			if pending {
				rec = &KeyRecord{Name: name, Wrapped: wrapped}
			}
			return name, a, rec, nil
		}
		if ch, busy := k.creating[ref]; busy {
			k.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return "", nil, nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		k.creating[ref] = ch
		k.mu.Unlock()
		name, a, wrapped, err := k.create(ref)
		k.mu.Lock()
		delete(k.creating, ref)
		close(ch)
		if err == nil {
			k.byRef[ref] = append(k.byRef[ref], name)
			k.wrapped[name] = wrapped
			k.pending[name] = true
			k.aeads.Add(name, a)
		}
		k.mu.Unlock()
		if err != nil {
			return "", nil, nil, err
		}
		return name, a, &KeyRecord{Name: name, Wrapped: wrapped}, nil
	}
}

// pick prefers a key already committed in the topic over one of this process still pending,
// and among those the first known: every member then converges on one key per subject.
func (k *Keyring) pick(names []string) string {
	for _, n := range names {
		if !k.pending[n] {
			return n
		}
	}
	return names[0]
}

// ForRead returns the data key named name, or an *ErasedError when it is tombstoned or unknown.
func (k *Keyring) ForRead(name string) (tink.AEAD, error) {
	k.mu.Lock()
	wrapped, ok := k.wrapped[name]
	k.mu.Unlock()
	if !ok {
		return nil, &ErasedError{KeyName: name}
	}
	return k.aead(name, wrapped)
}

// Known reports whether name is live in the keyring.
func (k *Keyring) Known(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.wrapped[name]
	return ok
}

// RefErased reports whether a key of ref was seen tombstoned: the subject (or session) was
// erased. Only what the keys topic still holds counts: compaction removes tombstones after
// topics.keys' delete.retention.ms.
func (k *Keyring) RefErased(ref string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.erasedRefs[ref]
}

// Names returns the live key names of ref.
func (k *Keyring) Names(ref string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.byRef[ref])
}

// Len returns the number of live keys.
func (k *Keyring) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.wrapped)
}

func (k *Keyring) aead(name string, wrapped []byte) (tink.AEAD, error) {
	if a, ok := k.aeads.Get(name); ok {
		return a, nil
	}
	a, err := UnwrapDataKey(wrapped, k.kek)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", name, err)
	}
	k.count(func(m *keyMetrics) prometheus.Counter { return m.unwrapped })
	k.aeads.Add(name, a)
	return a, nil
}

func (k *Keyring) create(ref string) (name string, a tink.AEAD, wrapped []byte, err error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", nil, nil, fmt.Errorf("new data key id: %w", err)
	}
	a, wrapped, err = NewDataKey(k.kek)
	if err != nil {
		return "", nil, nil, err
	}
	k.count(func(m *keyMetrics) prometheus.Counter { return m.created })
	return ref + "/" + hex.EncodeToString(id[:]), a, wrapped, nil
}

// NewDataKey makes a new AES-256-GCM Tink keyset and returns its AEAD and the keyset wrapped by
// kek in Tink's binary EncryptedKeyset format (what Java's
// TinkProtoKeysetFormat.parseEncryptedKeyset and Python's
// tink.proto_keyset_format.parse_encrypted read).
func NewDataKey(kek tink.AEAD) (tink.AEAD, []byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, nil, fmt.Errorf("new data keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := h.Write(keyset.NewBinaryWriter(&buf), kek); err != nil {
		return nil, nil, fmt.Errorf("wrap the data keyset with the key-encryption key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, nil, fmt.Errorf("data keyset AEAD: %w", err)
	}
	return a, buf.Bytes(), nil
}

// UnwrapDataKey unwraps a keys-topic value with kek and returns its AEAD.
func UnwrapDataKey(wrapped []byte, kek tink.AEAD) (tink.AEAD, error) {
	h, err := keyset.Read(keyset.NewBinaryReader(bytes.NewReader(wrapped)), kek)
	if err != nil {
		return nil, fmt.Errorf("unwrap with the key-encryption key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("not an AEAD keyset: %w", err)
	}
	return a, nil
}
