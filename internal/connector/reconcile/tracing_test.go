package reconcile_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
)

// TestPassTrace: with a tracer, a pass is one span with what it did, and every repair event it
// writes carries the pass's trace context, so the enrichment of a repaired session joins it.
func TestPassTrace(t *testing.T) {
	now := time.Now().UTC()
	done := now.Add(-10 * time.Minute)
	api := &fakeIDnow{sessions: map[string][]idnow.Session{"flow-a": {
		{SessionID: "ses-1", FlowID: "flow-a", Status: idnow.StatusCompleted, CreatedAt: done.Add(-time.Minute), CompletedAt: &done, UpdatedAt: done},
		{SessionID: "ses-2", FlowID: "flow-a", Status: idnow.StatusAborted, CreatedAt: done.Add(-2 * time.Minute), UpdatedAt: done},
	}}}
	e := newEnv(t, api)
	if err := state.EnsureTopic(t.Context(), kadm.NewClient(e.prod), topics); err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	deps := e.deps()
	deps.Tracer = tp
	cfg := reconcile.DefaultConfig()
	cfg.Grace, cfg.RateLimit, cfg.Flows = 0, 1000, []string{"flow-a"}
	sum, err := reconcile.Backfill(t.Context(), cfg, deps, reconcile.PassOptions{Since: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.WrittenTotal() != 2 {
		t.Fatalf("summary %+v, want 2 repair events", sum)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "reconcile pass" {
		t.Fatalf("spans %v, want one reconcile pass", spans)
	}
	pass := spans[0].SpanContext()
	written := false
	for _, a := range spans[0].Attributes() {
		written = written || (a.Key == "idnow.reconcile.written" && a.Value.AsInt64() == 2)
	}
	if !written {
		t.Errorf("pass span attributes %v, want idnow.reconcile.written 2", spans[0].Attributes())
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topics.Sessions), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < 2 && ctx.Err() == nil {
		recs = append(recs, cl.PollFetches(ctx).Records()...)
	}
	if len(recs) != 2 {
		t.Fatalf("%d repair events read, want 2", len(recs))
	}
	for _, r := range recs {
		sc := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), r))
		if sc.TraceID() != pass.TraceID() || sc.SpanID() != pass.SpanID() {
			t.Errorf("repair event of %s carries %v, want the pass span %v", r.Key, sc, pass)
		}
	}
}
