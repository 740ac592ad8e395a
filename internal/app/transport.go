package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
)

// transportNote is one start-up remark about a connection the mode makes or accepts.
type transportNote struct {
	level slog.Level
	key   string // the config key to change
	msg   string
}

// transportNotes lists, for the sections mode uses, every transport that travels in plain text
// or without verifying its peer, so that such a setting is never in force silently (issue 9:
// an http token URL or SASL PLAIN without TLS used to pass without a word). Loopback targets are
// left out: traffic that never leaves the host (a local sidecar proxy, the simulator, the
// embedded broker) cannot be read or altered on the network. Listeners that bind beyond loopback
// get an INFO line: plain HTTP there is the documented reverse-proxy deployment, not a mistake,
// but the operator should know which ports are reachable.
//
// It reads the configuration as given, before the simulator fills in its own (loopback) URLs.
func transportNotes(cfg Config, mode Mode) []transportNote {
	var notes []transportNote
	warn := func(key, format string, args ...any) {
		notes = append(notes, transportNote{slog.LevelWarn, key, fmt.Sprintf(format, args...)})
	}
	info := func(key, format string, args ...any) {
		notes = append(notes, transportNote{slog.LevelInfo, key, fmt.Sprintf(format, args...)})
	}

	k := cfg.Kafka
	if !k.UsesEmbedded() && !allLoopback(k.Brokers) {
		switch {
		case k.TLS.Enabled && k.TLS.InsecureSkipVerify:
			warn("kafka.tls.insecure_skip_verify", "kafka.tls.insecure_skip_verify is true: broker certificates are not verified, so anyone on the path can impersonate the brokers and read or alter every record; set kafka.tls.ca_file instead")
		case !k.TLS.Enabled && strings.EqualFold(k.SASL.Mechanism, "PLAIN"):
			warn("kafka.sasl.mechanism", "kafka.sasl.mechanism PLAIN without kafka.tls.enabled: the broker password and every record travel in clear text; enable kafka.tls")
		case !k.TLS.Enabled && k.SASL.Mechanism != "":
			warn("kafka.sasl.mechanism", "kafka.sasl.mechanism %s without kafka.tls.enabled: the password is not sent, but every record (identity data) travels in clear text; enable kafka.tls", strings.ToUpper(k.SASL.Mechanism))
		case !k.TLS.Enabled:
			warn("kafka.tls.enabled", "kafka.tls.enabled is false: records (identity data) travel to the brokers %s in clear text and the brokers are not authenticated", strings.Join(k.Brokers, ","))
		}
	}
	if u, ok := plainHTTP(cfg.SchemaRegistry.URL); ok {
		creds := ""
		if cfg.SchemaRegistry.Username != "" || cfg.SchemaRegistry.BearerTokenFile != "" {
			creds = " with the registry credentials"
		}
		warn("schema_registry.url", "schema_registry.url %s uses plain http: schemas%s travel in clear text and can be substituted on the path; use https", u, creds)
	}
	if mode.runsIngress() {
		if u, ok := plainHTTP(cfg.Webhook.JWKSURL); ok {
			warn("webhook.jwks_url", "webhook.jwks_url %s uses plain http: anyone on the path can substitute the webhook signing keys and forge webhooks; use https", u)
		}
		if !loopbackListen(cfg.Ingress.Listen) && !cfg.Ingress.TLS.Enabled() {
			info("ingress.listen", "ingress.listen %s accepts connections beyond this host; it serves plain HTTP (ingress.tls is not set) and a TLS-terminating reverse proxy is expected in front of it (docs/operations.md)", cfg.Ingress.Listen)
		}
	}
	if !loopbackListen(cfg.Admin.Listen) {
		info("admin.listen", "admin.listen %s accepts connections beyond this host: /metrics and /readyz must never face the internet (docs/operations.md)", cfg.Admin.Listen)
	}
	if mode.runsEnricher() {
		for _, e := range []struct{ key, value string }{
			{"idnow.api_url", cfg.IDnow.APIURL}, {"idnow.token_url", cfg.IDnow.TokenURL}, {"idnow.auth_url", cfg.IDnow.AuthURL},
		} {
			if u, ok := plainHTTP(e.value); ok {
				warn(e.key, "%s %s uses plain http (idnow.allow_insecure_http): API credentials, access tokens and identity data travel in clear text; use https outside development", e.key, u)
			}
		}
	}
	return notes
}

// logTransportNotes writes transportNotes, one line each, naming the key.
func logTransportNotes(ctx context.Context, log *slog.Logger, cfg Config, mode Mode) {
	for _, n := range transportNotes(cfg, mode) {
		log.Log(ctx, n.level, n.msg, "key", n.key)
	}
}

// plainHTTP reports whether raw is an http:// URL to a host other than loopback, and returns it
// with any password redacted for the log.
func plainHTTP(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "http") || isLoopbackHost(u.Hostname()) {
		return "", false
	}
	return u.Redacted(), true
}

// loopbackListen reports whether a listen address binds loopback only; ":8080" and
// "0.0.0.0:8080" bind every interface.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

func allLoopback(hostports []string) bool {
	for _, hp := range hostports {
		if !loopbackListen(hp) {
			return false
		}
	}
	return true
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
