package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TailOptions are the `tail` subcommand's flags.
type TailOptions struct {
	Topic         string
	Brokers       []string // empty: kafka.brokers, else the embedded broker's listen address
	FromBeginning bool
	// Since starts at the first record at or after this time (wins over FromBeginning).
	Since time.Time
	// UntilEnd stops once every partition is read up to the end offsets current at start (the
	// last stable offsets: what a read_committed reader can see). Otherwise tail follows.
	UntilEnd bool
	// Key prints only the records with this key (the sessionId on the connector's topics).
	Key string
	// Format is "json" (one line a record, the default) or "pretty" (indented).
	Format string
	Max    int // stop after this many records; 0 = no limit
	// Decrypt decrypts EnrichedSessions written with privacy.mode encrypt, with the KEK and keys
	// topic privacy.* and topics.keys name; a record whose key was erased is printed with its
	// personal fields null and "privacy": "erased".
	Decrypt bool
}

// Tail output formats.
const (
	TailFormatJSON   = "json"
	TailFormatPretty = "pretty"
)

// ParseSince reads --since: a duration back from now ("15m", "2h") or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("--since %q: give a positive duration back from now, e.g. 15m", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q is neither a duration (15m, 2h) nor an RFC 3339 time (2026-12-01T08:00:00Z)", s)
	}
	return t, nil
}

// tailLine is one printed record.
type tailLine struct {
	Topic       string            `json:"topic"`
	Partition   int32             `json:"partition"`
	Offset      int64             `json:"offset"`
	Timestamp   time.Time         `json:"timestamp"`
	Key         string            `json:"key"`
	Headers     map[string]string `json:"headers,omitempty"`
	Schema      string            `json:"schema,omitempty"`
	Value       any               `json:"value,omitempty"`
	Raw         []byte            `json:"raw,omitempty"`
	DecodeError string            `json:"decodeError,omitempty"`
	// Privacy is set with --decrypt for an encrypted record: decrypted, erased (its data key
	// was erased) or the reason it could not be decrypted.
	Privacy string `json:"privacy,omitempty"`
}

// Tail prints the records of a topic as JSON lines, decoding SessionEvent and EnrichedSession
// in either wire format. It reads committed records only, as the connector's consumers do.
func Tail(ctx context.Context, cfg Config, opts TailOptions, out io.Writer) error {
	if opts.Topic == "" {
		return errors.New("tail: --topic is required, e.g. --topic " + cfg.Topics.Enriched)
	}
	if opts.Format == "" {
		opts.Format = TailFormatJSON
	}
	if opts.Format != TailFormatJSON && opts.Format != TailFormatPretty {
		return fmt.Errorf("tail: --format %q must be json or pretty", opts.Format)
	}
	rc, err := serde.NewRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	codecs := map[string]*serde.Codec{
		schemas.SessionEventName:    serde.NewDecoder(schemas.SessionEventSchema(), rc),
		schemas.EnrichedSessionName: serde.NewDecoder(schemas.EnrichedSessionSchema(), rc),
		// The commands role's topics (docs/commands.md).
		schemas.CreateSessionCommandName: serde.NewDecoder(schemas.CreateSessionCommandSchema(), rc),
		schemas.CommandReplyName:         serde.NewDecoder(schemas.CommandReplySchema(), rc),
		schemas.CommandStateName:         serde.NewDecoder(schemas.CommandStateSchema(), rc),
	}
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(opts.Brokers)
	base, err := newKafkaOpts(kc, "tail")
	if err != nil {
		return err
	}
	admin, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("tail: kafka client for %v: %w", kc.Brokers, err)
	}
	defer admin.Close()
	if err := topicExists(ctx, admin, opts.Topic); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	starts, ends, err := tailBounds(ctx, kadm.NewClient(admin), opts)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	// remaining holds the partitions still to read up to their end offset (--until-end).
	remaining := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	for p, start := range starts {
		assign[p] = kgo.NewOffset().At(start)
		if start < ends[p] {
			remaining[p] = ends[p]
		}
	}
	if opts.UntilEnd && len(remaining) == 0 {
		return nil // nothing between the start and the end: an empty topic ends at once
	}
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.Topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers are kept so the position is known exactly: the last offset
		// below the end is often a commit marker, which would otherwise never be seen.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("tail: kafka client for %v: %w", kc.Brokers, err)
	}
	defer cl.Close()
	var dec *tailDecrypter
	if opts.Decrypt {
		if dec, err = newTailDecrypter(ctx, cfg, base); err != nil {
			return fmt.Errorf("tail --decrypt: %w", err)
		}
		defer dec.close()
	}
	enc := json.NewEncoder(out)
	if opts.Format == TailFormatPretty {
		enc.SetIndent("", "  ")
	}
	printed := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("tail: fetch %s[%d] from %v: %w", t, p, kc.Brokers, err))
		})
		if ferr != nil {
			return ferr
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if opts.UntilEnd && r.Offset >= ends[r.Partition] {
				continue // written after tail started
			}
			if r.Attrs.IsControl() || (opts.Key != "" && string(r.Key) != opts.Key) {
				continue
			}
			line := describe(ctx, r, codecs)
			if es, ok := line.Value.(*schemas.EnrichedSession); ok && dec != nil {
				line.Privacy = dec.open(ctx, r.Topic, es)
			}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("tail: write: %w", err)
			}
			printed++
			if opts.Max > 0 && printed >= opts.Max {
				return nil
			}
		}
		if opts.UntilEnd && len(remaining) == 0 {
			return nil
		}
	}
}

// tailBounds resolves where each partition starts (--since, --from-beginning or the end) and
// the end offsets current now (last stable offsets, the end for a read_committed reader).
func tailBounds(ctx context.Context, adm *kadm.Client, opts TailOptions) (starts, ends map[int32]int64, err error) {
	collect := func(what string, l kadm.ListedOffsets, lerr error) (map[int32]int64, error) {
		if lerr == nil {
			lerr = l.Error()
		}
		if lerr != nil {
			return nil, fmt.Errorf("%s offsets of %s: %w", what, opts.Topic, lerr)
		}
		m := map[int32]int64{}
		l.Each(func(o kadm.ListedOffset) { m[o.Partition] = o.Offset })
		return m, nil
	}
	l, lerr := adm.ListCommittedOffsets(ctx, opts.Topic)
	if ends, err = collect("end", l, lerr); err != nil {
		return nil, nil, err
	}
	switch {
	case !opts.Since.IsZero():
		l, lerr = adm.ListOffsetsAfterMilli(ctx, opts.Since.UnixMilli(), opts.Topic)
		starts, err = collect("--since", l, lerr)
	case opts.FromBeginning:
		l, lerr = adm.ListStartOffsets(ctx, opts.Topic)
		starts, err = collect("start", l, lerr)
	default:
		starts = maps.Clone(ends)
	}
	return starts, ends, err
}

// describe decodes a record with the codec its schema header names, or with each known codec in
// turn; a record nothing decodes (a DLQ entry, say) is printed raw with the reason.
func describe(ctx context.Context, r *kgo.Record, codecs map[string]*serde.Codec) tailLine {
	line := tailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: string(r.Key)}
	var named string
	for _, h := range r.Headers {
		if line.Headers == nil {
			line.Headers = map[string]string{}
		}
		line.Headers[h.Key] = string(h.Value)
		if h.Key == serde.HeaderSchema {
			named = string(h.Value)
		}
	}
	order := []string{schemas.SessionEventName, schemas.EnrichedSessionName}
	if _, ok := codecs[named]; ok {
		order = []string{named}
	}
	var errs []string
	for _, name := range order {
		var v any
		switch name {
		case schemas.SessionEventName:
			v = &schemas.SessionEvent{}
		case schemas.CreateSessionCommandName:
			v = &schemas.CreateSessionCommand{}
		case schemas.CommandReplyName:
			v = &schemas.CommandReply{}
		case schemas.CommandStateName:
			v = &schemas.CommandState{}
		default:
			v = &schemas.EnrichedSession{}
		}
		if err := codecs[name].Decode(ctx, r.Value, v); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		line.Schema, line.Value = name, v
		return line
	}
	if len(r.Value) > 0 && r.Value[0] == '{' && json.Valid(r.Value) {
		// A JSON record (the audit trail of topics.audit) prints as itself.
		line.Value = json.RawMessage(r.Value)
		return line
	}
	line.Raw, line.DecodeError = r.Value, strings.Join(errs, "; ")
	return line
}

// topicExists fails with the list of existing topics when topic is not among them, rather than
// letting a consumer wait silently for a topic that will never appear.
func topicExists(ctx context.Context, cl *kgo.Client, topic string) error {
	details, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if details.Has(topic) {
		return nil
	}
	return fmt.Errorf("topic %q does not exist; topics on this cluster: %s", topic, strings.Join(details.Names(), ", "))
}

// tailDecrypter decrypts EnrichedSessions for tail --decrypt.
type tailDecrypter struct {
	kek  *privacy.KEK
	ring *privacy.Keyring
	keys *privacy.KeysTopic
}

func newTailDecrypter(ctx context.Context, cfg Config, base []kgo.Opt) (*tailDecrypter, error) {
	pc := ToolPrivacy(cfg)
	kek, err := privacy.OpenKEK(ctx, pc)
	if err != nil {
		return nil, err
	}
	ring, err := privacy.NewKeyring(kek, pc.KeyCacheSize)
	if err != nil {
		_ = kek.Close()
		return nil, err
	}
	keys := privacy.NewKeysTopic(base, cfg.Topics.Keys, ring, nil)
	if _, err := keys.CatchUp(ctx); err != nil {
		_ = kek.Close()
		return nil, err
	}
	return &tailDecrypter{kek: kek, ring: ring, keys: keys}, nil
}

func (d *tailDecrypter) close() { _ = d.kek.Close() }

// open decrypts es in place and says how it went; "" for a record with nothing encrypted.
func (d *tailDecrypter) open(ctx context.Context, topic string, es *schemas.EnrichedSession) string {
	if es.Privacy == nil || len(es.Privacy.Encrypted) == 0 {
		return ""
	}
	// A key committed after the last catch-up (tail follows the topic): read the keys topic again.
	if es.Privacy.KeyName != nil && !d.ring.Known(*es.Privacy.KeyName) {
		if _, err := d.keys.CatchUp(ctx); err != nil {
			return "not decrypted: " + err.Error()
		}
	}
	err := privacy.Open(d.ring, topic, es)
	switch {
	case err == nil:
		return "decrypted"
	case errors.Is(err, privacy.ErrErased):
		return "erased"
	}
	return "not decrypted: " + err.Error()
}
