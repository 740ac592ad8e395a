package ingress

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// benchTokens is how many distinct signed webhooks each benchmark cycles through. Signing is
// done before the timer starts, so its cost (RSA signing is ~20x verification) is not measured.
const benchTokens = 512

// newBenchHandler wires the handler exactly as internal/app does (real verifier over a JWKS
// server, single-object codec, a franz-go client built by kafka.ClientOpts with acks=all and
// idempotence) against an in-process kfake broker. Deduplication is off so every request that
// cycles through the token pool produces a record, as distinct webhooks would.
func newBenchHandler(b *testing.B) (*Handler, *webhooktest.KeySet) {
	b.Helper()
	keys := webhooktest.NewKeySet(b)
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, testTopic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	kc := kafka.DefaultConfig()
	kc.Brokers = cluster.ListenAddrs()
	opts, err := kafka.ClientOpts(kc, "ingress", reg)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, ProducerOpts()...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)

	wcfg := webhook.DefaultConfig()
	wcfg.JWKSURL = keys.Serve(b)
	wcfg.AllowInsecureHTTP = true // httptest serves the JWKS over plain http
	wcfg.Issuer, wcfg.Audience = testIssuer, testAudience
	v, err := webhook.NewVerifier(b.Context(), wcfg, webhook.Deps{Registry: reg, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(v.Close)
	codec, err := serde.NewCodec(b.Context(), serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Dedupe.Window = 0
	h, err := NewHandler(cfg, Deps{Verifier: v, Encoder: codec, Kafka: cl, Topic: testTopic, Registry: reg, Log: log})
	if err != nil {
		b.Fatal(err)
	}
	// Warm the connection to the broker and the producer id so the first timed request does not
	// pay for metadata and InitProducerID.
	if err := cl.ProduceSync(b.Context(), &kgo.Record{Topic: testTopic, Value: []byte("warm-up")}).FirstErr(); err != nil {
		b.Fatal(err)
	}
	return h, keys
}

func signPool(b *testing.B, keys *webhooktest.KeySet, alg string) []string {
	b.Helper()
	toks := make([]string, benchTokens)
	for i := range toks {
		toks[i] = keys.Sign(b, alg, webhooktest.Claims(testIssuer, testAudience,
			webhooktest.Event(fmt.Sprintf("sess-%d", i%97), fmt.Sprintf("evt-%s-%d", alg, i))))
	}
	return toks
}

// BenchmarkHandler drives ServeHTTP without a network listener: body parsing, RS256/ES256
// verification, event mapping, Avro encoding and an acks=all produce to the in-process broker,
// waiting for the acknowledgement as the ingress does before answering. "serial" is the
// latency of one webhook; "parallel" keeps 64 requests in flight, which lets the producer batch
// and shows the handler's throughput on this machine's cores.
func BenchmarkHandler(b *testing.B) {
	h, keys := newBenchHandler(b)
	for _, alg := range []string{"RS256", "ES256"} {
		toks := signPool(b, keys, alg)
		serve := func(b *testing.B, tok string) {
			r := httptest.NewRequest(http.MethodPost, "/webhooks/idnow", strings.NewReader(tok))
			r.Header.Set("Content-Type", "application/jwt")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("status %d: %s", w.Code, bytes.TrimSpace(w.Body.Bytes()))
			}
		}
		b.Run(alg+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				serve(b, toks[i%len(toks)])
				i++
			}
		})
		b.Run(alg+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32) // 32 x GOMAXPROCS(2) = 64 requests in flight
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					serve(b, toks[i%len(toks)])
					i++
				}
			})
		})
	}
}

// discardExporter drops spans: the benchmark measures what tracing costs the handler, not an
// exporter.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkHandlerTracing is one webhook (ES256, serial) with tracing off and on (every webhook
// sampled: the server span, the send span and the traceparent header, batched to an exporter
// that drops them), side by side in one run so the ratio holds on a busy machine.
func BenchmarkHandlerTracing(b *testing.B) {
	h, keys := newBenchHandler(b)
	toks := signPool(b, keys, "ES256")
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			h.tracer = nil
			if mode == "on" {
				h.tracer = newTracer(tp)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/webhooks/idnow", strings.NewReader(toks[i%len(toks)]))
				r.Header.Set("Content-Type", "application/jwt")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, bytes.TrimSpace(w.Body.Bytes()))
				}
				i++
			}
		})
	}
}
