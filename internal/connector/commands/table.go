package commands

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// table is this member's copy of topics.commands_state: the latest CommandState of every
// command id written within commands.dedupe_window, by any member. It is read from the topic
// at start and after each partition assignment (catchUp), and updated directly with what this
// member commits.
type table struct {
	mu      sync.Mutex
	m       map[string]*schemas.CommandState
	offsets map[int32]int64
	window  time.Duration
}

func newTable(window time.Duration) *table {
	return &table{m: map[string]*schemas.CommandState{}, offsets: map[int32]int64{}, window: window}
}

// catchUp reads what was committed to topic since the last catch-up, up to the last stable
// offset as of now. A record that does not decode is an error: skipping it could forget a
// command's intent and create its session twice.
func (t *table) catchUp(ctx context.Context, opts []kgo.Opt, topic string, dec Decoder, now time.Time) error {
	t.mu.Lock()
	from := make(map[int32]int64, len(t.offsets))
	for p, o := range t.offsets {
		from[p] = o
	}
	t.mu.Unlock()
	staged := map[string]*schemas.CommandState{}
	deleted := map[string]bool{}
	next, err := state.ReadFrom(ctx, opts, topic, nil, from, func(r *kgo.Record) error {
		key := string(r.Key)
		if r.Value == nil {
			delete(staged, key)
			deleted[key] = true
			return nil
		}
		var st schemas.CommandState
		if err := dec.Decode(ctx, r.Value, &st); err != nil {
			return fmt.Errorf("command state record %s/%d@%d (key %q) does not decode: %w; point topics.commands_state at a topic only the commands role writes", r.Topic, r.Partition, r.Offset, key, err)
		}
		if st.CommandID == "" {
			st.CommandID = key
		}
		staged[key] = &st
		delete(deleted, key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range deleted {
		delete(t.m, k)
	}
	for k, st := range staged {
		// What this member wrote itself may be newer than what the read returned.
		if cur, ok := t.m[k]; ok && cur.UpdatedAt.After(st.UpdatedAt) {
			continue
		}
		t.m[k] = st
	}
	t.offsets = next
	t.expireLocked(now)
	return nil
}

func (t *table) get(id string) *schemas.CommandState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (t *table) put(st *schemas.CommandState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[st.CommandID] = st
}

func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// expire forgets command ids last written before the window.
func (t *table) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expireLocked(now)
}

func (t *table) expireLocked(now time.Time) {
	for k, st := range t.m {
		if now.Sub(st.UpdatedAt) > t.window {
			delete(t.m, k)
		}
	}
}
