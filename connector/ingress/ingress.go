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
)

// Deps are what the ingress needs from the composition root.
type Deps struct {
	Verifier Verifier
	Encoder  Encoder
	Kafka    *kgo.Client // the producer; the caller owns it and flushes and closes it after Shutdown
	Topic    string      // topics.sessions
	Registry prometheus.Registerer
	Log      *slog.Logger
}

// Ingress is the webhook HTTP server.
type Ingress struct {
	cfg     Config
	handler *Handler
	srv     *http.Server
	ln      net.Listener
	served  chan struct{}
	log     *slog.Logger
	tls     *tls.Config // nil: plain HTTP (a TLS-terminating proxy in front)
}

// NewHandler builds the webhook handler alone, for tests and benchmarks that drive it without a
// listener.
func NewHandler(cfg Config, deps Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Verifier == nil || deps.Encoder == nil || deps.Kafka == nil || deps.Topic == "" || deps.Registry == nil || deps.Log == nil {
		return nil, errors.New("ingress: Verifier, Encoder, Kafka, Topic, Registry and Log are all required")
	}
	maxBuffered, ok := deps.Kafka.OptValue(kgo.MaxBufferedRecords).(int64)
	if !ok || maxBuffered <= 0 {
		return nil, errors.New("ingress: the Kafka client reports no MaxBufferedRecords")
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
		maxBuffered: maxBuffered,
		now:         time.Now,
	}, nil
}

// New builds the ingress server. It does not listen until Start. With ingress.tls set, the
// certificate is loaded here, so a missing or broken pair fails start-up naming the keys.
func New(cfg Config, deps Deps) (*Ingress, error) {
	h, err := NewHandler(cfg, deps)
	if err != nil {
		return nil, err
	}
	return newIngress(cfg, h, deps.Log)
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
	if cfg.TLS.Enabled() {
		certs, err := newCertReloader(cfg.TLS, log)
		if err != nil {
			return nil, fmt.Errorf("ingress TLS: %w", err)
		}
		in.tls = serverTLSConfig(certs)
	}
	return in, nil
}

// Start binds ingress.listen and serves in the background.
func (in *Ingress) Start() error {
	ln, err := Listen(in.cfg)
	if err != nil {
		return err
	}
	in.Serve(ln)
	return nil
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

// Serve serves webhooks on ln in the background, over TLS when ingress.tls is set.
func (in *Ingress) Serve(ln net.Listener) {
	in.ln = ln
	if in.tls != nil {
		ln = tls.NewListener(ln, in.tls)
	}
	in.served = make(chan struct{})
	go func() {
		defer close(in.served)
		if err := in.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Error("ingress server stopped", "err", err)
		}
	}()
	in.log.Info("ingress listening", "addr", ln.Addr().String(), "path", in.cfg.Path, "scheme", in.scheme())
}

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

// Shutdown stops accepting connections and waits, at most ingress.shutdown_timeout or until ctx
// ends, for in-flight webhooks to be answered. Requests that arrive meanwhile get 503. The caller
// then flushes and closes the Kafka client.
func (in *Ingress) Shutdown(ctx context.Context) error {
	if in.ln == nil {
		return nil
	}
	in.handler.closing.Store(true)
	ctx, cancel := context.WithTimeout(ctx, in.cfg.ShutdownTimeout)
	defer cancel()
	err := in.srv.Shutdown(ctx)
	<-in.served
	if err != nil {
		return fmt.Errorf("ingress shutdown: %w (some in-flight webhooks were not answered; IDnow will retry them)", err)
	}
	return nil
}
