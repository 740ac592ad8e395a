package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

const (
	testIssuer   = "https://auth.example.test/oidc"
	testAudience = "https://connector.example.test/webhooks/idnow"
	testTopic    = "idnow.sessions"
)

// harness is a webhook handler wired to a real verifier (JWKS over httptest), a kfake broker and
// the single-object codec: everything but the network listener.
type harness struct {
	t         *testing.T
	keys      *webhooktest.KeySet
	handler   *Handler
	cluster   *kfake.Cluster
	client    *kgo.Client
	codec     *serde.Codec
	reg       *prometheus.Registry
	kafkaDown atomic.Bool
}

// harnessSettings are what a harnessOpt may change before the harness is built.
type harnessSettings struct {
	ingress     *Config
	webhook     *webhook.Config
	maxBuffered int       // when positive, caps the producer's buffer (kgo.MaxBufferedRecords)
	logTo       io.Writer // where the handler logs (JSON lines); io.Discard unless set
	tracer      trace.TracerProvider
}

type harnessOpt func(*harnessSettings)

// configure adapts a function of the two config sections into a harnessOpt.
func configure(f func(*Config, *webhook.Config)) harnessOpt {
	return func(s *harnessSettings) { f(s.ingress, s.webhook) }
}

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, keys: webhooktest.NewKeySet(t), reg: prometheus.NewRegistry()}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.ProduceTimeout = 750 * time.Millisecond
	wcfg := webhook.DefaultConfig()
	wcfg.JWKSURL = h.keys.Serve(t)
	wcfg.AllowInsecureHTTP = true // httptest serves the JWKS over plain http
	wcfg.Issuer = testIssuer
	wcfg.Audience = testAudience
	settings := harnessSettings{ingress: &cfg, webhook: &wcfg, logTo: io.Discard}
	for _, o := range opts {
		o(&settings)
	}
	log := slog.New(slog.NewJSONHandler(settings.logTo, nil))

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	h.cluster = c
	// Kafka outages are simulated by failing every produce request while kafkaDown is set.
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if h.kafkaDown.Load() {
			return nil, io.ErrUnexpectedEOF, true
		}
		return nil, nil, false
	})
	kopts := append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond })}, ProducerOpts()...)
	if settings.maxBuffered > 0 {
		kopts = append(kopts, kgo.MaxBufferedRecords(settings.maxBuffered))
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	h.client = cl

	v, err := webhook.NewVerifier(t.Context(), wcfg, webhook.Deps{Registry: h.reg, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	h.codec, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.handler, err = NewHandler(cfg, Deps{Verifier: v, Encoder: h.codec, Kafka: cl, Topic: testTopic, Registry: h.reg, Log: log, Tracer: settings.tracer})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// token signs event as IDnow would.
func (h *harness) token(alg string, event any) string {
	h.t.Helper()
	return h.keys.Sign(h.t, alg, webhooktest.Claims(testIssuer, testAudience, event))
}

// jwtRequest is the current delivery variant: the token is the body.
func jwtRequest(token string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/webhooks/idnow", bytes.NewBufferString(token))
	r.Header.Set("Content-Type", "application/jwt")
	return r
}

// headerRequest is the older variant: JSON body, token in X-Idnow-Signature.
func headerRequest(token string, body any) *http.Request {
	b, _ := json.Marshal(body)
	r := httptest.NewRequest(http.MethodPost, "/webhooks/idnow", bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Idnow-Signature", token)
	return r
}

func (h *harness) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.handler.ServeHTTP(w, r)
	return w
}

// records reads every record on the topic: it asks for the end offsets first, then consumes until
// it has them all, so it neither misses late records nor waits on an idle topic.
func (h *harness) records() []*kgo.Record {
	h.t.Helper()
	return readTopic(h.t, h.cluster.ListenAddrs(), testTopic)
}

func readTopic(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records from %s before timing out", len(out), want, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func claimsWith(mod func(jwt.MapClaims)) jwt.MapClaims {
	c := webhooktest.Claims(testIssuer, testAudience, webhooktest.Event("s-1", "e-1"))
	mod(c)
	return c
}

// testIngress is the ingress server of a harness, built as New builds it (server timeouts, TLS),
// counting the requests whose headers were parsed.
type testIngress struct {
	*Ingress
	handlerEntered atomic.Int64
}

// startIngress serves h's handler on 127.0.0.1:0 and shuts it down at the end of the test.
func startIngress(t *testing.T, h *harness) *testIngress {
	t.Helper()
	in, err := newIngress(h.handler.cfg, h.handler, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIngress{Ingress: in}
	in.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ti.handlerEntered.Add(1)
		h.handler.ServeHTTP(w, r)
	})
	listen(t, in)
	stop := run(t, in)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("ingress shutdown: %v", err)
		}
	})
	return ti
}

// listen binds 127.0.0.1:0 for an Ingress built without New.
func listen(t *testing.T, in *Ingress) {
	t.Helper()
	ln, err := Listen(Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	in.ln = ln
}

// run serves in the background until the returned stop is called (or the test ends); stop
// returns Run's error, as the process's lifecycle would see it.
func run(t *testing.T, in *Ingress) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
