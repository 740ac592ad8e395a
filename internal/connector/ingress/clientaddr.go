package ingress

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// addrPolicy decides who the client of a request is and whether it may talk to the ingress at
// all (ingress.allowed_cidrs, ingress.trusted_proxies, ingress.trusted_proxy_header).
type addrPolicy struct {
	allowed []netip.Prefix // empty: everyone
	trusted []netip.Prefix // peers whose header is believed
	header  string
}

func newAddrPolicy(cfg Config) (*addrPolicy, error) {
	allowed, err := parsePrefixes("ingress.allowed_cidrs", cfg.AllowedCIDRs)
	if err != nil {
		return nil, err
	}
	trusted, err := parsePrefixes("ingress.trusted_proxies", cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	return &addrPolicy{allowed: allowed, trusted: trusted, header: cfg.TrustedProxyHeader}, nil
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client returns the address the request came from: the direct peer or, when the peer is a
// trusted proxy, the right-most address of the proxy header that is not itself a trusted proxy.
// Everything left of that address was written by the client or by proxies we do not control, so
// it is never believed. An entry that is not an address ends the walk with an invalid result: a
// chain we cannot read does not get the benefit of the doubt. When every entry is a trusted
// proxy, the left-most one is the client (a request that started inside the proxy tier).
func (p *addrPolicy) client(r *http.Request) (client, peer netip.Addr) {
	peer = parseHostAddr(r.RemoteAddr)
	if !peer.IsValid() || len(p.trusted) == 0 || !contains(p.trusted, peer) {
		return peer, peer
	}
	values := r.Header.Values(p.header)
	if len(values) == 0 {
		return peer, peer
	}
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client = peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHostAddr(strings.TrimSpace(hops[i]))
		if !a.IsValid() {
			return netip.Addr{}, peer
		}
		client = a
		if !contains(p.trusted, a) {
			return a, peer
		}
	}
	return client, peer
}

// allows reports whether a client address passes ingress.allowed_cidrs.
func (p *addrPolicy) allows(a netip.Addr) bool {
	if len(p.allowed) == 0 {
		return true
	}
	return a.IsValid() && contains(p.allowed, a)
}

// parseHostAddr reads "1.2.3.4", "1.2.3.4:5678", "::1", "[::1]:80" or "[::1]"; the zero Addr
// when s is none of these. IPv4-mapped IPv6 addresses are unmapped and zones dropped, so that
// they compare equal to the configured prefixes.
func parseHostAddr(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap().WithZone("")
		}
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone("")
		}
	}
	return netip.Addr{}
}
