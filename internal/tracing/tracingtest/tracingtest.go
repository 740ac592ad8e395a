// Package tracingtest is an OTLP trace receiver for tests: an HTTP server on 127.0.0.1 that
// accepts what an OTLP/HTTP exporter sends (protobuf, plain or gzip) and keeps the spans, so a
// test can point OTEL_EXPORTER_OTLP_ENDPOINT of a process, its own or a child's, at it and
// assert the traces that arrive. It lives apart from internal/tracing so the production package
// does not import "testing".
package tracingtest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened.
type Span struct {
	Service      string // the resource's service.name
	Scope        string // the instrumentation scope
	Name         string
	Kind         string // "server", "client", "producer", "consumer", "internal"
	TraceID      string
	SpanID       string
	ParentSpanID string // empty for a root span
	Attrs        map[string]string
	Error        bool // status ERROR
}

// Receiver collects the spans exported to it.
type Receiver struct {
	// URL is the base URL to use as OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends
	// /v1/traces).
	URL string

	mu    sync.Mutex
	spans []Span
	errs  []error
}

// NewReceiver starts a receiver, stopped when the test ends.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "POST /v1/traces", http.StatusNotFound)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.fail(w, fmt.Errorf("gzip: %w", err))
			return
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		r.fail(w, err)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &msg); err != nil {
		r.fail(w, fmt.Errorf("decode ExportTraceServiceRequest (content type %q): %w", req.Header.Get("Content-Type"), err))
		return
	}
	r.Add(&msg)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *Receiver) fail(w http.ResponseWriter, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// Add keeps the spans of one export request (also for a gRPC receiver in a test).
func (r *Receiver) Add(msg *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range msg.GetResourceSpans() {
		service := attrs(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, Span{
					Service: service, Scope: ss.GetScope().GetName(), Name: s.GetName(),
					Kind:    kinds[int32(s.GetKind())],
					TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Attrs:        attrs(s.GetAttributes()),
					Error:        s.GetStatus().GetCode() == 2,
				})
			}
		}
	}
}

var kinds = map[int32]string{0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		v := kv.GetValue()
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = x.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = fmt.Sprint(x.DoubleValue)
		default:
			m[kv.GetKey()] = v.String()
		}
	}
	return m
}

// Spans returns a copy of every span received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Errors returns the requests the receiver could not decode.
func (r *Receiver) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// WaitFor polls until done accepts the spans received so far and returns them, failing the
// test with the last spans seen after timeout.
func (r *Receiver) WaitFor(tb testing.TB, timeout time.Duration, done func([]Span) bool) []Span {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			for _, s := range spans {
				tb.Logf("span %s/%s %s trace=%s span=%s parent=%s %v", s.Service, s.Kind, s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Attrs)
			}
			tb.Fatalf("tracingtest: the spans wanted did not arrive within %s (%d received, decode errors %v)", timeout, len(spans), r.Errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogBuffer is a log sink safe for concurrent use. OpenTelemetry's error handler is global: a
// batch processor of an earlier test, still draining, may log through the handler the current
// test installed while the test reads its logs.
type LogBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
