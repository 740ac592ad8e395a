package ingress

import (
	"context"
	"net/http"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
)

// instrumentationName names the ingress's tracer (the instrumentation scope in a backend).
const instrumentationName = "github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/ingress"

// Span attributes. The webhook span is kept small and free of personal data: what happened to
// the request (result, status) and which event it was (IDnow's event id and name), never the
// sender's address, the token or the event's payload.
const (
	attrResult     = "idnow.webhook.result"
	attrEventID    = "idnow.event_id"
	attrEventName  = "idnow.event_name"
	attrVariant    = "idnow.webhook.delivery_variant"
	attrHTTPStatus = "http.response.status_code"
)

// newTracer returns the ingress's tracer, or nil without a provider: every span site checks
// for nil, so tracing off costs a comparison.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(instrumentationName)
}

// startWebhookSpan starts the server span of one webhook request. The endpoint faces the
// internet, so a traceparent the sender put in the request does not become the parent (anyone
// could graft their requests onto a trace or force sampling); it is kept as a link instead,
// without the sender's tracestate, free text that would otherwise be exported verbatim.
func (h *Handler) startWebhookSpan(r *http.Request) (*http.Request, trace.Span) {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithNewRoot(),
		trace.WithAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", h.cfg.Path),
		),
	}
	if remote := trace.SpanContextFromContext(tracing.Propagator.Extract(context.Background(), propagation.HeaderCarrier(r.Header))); remote.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote.WithTraceState(trace.TraceState{})}))
	}
	ctx, span := h.tracer.Start(r.Context(), "POST "+h.cfg.Path, opts...)
	return r.WithContext(ctx), span
}

// endWebhookSpan records the answer on the webhook span and ends it. 5xx answers are errors
// of the receiver; 4xx are the sender's and leave the status unset, as OpenTelemetry's HTTP
// conventions ask for server spans.
func endWebhookSpan(span trace.Span, result string, status int, reason string) {
	span.SetAttributes(attribute.String(attrResult, result), attribute.Int(attrHTTPStatus, status))
	if status >= 500 {
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

// eventSpanAttrs names the accepted event on the webhook span.
func eventSpanAttrs(ctx context.Context, eventID, eventName, variant string) {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String(attrEventID, eventID),
		attribute.String(attrEventName, eventName), attribute.String(attrVariant, variant))
}

// startSendSpan starts the producer span of the SessionEvent record under the webhook span
// parent and writes its trace context into rec's headers, where the enricher picks it up.
func (h *Handler) startSendSpan(parent trace.SpanContext, rec *kgo.Record) (context.Context, trace.Span) {
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	ctx, span := h.tracer.Start(ctx, "send "+h.topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", h.topic),
		))
	tracing.InjectRecord(ctx, rec)
	return ctx, span
}

// endSendSpan records where the record landed, or why it did not, and ends the span.
func endSendSpan(span trace.Span, rec *kgo.Record, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.String("messaging.destination.partition.id", strconv.Itoa(int(rec.Partition))),
			attribute.Int64("messaging.kafka.offset", rec.Offset))
	}
	span.End()
}
