package idnow

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Presigned file URLs come from an API answer, not from configuration, so the download
// treats them as untrusted: a compromised or impersonated API (or a bug on its side) could
// point the connector at its own admin port, a cloud metadata service or anything else on
// the internal network. The download therefore only dials public unicast addresses. The
// check runs on the address actually dialled (net.Dialer.Control sees the resolved IP just
// before connect), so a name that resolves to a public address when checked and to an
// internal one when dialled (DNS rebinding) is still refused.

// nonPublicPrefixes are ranges netip's predicates do not cover but a storage host never
// lives in.
var nonPublicPrefixes = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared carrier-grade NAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// Prefixes of IPv6 forms that carry an IPv4 address the network may route to (NAT64, 6to4,
// IPv4-compatible): the embedded address is judged instead.
var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	v4Compatible = netip.MustParsePrefix("::/96")
)

// nonPublicKind names the class of a non-public address, or returns "" for a public one.
func nonPublicKind(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast(), ip.IsLinkLocalMulticast(), ip.IsInterfaceLocalMulticast():
		return "multicast"
	}
	if ip.Is4() && ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return "broadcast"
	}
	for _, p := range nonPublicPrefixes {
		if p.prefix.Contains(ip) {
			return p.kind
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64Prefix.Contains(ip), v4Compatible.Contains(ip):
			if k := nonPublicKind(netip.AddrFrom4([4]byte(b[12:16]))); k != "" {
				return k + " (embedded in IPv6)"
			}
		case sixToFour.Contains(ip):
			if k := nonPublicKind(netip.AddrFrom4([4]byte(b[2:6]))); k != "" {
				return k + " (embedded in 6to4)"
			}
		}
	}
	return ""
}

// errNonPublic is the refusal for a presigned download target.
func errNonPublic(what string, ip netip.Addr, kind string) error {
	return fmt.Errorf("%w: presigned file %s %s is a %s address; presigned URLs must point at IDnow's public storage (only a local simulator or test server may use such an address, and then set idnow.allow_insecure_http: true)",
		ErrInsecureURL, what, ip, kind)
}

// guardedDialer dials only public addresses, except the proxies the transport chose itself:
// those come from the operator's environment (HTTPS_PROXY), not from an API answer, and
// usually live on the internal network.
type guardedDialer struct {
	// dial connects without any check; checked is dial with the address check run before
	// connect. When the transport came with its own dial function, dial is that function
	// and checked checks the connection's remote address right after connect instead.
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	checked func(ctx context.Context, network, addr string) (net.Conn, error)
	proxies sync.Map // "host:port" -> struct{}
}

func (g *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, ok := g.proxies.Load(addr); ok {
		return g.dial(ctx, network, addr)
	}
	return g.checked(ctx, network, addr)
}

// rememberProxy wraps a transport's Proxy function so the proxy addresses it returns can be
// dialled; the target host is then resolved by the proxy, and preflightFileURL's checks of
// literal addresses and localhost names are what remains on this side.
func (g *guardedDialer) rememberProxy(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		u, err := proxy(r)
		if err == nil && u != nil {
			g.proxies.Store(proxyAddr(u), struct{}{})
		}
		return u, err
	}
}

// proxyAddr is the "host:port" net/http dials for proxy URL u.
func proxyAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// controlPublicOnly is a net.Dialer.Control that refuses a non-public address before the
// connection is attempted; address is the resolved "ip:port".
func controlPublicOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: presigned file host dialled at %q, which is not an IP address and cannot be checked", ErrInsecureURL, address)
	}
	if kind := nonPublicKind(ap.Addr()); kind != "" {
		return errNonPublic("host resolved to", ap.Addr(), kind)
	}
	return nil
}

// checkRemote is the after-connect form of controlPublicOnly for transports that bring
// their own dial function.
func checkRemote(conn net.Conn) error {
	var ip netip.Addr
	switch a := conn.RemoteAddr().(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return fmt.Errorf("%w: presigned file connection has remote address %q, which is not an IP address and cannot be checked", ErrInsecureURL, a.String())
		}
		ip = ap.Addr()
	}
	if kind := nonPublicKind(ip); kind != "" {
		return errNonPublic("host resolved to", ip, kind)
	}
	return nil
}

func checkAfterDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if err := checkRemote(conn); err != nil {
			_ = conn.Close()
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		return conn, nil
	}
}

// newDownloadTransport derives the presigned-download transport from base: the same proxy,
// TLS and pool settings, with every dial held to public addresses. base must be an
// *http.Transport, the only kind whose dialling can be checked. When base has no dial
// function of its own the address is checked before connect (net.Dialer.Control);
// otherwise base's function is kept and the connection is checked right after connect,
// before a byte is written.
func newDownloadTransport(base http.RoundTripper) (http.RoundTripper, error) {
	bt, ok := base.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("idnow: Deps.HTTPClient transport %T cannot be used for presigned file downloads: only an *http.Transport lets the client check the addresses it dials; pass one, or set idnow.allow_insecure_http: true for development", base)
	}
	t := bt.Clone()
	g := &guardedDialer{}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	switch {
	case t.DialContext != nil:
		g.dial = t.DialContext
		g.checked = checkAfterDial(t.DialContext)
	case t.Dial != nil: //nolint:staticcheck // SA1019: a caller's deprecated Dial must be found to be guarded
		// A caller's legacy Dial is honoured (and checked), not bypassed.
		d := t.Dial //nolint:staticcheck // SA1019: see above
		g.dial = func(_ context.Context, network, addr string) (net.Conn, error) { return d(network, addr) }
		g.checked = checkAfterDial(g.dial)
		t.Dial = nil //nolint:staticcheck // SA1019: cleared so the guarded DialContext is the only dialler
	default:
		g.dial = plain.DialContext
		guarded := *plain
		guarded.Control = controlPublicOnly
		g.checked = guarded.DialContext
	}
	t.DialContext = g.DialContext
	if t.DialTLSContext != nil {
		tlsDial := t.DialTLSContext
		checked := checkAfterDial(tlsDial)
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if _, ok := g.proxies.Load(addr); ok {
				return tlsDial(ctx, network, addr)
			}
			return checked(ctx, network, addr)
		}
	}
	if t.Proxy != nil {
		t.Proxy = g.rememberProxy(t.Proxy)
	}
	return t, nil
}

// preflightFileURL checks a presigned URL before any connection: the scheme (https unless
// allowed, and never a downgrade from an https API), and hosts that are non-public without
// any DNS lookup (IP literals, localhost names). The dial-time check covers resolved names.
func (c *Client) preflightFileURL(loc *url.URL) error {
	shown := redactURL(loc.String())
	scheme := strings.ToLower(loc.Scheme)
	switch {
	case scheme != "http" && scheme != "https":
		return fmt.Errorf("%w: presigned file URL %s has scheme %q; only https is fetched", ErrInsecureURL, shown, loc.Scheme)
	case loc.Hostname() == "":
		return fmt.Errorf("%w: presigned file URL %s has no host", ErrInsecureURL, shown)
	case scheme == "http" && strings.HasPrefix(strings.ToLower(c.apiBase), "https:"):
		// Refused even with allow_insecure_http: a development setup is http end to end, so a
		// downgrade only ever means the redirect was tampered with.
		return fmt.Errorf("%w: the https API redirected to the plain http presigned file URL %s; a downgrade from https is never followed", ErrInsecureURL, shown)
	case scheme == "http" && !c.cfg.AllowInsecureHTTP:
		// Config.Validate already holds api_url to https in this case, so this is the
		// downgrade above; kept so the rule does not rest on validation elsewhere.
		return fmt.Errorf("%w: presigned file URL %s is plain http; %s", ErrInsecureURL, shown, errInsecureHint)
	}
	if c.cfg.AllowInsecureHTTP {
		return nil
	}
	host := strings.TrimSuffix(strings.ToLower(loc.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("%w: presigned file URL %s names localhost; presigned URLs must point at IDnow's public storage (only a local simulator or test server may, and then set idnow.allow_insecure_http: true)", ErrInsecureURL, shown)
	}
	if ip, err := netip.ParseAddr(strings.Trim(loc.Hostname(), "[]")); err == nil {
		if kind := nonPublicKind(ip); kind != "" {
			return errNonPublic("URL host", ip, kind)
		}
	}
	return nil
}
