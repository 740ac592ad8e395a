package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"
)

// Deps are what the ingress needs from the composition root.
type Deps struct {
	Verifier Verifier
	Encoder  Encoder
	Kafka    *kgo.Client // the producer; the caller owns it and flushes and closes it after Run returns
	Topic    string      // topics.sessions
	Registry prometheus.Registerer
	Log      *slog.Logger // nil discards the log lines
	// Listener is the bound ingress socket. Nil: New binds ingress.listen itself. The
	// composition root binds early when it must know the webhook URL (the simulator's
	// audience) before the ingress exists.
	Listener net.Listener
	// Tracer, when set, gives every webhook a span and writes its trace context into the
	// SessionEvent record's headers (internal/tracing); nil: no spans, no headers.
	Tracer trace.TracerProvider
}

// Ingress is the webhook HTTP server.
type Ingress struct {
	cfg     Config
	handler *Handler
	srv     *http.Server
	ln      net.Listener
	log     *slog.Logger
	tls     *tls.Config // nil: plain HTTP (a TLS-terminating proxy in front)
	unused  unusedConns // connections with no request yet, closed at once on stop
}

// NewHandler builds the webhook handler alone, for tests and benchmarks that drive it without a
// listener.
func NewHandler(cfg Config, deps Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Verifier == nil || deps.Encoder == nil || deps.Kafka == nil || deps.Topic == "" || deps.Registry == nil {
		return nil, errors.New("ingress: Deps.Verifier, Encoder, Kafka, Topic and Registry are all required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if linger, _ := deps.Kafka.OptValue(kgo.ProducerLinger).(time.Duration); linger > 0 {
		return nil, fmt.Errorf("ingress: the Kafka client lingers %s before sending a record: add ingress.ProducerOpts() to its options, or every lone webhook waits that long", linger)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("ingress metrics: %w", err)
	}
	addrs, err := newAddrPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return &Handler{
		cfg: cfg, topic: deps.Topic, verifier: deps.Verifier, encoder: deps.Encoder, kafka: deps.Kafka,
		tracker: newTracker(cfg.Dedupe), addrs: addrs, rejects: newRejectLog(deps.Log),
		metrics: m, log: deps.Log, slots: make(chan struct{}, cfg.MaxConcurrent),
		now:    time.Now,
		tracer: newTracer(deps.Tracer),
	}, nil
}

// New builds the ingress server on deps.Listener, or binds ingress.listen when it is nil; it
// serves once Run is called. With ingress.tls set, the certificate is loaded here, so a missing
// or broken pair fails start-up naming the keys. On error the listener is closed.
func New(cfg Config, deps Deps) (_ *Ingress, err error) {
	ln := deps.Listener
	if ln == nil {
		if ln, err = Listen(cfg); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			_ = ln.Close()
		}
	}()
	h, err := NewHandler(cfg, deps)
	if err != nil {
		return nil, err
	}
	in, err := newIngress(cfg, h, deps.Log)
	if err != nil {
		return nil, err
	}
	in.ln = ln
	return in, nil
}

func newIngress(cfg Config, h *Handler, log *slog.Logger) (*Ingress, error) {
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	in := &Ingress{cfg: cfg, handler: h, srv: srv, log: log}
	srv.ConnState = in.unused.track
	if cfg.TLS.Enabled() {
		certs, err := newCertReloader(cfg.TLS, log)
		if err != nil {
			return nil, fmt.Errorf("ingress TLS: %w", err)
		}
		in.tls = serverTLSConfig(certs)
	}
	return in, nil
}

// Listen binds ingress.listen. The composition root binds early when it must know the
// webhook URL (the simulator's audience) before the ingress exists.
func Listen(cfg Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("ingress: listen on %s (ingress.listen): %w", cfg.Listen, err)
	}
	return ln, nil
}

// Run serves webhooks, over TLS when ingress.tls is set, until ctx ends or the listener fails.
// When ctx ends it stops accepting connections and waits, at most ingress.shutdown_timeout,
// for in-flight webhooks to be answered; requests still arriving on open connections get 503;
// connections that have not delivered a request yet are closed at once (see unusedConns). A listener
// failure (the socket closed under it) is returned as an error, so the process stops instead
// of running on without its intake. The caller flushes and closes the Kafka client afterwards.
func (in *Ingress) Run(ctx context.Context) error {
	ln := in.ln
	if in.tls != nil {
		ln = tls.NewListener(ln, in.tls)
	}
	served := make(chan error, 1)
	go func() { served <- in.srv.Serve(ln) }()
	in.log.Info("ingress listening", "addr", in.ln.Addr().String(), "path", in.cfg.Path, "scheme", in.scheme())
	select {
	case err := <-served:
		return fmt.Errorf("ingress: serve on %s: %w", in.ln.Addr(), err)
	case <-ctx.Done():
	}
	in.handler.closing.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ShutdownTimeout)
	defer cancel()
	in.unused.closeAll()
	err := in.srv.Shutdown(sctx)
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, serveErr)
	}
	if err != nil {
		return fmt.Errorf("ingress shutdown: %w (some in-flight webhooks were not answered; IDnow will retry them)", err)
	}
	return nil
}

// StopTimeout is how long Run may take to return after ctx ends: ingress.shutdown_timeout
// plus a margin for closing connections.
func (in *Ingress) StopTimeout() time.Duration { return in.cfg.StopTimeout() }

func (in *Ingress) scheme() string {
	if in.tls != nil {
		return "https"
	}
	return "http"
}

// URL returns the webhook URL the ingress serves once started, e.g.
// https://127.0.0.1:54321/webhooks/idnow.
func (in *Ingress) URL() string {
	if in.ln == nil {
		return ""
	}
	return in.scheme() + "://" + in.ln.Addr().String() + in.cfg.Path
}

// Addr returns the bound address, e.g. 127.0.0.1:54321 when started on port 0.
func (in *Ingress) Addr() string {
	if in.ln == nil {
		return ""
	}
	return in.ln.Addr().String()
}

// Close releases the listener of an Ingress whose Run was never called (a start-up that failed
// after New); Run releases it itself.
func (in *Ingress) Close() error { return in.ln.Close() }
