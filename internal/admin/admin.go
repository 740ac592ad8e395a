// Package admin serves the operational endpoints every component shares: Prometheus metrics,
// liveness and readiness. It knows nothing about what it reports on: components register named
// readiness checks.
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
	Listen string `koanf:"listen"` // e.g. :9090; /metrics, /healthz, /readyz
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

	mu     sync.RWMutex
	checks map[string]Check
}

// New builds a server exposing gatherer's metrics. It does not listen until Start.
func New(cfg Config, gatherer prometheus.Gatherer, log *slog.Logger) *Server {
	s := &Server{log: log, checks: map[string]Check{}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.srv = &http.Server{
		Addr:              cfg.Listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	return s
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

// Start binds the listen address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("admin server: listen on %s (admin.listen): %w", s.srv.Addr, err)
	}
	s.ln = ln
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops the server, waiting for in-flight scrapes until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("admin server shutdown: %w", err)
	}
	return nil
}
