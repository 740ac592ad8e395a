package ingress

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves the certificate of ingress.tls.cert_file/key_file and re-reads the pair
// when either file changes on disk (modification time or size), so a rotated certificate (cert-
// manager, a renewed Let's Encrypt pair, a Kubernetes secret swapped under its mount) is picked
// up by the next handshake without a restart. A pair that does not load (a half-written rotation,
// a key that does not match) is logged once and the previous certificate stays in service.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	loaded    fileStamps // stamps of the pair in service
	lastError fileStamps // stamps of the last pair that failed to load, so it is logged once
}

type fileStamps struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func newCertReloader(cfg TLSConfig, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: cfg.CertFile, keyFile: cfg.KeyFile, log: log}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	if err := r.load(st); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) stat() (fileStamps, error) {
	c, err := os.Stat(r.certFile)
	if err != nil {
		return fileStamps{}, fmt.Errorf("ingress.tls.cert_file: %w", err)
	}
	k, err := os.Stat(r.keyFile)
	if err != nil {
		return fileStamps{}, fmt.Errorf("ingress.tls.key_file: %w", err)
	}
	return fileStamps{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// load reads the pair; the caller holds mu or has not shared r yet.
func (r *certReloader) load(st fileStamps) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("ingress.tls.cert_file %s / ingress.tls.key_file %s: load the certificate and key (PEM, key matching the leaf certificate): %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.loaded = &cert, st
	return nil
}

// GetCertificate implements tls.Config.GetCertificate. Two stat calls per handshake are cheap
// next to the handshake itself, and need no watcher goroutine to stop.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		if st != r.lastError {
			r.lastError = st
			r.log.Warn("ingress TLS certificate files unreadable; still serving the previous certificate", "err", err)
		}
		return r.cert, nil
	}
	if st == r.loaded || st == r.lastError {
		return r.cert, nil
	}
	if err := r.load(st); err != nil {
		r.lastError = st
		r.log.Warn("ingress TLS certificate changed on disk but does not load; still serving the previous certificate", "err", err)
		return r.cert, nil
	}
	r.log.Info("ingress TLS certificate reloaded", "cert_file", r.certFile, "not_after", notAfter(r.cert))
	return r.cert, nil
}

func notAfter(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return c.Leaf.NotAfter.UTC().Format(time.RFC3339)
}

// serverTLSConfig is the listener's TLS configuration: TLS 1.2 at least, HTTP/1.1 only (the
// webhook needs nothing more, and the slow-body defence is reasoned about per connection).
func serverTLSConfig(r *certReloader) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}
