package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/ingress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Target kinds a child process can serve.
const (
	TargetIngress   = "ingress"   // the real ingress, wired as internal/app wires it
	TargetReference = "reference" // net/http + the same verifier + ProduceSync acks=all, nothing else
	TargetEnricher  = "enricher"  // the real enricher, wired as internal/app wires it
)

// TargetSpec tells a child process what to serve. It travels as JSON on the command line.
type TargetSpec struct {
	Kind    string             `json:"kind"`
	Brokers []string           `json:"brokers"`
	Topics  kafka.TopicsConfig `json:"topics"`
	// Webhook targets.
	JWKSURL string `json:"jwksUrl,omitempty"`
	// Enricher target.
	APIURL       string        `json:"apiUrl,omitempty"`
	TokenURL     string        `json:"tokenUrl,omitempty"`
	ClientID     string        `json:"clientId,omitempty"`
	ClientSecret string        `json:"clientSecret,omitempty"`
	Environment  string        `json:"environment,omitempty"`
	Delivery     string        `json:"delivery,omitempty"`
	Concurrency  int           `json:"concurrency,omitempty"`
	Group        string        `json:"group,omitempty"`
	Instance     string        `json:"instance,omitempty"`
	APITimeout   time.Duration `json:"apiTimeout,omitempty"`
	// MaxPollRecords overrides enrich.max_poll_records when positive (a what-if knob).
	MaxPollRecords int `json:"maxPollRecords,omitempty"`
	// State wires the state store (Deps.State and StateOpts) as internal/app does; false leaves
	// it out, to measure what it costs.
	State bool `json:"state,omitempty"`
	// Privacy is the enricher's privacy.mode: "" or plain (no Protector), or encrypt (a
	// development KEK and pepper made in a temporary folder, Topics.Keys, Deps.Privacy).
	Privacy string `json:"privacy,omitempty"`
	// Restore target: the partitions of Topics.State to restore.
	Partitions []int32 `json:"partitions,omitempty"`
	// ProducerLinger, when set, is appended to the ingress's client options (a what-if run that
	// shows the effect of kgo.ProducerLinger on the ingress; the product uses franz-go's default).
	ProducerLinger *time.Duration `json:"producerLinger,omitempty"`
	// Compression, when set, is the ingress's kafka.compression (a what-if run; the product
	// default is lz4).
	Compression string `json:"compression,omitempty"`
	// CPUProfile, when set, is the file the child writes its CPU profile to.
	CPUProfile string `json:"cpuProfile,omitempty"`
	// HeapProfile, when set, is the file the child rewrites with its heap profile every
	// heapProfileEvery, so that when it is stopped the file shows what was live near the end.
	HeapProfile string `json:"heapProfile,omitempty"`
	// MemoryLimitMiB, when positive, is the child's Go soft memory limit (what GOMEMLIMIT sets).
	MemoryLimitMiB int `json:"memoryLimitMiB,omitempty"`
}

// heapProfileEvery is how often a child rewrites its heap profile. The parent stops the child
// as soon as the drain is committed, so the last profile is at most this old; profiling the
// heap on SIGTERM instead would see the enricher already tearing down its state.
const heapProfileEvery = 5 * time.Second

// readyPrefix starts the one line a child writes to stdout once it serves; the rest of the line
// is the webhook URL (empty for the enricher).
const readyPrefix = "READY "

// Serve runs the target described by spec until ctx ends, writing "READY <url>" to stdout once
// it accepts work. It is the body of the benchmark's child processes, so that each target's
// memory is its own and can be read from /proc.
func Serve(ctx context.Context, spec TargetSpec, stdout io.Writer, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			return fmt.Errorf("create CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			err = errors.Join(err, f.Close())
		}()
	}
	if spec.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(spec.MemoryLimitMiB) << 20)
	}
	if spec.HeapProfile != "" {
		stop := writeHeapProfiles(ctx, spec.HeapProfile, log)
		defer stop()
	}
	switch spec.Kind {
	case TargetIngress:
		return serveIngress(ctx, spec, stdout, log)
	case TargetReference:
		return serveReference(ctx, spec, stdout, log)
	case TargetEnricher:
		return serveEnricher(ctx, spec, stdout, log)
	case TargetRestore:
		return serveRestore(ctx, spec, stdout)
	}
	return fmt.Errorf("loadtest: unknown target kind %q (want %s, %s, %s or %s)", spec.Kind, TargetIngress, TargetReference, TargetEnricher, TargetRestore)
}

// writeHeapProfiles rewrites path with the heap profile (in use as of the last GC) every
// heapProfileEvery until ctx ends or stop is called. Each profile goes to a temporary file
// renamed over path, so a stop between two writes leaves a whole profile.
func writeHeapProfiles(ctx context.Context, path string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heapProfileEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := writeHeapProfile(path); err != nil {
					log.Warn("heap profile", slog.Any("err", err))
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

func writeHeapProfile(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".heap-*.pprof")
	if err != nil {
		return fmt.Errorf("create heap profile: %w", err)
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write heap profile %s: %w", path, err)
	}
	return nil
}

func webhookConfig(spec TargetSpec) webhook.Config {
	c := webhook.DefaultConfig()
	c.JWKSURL, c.Issuer, c.Audience = spec.JWKSURL, Issuer, Audience
	c.AllowInsecureHTTP = true // the load generator's signer serves its JWKS over plain http on loopback
	c.Algorithms = []string{"RS256"}
	return c
}

func kafkaConfig(spec TargetSpec) kafka.Config {
	c := kafka.DefaultConfig()
	c.Brokers = spec.Brokers
	if spec.Compression != "" {
		c.Compression = spec.Compression
	}
	return c
}

// serveIngress builds the ingress exactly as internal/app's startIngress does: the shared
// client options (acks=all, idempotence, the configured compression), topic check, single-object codec, verifier.
func serveIngress(ctx context.Context, spec TargetSpec, stdout io.Writer, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	opts, err := kafka.ClientOpts(kafkaConfig(spec), "ingress", reg)
	if err != nil {
		return err
	}
	opts = append(opts, ingress.ProducerOpts()...)
	if spec.ProducerLinger != nil {
		opts = append(opts, kgo.ProducerLinger(*spec.ProducerLinger))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("ingress kafka client: %w", err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), spec.Topics, spec.Topics.Sessions); err != nil {
		return err
	}
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		return err
	}
	v, err := webhook.NewVerifier(ctx, webhookConfig(spec), webhook.Deps{Registry: reg, Log: log})
	if err != nil {
		return err
	}
	defer v.Close()
	cfg := ingress.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	in, err := ingress.New(cfg, ingress.Deps{Verifier: v, Encoder: codec, Kafka: cl, Topic: spec.Topics.Sessions, Registry: reg, Log: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%shttp://%s%s\n", readyPrefix, in.Addr(), cfg.Path)
	runErr := in.Run(ctx) // serves until ctx ends, then drains in-flight webhooks
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(runErr, cl.Flush(sctx))
}

// serveReference is the floor the ingress is measured against: read the body, verify the token
// with the same verifier, ProduceSync the raw token with acks=all, answer 200. No parsing, no
// Avro, no metrics, no dedupe, no key (franz-go's default partitioner), default client options.
func serveReference(ctx context.Context, spec TargetSpec, stdout io.Writer, log *slog.Logger) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(spec.Brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return fmt.Errorf("reference kafka client: %w", err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), spec.Topics, spec.Topics.Sessions); err != nil {
		return err
	}
	v, err := webhook.NewVerifier(ctx, webhookConfig(spec), webhook.Deps{Registry: prometheus.NewRegistry(), Log: log})
	if err != nil {
		return err
	}
	defer v.Close()
	topic := spec.Topics.Sessions
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if _, err := v.Verify(r.Context(), string(body)); err != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if err := cl.ProduceSync(r.Context(), &kgo.Record{Topic: topic, Value: body}).FirstErr(); err != nil {
			http.Error(w, "kafka unavailable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("reference listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "%shttp://%s/webhooks/idnow\n", readyPrefix, ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// serveEnricher builds the enricher as internal/app does, with the IDnow client's own rate
// limit off and max_in_flight at the enricher's concurrency so that only the API latency bounds
// the throughput.
func serveEnricher(ctx context.Context, spec TargetSpec, stdout io.Writer, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	ic := idnow.DefaultConfig()
	ic.APIURL, ic.TokenURL, ic.ClientID, ic.ClientSecret = spec.APIURL, spec.TokenURL, spec.ClientID, spec.ClientSecret
	if spec.Environment != "" {
		ic.Environment = spec.Environment
	}
	ic.AllowInsecureHTTP = true // the load test's API is always the simulator, on plain http
	ic.RateLimit = 0
	ic.MaxInFlight = max(spec.Concurrency*2, 64) // session and data-block calls of one event never queue
	if spec.APITimeout > 0 {
		ic.Timeout = spec.APITimeout
	}
	api, err := idnow.New(ctx, ic, idnow.Deps{Registry: reg, Log: log})
	if err != nil {
		return err
	}
	defer api.Close()
	opts, err := kafka.ClientOpts(kafkaConfig(spec), "enricher", reg)
	if err != nil {
		return err
	}
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	if err != nil {
		return err
	}
	ec := enrich.DefaultConfig()
	ec.Delivery = spec.Delivery
	ec.Concurrency = spec.Concurrency
	ec.Group = spec.Group
	ec.InstanceID = spec.Instance
	if spec.MaxPollRecords > 0 {
		ec.MaxPollRecords = spec.MaxPollRecords
	}
	deps := enrich.Deps{
		KafkaOpts: opts, Topics: spec.Topics, API: api,
		Events: serde.NewDecoder(schemas.SessionEventSchema(), nil), Enriched: codec,
		Registry: reg, Log: log, Version: "bench", TokenCheck: api.Token,
	}
	if spec.State {
		if deps.State, err = serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil); err != nil {
			return err
		}
		// Without metrics hooks, as internal/app builds the restore clients' options.
		if deps.StateOpts, err = kafka.ClientOpts(kafkaConfig(spec), "enricher-state", nil); err != nil {
			return err
		}
	}
	if spec.Privacy == schemas.PrivacyEncrypt {
		keysOpts, err := kafka.ClientOpts(kafkaConfig(spec), "enricher-keys", nil)
		if err != nil {
			return err
		}
		prot, stop, err := benchPrivacy(ctx, spec, keysOpts, log)
		if err != nil {
			return err
		}
		defer stop()
		deps.Privacy = prot
	}
	e, err := enrich.New(ec, deps)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", readyPrefix)
	return e.Run(ctx)
}
