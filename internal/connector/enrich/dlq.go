package enrich

import (
	"context"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DLQ record headers, added to the original record's headers.
const (
	HeaderDLQErrorClass      = "idnow.dlq.error_class"      // one of the Class* constants
	HeaderDLQError           = "idnow.dlq.error"            // the error message (no record content)
	HeaderDLQSourceTopic     = "idnow.dlq.source_topic"     // where the record was consumed
	HeaderDLQSourcePartition = "idnow.dlq.source_partition" // decimal
	HeaderDLQSourceOffset    = "idnow.dlq.source_offset"    // decimal
	HeaderDLQAttempts        = "idnow.dlq.attempts"         // handler invocations made, decimal
)

// maxDLQErrorLen bounds the error header; error texts never carry record content, but a long
// chain should not bloat every DLQ record.
const maxDLQErrorLen = 1024

// DLQ turns a permanent failure (Classify) into a record for the dead-letter topic: the original
// key, value and headers, plus headers naming the error class, the message, the source topic,
// partition, offset and the attempts made. The record is produced with the batch (in its
// transaction under exactly_once), so the input offset commits only together with it.
// Retryable failures and the context's end pass through untouched.
func DLQ(topic string, log *slog.Logger) Middleware {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, msg *Message) (Result, error) {
			res, err := next(ctx, msg)
			if err == nil || ctx.Err() != nil {
				return res, err
			}
			c := Classify(err)
			if c.Retryable {
				return Result{}, err
			}
			log.WarnContext(ctx, "event cannot be enriched; sending it to the dead-letter topic",
				slog.String("class", c.Class), slog.String("dlq_topic", topic),
				slog.String("topic", msg.Record.Topic), slog.Int("partition", int(msg.Record.Partition)),
				slog.Int64("offset", msg.Record.Offset), slog.Int("attempts", max(msg.Attempts, 1)), slog.Any("err", err))
			return Result{Records: []*kgo.Record{dlqRecord(topic, msg, c.Class, err)}, DLQClass: c.Class}, nil
		}
	}
}

func dlqRecord(topic string, msg *Message, class string, err error) *kgo.Record {
	src := msg.Record
	text := err.Error()
	if len(text) > maxDLQErrorLen {
		cut := maxDLQErrorLen
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	headers := make([]kgo.RecordHeader, 0, len(src.Headers)+6)
	headers = append(headers, src.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQErrorClass, Value: []byte(class)},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(text)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.FormatInt(int64(src.Partition), 10))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(max(msg.Attempts, 1)))},
	)
	return &kgo.Record{Topic: topic, Key: src.Key, Value: src.Value, Headers: headers}
}
