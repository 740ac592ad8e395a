package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestRunTracesWebhookToCommit is the in-process version of the tracing acceptance test
// (cmd/idnow-connector has the one across two processes over OTLP): under `run` with tracing
// on, a simulated webhook's trace holds the ingress's server span, the record's send span, the
// enricher's process span (continued from the record headers), the IDnow API calls under it
// and the commit of its output; and log lines written under a span carry its trace id.
func TestRunTracesWebhookToCommit(t *testing.T) {
	cfg := testConfig()
	cfg.Simulator.Sessions = 1
	// Half the API calls fail with 500 and are retried by the IDnow client, which logs each
	// retry (debug) under the event's span.
	cfg.Simulator.Faults.Rate500 = 0.5
	var logs syncBuffer
	log := slog.New(tracingLogHandler(&logs))
	a, err := New(cfg, ModeRun, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	a.spanExporter = keepSpans{exp}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	if err := a.Simulator().WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Tail(ctx, cfg, TailOptions{Topic: cfg.Topics.Enriched, Brokers: a.Brokers(), FromBeginning: true, Max: 3}, &out); err != nil {
		t.Fatal(err)
	}
	// Stopping flushes the spans (the tracing cleanup runs last).
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	byTrace := map[trace.TraceID][]tracetest.SpanStub{}
	for _, s := range spans {
		byTrace[s.SpanContext.TraceID()] = append(byTrace[s.SpanContext.TraceID()], s)
	}
	complete := 0
	for id, ss := range byTrace {
		webhook := find(ss, "POST /webhooks/idnow", trace.SpanID{})
		if webhook == nil || !hasAttr(webhook, "idnow.webhook.result", "accepted") {
			continue // a redelivery answered as a duplicate has no record of its own
		}
		send := find(ss, "send idnow.sessions", webhook.SpanContext.SpanID())
		if send == nil {
			t.Errorf("trace %s: no send span under the webhook span", id)
			continue
		}
		process := find(ss, "process idnow.sessions", send.SpanContext.SpanID())
		if process == nil {
			t.Errorf("trace %s: no enricher span under the send span", id)
			continue
		}
		if find(ss, "idnow get_session", process.SpanContext.SpanID()) == nil {
			t.Errorf("trace %s: no IDnow get_session span under the enricher span", id)
		}
		if find(ss, "commit idnow.sessions.enriched", process.SpanContext.SpanID()) == nil {
			t.Errorf("trace %s: no commit span under the enricher span", id)
		}
		complete++
	}
	if complete == 0 {
		t.Fatalf("no trace from a webhook to its commit among %d spans in %d traces", len(spans), len(byTrace))
	}
	// The simulator's session sends at least created and a terminal status.
	if complete < 2 {
		t.Errorf("%d complete traces, want one per webhook (at least 2)", complete)
	}
	traced := 0
	for _, l := range logs.lines() {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["trace_id"] != nil {
			if _, ok := byTrace[mustTraceID(t, m["trace_id"].(string))]; !ok {
				t.Errorf("log line names trace %v, which was not exported: %s", m["trace_id"], l)
			}
			traced++
		}
	}
	if traced == 0 {
		t.Errorf("no log line carries a trace_id (the IDnow client logs its retries under the event's span)")
	}
}

func find(ss []tracetest.SpanStub, name string, parent trace.SpanID) *tracetest.SpanStub {
	for i := range ss {
		if ss[i].Name == name && ss[i].Parent.SpanID() == parent {
			return &ss[i]
		}
	}
	return nil
}

func hasAttr(s *tracetest.SpanStub, key, value string) bool {
	for _, a := range s.Attributes {
		if string(a.Key) == key && a.Value.AsString() == value {
			return true
		}
	}
	return false
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	t.Helper()
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func tracingLogHandler(w *syncBuffer) slog.Handler {
	l, _ := NewLogger(LogConfig{Format: "json", Level: "debug"}, w)
	return l.Handler()
}

// keepSpans keeps the exported spans past Shutdown, which the in-memory exporter would clear.
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }
