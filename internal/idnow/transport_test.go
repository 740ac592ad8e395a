package idnow

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// recorder is a server that must never be contacted; it records what reached it.
type recorder struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T, tls bool) *recorder {
	t.Helper()
	r := &recorder{}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, fmt.Sprintf("%s %s Authorization=%q body=%q", req.Method, req.RequestURI, req.Header.Get("Authorization"), body))
		r.mu.Unlock()
		// Answer like a token endpoint would, so a client that follows gets a "token".
		writeJSON(w, http.StatusOK, map[string]any{"access_token": "stolen", "token_type": "Bearer", "expires_in": 3600})
	})
	if tls {
		r.srv = httptest.NewTLSServer(h)
	} else {
		r.srv = httptest.NewServer(h)
	}
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) assertUntouched(t *testing.T) {
	t.Helper()
	if n := r.hits.Load(); n != 0 {
		r.mu.Lock()
		defer r.mu.Unlock()
		t.Fatalf("the redirect target received %d request(s): %v", n, r.seen)
	}
}

// Issue 9 problem 3: a token endpoint answering a redirect to another host must not get the
// client credentials sent there, whatever the auth style and redirect status.
func TestTokenEndpointRedirectNeverForwardsCredentials(t *testing.T) {
	for _, style := range []string{AuthStyleBasic, AuthStylePost} {
		for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
			t.Run(fmt.Sprintf("%s/%d", style, code), func(t *testing.T) {
				target := newRecorder(t, false)
				f := newFake(t)
				f.authStyle = style
				f.mux.HandleFunc("POST /moved/token", func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target.srv.URL+"/steal", code)
				})
				c, _ := newTestClient(t, f, func(c *Config) { c.TokenURL = f.srv.URL + "/moved/token" })
				err := c.Token(t.Context())
				target.assertUntouched(t)
				if err == nil {
					t.Fatal("Token() succeeded through a redirect")
				}
				if !errors.Is(err, ErrInsecureURL) || !errors.Is(err, ErrUnauthorized) || !IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent error matching ErrInsecureURL and ErrUnauthorized", err)
				}
				for _, want := range []string{"redirect", target.srv.URL + "/steal", "configure idnow.token_url to the final URL"} {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("err = %q, want it to contain %q", err, want)
					}
				}
				if strings.Contains(err.Error(), testClientSecret) {
					t.Fatalf("the error reveals the client secret: %v", err)
				}
				// An API call needing the token fails the same way and contacts nobody else.
				f.handle("GET /live/sessions/{id}", sessionHandler)
				if _, err := c.GetSession(t.Context(), "s1"); !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("GetSession = %v, want ErrUnauthorized", err)
				}
				target.assertUntouched(t)
			})
		}
	}
}

// API calls never followed redirects; keep it so, with an error that says what to fix.
func TestAPIRedirectNotFollowed(t *testing.T) {
	target := newRecorder(t, false)
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", redirectTo(target.srv.URL+"/api/v1/live/sessions/s1"))
	c, _ := newTestClient(t, f, nil)
	_, err := c.GetSession(t.Context(), "s1")
	target.assertUntouched(t)
	if !errors.Is(err, ErrInsecureURL) || !IsPermanent(err) || !strings.Contains(err.Error(), "set idnow.api_url to the final URL") {
		t.Fatalf("err = %v, want a permanent ErrInsecureURL naming idnow.api_url", err)
	}
	if n := f.hitCount("GET /live/sessions/{id}"); n != 1 {
		t.Fatalf("API hit %d times, want 1 (a redirect is not retried)", n)
	}
}

// A discovered token_endpoint must be https (unless allowed) and on auth_url's origin.
func TestDiscoveredTokenEndpointHeldToAuthOrigin(t *testing.T) {
	tests := []struct {
		name     string
		tls      bool
		insecure bool
		endpoint func(f *fakeIDnow, other *recorder) string
		want     string
	}{
		{"another host", false, true, func(_ *fakeIDnow, o *recorder) string { return o.srv.URL + "/token" }, "not on idnow.auth_url's origin"},
		{"same host, another port", true, false, func(_ *fakeIDnow, o *recorder) string { return o.srv.URL + "/oidc/token" }, "not on idnow.auth_url's origin"},
		{"downgrade to http on the same host", true, false, func(f *fakeIDnow, _ *recorder) string {
			return "http://" + f.srv.Listener.Addr().String() + "/oidc/token"
		}, "idnow.allow_insecure_http"},
		{"downgrade to http even when http is allowed", true, true, func(f *fakeIDnow, _ *recorder) string {
			return "http://" + f.srv.Listener.Addr().String() + "/oidc/token"
		}, "not on idnow.auth_url's origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.tls {
				f = newTLSFake(t)
			}
			other := newRecorder(t, tt.tls)
			f.mux.HandleFunc("GET /evil/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusOK, map[string]any{"token_endpoint": tt.endpoint(f, other)})
			})
			cfg := f.config()
			cfg.TokenURL = ""
			cfg.AuthURL = f.srv.URL + "/evil"
			cfg.AllowInsecureHTTP = tt.insecure
			var deps Deps
			if tt.tls {
				deps.HTTPClient = f.srv.Client()
			}
			c, err := New(t.Context(), cfg, deps)
			if err == nil {
				// Show what accepting it would have cost.
				tokErr := c.Token(t.Context())
				c.Close()
				t.Fatalf("New accepted token_endpoint %s (Token: %v; the other server saw %d requests)", c.TokenURL(), tokErr, other.hits.Load())
			}
			other.assertUntouched(t)
			if !errors.Is(err, ErrInsecureURL) || !IsPermanent(err) {
				t.Fatalf("err = %v, want a permanent ErrInsecureURL", err)
			}
			for _, want := range []string{tt.want, "idnow.auth_url", "idnow.token_url"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	same := [][2]string{
		{"https://auth.example/oidc", "https://AUTH.example:443/oidc/token"},
		{"HTTPS://auth.example:8443/a", "https://auth.example:8443/b"},
		{"http://127.0.0.1/x", "http://127.0.0.1:80/y"},
		{"https://[::1]/x", "https://[::1]:443/y"},
	}
	for _, p := range same {
		a, b := mustParse(t, p[0]), mustParse(t, p[1])
		if origin(a) != origin(b) {
			t.Errorf("origin(%s) = %s, origin(%s) = %s, want equal", p[0], origin(a), p[1], origin(b))
		}
	}
	different := [][2]string{
		{"https://auth.example/oidc", "http://auth.example/oidc/token"},
		{"https://auth.example/oidc", "https://auth.example:8443/oidc/token"},
		{"https://auth.example/oidc", "https://auth.example.evil/oidc/token"},
		{"https://auth.example/oidc", "https://evil.auth.example/oidc/token"},
	}
	for _, p := range different {
		if origin(mustParse(t, p[0])) == origin(mustParse(t, p[1])) {
			t.Errorf("origin(%s) == origin(%s), want different", p[0], p[1])
		}
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// With production settings over https the whole client works: discovery, token, API calls.
func TestHTTPSWithProductionSettings(t *testing.T) {
	f := newTLSFake(t)
	f.handle("GET /live/sessions/{id}", sessionHandler)
	c, _ := newTestClient(t, f, func(c *Config) { c.TokenURL = ""; c.AuthURL = f.srv.URL + "/oidc" })
	if c.cfg.AllowInsecureHTTP {
		t.Fatal("the TLS fake must run with idnow.allow_insecure_http false")
	}
	if c.TokenURL() != f.srv.URL+"/oidc/token" {
		t.Fatalf("discovered %q", c.TokenURL())
	}
	s, err := c.GetSession(t.Context(), "s1")
	if err != nil || s.SessionID != "s1" {
		t.Fatalf("GetSession = %+v, %v", s, err)
	}
}

// Issue 9 problem 3 (files): presigned URLs are held to https and public addresses; the
// storage host behind a refused URL is never contacted and the API is asked only once.
func TestGetFileRefusesUnsafePresignedURLs(t *testing.T) {
	tests := []struct {
		name     string
		tls      bool // API over https
		insecure bool // idnow.allow_insecure_http
		// location builds the presigned URL from a live storage host on loopback.
		location func(storage *recorder) string
		storeTLS bool
		want     string
	}{
		{"plain http from the https API", true, false, func(*recorder) string { return "http://203.0.113.7/bucket/f?sig=abc" }, false, "downgrade"},
		{"downgrade from an https API even when http is allowed", true, true, func(s *recorder) string { return s.srv.URL + "/f?sig=abc" }, false, "downgrade"},
		{"loopback IPv4 literal", true, false, func(s *recorder) string { return s.srv.URL + "/f?sig=abc" }, true, "loopback"},
		{"loopback name", true, false, func(s *recorder) string {
			return "https://localhost:" + port(t, s.srv) + "/f?sig=abc"
		}, true, "localhost"},
		{"loopback IPv6 literal", true, false, func(*recorder) string { return "https://[::1]:9/f?sig=abc" }, true, "loopback"},
		{"cloud metadata (link-local)", true, false, func(*recorder) string { return "https://169.254.169.254/latest/meta-data?sig=abc" }, true, "link-local"},
		{"private network", true, false, func(*recorder) string { return "https://10.0.0.5/f?sig=abc" }, true, "private"},
		{"unspecified", true, false, func(s *recorder) string { return "https://0.0.0.0:" + port(t, s.srv) + "/f?sig=abc" }, true, "unspecified"},
		{"multicast", true, false, func(*recorder) string { return "https://224.0.0.1/f?sig=abc" }, true, "multicast"},
		{"IPv4-mapped loopback", true, false, func(s *recorder) string { return "https://[::ffff:127.0.0.1]:" + port(t, s.srv) + "/f?sig=abc" }, true, "loopback"},
		{"not http at all", true, false, func(*recorder) string { return "file:///etc/passwd" }, true, "only https is fetched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.tls {
				f = newTLSFake(t)
			}
			storage := newRecorder(t, tt.storeTLS)
			loc := tt.location(storage)
			f.handle("GET /live/files/{id}", redirectTo(loc))
			c, _ := newTestClient(t, f, func(c *Config) { c.AllowInsecureHTTP = tt.insecure })
			file, err := c.GetFile(t.Context(), "v-1")
			if err == nil {
				_ = file.Body.Close()
				t.Fatalf("GetFile followed %s", loc)
			}
			storage.assertUntouched(t)
			if !errors.Is(err, ErrInsecureURL) || !IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a permanent ErrInsecureURL mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sig=abc") {
				t.Fatalf("the error reveals the presigned signature: %v", err)
			}
			if n := f.hitCount("GET /live/files/{id}"); n != 1 {
				t.Fatalf("API asked %d times, want 1 (a refusal is not retried)", n)
			}
		})
	}
}

// The presigned URL itself may not redirect: the API's redirect is the only hop.
func TestGetFileRefusesSecondRedirect(t *testing.T) {
	f := newFake(t)
	target := newRecorder(t, false)
	var presignedHits atomic.Int64
	presigned := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presignedHits.Add(1)
		http.Redirect(w, r, target.srv.URL+"/elsewhere?sig=xyz", http.StatusFound)
	}))
	t.Cleanup(presigned.Close)
	f.handle("GET /live/files/{id}", redirectTo(presigned.URL+"/f?sig=abc"))
	c, _ := newTestClient(t, f, nil)
	file, err := c.GetFile(t.Context(), "v-1")
	if err == nil {
		_ = file.Body.Close()
		t.Fatal("GetFile followed a second redirect")
	}
	target.assertUntouched(t)
	if presignedHits.Load() != 1 {
		t.Fatalf("presigned host hit %d times, want 1", presignedHits.Load())
	}
	if !errors.Is(err, ErrInsecureURL) || !IsPermanent(err) || !strings.Contains(err.Error(), "redirect to "+target.srv.URL+"/elsewhere") {
		t.Fatalf("err = %v, want a permanent ErrInsecureURL naming the second redirect", err)
	}
	if strings.Contains(err.Error(), "sig=") {
		t.Fatalf("the error reveals a presigned signature: %v", err)
	}
}

// The address check runs on the address actually dialled, so a name that resolves to a
// loopback address (here localhost, the one such name available without a DNS server) is
// refused whatever it resolved to before: DNS rebinding cannot slip past a check made earlier.
func TestDownloadTransportChecksResolvedAddressAtDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = conn.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	_, p, _ := net.SplitHostPort(ln.Addr().String())

	// The download client exactly as New builds it with production settings (no I/O: the
	// token URL is explicit). ProxyFromEnvironment never proxies loopback names.
	cfg := validConfig()
	cfg.AuthURL, cfg.TokenURL = "", "https://auth.example/token"
	c, err := New(t.Context(), cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	hc := c.download
	for _, host := range []string{"localhost", "127.0.0.1", "[::ffff:127.0.0.1]"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+":"+p+"/f", nil)
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("%s: dialled", host)
		}
		if !errors.Is(err, ErrInsecureURL) || !strings.Contains(err.Error(), "loopback") || !IsPermanent(err) {
			t.Fatalf("%s: err = %v, want a permanent ErrInsecureURL naming loopback", host, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the listener accepted %d connection(s); the check must run before connect", n)
	}
}

// A transport that brings its own dial function is checked right after connect, before a
// byte of the request is sent.
func TestDownloadTransportChecksCustomDialer(t *testing.T) {
	storage := newRecorder(t, false)
	base := &http.Transport{DialContext: (&net.Dialer{}).DialContext}
	rt, err := newDownloadTransport(base)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: rt}
	t.Cleanup(hc.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, storage.srv.URL+"/f", nil)
	resp, err := hc.Do(req)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("request sent through a custom dialer to loopback")
	}
	storage.assertUntouched(t)
	if !errors.Is(err, ErrInsecureURL) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v, want ErrInsecureURL naming loopback", err)
	}
	if _, err := newDownloadTransport(roundTripFunc(nil)); err == nil || !strings.Contains(err.Error(), "*http.Transport") {
		t.Fatalf("a transport that cannot be checked was accepted: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The operator's proxy (HTTPS_PROXY, usually on the internal network) can still be dialled;
// the target behind it is the proxy's to resolve.
func TestDownloadTransportAllowsConfiguredProxy(t *testing.T) {
	var proxied atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Store(r.RequestURI)
		_, _ = w.Write([]byte("via proxy"))
	}))
	t.Cleanup(proxy.Close)
	proxyURL := mustParse(t, proxy.URL)
	base := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	rt, err := newDownloadTransport(base)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: rt}
	t.Cleanup(hc.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://storage.example/bucket/f", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("request through the configured proxy: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "via proxy" || proxied.Load() != "http://storage.example/bucket/f" {
		t.Fatalf("proxy saw %v, body %q", proxied.Load(), body)
	}
}

func TestNonPublicKind(t *testing.T) {
	public := []string{"8.8.8.8", "52.95.110.1", "2a00:1450:4001:80b::200e", "64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"}
	for _, s := range public {
		if k := nonPublicKind(netip.MustParseAddr(s)); k != "" {
			t.Errorf("%s classified %q, want public", s, k)
		}
	}
	nonPublic := map[string]string{
		"127.0.0.1":          "loopback",
		"127.9.9.9":          "loopback",
		"::1":                "loopback",
		"::ffff:127.0.0.1":   "loopback",
		"10.1.2.3":           "private",
		"172.16.0.1":         "private",
		"192.168.1.1":        "private",
		"fd00::1":            "private",
		"169.254.169.254":    "link-local",
		"fe80::1":            "link-local",
		"0.0.0.0":            "unspecified",
		"::":                 "unspecified",
		"224.0.0.1":          "multicast",
		"ff02::1":            "multicast",
		"255.255.255.255":    "broadcast",
		"0.1.2.3":            "this-network",
		"100.64.0.1":         "shared carrier-grade NAT",
		"198.18.0.1":         "benchmarking",
		"240.0.0.1":          "reserved",
		"fec0::1":            "site-local",
		"64:ff9b::a9fe:a9fe": "link-local (embedded in IPv6)",
		"2002:7f00:1::1":     "loopback (embedded in 6to4)",
		"::a00:1":            "private (embedded in IPv6)",
	}
	for s, want := range nonPublic {
		if k := nonPublicKind(netip.MustParseAddr(s)); k != want {
			t.Errorf("%s classified %q, want %q", s, k, want)
		}
	}
}

// Issue 9 problem 6 (URL path part): identifiers are one escaped path segment, and "." or
// ".." (which url.PathEscape leaves alone) are refused before any request.
func TestIdentifiersCannotChangeThePath(t *testing.T) {
	f := newFake(t)
	f.handle("GET /live/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"sessionId": r.PathValue("id"), "sessionStatus": "RUNNING"})
	})
	f.handle("GET /live/sessions/{id}/datablocks", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, `[]`) })
	f.handle("GET /sessions/{id}/live/datablocks", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, `[]`) })
	f.handle("GET /live/files/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"code": "not_found"})
	})
	f.handle("POST /flows/{flow}/live/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"sessionId": "new"})
	})
	f.handle("GET /flows/{flow}/live/sessions", func(w http.ResponseWriter, r *http.Request) { writeRaw(w, http.StatusOK, `[]`) })
	envFirst, _ := newTestClient(t, f, nil)
	sessFirst, _ := newTestClient(t, f, func(c *Config) { c.DataBlocksPath = DataBlocksSessionFirst })

	calls := []struct {
		name string
		call func(id string) error
		path func(escaped string) string // request target the fake must see for a valid id
	}{
		{"GetSession", func(id string) error { _, err := envFirst.GetSession(t.Context(), id); return err },
			func(e string) string { return "/api/v1/live/sessions/" + e }},
		{"GetDataBlocks environment_first", func(id string) error { _, err := envFirst.GetDataBlocks(t.Context(), id); return err },
			func(e string) string { return "/api/v1/live/sessions/" + e + "/datablocks" }},
		{"GetDataBlocks session_first", func(id string) error { _, err := sessFirst.GetDataBlocks(t.Context(), id); return err },
			func(e string) string { return "/api/v1/sessions/" + e + "/live/datablocks" }},
		{"GetFile", func(id string) error {
			_, err := envFirst.GetFile(t.Context(), id)
			if errors.Is(err, ErrNotFound) {
				return nil // the fake answers 404 on purpose: only the path matters here
			}
			return err
		}, func(e string) string { return "/api/v1/live/files/" + e }},
		{"CreateSession", func(id string) error {
			_, err := envFirst.CreateSession(t.Context(), id, CreateSessionRequest{})
			return err
		}, func(e string) string { return "/api/v1/flows/" + e + "/live/sessions" }},
		{"ListFlowSessions", func(id string) error { _, err := envFirst.ListFlowSessions(t.Context(), id, ListPage{}); return err },
			func(e string) string { return "/api/v1/flows/" + e + "/live/sessions" }},
	}

	for _, id := range []string{".", ".."} {
		for _, c := range calls {
			before := len(f.requestTargets())
			err := c.call(id)
			if !errors.Is(err, ErrInvalidID) || !IsPermanent(err) || !strings.Contains(err.Error(), fmt.Sprintf("%q", id)) {
				t.Errorf("%s(%q) = %v, want a permanent ErrInvalidID quoting the id", c.name, id, err)
			}
			if after := f.requestTargets(); len(after) != before {
				t.Errorf("%s(%q) sent %v", c.name, id, after[before:])
			}
		}
	}

	for _, id := range []string{"a/b", "a/../b", "../x", "..%2F..", "%2e%2e", "s?x=1", "s#f", "a b", "sess\x00\n", "./."} {
		for _, c := range calls {
			before := len(f.requestTargets())
			if err := c.call(id); err != nil {
				t.Errorf("%s(%q) = %v", c.name, id, err)
				continue
			}
			sent := f.requestTargets()[before:]
			want := c.path(url.PathEscape(id))
			found := false
			for _, target := range sent {
				if strings.HasPrefix(target, "/oidc/") {
					continue
				}
				if path, _, _ := strings.Cut(target, "?"); path != want {
					t.Errorf("%s(%q) requested %q, want %q", c.name, id, target, want)
				}
				found = true
			}
			if !found {
				t.Errorf("%s(%q) sent no API request (%v)", c.name, id, sent)
			}
		}
	}
	for _, target := range f.requestTargets() {
		path, _, _ := strings.Cut(target, "?")
		for _, seg := range strings.Split(path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("request target %q navigates the path", target)
			}
		}
	}
}

func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
