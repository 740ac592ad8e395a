package serde

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
)

// Config is the `schema_registry.*` config section.
type Config struct {
	URL      string `koanf:"url"`      // empty = single-object encoding, no registry
	Username string `koanf:"username"` // basic auth (with password or password_file)
	Password string `koanf:"password"`
	// PasswordFile holds the basic-auth password instead of Password (a mounted secret).
	PasswordFile string `koanf:"password_file"`
	// BearerTokenFile holds a bearer token (OAuth2 access token, Kubernetes projected token),
	// sent as "Authorization: Bearer ..."; the file is re-read when it changes, so a rotated token
	// needs no restart.
	BearerTokenFile string    `koanf:"bearer_token_file"`
	TLS             TLSConfig `koanf:"tls"`
	Register        bool      `koanf:"register"` // register the schema at start-up (false: only look it up)
	// Compatibility is the level the connector sets on each subject before registering: FULL
	// keeps every version readable by old and new consumers; empty leaves the registry's level.
	Compatibility string        `koanf:"compatibility"`
	Timeout       time.Duration `koanf:"timeout"` // per registry request
}

// TLSConfig is `schema_registry.tls.*`: the CA to trust and the client certificate for mTLS.
type TLSConfig struct {
	CAFile   string `koanf:"ca_file"`   // PEM bundle; empty = system roots
	CertFile string `koanf:"cert_file"` // client certificate (mTLS), with key_file
	KeyFile  string `koanf:"key_file"`
}

func (t TLSConfig) enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Register: true, Compatibility: "FULL", Timeout: 10 * time.Second}
}

// Validate reports configuration mistakes by key.
func (c Config) Validate() error {
	var errs []error
	if c.URL != "" && !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("schema_registry.url %q must start with http:// or https:// (or be empty for single-object encoding)", c.URL))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("schema_registry.timeout must be positive, e.g. 10s"))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("schema_registry.password and schema_registry.password_file both set; keep one"))
	}
	if (c.Username == "") != (c.Password == "" && c.PasswordFile == "") {
		errs = append(errs, errors.New("schema_registry.username and schema_registry.password (or password_file) must be set together"))
	}
	if c.Username != "" && c.BearerTokenFile != "" {
		errs = append(errs, errors.New("schema_registry.username/password and schema_registry.bearer_token_file both set: the registry takes one Authorization header; keep one"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("schema_registry.tls.cert_file and schema_registry.tls.key_file must be set together (mTLS client certificate and its key)"))
	}
	if c.TLS.enabled() && strings.HasPrefix(c.URL, "http://") {
		errs = append(errs, fmt.Errorf("schema_registry.tls.* is set but schema_registry.url %q is plain http; use https://", c.URL))
	}
	if c.Compatibility != "" {
		var l sr.CompatibilityLevel
		if err := l.UnmarshalText([]byte(strings.ToUpper(c.Compatibility))); err != nil || l.String() == "" {
			errs = append(errs, fmt.Errorf("schema_registry.compatibility %q: use FULL (the default), FULL_TRANSITIVE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, NONE, or empty to leave the registry's level alone", c.Compatibility))
		}
	}
	return errors.Join(errs...)
}

// NewRegistryClient returns a registry client for cfg, or nil when no registry is configured.
func NewRegistryClient(cfg Config) (*sr.Client, error) {
	if cfg.URL == "" {
		return nil, nil
	}
	httpc := &http.Client{Timeout: cfg.Timeout}
	if cfg.TLS.enabled() {
		tc, err := clientTLS(cfg.TLS)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		httpc.Transport = tr
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URL), sr.HTTPClient(httpc)}
	switch {
	case cfg.Username != "":
		password := cfg.Password
		if cfg.PasswordFile != "" {
			b, err := os.ReadFile(cfg.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("schema_registry.password_file: %w", err)
			}
			if password = strings.TrimRight(string(b), "\r\n"); password == "" {
				return nil, fmt.Errorf("schema_registry.password_file %s is empty; it must hold the registry password", cfg.PasswordFile)
			}
		}
		opts = append(opts, sr.BasicAuth(cfg.Username, password))
	case cfg.BearerTokenFile != "":
		tf := &tokenFile{path: cfg.BearerTokenFile}
		if _, err := tf.token(); err != nil {
			return nil, err
		}
		opts = append(opts, sr.PreReq(func(req *http.Request) error {
			tok, err := tf.token()
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client for %s: %w", cfg.URL, err)
	}
	return cl, nil
}

// clientTLS builds the registry's TLS settings. The client certificate is loaded per handshake
// from a reloader, so a rotated certificate (cert-manager, a swapped Kubernetes secret) is used
// from the next connection on.
func clientTLS(cfg TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("schema_registry.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("schema_registry.tls.ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cr := &certFiles{certFile: cfg.CertFile, keyFile: cfg.KeyFile}
		if _, err := cr.get(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cr.get() }
	}
	return tc, nil
}

// stamp identifies a version of a file: a rotation changes its modification time or size
// (Kubernetes swaps a symlink, which os.Stat follows).
type stamp struct {
	mod  time.Time
	size int64
}

func statStamp(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// tokenFile serves the bearer token in path, re-reading it when the file changes.
type tokenFile struct {
	path string

	mu  sync.Mutex
	at  stamp
	tok string
}

func (f *tokenFile) token() (string, error) {
	st, err := statStamp(f.path)
	if err != nil {
		return "", fmt.Errorf("schema_registry.bearer_token_file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tok != "" && st == f.at {
		return f.tok, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("schema_registry.bearer_token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		if f.tok != "" { // a rotation caught half-written: keep the previous token
			return f.tok, nil
		}
		return "", fmt.Errorf("schema_registry.bearer_token_file %s is empty; it must hold the token", f.path)
	}
	f.tok, f.at = tok, st
	return tok, nil
}

// certFiles serves the client certificate pair, re-loading it when either file changes. A pair
// that does not load (a rotation caught half-written) keeps the previous certificate in service.
type certFiles struct {
	certFile, keyFile string

	mu   sync.Mutex
	at   [2]stamp
	cert *tls.Certificate
}

func (c *certFiles) get() (*tls.Certificate, error) {
	cs, err := statStamp(c.certFile)
	if err != nil {
		return nil, fmt.Errorf("schema_registry.tls.cert_file: %w", err)
	}
	ks, err := statStamp(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("schema_registry.tls.key_file: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && c.at == [2]stamp{cs, ks} {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil
		}
		return nil, fmt.Errorf("schema_registry.tls.cert_file %s / key_file %s: load the client certificate and key (PEM, key matching the certificate): %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.at = &cert, [2]stamp{cs, ks}
	return c.cert, nil
}
