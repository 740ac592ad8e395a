package idnow

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// endpointKey carries a call's endpoint name (EndpointGetSession, ...) in the request context,
// for the span name.
type endpointKey struct{}

// traceTransports wraps the API and token transports with otelhttp, so every HTTP exchange
// with IDnow (each attempt, each token fetch) is a client span, a child of the caller's span
// (the enricher's event span); an exchange without a traced caller gets no span. Spans are named "idnow <endpoint>"; otelhttp records method,
// URL, server address and status code. Presigned downloads are left out: their URLs carry
// signatures in the query string, which must not end up in a tracing backend.
//
// No trace context is sent to IDnow (an empty propagator): the trace ids are the connector's
// own business, and IDnow does not read them.
func traceTransports(tp trace.TracerProvider, api http.RoundTripper) (apiRT, tokenRT http.RoundTripper) {
	common := []otelhttp.Option{
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		// Only exchanges made for a traced caller: calls outside any trace (reconciler passes,
		// readiness checks) would each start a one-span trace of their own, noise that hides
		// the traces of webhooks.
		otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
	}
	apiRT = otelhttp.NewTransport(api, append(common, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		if ep, ok := r.Context().Value(endpointKey{}).(string); ok {
			return "idnow " + ep
		}
		return "idnow " + r.Method
	}))...)
	tokenRT = otelhttp.NewTransport(api, append(common, otelhttp.WithSpanNameFormatter(func(string, *http.Request) string {
		return "idnow " + EndpointToken
	}))...)
	return apiRT, tokenRT
}

// withEndpoint names the endpoint in ctx when the client is traced.
func (c *Client) withEndpoint(ctx context.Context, endpoint string) context.Context {
	if !c.traced {
		return ctx
	}
	return context.WithValue(ctx, endpointKey{}, endpoint)
}
