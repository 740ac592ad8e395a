package tracing

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
)

// RecordCarrier adapts a Kafka record's headers to the propagation API, so trace context
// travels with the record (header names as in HTTP: traceparent, tracestate).
type RecordCarrier struct{ R *kgo.Record }

var _ propagation.TextMapCarrier = RecordCarrier{}

// Get returns the value of the last header named key, or "".
func (c RecordCarrier) Get(key string) string {
	for i := len(c.R.Headers) - 1; i >= 0; i-- {
		if c.R.Headers[i].Key == key {
			return string(c.R.Headers[i].Value)
		}
	}
	return ""
}

// Set replaces the header named key, or adds it: a record produced again (a replay, a retried
// batch) carries one trace context, not two.
func (c RecordCarrier) Set(key, value string) {
	for i := range c.R.Headers {
		if c.R.Headers[i].Key == key {
			c.R.Headers[i].Value = []byte(value)
			return
		}
	}
	c.R.Headers = append(c.R.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys lists the record's header names.
func (c RecordCarrier) Keys() []string {
	keys := make([]string, len(c.R.Headers))
	for i, h := range c.R.Headers {
		keys[i] = h.Key
	}
	return keys
}

// InjectRecord writes the span context of ctx into r's headers; nothing when ctx has none.
func InjectRecord(ctx context.Context, r *kgo.Record) {
	Propagator.Inject(ctx, RecordCarrier{r})
}

// ExtractRecord returns ctx carrying the remote span context found in r's headers (unchanged
// when there is none or it is malformed).
func ExtractRecord(ctx context.Context, r *kgo.Record) context.Context {
	return Propagator.Extract(ctx, RecordCarrier{r})
}
