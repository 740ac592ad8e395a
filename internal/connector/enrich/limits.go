package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka's defaults, used when the broker does not say (no DescribeConfigs permission).
const (
	// defaultMaxMessageBytes is Kafka's message.max.bytes default (1 MiB + 12 bytes of framing).
	defaultMaxMessageBytes = 1048588
	// minRecordBytes is the smallest enrich.max_record_bytes accepted: below it not even a DLQ
	// record with its headers fits.
	minRecordBytes = 1024
)

// Framing a broker counts against max.message.bytes beyond key, value and header bytes. The
// limit applies to a whole record batch; the enricher sizes each record as if it were alone in
// its batch (franz-go then never builds a batch larger than the limit, see
// kgo.ProducerBatchMaxBytesFn in runClient):
//
//   - batchOverhead: the v2 record batch header (base offset 8, length 4, leader epoch 4, magic 1,
//     CRC 4, attributes 2, last offset delta 4, first and max timestamp 16, producer id 8,
//     producer epoch 2, base sequence 4, record count 4 = 61 bytes);
//   - recordOverhead: one record's varints at their widest (length 5, attributes 1, timestamp
//     delta 10, offset delta 5, key length 5, value length 5, header count 5 = 36 bytes);
//   - headerOverhead: each header's key and value length varints (5 + 5).
//
// These are upper bounds, so a record the estimate admits is never refused for its size by a
// broker enforcing the same limit.
const (
	batchOverhead  = 61
	recordOverhead = 36
	headerOverhead = 10
)

// recordSize is the bytes r takes against max.message.bytes when it is alone in its batch,
// before compression (franz-go and the brokers compare the uncompressed form at worst).
func recordSize(r *kgo.Record) int {
	n := batchOverhead + recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// limits holds the record size limit of each output topic, read at start-up.
type limits struct {
	mu     sync.RWMutex
	topics map[string]int
}

// get returns topic's limit, or Kafka's default when it was never resolved.
func (l *limits) get(topic string) int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if v, ok := l.topics[topic]; ok {
		return v
	}
	return defaultMaxMessageBytes
}

// batchBytes is franz-go's per-topic batch limit (kgo.ProducerBatchMaxBytesFn): the topic's
// limit, so that franz-go never assembles a batch the broker refuses for its size.
func (l *limits) batchBytes(topic string) int32 {
	return int32(min(max(l.get(topic), 512), 1<<30))
}

// resolveLimits reads max.message.bytes of each output topic with DescribeConfigs (the topic's
// own value, or the broker default the topic inherits, which DescribeConfigs also reports),
// falls back to the broker's message.max.bytes and then to Kafka's default, and applies
// enrich.max_record_bytes as an upper bound.
func (e *Enricher) resolveLimits(ctx context.Context, adm *kadm.Client, topics ...string) {
	found := map[string]int{}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		e.log.Warn("cannot read the output topics' max.message.bytes (DescribeConfigs on the topics); using the broker's message.max.bytes",
			slog.Any("topics", topics), slog.Any("err", err))
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			e.log.Warn("cannot read max.message.bytes of an output topic (DescribeConfigs); using the broker's message.max.bytes",
				slog.String("topic", rc.Name), slog.Any("err", rc.Err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if c.Source == kmsg.ConfigSourceDefaultConfig {
				// Kafka's built-in default: a broker-wide message.max.bytes, when set, is
				// what the topic inherits (brokers report it as the source themselves; not
				// every Kafka-protocol broker does), so let the broker lookup decide.
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n > 0 {
				found[rc.Name] = n
			}
		}
	}
	brokerDefault := 0
	resolved := map[string]int{}
	for _, t := range topics {
		n, ok := found[t]
		source := "topic max.message.bytes"
		if !ok {
			if brokerDefault == 0 {
				brokerDefault = e.brokerMaxMessageBytes(ctx, adm)
			}
			n, source = brokerDefault, "broker message.max.bytes"
		}
		limit := n
		if e.cfg.MaxRecordBytes > 0 {
			if e.cfg.MaxRecordBytes > n {
				e.log.Warn("enrich.max_record_bytes exceeds what the topic accepts; using the topic's limit",
					slog.String("topic", t), slog.Int("max_record_bytes", e.cfg.MaxRecordBytes), slog.Int("topic_limit", n))
			} else {
				limit, source = e.cfg.MaxRecordBytes, "enrich.max_record_bytes"
			}
		}
		resolved[t] = limit
		e.log.Info("output record size limit", slog.String("topic", t), slog.Int("bytes", limit), slog.String("source", source))
	}
	e.limits.mu.Lock()
	e.limits.topics = resolved
	e.limits.mu.Unlock()
}

// brokerMaxMessageBytes returns the cluster's message.max.bytes, or Kafka's default when the
// brokers do not tell. It asks one broker by id: a describe without a broker id answers only
// the dynamically set cluster defaults (Kafka 4.x), which normally do not include it.
func (e *Enricher) brokerMaxMessageBytes(ctx context.Context, adm *kadm.Client) int {
	n, err := describeMaxMessageBytes(ctx, adm)
	if err != nil {
		e.log.Warn("cannot read the broker's message.max.bytes; assuming Kafka's default", slog.Int("bytes", defaultMaxMessageBytes), slog.Any("err", err))
		return defaultMaxMessageBytes
	}
	return n
}

func describeMaxMessageBytes(ctx context.Context, adm *kadm.Client) (int, error) {
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return 0, fmt.Errorf("list brokers: %w", err)
	}
	if len(brokers) == 0 {
		return 0, errors.New("list brokers: no broker in the metadata")
	}
	rcs, err := adm.DescribeBrokerConfigs(ctx, brokers[0].NodeID)
	if err != nil {
		return 0, fmt.Errorf("describe broker %d configs: %w", brokers[0].NodeID, err)
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			return 0, fmt.Errorf("describe broker %d configs: %w", brokers[0].NodeID, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "message.max.bytes" && c.Value != nil {
				n, err := strconv.Atoi(*c.Value)
				if err != nil || n <= 0 {
					return 0, fmt.Errorf("broker %d reports message.max.bytes %q: not a positive number", brokers[0].NodeID, *c.Value)
				}
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("broker %d does not report message.max.bytes", brokers[0].NodeID)
}

// ErrRecordTooLarge is the cause of a dead-lettered event whose EnrichedSession exceeds the
// output limit even with metadata only, or that the broker refused as too large.
var ErrRecordTooLarge = errors.New("record exceeds the output topic's size limit")

// produceRejection classifies a produce error of one record: the DLQ class when the error is
// permanent for that record (retrying the same bytes can never succeed), "" when it is
// transient or concerns the whole client. The broker answers these classes for a whole
// partition batch, so produceRound produces records refused together alone before believing it.
// TOPIC_AUTHORIZATION_FAILED is not one of them: a missing WRITE ACL on an output topic refuses
// every record, and dead-lettering them would commit (drain) the whole input; it is retried
// like a transient error, with the blocked gauge set (see Enricher.outputDenied).
func produceRejection(err error) string {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return ClassRecordTooLarge
	case errors.Is(err, kerr.InvalidRecord), errors.Is(err, kerr.CorruptMessage),
		errors.Is(err, kerr.PolicyViolation), errors.Is(err, kerr.InvalidTopicException):
		// CorruptMessage: the broker also answers it for a null key on a compacted topic;
		// franz-go does not retry it either.
		return ClassOutputRejected
	}
	return ""
}

// outputDenied tracks an output topic refusing the enricher's writes (TOPIC_AUTHORIZATION_FAILED)
// across produce rounds: denied is the topic of this round's refusal, "" when the round had
// none. The first refusal logs at ERROR naming the topic and the ACL to grant and sets the
// blocked gauge; nothing is dead-lettered or committed meanwhile, so lag grows and the stall
// watchdog fires. Only the poll loop calls it.
func (e *Enricher) outputDenied(denied string, err error) {
	switch {
	case denied != "" && e.deniedTopic == "":
		e.deniedTopic = denied
		e.m.block()
		e.log.Error("the enricher is not authorised to write to an output topic (TOPIC_AUTHORIZATION_FAILED); "+
			"grant its principal WRITE (and DESCRIBE) on the topic; events are retried, neither dead-lettered nor committed, until then",
			slog.String("topic", denied), slog.String("acl", "WRITE on topic "+denied), slog.Any("err", err))
	case denied == "" && e.deniedTopic != "":
		e.log.Info("output topic accepts the enricher's writes again", slog.String("topic", e.deniedTopic))
		e.deniedTopic = ""
		e.m.unblock()
	}
}

// rejectionError wraps a produce error with the record's position for the DLQ header.
func rejectionError(topic string, err error) error {
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		return fmt.Errorf("produce to %s: %w: %w", topic, ErrRecordTooLarge, err)
	}
	return fmt.Errorf("produce to %s: the broker refused the record: %w", topic, err)
}
