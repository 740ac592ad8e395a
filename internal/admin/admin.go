// Package admin serves the operational endpoints every component shares: Prometheus metrics,
// liveness, readiness, and a status page (/ as HTML, /status as JSON). It knows nothing about
// what it reports on: components register named readiness checks, and the application supplies
// a StatusProvider.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the `admin.*` config section.
type Config struct {
	Listen string `koanf:"listen"` // e.g. :9090; /metrics, /healthz, /readyz, / and /status
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{Listen: ":9090"} }

// Validate reports configuration mistakes by key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("admin.listen %q is not host:port (e.g. :9090 or 127.0.0.1:9090): %w", c.Listen, err)
	}
	return nil
}

// Check reports nil when the thing it watches is ready, or an error saying what is not.
type Check func(ctx context.Context) error

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger

	gatherer prometheus.Gatherer
	started  time.Time

	mu     sync.RWMutex
	checks map[string]Check
	status StatusProvider

	sampleMu sync.Mutex
	samples  []sample // counter samples for the status page's rates
}

// Deps are the admin server's collaborators (the project's constructor convention: Config holds
// the user's settings, Deps what the application wires in).
type Deps struct {
	// Gatherer is the registry /metrics exposes; required.
	Gatherer prometheus.Gatherer
	// Log receives the server's log lines; nil discards them.
	Log *slog.Logger
}

// New binds admin.listen and builds a server exposing deps.Gatherer's metrics; it serves once
// Run is called. Binding here makes a taken port a start-up error and Addr known at once.
func New(cfg Config, deps Deps) (*Server, error) {
	gatherer, log := deps.Gatherer, deps.Log
	if gatherer == nil {
		return nil, errors.New("admin server: nil prometheus.Gatherer: pass the application's registry")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin server: listen on %s (admin.listen): %w", cfg.Listen, err)
	}
	s := &Server{ln: ln, log: log, checks: map[string]Check{}, gatherer: gatherer, started: time.Now()}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /{$}", s.statusPage)
	mux.HandleFunc("GET /status", s.statusJSON)
	s.srv = &http.Server{
		Addr:              cfg.Listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	return s, nil
}

// AddCheck registers a readiness check under a name shown in /readyz.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Ready runs every check and returns the failures by name.
func (s *Server) Ready(ctx context.Context) map[string]error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	failed := map[string]error{}
	for name, c := range s.checks {
		if err := c(ctx); err != nil {
			failed[name] = err
		}
	}
	return failed
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	failed := s.Ready(ctx)
	s.mu.RLock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	s.mu.RUnlock()
	sort.Strings(names)
	type result struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
		Error string `json:"error,omitempty"`
	}
	out := struct {
		Ready  bool     `json:"ready"`
		Checks []result `json:"checks"`
	}{Ready: len(failed) == 0}
	for _, n := range names {
		res := result{Name: n, Ready: failed[n] == nil}
		if err := failed[n]; err != nil {
			res.Error = err.Error()
		}
		out.Checks = append(out.Checks, res)
	}
	w.Header().Set("Content-Type", "application/json")
	if !out.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}

// Run serves until ctx ends or the listener fails; then it stops, giving in-flight scrapes
// and probes up to StopTimeout. A listener failure is returned: a process whose probes and
// metrics went dark must stop rather than run on unobserved.
func (s *Server) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("admin server: serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	<-served
	if err != nil {
		return fmt.Errorf("admin server shutdown: %w", err)
	}
	return nil
}

// shutdownTimeout bounds the wait for in-flight scrapes and probes at shutdown.
const shutdownTimeout = 5 * time.Second

// StopTimeout is how long Run may take to return after ctx ends.
func (s *Server) StopTimeout() time.Duration { return StopTimeout }

// StopTimeout is how long an admin server may take to stop: in-flight scrapes and probes get
// shutdownTimeout, plus a margin.
const StopTimeout = shutdownTimeout + time.Second

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close releases the listener of a Server whose Run was never called (a start-up that failed
// after New); Run releases it itself.
func (s *Server) Close() error { return s.ln.Close() }
