package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TailOptions are the `tail` subcommand's flags.
type TailOptions struct {
	Topic         string
	Brokers       []string // empty: kafka.brokers, else the embedded broker's listen address
	FromBeginning bool
	Max           int // stop after this many records; 0 = until interrupted
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
}

// Tail prints the records of a topic as JSON lines, decoding SessionEvent and EnrichedSession
// in either wire format. It reads committed records only, as the connector's consumers do.
func Tail(ctx context.Context, cfg Config, opts TailOptions, out io.Writer) error {
	if opts.Topic == "" {
		return errors.New("tail: --topic is required, e.g. --topic " + cfg.Topics.Enriched)
	}
	rc, err := serde.NewRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	codecs := map[string]*serde.Codec{
		schemas.SessionEventName:    serde.NewDecoder(schemas.SessionEventSchema(), rc),
		schemas.EnrichedSessionName: serde.NewDecoder(schemas.EnrichedSessionSchema(), rc),
	}
	start := kgo.NewOffset().AtEnd()
	if opts.FromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(opts.Brokers)
	base, err := newKafkaOpts(kc, "tail")
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(base,
		kgo.ConsumeTopics(opts.Topic),
		kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return fmt.Errorf("tail: kafka client for %v: %w", kc.Brokers, err)
	}
	defer cl.Close()
	if err := topicExists(ctx, cl, opts.Topic); err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	enc := json.NewEncoder(out)
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
			if err := enc.Encode(describe(ctx, it.Next(), codecs)); err != nil {
				return fmt.Errorf("tail: write: %w", err)
			}
			printed++
			if opts.Max > 0 && printed >= opts.Max {
				return nil
			}
		}
	}
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
