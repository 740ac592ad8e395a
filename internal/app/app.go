// Package app is the connector's one composition root: it builds the Kafka clients, the schema
// registry codecs, the webhook verifier, the IDnow client and simulator, starts the components a
// mode needs and stops them in order. Only cmd/idnow-connector imports it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/connector/ingress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// startupTimeout bounds each start-up step that talks to the network (topics, registry).
const startupTimeout = 30 * time.Second

// App is a running connector process: the components of one Mode and what they share.
type App struct {
	cfg     Config
	mode    Mode
	log     *slog.Logger
	version string
	reg     *prometheus.Registry

	admin    *admin.Server
	embedded *kafka.Embedded
	sim      *idnowsim.Simulator
	producer *kgo.Client
	verifier *webhook.Verifier
	ingress  *ingress.Ingress
	brokers  []string

	api            *idnow.Client
	enricher       *enrich.Enricher
	stopEnricher   context.CancelFunc
	enricherDone   chan struct{}
	enricherFailed chan error // receives Run's error when the enricher stops on its own
}

// New validates cfg for mode and prepares the process; nothing runs until Start.
func New(cfg Config, mode Mode, log *slog.Logger, version string) (*App, error) {
	if err := cfg.Validate(mode); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	// Before any component is built: the verifier and the IDnow client read the result.
	cfg.resolveInsecureHTTP()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "idnow_connector_build_info", Help: "Always 1; labels carry the connector version and the mode.",
	}, []string{"version", "mode"})
	buildInfo.WithLabelValues(version, string(mode)).Set(1)
	reg.MustRegister(buildInfo)
	return &App{cfg: cfg, mode: mode, log: log, version: version, reg: reg}, nil
}

// Start brings up every component of the mode and returns once they are serving. On error,
// whatever was started is stopped again.
func (a *App) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			err = errors.Join(err, a.Shutdown(sctx))
		}
	}()
	// Before the simulator replaces empty URLs with its own: the notes are about what the
	// operator configured.
	logTransportNotes(ctx, a.log, a.cfg, a.mode)
	a.admin = admin.New(a.cfg.Admin, a.reg, a.log)
	if err := a.admin.Start(); err != nil {
		return err
	}
	if err := a.startKafka(); err != nil {
		return err
	}
	var ingressLn net.Listener
	if a.mode.runsIngress() {
		if ingressLn, err = ingress.Listen(a.cfg.Ingress); err != nil {
			return err
		}
	}
	if a.cfg.Simulator.Enabled {
		if err := a.startSimulator(ctx, ingressLn); err != nil {
			if ingressLn != nil {
				_ = ingressLn.Close()
			}
			return err
		}
	}
	if a.mode.runsIngress() {
		if err := a.startIngress(ctx, ingressLn); err != nil {
			return err
		}
	}
	if a.mode.runsEnricher() {
		if err := a.startEnricher(ctx); err != nil {
			return err
		}
	}
	a.log.Info("connector started", "mode", a.mode, "version", a.version, "admin", a.admin.Addr(), "brokers", a.brokers)
	return nil
}

func (a *App) startKafka() error {
	a.brokers = a.cfg.Kafka.Brokers
	if a.cfg.Kafka.UsesEmbedded() {
		e, err := kafka.StartEmbedded(a.cfg.Kafka.Embedded, a.log)
		if err != nil {
			return err
		}
		a.embedded = e
		a.brokers = e.Addrs()
	}
	return nil
}

// kafkaOpts are the client options for one role, pointed at the resolved brokers.
func (a *App) kafkaOpts(role string) ([]kgo.Opt, error) {
	kc := a.cfg.Kafka
	kc.Brokers = a.brokers
	return kafka.ClientOpts(kc, role, a.reg)
}

// newKafkaOpts builds client options without metrics, for short-lived tools such as tail.
func newKafkaOpts(kc kafka.Config, role string) ([]kgo.Opt, error) {
	return kafka.ClientOpts(kc, role, nil)
}

// startSimulator starts the development IDnow stand-in and points the webhook verifier and the
// IDnow client at it. Webhooks go to the ingress's bound address.
func (a *App) startSimulator(ctx context.Context, ingressLn net.Listener) error {
	a.log.Warn("SIMULATOR ENABLED: webhooks and API calls go to the local IDnow simulator, not to IDnow (development only)")
	sc := a.cfg.Simulator
	if sc.WebhookURL == "" && ingressLn != nil {
		sc.WebhookURL = "http://" + loopbackAddr(ingressLn.Addr()) + a.cfg.Ingress.Path
	}
	sim, err := idnowsim.New(sc, a.reg, a.log.With("component", "simulator"))
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return errors.Join(err, sim.Close())
	}
	a.sim = sim
	w := &a.cfg.Webhook
	if w.JWKSURL == "" {
		w.JWKSURL = sim.JWKSURL()
	}
	if w.Issuer == "" {
		w.Issuer = sim.Issuer()
	}
	if w.Audience == "" {
		w.Audience = sim.Config().WebhookURL
		if w.Audience == "" {
			w.Audience = sc.WebhookURL
		}
	}
	c := &a.cfg.IDnow
	if c.APIURL == "" {
		c.APIURL = sim.APIURL()
	}
	if c.TokenURL == "" && c.AuthURL == "" {
		c.TokenURL = sim.TokenURL()
	}
	if c.ClientID == "" && c.ClientSecret == "" && c.ClientSecretFile == "" {
		c.ClientID, c.ClientSecret = sc.ClientID, sc.ClientSecret
	}
	if c.Environment == "" {
		c.Environment = sc.Environment
	}
	return nil
}

// loopbackAddr turns a wildcard listen address (":8080") into one a local client can dial.
func loopbackAddr(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (a *App) startIngress(ctx context.Context, ln net.Listener) error {
	if err := a.cfg.Webhook.Validate(); err != nil {
		_ = ln.Close()
		return err
	}
	opts, err := a.kafkaOpts("ingress")
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.producer, err = kgo.NewClient(opts...)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("kafka client for the ingress: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	if err := kafka.EnsureTopics(sctx, kadm.NewClient(a.producer), a.cfg.Topics, a.cfg.Topics.Sessions); err != nil {
		_ = ln.Close()
		return fmt.Errorf("ingress start-up: %w", err)
	}
	codec, err := a.codec(sctx, schemas.SessionEventSchema(), a.cfg.Topics.Sessions)
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.verifier, err = webhook.NewVerifier(ctx, a.cfg.Webhook, &http.Client{Timeout: a.cfg.Webhook.JWKSTimeout}, a.reg, a.log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.ingress, err = ingress.New(a.cfg.Ingress, ingress.Deps{
		Verifier: a.verifier, Encoder: codec, Kafka: a.producer, Topic: a.cfg.Topics.Sessions,
		Registry: a.reg, Log: a.log.With("component", "ingress"),
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	a.ingress.Serve(ln)
	a.admin.AddCheck("kafka", func(ctx context.Context) error { return a.producer.Ping(ctx) })
	a.admin.AddCheck("jwks", func(context.Context) error {
		if !a.verifier.Ready() {
			return fmt.Errorf("no webhook signing keys loaded from %s yet", a.cfg.Webhook.JWKSURL)
		}
		return nil
	})
	return nil
}

func (a *App) startEnricher(ctx context.Context) error {
	if err := a.cfg.IDnow.Validate(); err != nil {
		return err
	}
	var err error
	a.api, err = idnow.New(ctx, a.cfg.IDnow, a.reg, a.log.With("component", "idnow"))
	if err != nil {
		return fmt.Errorf("IDnow API client: %w", err)
	}
	opts, err := a.kafkaOpts("enricher")
	if err != nil {
		return err
	}
	rc, err := serde.NewRegistryClient(a.cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	enriched, err := a.codec(sctx, schemas.EnrichedSessionSchema(), a.cfg.Topics.Enriched)
	if err != nil {
		return err
	}
	a.enricher, err = enrich.New(a.cfg.Enrich, enrich.Deps{
		KafkaOpts: opts, Topics: a.cfg.Topics, API: a.api,
		Events: serde.NewDecoder(schemas.SessionEventSchema(), rc), Enriched: enriched,
		Registry: a.reg, Log: a.log, Version: a.version, TokenCheck: a.api.Token,
	})
	if err != nil {
		return err
	}
	// The enricher runs until Shutdown cancels it, not until the start-up context ends.
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	a.stopEnricher, a.enricherDone, a.enricherFailed = stop, make(chan struct{}), make(chan error, 1)
	go func() {
		defer close(a.enricherDone)
		if err := a.enricher.Run(runCtx); err != nil && runCtx.Err() == nil {
			a.enricherFailed <- fmt.Errorf("enricher stopped: %w", err)
		}
	}()
	a.admin.AddCheck("enricher", a.enricher.Ready)
	return nil
}

// codec builds the record codec for topic: Confluent wire format through the registry when
// schema_registry.url is set, single-object encoding otherwise.
func (a *App) codec(ctx context.Context, s schemas.Schema, topic string) (*serde.Codec, error) {
	rc, err := serde.NewRegistryClient(a.cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	return serde.NewCodec(ctx, s, rc, topic+"-value", a.cfg.SchemaRegistry.Register)
}

// Shutdown stops the components in order: intake first, in-flight work next, then producers
// are flushed and clients closed; the admin server goes last so probes see the shutdown. Errors
// are joined; every step runs whatever the previous ones returned.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	if a.ingress != nil {
		errs = append(errs, a.ingress.Shutdown(ctx))
	}
	if a.enricher != nil {
		// Run finishes or aborts its transaction and leaves the group within
		// enrich.shutdown_timeout; ctx bounds the wait in any case.
		a.stopEnricher()
		select {
		case <-a.enricherDone:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("enricher did not stop in time: %w", ctx.Err()))
		}
	}
	if a.api != nil {
		a.api.Close()
	}
	if a.producer != nil {
		if err := a.producer.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush the ingress producer: %w", err))
		}
		a.producer.Close()
	}
	if a.verifier != nil {
		a.verifier.Close()
	}
	if a.sim != nil {
		errs = append(errs, a.sim.Close())
	}
	if a.embedded != nil {
		a.embedded.Close()
	}
	if a.admin != nil {
		errs = append(errs, a.admin.Shutdown(ctx))
	}
	a.ingress, a.producer, a.verifier, a.sim, a.embedded, a.admin = nil, nil, nil, nil, nil, nil
	a.enricher, a.api = nil, nil
	return errors.Join(errs...)
}

// Run starts the app, waits for ctx to end and shuts down within shutdownTimeout.
func (a *App) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-a.enricherFailed: // nil channel when no enricher runs: blocks forever
		a.log.Error("a component failed; shutting down", "err", failed)
	}
	a.log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := errors.Join(failed, a.Shutdown(sctx)); err != nil {
		return err
	}
	a.log.Info("stopped cleanly")
	return nil
}

// IngressURL returns the webhook URL the ingress serves, once started.
func (a *App) IngressURL() string {
	if a.ingress == nil {
		return ""
	}
	return "http://" + strings.TrimPrefix(a.ingress.Addr(), "http://") + a.cfg.Ingress.Path
}

// AdminAddr returns the admin server's bound address.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Brokers returns the Kafka seed brokers in use (the embedded broker's address when embedded).
func (a *App) Brokers() []string { return a.brokers }

// Simulator returns the running simulator, or nil.
func (a *App) Simulator() *idnowsim.Simulator { return a.sim }

// Registry returns the process's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }
