package enrich

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
)

// instrumentationName names the enricher's tracer (the instrumentation scope in a backend).
const instrumentationName = "github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"

// Trace is the middleware that continues a webhook's trace in the enricher: it reads the W3C
// trace context the ingress wrote into the SessionEvent record's headers, runs the rest of the
// chain under a consumer span that is its child (so the IDnow API calls, traced by the IDnow
// client's transport, become its children), writes the span's context into the records the
// event produced (EnrichedSession or DLQ record, for consumers further down), and keeps it in
// the Result for the commit span (startCommitSpans). Events without trace context (written
// while tracing was off, or by another producer) start a new trace; the reconciler's repair
// events carry its pass's context, and dlq-replay keeps the failed attempt's. The span carries
// offsets, the event id and what came of the event; no personal data.
//
// It goes outermost in the chain, so retries and the DLQ decision happen inside the span.
func Trace(tp trace.TracerProvider) Middleware {
	tracer := tp.Tracer(instrumentationName)
	return func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, m *Message) (Result, error) {
			r := m.Record
			ctx, span := tracer.Start(tracing.ExtractRecord(ctx, r), "process "+r.Topic,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "kafka"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", r.Topic),
					attribute.String("messaging.destination.partition.id", strconv.Itoa(int(r.Partition))),
					attribute.Int64("messaging.kafka.offset", r.Offset),
					attribute.String("idnow.event_id", kafka.Header(r, serde.HeaderEventID)),
				))
			defer span.End()
			res, err := next(ctx, m)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				return res, err
			}
			span.SetAttributes(attribute.String("idnow.enrich.result", resultLabel(res)), attribute.Int("idnow.enrich.attempts", max(m.Attempts, 1)))
			// The core handler put the context on the EnrichedSession already (before its size
			// check); this covers the DLQ record, which carries the source's headers.
			for _, out := range res.Records {
				tracing.InjectRecord(ctx, out)
			}
			res.span = span.SpanContext()
			return res, nil
		}
	}
}

// resultLabel says in one bounded word what came of an event.
func resultLabel(res Result) string {
	switch {
	case res.DLQClass != "":
		return "dlq:" + res.DLQClass
	case res.Skipped != "":
		return "skipped:" + res.Skipped
	case res.Truncated != "":
		return "enriched:truncated_" + res.Truncated
	}
	return "enriched"
}

// commitSpans are the spans of one batch's produce and commit, one per traced event (a batch
// holds events of many traces, and a span has one parent): each event's trace shows when its
// output was produced and committed. nil when tracing is off.
type commitSpans []trace.Span

// startCommitSpans starts, for every result enriched under a span, a child span covering the
// batch's produce and transactional commit. Call end with the outcome.
func (e *Enricher) startCommitSpans(results []Result) commitSpans {
	if e.tracer == nil {
		return nil
	}
	var spans commitSpans
	for _, res := range results {
		if !res.span.IsValid() {
			continue
		}
		_, span := e.tracer.Start(trace.ContextWithSpanContext(context.Background(), res.span), "commit "+e.deps.Topics.Enriched,
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.destination.name", e.deps.Topics.Enriched),
				attribute.Int("messaging.batch.message_count", len(results)),
				attribute.String("idnow.enrich.delivery", e.cfg.Delivery),
			))
		spans = append(spans, span)
	}
	return spans
}

// end records whether the batch committed and ends the spans.
func (s commitSpans) end(committed bool, err error) {
	for _, span := range s {
		span.SetAttributes(attribute.Bool("idnow.enrich.committed", committed))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else if !committed {
			span.SetStatus(codes.Error, "transaction aborted: the consumer group rebalanced before the commit")
		}
		span.End()
	}
}
