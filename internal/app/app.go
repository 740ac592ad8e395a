// Package app is the connector's one composition root: it builds the Kafka clients, the schema
// registry codecs, the webhook verifier, the IDnow client and simulator, starts the components a
// mode needs and stops them in order. Only cmd/idnow-connector imports it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/ingress"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/reconcile"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// startupTimeout bounds each start-up step that talks to the network (topics, registry).
const startupTimeout = 30 * time.Second

// App is a running connector process: the components of one Mode and what they share. Start
// builds and binds everything; Run runs the long-lived parts as one lifecycle.Group, in which
// any part failing stops the process with an error naming the part.
type App struct {
	cfg     Config
	mode    Mode
	log     *slog.Logger
	version string
	reg     *prometheus.Registry

	// group holds the long-lived parts in start order (admin first, so it stops last and
	// probes see the whole shutdown; intake last, so it stops first) and the cleanups.
	group   *lifecycle.Group
	started bool

	admin   *admin.Server
	sim     *idnowsim.Simulator
	ingress *ingress.Ingress
	brokers []string
	// api is the one IDnow client of the process, shared by the enricher and the reconciler
	// (one rate limit, one token, one set of idnow_connector_idnow_* series).
	api *idnow.Client
	// progressOut receives the status line (progress.go); nil means none.
	progressOut io.Writer
	// enricher feeds the status page's newest DLQ entries (nil unless the mode runs it).
	enricher *enrich.Enricher
	// tracingCfg is what the OTEL_* environment says (read by New); tracer is the provider
	// handed to the components, nil when tracing is off.
	tracingCfg tracing.Config
	tracer     trace.TracerProvider
	// spanExporter replaces the OTLP exporter and turns tracing on; for tests in this package.
	spanExporter sdktrace.SpanExporter
	// archiver feeds the status line and page (nil unless the mode runs it).
	archiver *archive.Archiver
}

// New validates cfg for mode and prepares the process; nothing runs until Start.
func New(cfg Config, mode Mode, log *slog.Logger, version string) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	if err := cfg.Validate(mode); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	tcfg, err := tracing.ConfigFromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("invalid tracing configuration (OTEL_* environment variables, see docs/tracing.md):\n%w", err)
	}
	// Before any component is built: the verifier and the IDnow client read the result.
	cfg.resolveInsecureHTTP()
	cfg.resolvePrivacyDev(mode)
	cfg.Topics.State = cfg.Topics.StateTopic()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "idnow_connector_build_info", Help: "Always 1; labels carry the connector version and the mode.",
	}, []string{"version", "mode"})
	buildInfo.WithLabelValues(version, string(mode)).Set(1)
	reg.MustRegister(buildInfo)
	return &App{cfg: cfg, mode: mode, log: log, version: version, reg: reg, group: lifecycle.New(log), tracingCfg: tcfg}, nil
}

// Start builds every component of the mode and binds its listeners; nothing serves until Run.
// On error, whatever was built is released again.
func (a *App) Start(ctx context.Context) (err error) {
	if a.started {
		return errors.New("app: Start called twice")
	}
	a.started = true
	defer func() {
		if err != nil {
			err = errors.Join(err, a.group.Abandon(ctx))
		}
	}()
	// Before the simulator replaces empty URLs with its own: the notes are about what the
	// operator configured.
	logTransportNotes(ctx, a.log, a.cfg, a.mode)
	if err := a.startTracing(ctx); err != nil {
		return err
	}
	if a.admin, err = admin.New(a.cfg.Admin, admin.Deps{Gatherer: a.reg, Log: a.log}); err != nil {
		return err
	}
	a.group.Add(lifecycle.Part{Name: "admin", Run: a.admin.Run, StopTimeout: a.admin.StopTimeout(), Release: a.admin.Close})
	a.admin.SetStatusProvider(statusProvider{a})
	if err := a.startKafka(); err != nil {
		return err
	}
	var ingressLn net.Listener
	if a.mode.runsIngress() {
		if ingressLn, err = ingress.Listen(a.cfg.Ingress); err != nil {
			return err
		}
		// Released by the ingress once it exists; until then by this cleanup (a second Close
		// of a listener is harmless and its error is not interesting).
		defer func() {
			if a.ingress == nil {
				_ = ingressLn.Close()
			}
		}()
	}
	if a.cfg.Simulator.Enabled {
		if err := a.startSimulator(ctx, ingressLn); err != nil {
			return err
		}
	}
	if a.mode.runsEnricher() {
		if err := a.startEnricher(ctx); err != nil {
			return err
		}
	}
	if a.mode.runsReconciler(a.cfg) {
		if err := a.startReconciler(ctx); err != nil {
			return err
		}
	}
	if a.mode.runsCommands(a.cfg) {
		if err := a.startCommands(ctx); err != nil {
			return err
		}
	}
	if a.mode.runsArchiver(a.cfg) {
		if err := a.startArchiver(ctx); err != nil {
			return err
		}
	}
	if a.mode.runsIngress() {
		if err := a.startIngress(ctx, ingressLn); err != nil {
			return err
		}
	}
	a.addProgress()
	a.log.Info("connector started", "mode", a.mode, "version", a.version, "admin", a.admin.Addr(), "brokers", a.brokers)
	return nil
}

// TracingProblems checks the OTEL_* environment read through getenv (os.Getenv) as New does,
// returning every problem joined, or nil; for `config check`.
func TracingProblems(getenv func(string) string) error {
	_, err := tracing.ConfigFromEnv(getenv)
	return err
}

// startTracing builds the tracer provider the environment asks for. Its shutdown is the first
// cleanup registered, so it runs last: the spans of the final batch, the flushed producers and
// the closed clients are exported before the process ends.
func (a *App) startTracing(ctx context.Context) error {
	p, err := tracing.New(ctx, a.tracingCfg, tracing.Deps{
		ServiceName: "idnow-connector-" + string(a.mode), Version: a.version, Log: a.log.With("component", "tracing"), Exporter: a.spanExporter,
	})
	if err != nil {
		return err
	}
	a.tracer = p.TracerProvider()
	a.group.Defer("tracing", p.Shutdown)
	return nil
}

// simulatorStopTimeout bounds the simulator's stop: its HTTP server gets 5 s, then its
// delivery workers end.
const simulatorStopTimeout = 10 * time.Second

// StopBudget is the longest the process of mode can take to stop after SIGTERM: the parts stop
// one after another, each within its own timeout, then the clients are flushed and closed. It is
// what the process's lifecycle.Group allows itself, computed from the configuration alone, so
// a deployment can size terminationGracePeriodSeconds (plus any preStop sleep) from it.
func StopBudget(cfg Config, mode Mode) time.Duration {
	total := admin.StopTimeout + lifecycle.CleanupTimeout
	if cfg.Simulator.Enabled {
		total += simulatorStopTimeout
	}
	if mode.runsIngress() {
		total += cfg.Ingress.StopTimeout()
	}
	if mode.runsEnricher() {
		total += cfg.Enrich.StopTimeout()
	}
	if mode.runsReconciler(cfg) {
		total += reconcile.StopTimeout
	}
	if mode.runsCommands(cfg) {
		total += cfg.Commands.StopTimeout()
	}
	if mode.runsArchiver(cfg) {
		total += cfg.Archive.StopTimeout()
	}
	return total
}

// Run starts the app (unless Start already did), serves until ctx ends or a part fails, then
// stops the parts in reverse order, each within its own budget, and closes the clients. The
// error names the part that failed.
func (a *App) Run(ctx context.Context) error {
	if !a.started {
		if err := a.Start(ctx); err != nil {
			return err
		}
	}
	a.log.Info("running", "stop_budget", a.group.Budget())
	if err := a.group.Run(ctx); err != nil {
		return err
	}
	a.log.Info("stopped cleanly")
	return nil
}

func (a *App) startKafka() error {
	a.brokers = a.cfg.Kafka.Brokers
	if a.cfg.Kafka.UsesEmbedded() {
		e, err := kafka.StartEmbedded(a.cfg.Kafka.Embedded, a.log)
		if err != nil {
			return err
		}
		a.group.Defer("embedded broker", func(context.Context) error { e.Close(); return nil })
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
	sim, err := idnowsim.New(sc, idnowsim.Deps{Registry: a.reg, Log: a.log.With("component", "simulator")})
	if err != nil {
		return err
	}
	if err := sim.Start(ctx); err != nil {
		return errors.Join(err, sim.Close())
	}
	a.sim = sim
	a.group.Add(lifecycle.Part{Name: "simulator", Run: sim.Run, StopTimeout: simulatorStopTimeout, Release: sim.Close})
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
		return err
	}
	opts, err := a.kafkaOpts("ingress")
	if err != nil {
		return err
	}
	producer, err := kgo.NewClient(append(opts, ingress.ProducerOpts()...)...)
	if err != nil {
		return fmt.Errorf("kafka client for the ingress: %w", err)
	}
	// Registered before the parts run and so run after the ingress stopped: what it accepted
	// is flushed before the client goes.
	a.group.Defer("ingress producer", func(ctx context.Context) error {
		defer producer.Close()
		if err := producer.Flush(ctx); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		return nil
	})
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	if err := kafka.EnsureTopics(sctx, kadm.NewClient(producer), a.cfg.Topics, a.cfg.Topics.Sessions); err != nil {
		return fmt.Errorf("ingress start-up: %w", err)
	}
	codec, err := a.codec(sctx, schemas.SessionEventSchema(), a.cfg.Topics.Sessions)
	if err != nil {
		return err
	}
	verifier, err := webhook.NewVerifier(ctx, a.cfg.Webhook, webhook.Deps{HTTPClient: &http.Client{Timeout: a.cfg.Webhook.JWKSTimeout}, Registry: a.reg, Log: a.log})
	if err != nil {
		return err
	}
	a.group.Defer("webhook verifier", func(context.Context) error { verifier.Close(); return nil })
	icfg := a.cfg.Ingress
	if a.cfg.Privacy.Mode == schemas.PrivacyDrop && icfg.KeepSignedToken {
		// privacy.mode drop keeps nothing beyond what the pipeline needs; the token (a
		// credential-class field) goes too. docs/privacy.md.
		icfg.KeepSignedToken = false
		a.log.Info("privacy.mode drop: SessionEvent.signedToken is not kept (ingress.keep_signed_token ignored)")
	}
	in, err := ingress.New(icfg, ingress.Deps{
		Verifier: verifier, Encoder: codec, Kafka: producer, Topic: a.cfg.Topics.Sessions,
		Registry: a.reg, Log: a.log.With("component", "ingress"), Listener: ln, Tracer: a.tracer,
	})
	if err != nil {
		return err
	}
	a.ingress = in
	a.group.Add(lifecycle.Part{Name: "ingress", Run: in.Run, StopTimeout: in.StopTimeout(), Release: in.Close})
	a.admin.AddCheck("kafka", func(ctx context.Context) error { return producer.Ping(ctx) })
	a.admin.AddCheck("jwks", func(context.Context) error {
		if !verifier.Ready() {
			return fmt.Errorf("no webhook signing keys loaded from %s yet", a.cfg.Webhook.JWKSURL)
		}
		return nil
	})
	return nil
}

// idnowClient returns the process's IDnow client, creating it on first use.
func (a *App) idnowClient(ctx context.Context) (*idnow.Client, error) {
	if a.api != nil {
		return a.api, nil
	}
	if err := a.cfg.IDnow.Validate(); err != nil {
		return nil, err
	}
	api, err := idnow.New(ctx, a.cfg.IDnow, idnow.Deps{Registry: a.reg, Log: a.log.With("component", "idnow"), Tracer: a.tracer})
	if err != nil {
		return nil, fmt.Errorf("IDnow API client: %w", err)
	}
	a.group.Defer("IDnow client", func(context.Context) error { api.Close(); return nil })
	a.api = api
	return api, nil
}

func (a *App) startEnricher(ctx context.Context) error {
	api, err := a.idnowClient(ctx)
	if err != nil {
		return err
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
	stateCodec, err := a.codec(sctx, schemas.SessionStateSchema(), a.cfg.Topics.State)
	if err != nil {
		return err
	}
	kc := a.cfg.Kafka
	kc.Brokers = a.brokers
	stateOpts, err := newKafkaOpts(kc, "enricher-state")
	if err != nil {
		return err
	}
	keysOpts, err := newKafkaOpts(kc, "enricher-keys")
	if err != nil {
		return err
	}
	priv, err := a.startPrivacy(ctx, keysOpts)
	if err != nil {
		return err
	}
	var protector *privacy.Protector
	if priv != nil {
		protector = priv.protector
	}
	enricher, err := enrich.New(a.cfg.Enrich, enrich.Deps{
		KafkaOpts: opts, Topics: a.cfg.Topics, API: api,
		Events: serde.NewDecoder(schemas.SessionEventSchema(), rc), Enriched: enriched,
		Registry: a.reg, Log: a.log, Version: a.version, TokenCheck: api.Token, State: stateCodec, StateOpts: stateOpts,
		Privacy: protector,
		Tracer:  a.tracer,
	})
	if err != nil {
		return err
	}
	a.group.Add(lifecycle.Part{Name: "enricher", Run: enricher.Run, StopTimeout: enricher.StopTimeout()})
	a.enricher = enricher
	a.admin.AddCheck("enricher", enricher.Ready)
	return nil
}

// codec builds the record codec for topic: Confluent wire format through the registry when
// schema_registry.url is set, single-object encoding otherwise.
func (a *App) codec(ctx context.Context, s schemas.Schema, topic string) (*serde.Codec, error) {
	rc, err := serde.NewRegistryClient(a.cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	return serde.NewCodec(ctx, serde.CodecConfig{Schema: s, Subject: topic + "-value", Register: a.cfg.SchemaRegistry.Register, Compatibility: a.cfg.SchemaRegistry.Compatibility}, rc)
}

// IngressURL returns the webhook URL the ingress serves, once started.
func (a *App) IngressURL() string {
	if a.ingress == nil {
		return ""
	}
	return a.ingress.URL()
}

// AdminAddr returns the admin server's bound address.
func (a *App) AdminAddr() string { return a.admin.Addr() }

// Brokers returns the Kafka seed brokers in use (the embedded broker's address when embedded).
func (a *App) Brokers() []string { return a.brokers }

// Simulator returns the running simulator, or nil.
func (a *App) Simulator() *idnowsim.Simulator { return a.sim }

// Registry returns the process's metrics registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }
