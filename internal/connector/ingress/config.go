// Package ingress receives IDnow's signed webhooks over HTTP and writes each verified event as an
// Avro SessionEvent to the sessions topic, answering IDnow only after Kafka acknowledged the
// record. A webhook that got a 2xx is on every in-sync replica; anything else gets a status that
// tells IDnow (or the operator) what to do.
package ingress

import (
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"
)

// Config is the `ingress.*` config section.
type Config struct {
	Listen            string        `koanf:"listen"`              // HTTP listen address, e.g. :8080
	Path              string        `koanf:"path"`                // webhook path, e.g. /webhooks/idnow
	SignatureHeader   string        `koanf:"signature_header"`    // header carrying the JWT in the JSON delivery variant
	MaxBodyBytes      int64         `koanf:"max_body_bytes"`      // larger bodies get 413
	MaxConcurrent     int           `koanf:"max_concurrent"`      // requests handled at once; past it 503
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"` // slowloris guard
	ReadTimeout       time.Duration `koanf:"read_timeout"`        // whole request read
	WriteTimeout      time.Duration `koanf:"write_timeout"`       // whole response, produce included
	IdleTimeout       time.Duration `koanf:"idle_timeout"`        // keep-alive connections
	ProduceTimeout    time.Duration `koanf:"produce_timeout"`     // wait for Kafka's ack; well under IDnow's 10 s
	RetryAfter        time.Duration `koanf:"retry_after"`         // Retry-After sent with 503
	KeepSignedToken   bool          `koanf:"keep_signed_token"`   // store the original JWT in SessionEvent.signedToken
	ShutdownTimeout   time.Duration `koanf:"shutdown_timeout"`    // bound on draining in-flight requests
	Dedupe            DedupeConfig  `koanf:"dedupe"`

	// BodyReadTimeout bounds reading the (at most max_body_bytes) body, which happens before a
	// concurrency slot is taken: a client that trickles its body is cut off after it instead of
	// holding a slot until read_timeout.
	BodyReadTimeout time.Duration `koanf:"body_read_timeout"`
	// AllowedCIDRs, when not empty, is the only set of client addresses answered at all; the
	// rest get 403 before anything else is looked at. Bare addresses count as single hosts.
	AllowedCIDRs []string `koanf:"allowed_cidrs"`
	// TrustedProxies are the peers (CIDRs or addresses) whose TrustedProxyHeader is believed; the
	// header of any other peer is ignored, so it cannot be spoofed from outside.
	TrustedProxies []string `koanf:"trusted_proxies"`
	// TrustedProxyHeader carries the client address chain (X-Forwarded-For style, comma-separated,
	// each proxy appending the address it saw).
	TrustedProxyHeader string    `koanf:"trusted_proxy_header"`
	TLS                TLSConfig `koanf:"tls"`
}

// TLSConfig enables HTTPS on ingress.listen for deployments without a TLS-terminating proxy.
// Both files or neither; they are re-read when they change on disk (certificate rotation needs
// no restart).
type TLSConfig struct {
	CertFile string `koanf:"cert_file"` // PEM certificate chain, leaf first
	KeyFile  string `koanf:"key_file"`  // PEM private key of the leaf
}

// Enabled reports whether the ingress serves HTTPS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// DedupeConfig bounds the redelivery window: an eventId accepted within Window is answered 2xx
// without producing again. The window is per replica, so duplicates across replicas (and after a
// restart) remain possible; consumers key on eventId.
type DedupeConfig struct {
	Window     time.Duration `koanf:"window"`      // 0 disables deduplication
	MaxEntries int           `koanf:"max_entries"` // memory bound; the oldest ids are forgotten first
}

// StopTimeout is how long the ingress may take to stop: ingress.shutdown_timeout to answer the
// webhooks in flight plus a margin for closing connections.
func (c Config) StopTimeout() time.Duration { return c.ShutdownTimeout + 5*time.Second }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Listen:             ":8080",
		Path:               "/webhooks/idnow",
		SignatureHeader:    "X-Idnow-Signature",
		MaxBodyBytes:       64 << 10,
		MaxConcurrent:      1024,
		ReadHeaderTimeout:  5 * time.Second,
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       15 * time.Second,
		IdleTimeout:        60 * time.Second,
		ProduceTimeout:     5 * time.Second,
		RetryAfter:         5 * time.Second,
		KeepSignedToken:    true,
		ShutdownTimeout:    20 * time.Second,
		Dedupe:             DedupeConfig{Window: 10 * time.Minute, MaxEntries: 100_000},
		BodyReadTimeout:    2 * time.Second,
		TrustedProxyHeader: "X-Forwarded-For",
	}
}

// Validate reports configuration mistakes by key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("ingress.listen %q is not host:port (e.g. :8080): %w", c.Listen, err)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("ingress.path %q must start with /, e.g. /webhooks/idnow", c.Path)
	}
	if c.SignatureHeader == "" || textproto.CanonicalMIMEHeaderKey(c.SignatureHeader) == "" {
		return fmt.Errorf("ingress.signature_header must name a header, e.g. X-Idnow-Signature")
	}
	checks := []struct {
		key string
		ok  bool
		how string
	}{
		{"ingress.max_body_bytes", c.MaxBodyBytes >= 1024, "at least 1024, e.g. 65536"},
		{"ingress.max_concurrent", c.MaxConcurrent > 0, "positive, e.g. 1024"},
		{"ingress.read_header_timeout", c.ReadHeaderTimeout > 0, "positive, e.g. 5s"},
		{"ingress.read_timeout", c.ReadTimeout > 0, "positive, e.g. 10s"},
		{"ingress.write_timeout", c.WriteTimeout > c.ProduceTimeout, "longer than ingress.produce_timeout, e.g. 15s"},
		{"ingress.idle_timeout", c.IdleTimeout > 0, "positive, e.g. 60s"},
		{"ingress.produce_timeout", c.ProduceTimeout > 0 && c.ProduceTimeout < 10*time.Second, "positive and under IDnow's 10 s answer deadline, e.g. 5s"},
		{"ingress.retry_after", c.RetryAfter >= time.Second, "at least 1s"},
		{"ingress.shutdown_timeout", c.ShutdownTimeout > 0, "positive, e.g. 20s"},
		{"ingress.dedupe.window", c.Dedupe.Window >= 0, "0 (off) or positive, e.g. 10m"},
		{"ingress.dedupe.max_entries", c.Dedupe.Window == 0 || c.Dedupe.MaxEntries > 0, "positive when ingress.dedupe.window is set, e.g. 100000"},
		{"ingress.body_read_timeout", c.BodyReadTimeout > 0 && c.BodyReadTimeout <= c.ReadTimeout, "positive and at most ingress.read_timeout, e.g. 2s (IDnow's webhooks are a few KiB)"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return fmt.Errorf("%s must be %s", ch.key, ch.how)
		}
	}
	if _, err := parsePrefixes("ingress.allowed_cidrs", c.AllowedCIDRs); err != nil {
		return err
	}
	if _, err := parsePrefixes("ingress.trusted_proxies", c.TrustedProxies); err != nil {
		return err
	}
	if len(c.TrustedProxies) > 0 && (c.TrustedProxyHeader == "" || textproto.CanonicalMIMEHeaderKey(c.TrustedProxyHeader) == "") {
		return fmt.Errorf("ingress.trusted_proxy_header must name a header when ingress.trusted_proxies is set, e.g. X-Forwarded-For")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("ingress.tls.cert_file and ingress.tls.key_file must be set together (both for HTTPS, neither for plain HTTP behind a TLS-terminating proxy)")
	}
	return nil
}

// parsePrefixes reads a list of CIDRs ("10.0.0.0/8", "2001:db8::/32") or bare addresses
// ("203.0.113.7", a single host). IPv4-mapped IPv6 forms are unmapped so that they match the
// addresses peers are compared as.
func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q is neither a CIDR (e.g. 203.0.113.0/24) nor an IP address", key, i, s)
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
