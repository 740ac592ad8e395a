package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Decoder decodes SessionState record values in either wire format; *serde.Codec satisfies it.
type Decoder interface {
	Decode(ctx context.Context, b []byte, v any) error
}

// Store holds the restored state of the partitions one enricher owns: one map per partition of
// topics.state (the same partition number as the sessions partition it describes), keyed by
// session id, of compact Sessions. It keeps nothing that points into a caller's or a decoder's
// memory: a session's state lives as long as the partition is owned, and a kept substring would
// keep its whole buffer alive. It is safe for concurrent use.
type Store struct {
	mu    sync.RWMutex
	parts map[int32]map[string]Session
	// drops counts the drops of each partition (dropAll those of every one), so that a restore
	// can tell whether a partition it read was dropped meanwhile.
	drops   map[int32]uint64
	dropAll uint64
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{parts: map[int32]map[string]Session{}, drops: map[int32]uint64{}}
}

// Restored reports whether partition p has been restored and not dropped since.
func (s *Store) Restored(p int32) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.parts[p]
	return ok
}

// Get returns the state of a session in partition p; false when nothing is held for it.
func (s *Store) Get(p int32, sessionID string) (Session, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.parts[p][sessionID]
	return st, ok
}

// Put records the committed state of session sessionID; it is ignored for a partition that is
// not restored (dropped meanwhile: the next owner restores it from the topic). The key is
// copied: a map assignment stores the key it is given even when the session is there already,
// and sessionID is usually the decoded event's.
func (s *Store) Put(p int32, sessionID string, st Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.parts[p]; ok {
		m[strings.Clone(sessionID)] = st
	}
}

// Drop forgets partitions (revoked, lost, or the client closed).
func (s *Store) Drop(ps ...int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		delete(s.parts, p)
		s.drops[p]++
	}
}

// DropAll forgets every partition.
func (s *Store) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.parts)
	s.dropAll++
}

// Len returns the number of sessions held, over all partitions.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, m := range s.parts {
		n += len(m)
	}
	return n
}

// Restore reads partitions ps of topic from the start to their last stable offset (read
// committed: aborted enrichments never count) and installs them, replacing what was held. A
// partition dropped while it was read (revoked, possibly handed back) is not installed: what was
// read may predate its other owner's writes, and the next restore reads it again. opts are the
// base client options (brokers, TLS, SASL); Restore builds its own short-lived client. It returns
// the number of sessions installed.
func (s *Store) Restore(ctx context.Context, opts []kgo.Opt, topic string, dec Decoder, ps []int32) (int, error) {
	maps := make(map[int32]map[string]Session, len(ps))
	drops := make(map[int32]uint64, len(ps))
	s.mu.RLock()
	dropAll := s.dropAll
	for _, p := range ps {
		maps[p] = map[string]Session{}
		drops[p] = s.drops[p]
	}
	s.mu.RUnlock()
	err := ReadPartitions(ctx, opts, topic, ps, func(r *kgo.Record) error {
		return restoreRecord(ctx, maps[r.Partition], dec, r)
	})
	if err != nil {
		return 0, err
	}
	n := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, m := range maps {
		if s.drops[p] != drops[p] || s.dropAll != dropAll {
			continue
		}
		s.parts[p] = m
		n += len(m)
	}
	return n, nil
}

// ReadAll reads every partition of topic to its last stable offset and returns the state of
// every session, for the reconciler.
func ReadAll(ctx context.Context, opts []kgo.Opt, topic string, dec Decoder) (map[string]*schemas.SessionState, error) {
	all := map[string]*schemas.SessionState{}
	err := ReadPartitions(ctx, opts, topic, nil, func(r *kgo.Record) error { return apply(ctx, all, dec, r) })
	return all, err
}

// restoreRecord folds one state record into a restored partition as apply does, keeping the
// compact Session: the decoded record's strings (which share the decoder's buffers with other
// records) are dropped with it.
func restoreRecord(ctx context.Context, m map[string]Session, dec Decoder, r *kgo.Record) error {
	return fold(ctx, m, dec, r, FromState)
}

// apply folds one state record into m: a tombstone (the erase tool's, or a topic cleanup)
// removes the session, anything else replaces it.
func apply(ctx context.Context, m map[string]*schemas.SessionState, dec Decoder, r *kgo.Record) error {
	return fold(ctx, m, dec, r, func(st *schemas.SessionState) *schemas.SessionState { return st })
}

// fold applies one state record to m, keeping the decoded state as keep makes it. The key is
// string(r.Key), a copy of the fetched bytes.
func fold[V any](ctx context.Context, m map[string]V, dec Decoder, r *kgo.Record, keep func(*schemas.SessionState) V) error {
	key := string(r.Key)
	if r.Value == nil {
		delete(m, key)
		return nil
	}
	st, err := decodeRecord(ctx, dec, r, key)
	if err != nil {
		return err
	}
	m[key] = keep(st)
	return nil
}

// decodeRecord decodes a state record (not a tombstone) of session key. A record that does not
// decode is an error: skipping it would silently drop what it protects against (duplicates).
func decodeRecord(ctx context.Context, dec Decoder, r *kgo.Record, key string) (*schemas.SessionState, error) {
	var st schemas.SessionState
	if err := dec.Decode(ctx, r.Value, &st); err != nil {
		return nil, fmt.Errorf("state record %s/%d@%d (key %q) does not decode: %w; if the topic holds foreign records, point topics.state at a topic only the enricher writes", r.Topic, r.Partition, r.Offset, key, err)
	}
	if st.SessionID == "" {
		st.SessionID = key
	}
	return &st, nil
}

// ReadPartitions calls fn for every committed record of topic's partitions ps (nil: all) from
// the log start to the last stable offset as it was when the read began.
func ReadPartitions(ctx context.Context, opts []kgo.Opt, topic string, ps []int32, fn func(*kgo.Record) error) error {
	_, err := readFrom(ctx, opts, topic, ps, nil, fn)
	return err
}

// ReadFrom is readFrom for other Kafka-held tables (the commands role's topics.commands_state):
// it reads the committed records of partitions ps (nil: all) after the offsets in from, up to
// the last stable offset as it was when the read began, and returns where to continue.
func ReadFrom(ctx context.Context, opts []kgo.Opt, topic string, ps []int32, from map[int32]int64, fn func(*kgo.Record) error) (map[int32]int64, error) {
	return readFrom(ctx, opts, topic, ps, from, fn)
}

// readFrom reads partitions ps (nil: all) of topic from the offsets in from (the log start for
// a partition missing there, or when the log start is past it) to the last stable offset as it
// was when the read began, and returns the offsets to continue from. Control records are kept
// by the client only so that the read position reaches the end even when the log ends in a
// transaction marker; fn never sees them.
func readFrom(ctx context.Context, opts []kgo.Opt, topic string, ps []int32, from map[int32]int64, fn func(*kgo.Record) error) (map[int32]int64, error) {
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("state read: new client: %w", err)
	}
	ends, starts, err := bounds(ctx, kadm.NewClient(adm), topic)
	adm.Close()
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if _, ok := ends[p]; !ok {
			return nil, fmt.Errorf("state read: %s has no partition %d; topics.state must have as many partitions as topics.sessions", topic, p)
		}
	}
	next := map[int32]int64{}
	want := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, end := range ends {
		if ps != nil && !slices.Contains(ps, p) {
			continue
		}
		at := max(from[p], starts[p])
		next[p] = max(at, end)
		if end > at {
			want[p] = kgo.NewOffset().At(at)
			remaining[p] = end
		}
	}
	if len(want) == 0 {
		return next, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("state read: new consumer: %w", err)
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("state read of %s stopped with %d partitions unfinished: %w", topic, len(remaining), err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("state read %s/%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		for _, r := range fs.Records() {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if !r.Attrs.IsControl() {
				if err := fn(r); err != nil {
					return nil, err
				}
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		}
	}
	return next, nil
}

// View is an incrementally maintained copy of the whole state topic, for the reconciler: each
// CatchUp reads only what was committed since the previous one, so a pass every few minutes
// does not re-read millions of sessions. It is not safe for concurrent use.
type View struct {
	topic   string
	dec     Decoder
	opts    []kgo.Opt
	offsets map[int32]int64
	states  map[string]*schemas.SessionState
}

// NewView returns an empty view of topic; the first CatchUp reads it from the start.
func NewView(opts []kgo.Opt, topic string, dec Decoder) *View {
	return &View{topic: topic, dec: dec, opts: opts, offsets: map[int32]int64{}, states: map[string]*schemas.SessionState{}}
}

// CatchUp reads what was committed since the last call and returns the states (the view's own
// map: read it, do not keep or modify it). Sessions whose state changed before olderThan are
// dropped: a pass over a window never needs them, and the view stays bounded by the window.
// On error the view is left as it was before the call.
func (v *View) CatchUp(ctx context.Context, olderThan time.Time) (map[string]*schemas.SessionState, error) {
	staged := map[string]*schemas.SessionState{}
	var deleted []string
	next, err := readFrom(ctx, v.opts, v.topic, nil, v.offsets, func(r *kgo.Record) error {
		key := string(r.Key)
		if r.Value == nil {
			delete(staged, key)
			deleted = append(deleted, key)
			return nil
		}
		return apply(ctx, staged, v.dec, r)
	})
	if err != nil {
		return nil, err
	}
	for _, k := range deleted {
		if _, again := staged[k]; !again {
			delete(v.states, k)
		}
	}
	maps.Copy(v.states, staged)
	v.offsets = next
	for k, st := range v.states {
		if st.UpdatedAt.Before(olderThan) {
			delete(v.states, k)
		}
	}
	return v.states, nil
}

// bounds returns each partition's last stable offset (the read_committed end) and log start.
func bounds(ctx context.Context, adm *kadm.Client, topic string) (ends, starts map[int32]int64, err error) {
	endOffs, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = endOffs.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state read: list end offsets of %s: %w", topic, err)
	}
	startOffs, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = startOffs.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state read: list start offsets of %s: %w", topic, err)
	}
	ends, starts = map[int32]int64{}, map[int32]int64{}
	endOffs.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	startOffs.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	if len(ends) == 0 {
		return nil, nil, errors.New("state read: topic " + topic + " has no partitions (does it exist?)")
	}
	return ends, starts, nil
}
