package privacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KeysTopic keeps a Keyring in step with the keys topic: CatchUp reads what was committed since
// the previous call (read_committed, so keys of aborted transactions never count), Run does it
// every interval. It is not safe for concurrent CatchUp calls; Run is the only caller in a
// running process, tools call CatchUp directly.
type KeysTopic struct {
	opts    []kgo.Opt
	topic   string
	ring    *Keyring
	log     *slog.Logger
	offsets map[int32]int64
}

// NewKeysTopic returns a reader of topic into ring; opts are the shared client options (seed
// brokers, TLS, SASL) without consumer settings.
func NewKeysTopic(opts []kgo.Opt, topic string, ring *Keyring, log *slog.Logger) *KeysTopic {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KeysTopic{opts: opts, topic: topic, ring: ring, log: log, offsets: map[int32]int64{}}
}

// CatchUp applies every record committed to the keys topic since the last call, up to the last
// stable offsets as they were when it began, and marks the keyring ready after the first one.
func (t *KeysTopic) CatchUp(ctx context.Context) (applied int, err error) {
	adm, err := kgo.NewClient(t.opts...)
	if err != nil {
		return 0, fmt.Errorf("keys topic: new client: %w", err)
	}
	ends, starts, err := bounds(ctx, kadm.NewClient(adm), t.topic)
	adm.Close()
	if err != nil {
		return 0, err
	}
	want := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	next := map[int32]int64{}
	for p, end := range ends {
		at := max(t.offsets[p], starts[p])
		next[p] = max(at, end)
		if end > at {
			want[p] = kgo.NewOffset().At(at)
			remaining[p] = end
		}
	}
	if len(want) > 0 {
		cl, err := kgo.NewClient(append(slices.Clone(t.opts),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: want}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Control records only move the position past a transaction marker at the end.
			kgo.KeepControlRecords(),
		)...)
		if err != nil {
			return 0, fmt.Errorf("keys topic: new consumer: %w", err)
		}
		defer cl.Close()
		for len(remaining) > 0 {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return applied, fmt.Errorf("reading keys topic %s: %w", t.topic, err)
			}
			var ferr error
			fs.EachError(func(tp string, p int32, err error) {
				if ferr == nil {
					ferr = fmt.Errorf("reading keys topic %s/%d: %w", tp, p, err)
				}
			})
			if ferr != nil {
				return applied, ferr
			}
			for _, r := range fs.Records() {
				end, ok := remaining[r.Partition]
				if !ok || r.Offset >= end {
					continue
				}
				if !r.Attrs.IsControl() {
					t.ring.Apply(string(r.Key), r.Value)
					applied++
				}
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
			}
		}
	}
	t.offsets = next
	t.ring.MarkReady()
	return applied, nil
}

// Run keeps the keyring in step until ctx ends: a catch-up to the end first (unless CatchUp was
// called already), then one read_committed consumer following every partition from there, so a
// key this process made is seen committed, and an erasure seen, within a fetch of the commit. A
// failure is logged and counted, and the consumer is made again after retryWait: meanwhile the
// keyring serves the keys it has, and keys this process makes are produced with the records
// using them until they are seen committed.
func (t *KeysTopic) Run(ctx context.Context, retryWait time.Duration) error {
	for {
		var err error
		if len(t.offsets) == 0 {
			_, err = t.CatchUp(ctx)
		}
		if err == nil {
			err = t.follow(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		t.ring.count(func(m *keyMetrics) prometheus.Counter { return m.refreshFailures })
		t.log.Warn("reading the keys topic failed; trying again", slog.String("topic", t.topic), slog.Duration("wait", retryWait), slog.Any("err", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retryWait):
		}
	}
}

// follow consumes every partition from t.offsets until ctx ends or a fetch fails.
func (t *KeysTopic) follow(ctx context.Context) error {
	from := map[int32]kgo.Offset{}
	for p, o := range t.offsets {
		from[p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(append(slices.Clone(t.opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(time.Second),
	)...)
	if err != nil {
		return fmt.Errorf("keys topic: new consumer: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("reading keys topic %s/%d: %w", tp, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			t.ring.Apply(string(r.Key), r.Value)
			t.offsets[r.Partition] = r.Offset + 1
		})
	}
}

// bounds returns each partition's last stable offset (the read_committed end) and log start.
func bounds(ctx context.Context, adm *kadm.Client, topic string) (ends, starts map[int32]int64, err error) {
	endOffs, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = endOffs.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	startOffs, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = startOffs.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, starts = map[int32]int64{}, map[int32]int64{}
	endOffs.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	startOffs.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	if len(ends) == 0 {
		return nil, nil, errors.New("topic " + topic + " has no partitions (does it exist?)")
	}
	return ends, starts, nil
}
