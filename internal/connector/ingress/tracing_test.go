package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

func withTracer(tp trace.TracerProvider) harnessOpt {
	return func(s *harnessSettings) { s.tracer = tp }
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, a := range s.Attributes() {
		m[a.Key] = a.Value
	}
	return m
}

func headerOf(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestWebhookSpan: an accepted webhook is one server span (result, status, event id and name,
// nothing else about the event) with the record's producer span under it, and the record
// carries that producer span's W3C trace context for the enricher. A sender's traceparent is
// only a link, not the parent.
func TestWebhookSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := newHarness(t, withTracer(tp))

	req := jwtRequest(h.token("RS256", webhooktest.Event("sess-secret-name", "ev-1")))
	foreign := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req.Header.Set("traceparent", foreign)
	req.Header.Set("tracestate", "vendor=anything-the-sender-likes")
	if w := h.do(req); w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want the webhook and its send span", len(spans))
	}
	var server, send sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = s
		case trace.SpanKindProducer:
			send = s
		}
	}
	if server == nil || send == nil {
		t.Fatalf("want one server and one producer span, got %v", spans)
	}
	if server.Name() != "POST /webhooks/idnow" || send.Name() != "send "+testTopic {
		t.Errorf("names %q, %q", server.Name(), send.Name())
	}
	if server.Parent().IsValid() {
		t.Errorf("webhook span has parent %v: a sender's traceparent must not become the parent", server.Parent())
	}
	if links := server.Links(); len(links) != 1 || links[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("links %v, want the sender's trace context as a link", links)
	} else if ts := links[0].SpanContext.TraceState().String(); ts != "" {
		t.Errorf("the link carries the sender's tracestate %q, which is exported verbatim", ts)
	}
	a := spanAttrs(server)
	if a[attrResult].AsString() != resultAccepted || a[attrHTTPStatus].AsInt64() != 200 || a[attrEventID].AsString() != "ev-1" || a[attrEventName].AsString() == "" {
		t.Errorf("webhook span attributes %v", a)
	}
	for k, v := range a {
		if strings.Contains(v.String(), "sess-secret-name") || strings.Contains(v.String(), "127.0.0.1") || strings.Contains(v.String(), "192.0.2.") {
			t.Errorf("attribute %s=%s carries the payload or the sender's address", k, v.String())
		}
	}
	if send.Parent().SpanID() != server.SpanContext().SpanID() || send.SpanContext().TraceID() != server.SpanContext().TraceID() {
		t.Errorf("send span parent %v, want the webhook span %v", send.Parent(), server.SpanContext())
	}
	if sa := spanAttrs(send); sa["messaging.destination.name"].AsString() != testTopic || sa["messaging.kafka.offset"].Type() != attribute.INT64 {
		t.Errorf("send span attributes %v", sa)
	}

	recs := h.records()
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	got := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), recs[0]))
	if got.TraceID() != send.SpanContext().TraceID() || got.SpanID() != send.SpanContext().SpanID() || !got.IsSampled() {
		t.Errorf("record trace context %v (traceparent %q), want the send span %v", got, headerOf(recs[0], "traceparent"), send.SpanContext())
	}
}

// TestRejectedWebhookSpan: a refused webhook is a span with its result and status; a 5xx is an
// error of the receiver, a 4xx is not; the rejection log line carries the trace id.
func TestRejectedWebhookSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var logs bytes.Buffer
	h := newHarness(t, withTracer(tp))
	// As internal/app builds the process's logger.
	h.handler.rejects.log = slog.New(tracing.LogHandler(slog.NewJSONHandler(&logs, nil)))

	if w := h.do(jwtRequest("not-a-jwt")); w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d", w.Code)
	}
	h.kafkaDown.Store(true)
	if w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s-2", "ev-2")))); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d", w.Code)
	}
	var servers []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			servers = append(servers, s)
		}
	}
	if len(servers) != 2 {
		t.Fatalf("%d webhook spans, want 2", len(servers))
	}
	a := spanAttrs(servers[0])
	if a[attrResult].AsString() != resultUnauthorized || a[attrHTTPStatus].AsInt64() != 401 || servers[0].Status().Code == codes.Error {
		t.Errorf("401 span: attributes %v, status %v", a, servers[0].Status())
	}
	if _, ok := a[attrEventID]; ok {
		t.Errorf("an unverified webhook's span names an event: %v", a)
	}
	a = spanAttrs(servers[1])
	if a[attrResult].AsString() != resultKafkaUnavailable || a[attrHTTPStatus].AsInt64() != 503 || servers[1].Status().Code != codes.Error {
		t.Errorf("503 span: attributes %v, status %v", a, servers[1].Status())
	}
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["msg"] == "webhook rejected" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 1 || lines[0]["trace_id"] != servers[0].SpanContext().TraceID().String() {
		t.Errorf("rejection log lines %v, want one with trace_id %s", lines, servers[0].SpanContext().TraceID())
	}
}

// TestNoTracerNoHeaders: without a tracer the record has the usual headers only.
func TestNoTracerNoHeaders(t *testing.T) {
	h := newHarness(t)
	if w := h.do(jwtRequest(h.token("RS256", webhooktest.Event("s-1", "ev-1")))); w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	recs := h.records()
	var keys []string
	for _, hd := range recs[0].Headers {
		keys = append(keys, hd.Key)
	}
	if slices.Contains(keys, "traceparent") {
		t.Fatalf("headers %v carry trace context with tracing off", keys)
	}
}
