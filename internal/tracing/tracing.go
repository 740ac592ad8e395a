// Package tracing builds the process's OpenTelemetry tracer provider from the standard OTEL_*
// environment variables and carries W3C trace context through Kafka record headers and log
// lines.
//
// Tracing is off unless the environment asks for it: with no exporter configured, New returns
// a Provider whose TracerProvider is nil, the components start no spans and add no headers,
// and the hot paths pay a nil check. It is on when OTEL_TRACES_EXPORTER=otlp, or when
// OTEL_TRACES_EXPORTER is unset and an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set. The exporters read the other OTEL_EXPORTER_OTLP_*
// variables themselves (headers, timeout, compression, certificates); the SDK reads
// OTEL_BSP_*, OTEL_SPAN_*_LIMIT and OTEL_RESOURCE_ATTRIBUTES; this package checks
// OTEL_TRACES_EXPORTER, the protocol and the sampler so that a mistake is a start-up error
// naming the variable instead of a silent fallback.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
)

// The values of OTEL_EXPORTER_OTLP_PROTOCOL this package supports.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// The values of OTEL_TRACES_EXPORTER this package supports.
const (
	ExporterOTLP = "otlp"
	ExporterNone = "none"
)

// Config is what the environment says about tracing. Build it with ConfigFromEnv.
type Config struct {
	// Exporter is ExporterOTLP when tracing is on, "" or ExporterNone when it is off.
	Exporter string
	// Protocol is ProtocolHTTP or ProtocolGRPC.
	Protocol string
	// Endpoint is the OTLP endpoint as configured (empty: the exporter's default,
	// localhost:4318 for HTTP, localhost:4317 for gRPC); for the start-up log line.
	Endpoint string
	// Sampler is the OTEL_TRACES_SAMPLER value in force (default parentbased_always_on) and
	// SamplerArg its OTEL_TRACES_SAMPLER_ARG.
	Sampler, SamplerArg string
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Exporter == ExporterOTLP }

// ConfigFromEnv reads the tracing configuration through getenv (os.Getenv in production) and
// reports every invalid variable at once.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	var errs []error
	c := Config{Sampler: "parentbased_always_on"}
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("OTEL_SDK_DISABLED=%q: want true or false", v))
		} else if disabled {
			return Config{Exporter: ExporterNone}, errors.Join(errs...)
		}
	}
	c.Endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if c.Endpoint == "" {
		c.Endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	switch v := strings.ToLower(get("OTEL_TRACES_EXPORTER")); v {
	case "":
		if c.Endpoint != "" {
			c.Exporter = ExporterOTLP
		}
	case ExporterOTLP, ExporterNone:
		c.Exporter = v
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER=%q is not supported: set otlp (OTLP over HTTP or gRPC, see OTEL_EXPORTER_OTLP_PROTOCOL) or none", v))
	}
	c.Protocol = strings.ToLower(get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	protoVar := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if c.Protocol == "" {
		c.Protocol, protoVar = strings.ToLower(get("OTEL_EXPORTER_OTLP_PROTOCOL")), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch c.Protocol {
	case "":
		c.Protocol = ProtocolHTTP
	case ProtocolHTTP, ProtocolGRPC:
	default:
		errs = append(errs, fmt.Errorf("%s=%q is not supported: set http/protobuf (port 4318) or grpc (port 4317)", protoVar, c.Protocol))
	}
	if v := strings.ToLower(get("OTEL_TRACES_SAMPLER")); v != "" {
		c.Sampler = v
	}
	c.SamplerArg = get("OTEL_TRACES_SAMPLER_ARG")
	if _, err := c.sampler(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// sampler builds the sampler OTEL_TRACES_SAMPLER names; the SDK would fall back to its default
// on a mistake and only log it, so the values are checked here.
func (c Config) sampler() (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if c.SamplerArg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(c.SamplerArg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1, e.g. 0.1 for one trace in ten", c.SamplerArg)
		}
		return r, nil
	}
	switch c.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_on", "":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if c.Sampler == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q is not supported: set always_on, always_off, traceidratio, parentbased_always_on (the default), parentbased_always_off or parentbased_traceidratio", c.Sampler)
}

// Deps are what New needs besides the environment.
type Deps struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES set it.
	ServiceName string
	// Version is service.version.
	Version string
	// Log receives export errors and the start-up line; nil discards them.
	Log *slog.Logger
	// Exporter replaces the OTLP exporter (tests pass the SDK's tracetest exporter); with it
	// tracing is on whatever the environment says.
	Exporter sdktrace.SpanExporter
}

// Provider owns the process's tracer provider. The zero value is tracing off.
type Provider struct {
	tp           *sdktrace.TracerProvider
	log          *slog.Logger
	endpoint     string
	flushTimeout time.Duration
}

// FlushTimeout bounds the flush of the queued spans at Shutdown: a collector that accepts
// connections but does not answer would otherwise hold the exit for the whole cleanup budget.
const FlushTimeout = 5 * time.Second

// New builds the tracer provider cfg describes: a batch span processor in front of an OTLP
// exporter over HTTP or gRPC. With tracing off it returns a Provider whose TracerProvider is
// nil. It does no network I/O: the exporters connect on the first export.
func New(ctx context.Context, cfg Config, deps Deps) (*Provider, error) {
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Exporter == nil && !cfg.Enabled() {
		return &Provider{}, nil
	}
	// Everything that can fail without side effects comes before the exporter, which holds a
	// connection (gRPC) and would otherwise be left open on those errors.
	sampler, err := cfg.sampler()
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := newResource(ctx, deps)
	if err != nil {
		return nil, err
	}
	exp := deps.Exporter
	if exp == nil {
		switch cfg.Protocol {
		case ProtocolGRPC:
			exp, err = otlptracegrpc.New(ctx)
		default:
			exp, err = otlptracehttp.New(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("tracing: OTLP %s exporter: %w; check OTEL_EXPORTER_OTLP_* (endpoint, certificates, headers) or unset them to run without tracing", cfg.Protocol, err)
		}
	}
	endpoint := redactEndpoint(cfg.Endpoint)
	if endpoint == "" {
		endpoint = "default (localhost:4318 for http/protobuf, localhost:4317 for grpc)"
	}
	// Export failures (collector down, refused) are reported by the SDK through the global
	// handler; route them into the process's log instead of the standard logger.
	log := deps.Log
	otel.SetErrorHandler(newErrorLog(log, errorLogEvery, endpoint))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithSampler(sampler))
	if deps.Exporter == nil {
		log.Info("tracing on: spans are exported over OTLP", slog.String("protocol", cfg.Protocol),
			slog.String("endpoint", endpoint), slog.String("sampler", cfg.Sampler))
	}
	return &Provider{tp: tp, log: log, endpoint: endpoint, flushTimeout: FlushTimeout}, nil
}

// redactEndpoint hides a password in the endpoint URL before it is logged.
func redactEndpoint(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.User != nil {
		return u.Redacted()
	}
	return endpoint
}

func newResource(ctx context.Context, deps Deps) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	if deps.ServiceName != "" {
		attrs = append(attrs, attribute.String("service.name", deps.ServiceName))
	}
	if deps.Version != "" {
		attrs = append(attrs, attribute.String("service.version", deps.Version))
	}
	// The environment (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) wins over the defaults.
	env, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource from OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME: %w", err)
	}
	res, err := resource.Merge(resource.NewSchemaless(attrs...), env)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil
}

// errorLogEvery is how often an export failure is logged at most: a collector that is down
// fails every batch (every OTEL_BSP_SCHEDULE_DELAY), and one line a minute says as much.
const errorLogEvery = time.Minute

// errorLog logs the SDK's errors, the first at once and then at most one per interval with the
// number of failures left out in between.
type errorLog struct {
	log        *slog.Logger
	limiter    *rate.Limiter
	endpoint   string // where spans go, for the operator reading the warning
	mu         sync.Mutex
	suppressed int
}

func newErrorLog(log *slog.Logger, every time.Duration, endpoint string) *errorLog {
	return &errorLog{log: log, limiter: rate.NewLimiter(rate.Every(every), 1), endpoint: endpoint}
}

// Handle implements otel.ErrorHandler.
func (l *errorLog) Handle(err error) {
	l.mu.Lock()
	if !l.limiter.Allow() {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	// Almost always an export failure; the SDK reports its other errors (e.g. dropped
	// attributes) through the same handler, and err says which.
	l.log.Warn("tracing: exporting spans failed; spans are dropped, the pipeline is not affected; "+
		"check that the OTLP collector at the endpoint is reachable (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL), or set OTEL_TRACES_EXPORTER=none",
		slog.Any("err", err), slog.String("endpoint", l.endpoint), slog.Int("failures_not_logged_since_last", n))
}

// TracerProvider returns the provider to hand to the components, or nil when tracing is off
// (components then start no spans at all).
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil || p.tp == nil {
		return nil
	}
	return p.tp
}

// Shutdown flushes the spans still queued and stops the exporter, within ctx and FlushTimeout.
// Call it after the components stopped, so their last spans are exported. A collector that
// does not take them in time costs those spans, not a failed shutdown: that is logged, and
// Shutdown returns nil.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.flushTimeout)
	defer cancel()
	if err := p.tp.Shutdown(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			p.log.Warn("tracing: the collector did not take the last spans in time; they are dropped, the pipeline stopped cleanly; check that the OTLP collector at the endpoint answers",
				slog.String("endpoint", p.endpoint), slog.Duration("flush_timeout", p.flushTimeout))
			return nil
		}
		return fmt.Errorf("tracing: flush and shut down the exporter: %w", err)
	}
	return nil
}

// Propagator is the one trace-context format the connector reads and writes: W3C Trace Context
// (the traceparent and tracestate headers).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}
