package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

// Retry retries retryable failures (Classify) with capped exponential backoff and jitter, for as
// long as they last: a retryable failure is never turned into a skip or a DLQ record. While it
// waits, the blocked gauge is 1, so an IDnow outage shows as a flat line plus growing lag rather
// than as lost events. Permanent failures and the context's end are returned at once. A
// Retry-After the API sent is honoured up to cfg.MaxBackoff.
func Retry(cfg RetryConfig, m *metrics, log *slog.Logger) Middleware {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, msg *Message) (Result, error) {
			b := cfg.backoff().NewBackOff()
			blocked := false
			defer func() {
				if blocked {
					m.unblock()
				}
			}()
			for {
				msg.Attempts++
				res, err := next(ctx, msg)
				if err == nil {
					return res, nil
				}
				if ctx.Err() != nil {
					return Result{}, fmt.Errorf("enrich %s: %w", describe(msg), context.Cause(ctx))
				}
				c := Classify(err)
				if !c.Retryable {
					return Result{}, err
				}
				m.retried(c.Class)
				if !blocked {
					blocked = true
					m.block()
				}
				wait := min(b.NextAfter(retryAfter(err), cfg.MaxBackoff), cfg.MaxBackoff)
				log.WarnContext(ctx, "enrichment failed with a retryable error; retrying, the partition waits",
					slog.String("class", c.Class), slog.Int("attempt", msg.Attempts), slog.Duration("wait", wait),
					slog.String("topic", msg.Record.Topic), slog.Int("partition", int(msg.Record.Partition)),
					slog.Int64("offset", msg.Record.Offset), slog.Any("err", err))
				if err := retry.Wait(ctx, wait); err != nil {
					return Result{}, fmt.Errorf("enrich %s: %w", describe(msg), err)
				}
			}
		}
	}
}

// retryAfter returns the server's Retry-After hint carried by err, 0 when none.
func retryAfter(err error) time.Duration {
	var apiErr *idnow.APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}

// describe names a record by position, never by content.
func describe(m *Message) string {
	return fmt.Sprintf("%s/%d@%d", m.Record.Topic, m.Record.Partition, m.Record.Offset)
}
