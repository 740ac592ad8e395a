package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
)

func testTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, rec
}

// TestTraceMiddleware: the event's span continues the trace in the record's headers, the
// handler's work (the IDnow calls) runs under it, its output records carry its context, and the
// Result keeps it for the commit span; an event without trace context starts a trace; a
// failure is recorded on the span.
func TestTraceMiddleware(t *testing.T) {
	tp, rec := testTracer(t)
	upstreamCtx, upstream := tp.Tracer("ingress").Start(context.Background(), "send idnow.sessions")
	upstream.End()

	var apiParent trace.SpanContext
	core := func(ctx context.Context, m *Message) (Result, error) {
		// What the IDnow client's otelhttp transport does with ctx.
		_, api := tp.Tracer("idnow").Start(ctx, "idnow get_session")
		apiParent = trace.SpanContextFromContext(ctx)
		api.End()
		return Result{Records: []*kgo.Record{{Topic: "idnow.sessions.enriched", Headers: append([]kgo.RecordHeader(nil), m.Record.Headers...)}}}, nil
	}
	h := Chain(core, Trace(tp))

	m := testMessage()
	tracing.InjectRecord(upstreamCtx, m.Record)
	res, err := h(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	var process sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "process idnow.sessions" {
			process = s
		}
	}
	if process == nil {
		t.Fatalf("no process span among %d", len(rec.Ended()))
	}
	if process.Parent().SpanID() != upstream.SpanContext().SpanID() || process.SpanContext().TraceID() != upstream.SpanContext().TraceID() || !process.Parent().IsRemote() {
		t.Errorf("process span parent %v, want the remote ingress span %v", process.Parent(), upstream.SpanContext())
	}
	if process.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind %v", process.SpanKind())
	}
	if apiParent.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("the handler ran under %v, want the process span", apiParent)
	}
	attrs := map[string]string{}
	for _, a := range process.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["idnow.event_id"] != "evt-1" || attrs["messaging.kafka.offset"] != "41" || attrs["idnow.enrich.result"] != "enriched" {
		t.Errorf("attributes %v", attrs)
	}
	if !res.span.Equal(process.SpanContext()) {
		t.Errorf("Result span %v, want %v", res.span, process.SpanContext())
	}
	out := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), res.Records[0]))
	if out.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("output record trace context %v, want the process span (one traceparent header, replaced)", out)
	}
	n := 0
	for _, hd := range res.Records[0].Headers {
		if hd.Key == "traceparent" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d traceparent headers on the output record, want 1", n)
	}

	// No trace context: a new trace. A failure: an error span.
	rec2 := testMessage()
	failing := Chain(func(context.Context, *Message) (Result, error) { return Result{}, errors.New("boom") }, Trace(tp))
	if _, err := failing(context.Background(), rec2); err == nil {
		t.Fatal("want the handler's error")
	}
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Parent().IsValid() || last.Status().Code != codes.Error {
		t.Errorf("span of an untraced failing event: parent %v, status %v", last.Parent(), last.Status())
	}
}

// TestCommitSpans: each traced result of a batch gets a commit span under its event span,
// ending with the batch's outcome; untraced results and tracing off make none.
func TestCommitSpans(t *testing.T) {
	tp, rec := testTracer(t)
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: kafka.DefaultTopicsConfig()}, tracer: tp.Tracer(instrumentationName)}
	_, ev1 := tp.Tracer("t").Start(context.Background(), "e1")
	_, ev2 := tp.Tracer("t").Start(context.Background(), "e2")
	results := []Result{{span: ev1.SpanContext()}, {}, {span: ev2.SpanContext()}}
	spans := e.startCommitSpans(results)
	if len(spans) != 2 {
		t.Fatalf("%d commit spans, want 2", len(spans))
	}
	spans.end(false, nil)
	var commits []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "commit "+e.deps.Topics.Enriched {
			commits = append(commits, s)
		}
	}
	if len(commits) != 2 || commits[0].Parent().SpanID() != ev1.SpanContext().SpanID() || commits[1].Parent().SpanID() != ev2.SpanContext().SpanID() {
		t.Fatalf("commit spans %v", commits)
	}
	if commits[0].Status().Code != codes.Error {
		t.Errorf("an aborted transaction's span has status %v", commits[0].Status())
	}
	off := &Enricher{}
	if s := off.startCommitSpans(results); s != nil {
		t.Errorf("tracing off made %d spans", len(s))
	}
}

// TestHandlerCountsTraceHeader: the EnrichedSession carries the event span's traceparent, and
// the output limit counts it: a record that fits only without the header is shortened.
func TestHandlerCountsTraceHeader(t *testing.T) {
	tp, _ := testTracer(t)
	events, enriched := newCodecs(t)
	v, err := events.Encode(testEvent("ses-done", "COMPLETED"))
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{sessions: map[string]*idnow.Session{"ses-done": {SessionID: "ses-done", Status: idnow.StatusCompleted}},
		blocks: map[string][]idnow.DataBlock{"ses-done": {{ID: "b1", Type: "basicIdentity", Status: "STORED", Content: json.RawMessage(`{"givenName":"A"}`)}}}}
	limit := 0
	h := NewHandler(HandlerDeps{API: api, Events: events, Enriched: enriched, Topic: "out",
		Policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}, Version: "v",
		MaxRecordBytes: func() int { return limit }})
	ctx, span := tp.Tracer("t").Start(context.Background(), "process")
	defer span.End()
	full, err := h(ctx, &Message{Record: &kgo.Record{Topic: "in", Value: v}})
	if err != nil {
		t.Fatal(err)
	}
	rec := full.Records[0]
	if got := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), rec)); got.SpanID() != span.SpanContext().SpanID() {
		t.Fatalf("EnrichedSession trace context %v, want the event span", got)
	}
	// One byte less than the record with its header: without counting the header it would fit.
	limit = recordSize(rec) - 1
	short, err := h(ctx, &Message{Record: &kgo.Record{Topic: "in", Value: v}})
	if err != nil {
		t.Fatal(err)
	}
	if short.Truncated == "" || recordSize(short.Records[0]) > limit {
		t.Fatalf("record of %d bytes with limit %d not shortened (truncated %q)", recordSize(short.Records[0]), limit, short.Truncated)
	}
}
