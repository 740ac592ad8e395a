package idnow

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTracedCallsAreChildSpans: with a tracer, each exchange of a call made under a span is a
// client span under it (the token fetch included), named after the endpoint; nothing of the
// trace reaches IDnow; a call outside any trace makes no span.
func TestTracedCallsAreChildSpans(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	var propagated []string
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		propagated = append(propagated, r.Header.Get("traceparent")+r.Header.Get("tracestate"))
		mu.Unlock()
		writeRaw(w, http.StatusOK, `{"sessionId":"sess-1","sessionStatus":"CREATED"}`)
	})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	c, _ := newTestClient(t, f, nil, Deps{Tracer: tp})

	ctx, parent := tp.Tracer("test").Start(t.Context(), "event")
	if _, err := c.GetSession(ctx, "sess-1"); err != nil {
		t.Fatal(err)
	}
	parent.End()
	// Outside a trace: no span (the token is cached by now, so only the API call would count).
	if _, err := c.GetSession(t.Context(), "sess-1"); err != nil {
		t.Fatal(err)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	if len(rec.Ended()) != 3 {
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		t.Fatalf("spans %v, want event, idnow get_session and idnow token", names)
	}
	for _, name := range []string{"idnow " + EndpointGetSession, "idnow " + EndpointToken} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no span %q", name)
		}
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("%s: parent %s, want the event span %s", name, s.Parent().SpanID(), parent.SpanContext().SpanID())
		}
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s: kind %v, want client", name, s.SpanKind())
		}
	}
	status := false
	for _, a := range byName["idnow "+EndpointGetSession].Attributes() {
		if a.Key == "http.response.status_code" && a.Value.AsInt64() == 200 {
			status = true
		}
	}
	if !status {
		t.Errorf("get_session span lacks http.response.status_code 200: %v", byName["idnow "+EndpointGetSession].Attributes())
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(propagated, "") != "" {
		t.Errorf("trace context sent to IDnow: %q", propagated)
	}
}
