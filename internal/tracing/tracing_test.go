package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing/tracingtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of the OTLP/HTTP exporter to receivers already closed.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		on       bool
		protocol string
		sampler  string
		wantErrs []string
	}{
		{name: "nothing set: off", env: nil, protocol: tracing.ProtocolHTTP, sampler: "parentbased_always_on"},
		{name: "endpoint alone: on over HTTP", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true, protocol: tracing.ProtocolHTTP, sampler: "parentbased_always_on"},
		{name: "traces endpoint alone", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, on: true, protocol: tracing.ProtocolHTTP, sampler: "parentbased_always_on"},
		{name: "otlp exporter, grpc, ratio", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
			on: true, protocol: tracing.ProtocolGRPC, sampler: "parentbased_traceidratio"},
		{name: "traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			on: true, protocol: tracing.ProtocolHTTP, sampler: "parentbased_always_on"},
		{name: "none beats an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, protocol: tracing.ProtocolHTTP, sampler: "parentbased_always_on"},
		{name: "SDK disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_TRACES_SAMPLER": "nonsense"}},
		{name: "every mistake at once", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
			wantErrs: []string{`OTEL_TRACES_EXPORTER="zipkin" is not supported`, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json" is not supported`, `OTEL_TRACES_SAMPLER_ARG="1.5"`}},
		{name: "unknown sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, wantErrs: []string{`OTEL_TRACES_SAMPLER="sometimes" is not supported`}},
		{name: "bad SDK_DISABLED", env: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, wantErrs: []string{`OTEL_SDK_DISABLED="maybe"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tracing.ConfigFromEnv(env(tt.env))
			if len(tt.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("no error for %v", tt.env)
				}
				for _, w := range tt.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Enabled() != tt.on || (tt.protocol != "" && c.Protocol != tt.protocol) || (tt.sampler != "" && c.Sampler != tt.sampler) {
				t.Errorf("config %+v, want on=%v protocol=%s sampler=%s", c, tt.on, tt.protocol, tt.sampler)
			}
		})
	}
}

// TestOffIsNil: with tracing off the components get no provider and Shutdown is a no-op.
func TestOffIsNil(t *testing.T) {
	p, err := tracing.New(t.Context(), tracing.Config{}, tracing.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if p.TracerProvider() != nil {
		t.Fatal("tracing off returned a tracer provider")
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestExporterOverride: an exporter given in Deps turns tracing on with a zero Config (the
// default sampler), as the app's tests use it.
func TestExporterOverride(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, err := tracing.New(t.Context(), tracing.Config{}, tracing.Deps{ServiceName: "svc", Exporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("t").Start(t.Context(), "s")
	span.End()
	if err := p.TracerProvider().(*sdktrace.TracerProvider).ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := exp.GetSpans(); len(got) != 1 || got[0].Resource.String() == "" {
		t.Fatalf("spans %v", got)
	}
	if err := p.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestNewFailsWithoutLeaks: a configuration New cannot use (here a sampler a caller set
// without ConfigFromEnv) is an error naming it, and leaves no exporter connection behind
// (goleak in TestMain).
func TestNewFailsWithoutLeaks(t *testing.T) {
	cfg := tracing.Config{Exporter: tracing.ExporterOTLP, Protocol: tracing.ProtocolGRPC, Endpoint: "http://127.0.0.1:1", Sampler: "sometimes"}
	if _, err := tracing.New(t.Context(), cfg, tracing.Deps{}); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Fatalf("New with an unknown sampler: %v, want an error naming OTEL_TRACES_SAMPLER", err)
	}
}

type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	r *tracingtest.Receiver
}

func (c grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.r.Add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestExportOverOTLP: spans reach a collector over both protocols, with the service name the
// environment sets (winning over the default) and the version; Shutdown flushes them.
func TestExportOverOTLP(t *testing.T) {
	for _, protocol := range []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			r := tracingtest.NewReceiver(t)
			endpoint := r.URL
			if protocol == tracing.ProtocolGRPC {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(srv, grpcCollector{r: r})
				go func() { _ = srv.Serve(ln) }()
				t.Cleanup(srv.Stop)
				endpoint = "http://" + ln.Addr().String()
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_SERVICE_NAME", "from-env")
			cfg, err := tracing.ConfigFromEnv(os.Getenv)
			if err != nil {
				t.Fatal(err)
			}
			var logs tracingtest.LogBuffer
			p, err := tracing.New(t.Context(), cfg, tracing.Deps{ServiceName: "default-name", Version: "1.2.3", Log: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			_, span := p.TracerProvider().Tracer("test").Start(t.Context(), "one")
			span.End()
			// The batch processor's default delay is 5 s: Shutdown's flush delivers the span.
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			spans := r.WaitFor(t, 5*time.Second, func(s []tracingtest.Span) bool { return len(s) == 1 })
			if spans[0].Name != "one" || spans[0].Service != "from-env" {
				t.Errorf("span %+v", spans[0])
			}
			if !strings.Contains(logs.String(), `"msg":"tracing on: spans are exported over OTLP"`) || !strings.Contains(logs.String(), protocol) {
				t.Errorf("start-up line missing: %s", logs.String())
			}
		})
	}
}

// TestRecordCarrier: trace context goes into Kafka headers and comes back out; injecting again
// replaces it; a record without it yields no span context.
func TestRecordCarrier(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "idnow.event_id", Value: []byte("e1")}}}
	if sc := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), r)); sc.IsValid() {
		t.Fatalf("span context %v from a record without one", sc)
	}
	ctx1, s1 := tp.Tracer("t").Start(context.Background(), "a")
	ctx2, s2 := tp.Tracer("t").Start(context.Background(), "b")
	defer s1.End()
	defer s2.End()
	tracing.InjectRecord(ctx1, r)
	tracing.InjectRecord(ctx2, r)
	n := 0
	for _, h := range r.Headers {
		if h.Key == "traceparent" {
			n++
		}
	}
	got := trace.SpanContextFromContext(tracing.ExtractRecord(context.Background(), r))
	if n != 1 || got.SpanID() != s2.SpanContext().SpanID() || !got.IsRemote() {
		t.Fatalf("%d traceparent headers, extracted %v, want one naming %v", n, got, s2.SpanContext())
	}
	if r.Headers[0].Key != "idnow.event_id" {
		t.Fatalf("other headers changed: %v", r.Headers)
	}
}

// TestLogHandler: a line logged under a span carries its ids, others do not, and derived
// loggers keep the behaviour.
func TestLogHandler(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	var buf bytes.Buffer
	log := slog.New(tracing.LogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "x")
	ctx, span := tp.Tracer("t").Start(context.Background(), "s")
	defer span.End()
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("lines: %s", buf.String())
	}
	var traced, untraced map[string]any
	if err := json.Unmarshal(lines[0], &traced); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(lines[1], &untraced); err != nil {
		t.Fatal(err)
	}
	if traced["trace_id"] != span.SpanContext().TraceID().String() || traced["span_id"] != span.SpanContext().SpanID().String() || traced["component"] != "x" {
		t.Errorf("traced line %v", traced)
	}
	if _, ok := untraced["trace_id"]; ok {
		t.Errorf("untraced line has a trace_id: %v", untraced)
	}
}
