package privacy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
)

// KeyFinder finds data keys by name for a process that reads records another process
// encrypted (the archiver). It reads the keys topic on demand rather than following it: a
// record's key commits in the record's own transaction, so once a read_committed consumer sees
// the record, one catch-up finds the key, and a key still unknown after it is erased (its
// tombstone, or compaction, removed it). Erasures of keys already known are seen at the next
// catch-up, at most maxAge after the previous one. It is safe for concurrent use.
type KeyFinder struct {
	ring   *Keyring
	topic  *KeysTopic
	maxAge time.Duration

	mu   sync.Mutex // serialises catch-ups (KeysTopic.CatchUp is not concurrent)
	last time.Time
}

// NewKeyFinder returns a finder over ring, filled from topic.
func NewKeyFinder(ring *Keyring, topic *KeysTopic, maxAge time.Duration) *KeyFinder {
	return &KeyFinder{ring: ring, topic: topic, maxAge: maxAge}
}

// Ring is the keyring the finder fills.
func (f *KeyFinder) Ring() *Keyring { return f.ring }

// Refresh reads what the keys topic gained since the last read.
func (f *KeyFinder) Refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshLocked(ctx)
}

func (f *KeyFinder) refreshLocked(ctx context.Context) error {
	if _, err := f.topic.CatchUp(ctx); err != nil {
		return fmt.Errorf("read the keys topic: %w", err)
	}
	f.last = time.Now()
	return nil
}

// sync catches up when name is unknown or the last catch-up is older than maxAge.
func (f *KeyFinder) sync(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ring.Known(name) && time.Since(f.last) < f.maxAge {
		return nil
	}
	return f.refreshLocked(ctx)
}

// Find returns the data key name, or an *ErasedError (errors.Is ErrErased) when the keys topic
// does not hold it (any more). Other errors (the keys topic or key manager failing) are
// transient.
func (f *KeyFinder) Find(ctx context.Context, name string) (tink.AEAD, error) {
	if err := f.sync(ctx, name); err != nil {
		return nil, err
	}
	return f.ring.ForRead(name)
}

// Live reports whether the data key name is live: in the keys topic and not tombstoned, or made
// by this process and still to be committed.
func (f *KeyFinder) Live(ctx context.Context, name string) (bool, error) {
	if err := f.sync(ctx, name); err != nil {
		return false, err
	}
	return f.ring.Known(name), nil
}
