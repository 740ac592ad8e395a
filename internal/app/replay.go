package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	cliprogress "github.com/idnow-kafka-connector/idnow-kafka-connector/internal/progress"
)

// replayIdle is how long an empty poll must last for the replay to consider the dead-letter
// topic read up to the end offsets it started with.
const replayIdle = 3 * time.Second

// ReplayOptions are the `dlq-replay` subcommand's flags.
type ReplayOptions struct {
	Brokers []string // empty: kafka.brokers, else the embedded broker's listen address
	Class   string   // replay only records of this error class (idnow.dlq.error_class); empty = all
	Max     int      // stop after this many replayed records; 0 = all
	DryRun  bool     // print what would be replayed, produce nothing
	// Progress receives the progress display (internal/progress): a bar when it is a terminal,
	// else a line per second at most. Nil: none.
	Progress io.Writer
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Read, Replayed, Skipped int
}

// ReplayDLQ writes the records in topics.dlq back to topics.sessions, once the cause of their
// failure is fixed (a session that became visible, a credential that was wrong): original key,
// value and headers, without the idnow.dlq.* headers. It reads the dead-letter topic from the
// start to the end offsets it finds when it starts, with read_committed, and produces with
// acks=all; the enricher then processes the events again like new ones. Replaying twice writes
// the events twice: consumers are idempotent on eventId, as they must be anyway.
func ReplayDLQ(ctx context.Context, cfg Config, opts ReplayOptions, out io.Writer) (ReplayResult, error) {
	var res ReplayResult
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(opts.Brokers)
	base, err := newKafkaOpts(kc, "dlq-replay")
	if err != nil {
		return res, err
	}
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumeTopics(cfg.Topics.DLQ),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return res, fmt.Errorf("dlq-replay: kafka client for %v: %w", kc.Brokers, err)
	}
	defer cl.Close()
	if err := topicExists(ctx, cl, cfg.Topics.DLQ); err != nil {
		return res, fmt.Errorf("dlq-replay: %w", err)
	}
	// The end offsets at start bound the replay, so it terminates even while the enricher keeps
	// adding to the dead-letter topic.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, cfg.Topics.DLQ)
	if err != nil {
		return res, fmt.Errorf("dlq-replay: end offsets of %s: %w", cfg.Topics.DLQ, err)
	}
	if err := ends.Error(); err != nil {
		return res, fmt.Errorf("dlq-replay: end offsets of %s: %w", cfg.Topics.DLQ, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	bar, err := newReplayProgress(ctx, cl, cfg.Topics.DLQ, remaining, opts.Progress)
	if err != nil {
		return res, err
	}
	bar.dryRun = opts.DryRun
	defer func() { bar.finish(res) }()
	for len(remaining) > 0 && (opts.Max == 0 || res.Replayed < opts.Max) {
		// Offsets below the end can belong to transaction markers or aborted records, which a
		// read_committed consumer never sees; a poll that stays empty for replayIdle means
		// nothing readable is left below the end offsets.
		pctx, cancel := context.WithTimeout(ctx, replayIdle)
		fs := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			break
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return
			}
			ferr = errors.Join(ferr, fmt.Errorf("dlq-replay: fetch %s[%d]: %w", t, p, err))
		})
		if ferr != nil {
			return res, ferr
		}
		var batch []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end || (opts.Max > 0 && res.Replayed+len(batch) >= opts.Max) {
				return
			}
			bar.at(r.Partition, r.Offset+1)
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			res.Read++
			class := kafka.Header(r, enrich.HeaderDLQErrorClass)
			if opts.Class != "" && class != opts.Class {
				res.Skipped++
				return
			}
			bar.print(func() {
				fmt.Fprintf(out, "replay %s[%d]@%d key=%s class=%s error=%q\n", r.Topic, r.Partition, r.Offset, r.Key, class, kafka.Header(r, enrich.HeaderDLQError))
			})
			batch = append(batch, &kgo.Record{Topic: cfg.Topics.Sessions, Key: r.Key, Value: r.Value, Headers: withoutDLQHeaders(r.Headers)})
		})
		if opts.DryRun || len(batch) == 0 {
			res.Replayed += len(batch)
			bar.update(res)
			continue
		}
		if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			return res, fmt.Errorf("dlq-replay: produce to %s after %d replayed: %w", cfg.Topics.Sessions, res.Replayed, err)
		}
		res.Replayed += len(batch)
		bar.update(res)
	}
	// Unless --max stopped it, the replay read everything below the end offsets, including
	// what a read_committed consumer never sees (transaction markers, aborted records).
	if len(remaining) == 0 || opts.Max == 0 || res.Replayed < opts.Max {
		bar.done = bar.total
	}
	return res, nil
}

// replayProgress tracks how much of the dead-letter topic, between its start offsets and the
// end offsets taken at start, the replay has read.
type replayProgress struct {
	r      *cliprogress.Reporter // nil: no display
	start  map[int32]int64
	pos    map[int32]int64
	total  int64
	done   int64
	dryRun bool
}

func newReplayProgress(ctx context.Context, cl *kgo.Client, topic string, ends map[int32]int64, w io.Writer) (*replayProgress, error) {
	p := &replayProgress{start: map[int32]int64{}, pos: map[int32]int64{}}
	if w == nil {
		return p, nil
	}
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("dlq-replay: start offsets of %s: %w", topic, err)
	}
	if err := starts.Error(); err != nil {
		return nil, fmt.Errorf("dlq-replay: start offsets of %s: %w", topic, err)
	}
	for part, end := range ends {
		s, _ := starts.Lookup(topic, part)
		p.start[part] = min(s.Offset, end)
		p.pos[part] = p.start[part]
		p.total += end - p.start[part]
	}
	p.r = cliprogress.New(w, cliprogress.Options{Name: "dlq-replay", Unit: "offsets", Total: p.total})
	return p, nil
}

// at records that partition part has been read up to offset next (exclusive).
func (p *replayProgress) at(part int32, next int64) {
	if p.r == nil || next <= p.pos[part] {
		return
	}
	p.done += next - p.pos[part]
	p.pos[part] = next
}

func (p *replayProgress) detail(res ReplayResult) string {
	verb := "replayed"
	if p.dryRun {
		verb = "to replay"
	}
	return fmt.Sprintf("%s %d, skipped %d", verb, res.Replayed, res.Skipped)
}

func (p *replayProgress) update(res ReplayResult) {
	if p.r != nil {
		p.r.Update(p.done, p.detail(res))
	}
}

// print writes a line of the replay's own output without breaking the bar.
func (p *replayProgress) print(write func()) {
	if p.r == nil {
		write()
		return
	}
	p.r.Interrupt(write)
}

func (p *replayProgress) finish(res ReplayResult) {
	if p.r != nil {
		p.r.Finish(p.done, p.detail(res))
	}
}

func withoutDLQHeaders(hs []kgo.RecordHeader) []kgo.RecordHeader {
	var out []kgo.RecordHeader
	for _, h := range hs {
		if !strings.HasPrefix(h.Key, "idnow.dlq.") {
			out = append(out, h)
		}
	}
	return out
}
