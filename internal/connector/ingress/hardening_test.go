package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// TestSlowBodyCutOffAtBodyReadTimeout: a body that does not arrive within
// ingress.body_read_timeout is answered 408 (result body_timeout) and its connection closed, long
// before read_timeout; meanwhile it never held a concurrency slot.
func TestSlowBodyCutOffAtBodyReadTimeout(t *testing.T) {
	h := newHarness(t, configure(func(c *Config, _ *webhook.Config) {
		c.BodyReadTimeout = 300 * time.Millisecond
		c.MaxConcurrent = 1
	}))
	in := startIngress(t, h)
	c, err := net.Dial("tcp", in.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/jwt\r\nContent-Length: 60000\r\n\r\nabc", h.handler.cfg.Path)
	waitFor(t, 5*time.Second, func() bool { return in.handlerEntered.Load() == 1 }, "the slow request to reach the handler")
	// With the only slot free, a valid webhook goes through while the slow body is pending.
	tok := h.token("RS256", webhooktest.Event("s-1", "e-while-slow"))
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post("http://"+in.Addr()+h.handler.cfg.Path, "application/jwt", bytes.NewBufferString(tok))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid webhook while a body trickles in: %d, want 200", resp.StatusCode)
	}

	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // far below read_timeout is not needed: 408 comes first
	slowResp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the slow body: %v", err)
	}
	body, _ := io.ReadAll(slowResp.Body)
	if slowResp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "body_read_timeout") {
		t.Fatalf("slow body: %d %s, want 408 naming ingress.body_read_timeout", slowResp.StatusCode, body)
	}
	if got := testutil.ToFloat64(h.handler.metrics.requests.WithLabelValues(resultBodyTimeout)); got != 1 {
		t.Fatalf("body_timeout requests = %v, want 1", got)
	}
	// The server hangs up: the rest of that body is never read.
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the 408")
	}
}

// TestAllowedCIDRs checks ingress.allowed_cidrs with and without trusted proxies, including
// forwarded-for headers forged by clients and by untrusted peers.
func TestAllowedCIDRs(t *testing.T) {
	allow := []string{"203.0.113.0/24", "2001:db8::/32", "198.51.100.77"}
	proxies := []string{"10.0.0.0/8", "fd00::1"}
	tests := []struct {
		name     string
		allowed  []string
		trusted  []string
		header   string // ingress.trusted_proxy_header; X-Forwarded-For when empty
		peer     string
		xff      []string // header lines
		path     string   // /webhooks/idnow when empty
		want     int
		wantFrom string // the client address the rejection log should name
	}{
		{name: "no allowlist admits anyone", peer: "192.0.2.1:4000", want: 200},
		{name: "allowed peer", allowed: allow, peer: "203.0.113.5:4000", want: 200},
		{name: "allowed single address", allowed: allow, peer: "198.51.100.77:4000", want: 200},
		{name: "neighbour of a single address", allowed: allow, peer: "198.51.100.78:4000", want: 403, wantFrom: "198.51.100.78"},
		{name: "allowed IPv6 peer", allowed: allow, peer: "[2001:db8::5]:4000", want: 200},
		{name: "IPv4-mapped IPv6 peer", allowed: allow, peer: "[::ffff:203.0.113.9]:4000", want: 200},
		{name: "other peer", allowed: allow, peer: "192.0.2.1:4000", want: 403, wantFrom: "192.0.2.1"},
		{name: "forbidden before 404", allowed: allow, peer: "192.0.2.1:4000", path: "/other", want: 403},
		{name: "spoofed header from a peer when no proxy is trusted", allowed: allow, peer: "192.0.2.1:4000",
			xff: []string{"203.0.113.5"}, want: 403, wantFrom: "192.0.2.1"},
		{name: "spoofed header from an untrusted peer", allowed: allow, trusted: proxies, peer: "192.0.2.1:4000",
			xff: []string{"203.0.113.5"}, want: 403, wantFrom: "192.0.2.1"},
		{name: "allowed client behind a trusted proxy", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"203.0.113.5"}, want: 200},
		{name: "forbidden client behind a trusted proxy", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"192.0.2.1"}, want: 403, wantFrom: "192.0.2.1"},
		{name: "client-forged left entry is ignored", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"203.0.113.5, 192.0.2.1"}, want: 403, wantFrom: "192.0.2.1"},
		{name: "right-most untrusted entry wins", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"192.0.2.1, 203.0.113.5"}, want: 200},
		{name: "chain of trusted proxies", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"203.0.113.5, 10.9.9.9", "fd00::1"}, want: 200},
		{name: "forged entry across header lines", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"203.0.113.5", "192.0.2.1"}, want: 403, wantFrom: "192.0.2.1"},
		{name: "entries with ports", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"[2001:db8::9]:443, 10.0.0.9:80"}, want: 200},
		{name: "trusted proxy without header is the client", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			want: 403, wantFrom: "10.1.2.3"},
		{name: "unreadable chain is refused", allowed: allow, trusted: proxies, peer: "10.1.2.3:4000",
			xff: []string{"203.0.113.5, garbage"}, want: 403, wantFrom: "unknown"},
		{name: "other header configured, X-Forwarded-For ignored", allowed: allow, trusted: proxies, header: "X-Real-IP",
			peer: "10.1.2.3:4000", xff: []string{"203.0.113.5"}, want: 403, wantFrom: "10.1.2.3"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			h := newHarness(t, configure(func(c *Config, _ *webhook.Config) {
				c.AllowedCIDRs, c.TrustedProxies = tc.allowed, tc.trusted
				if tc.header != "" {
					c.TrustedProxyHeader = tc.header
				}
			}), func(s *harnessSettings) { s.logTo = &logs })
			r := jwtRequest(h.token("RS256", webhooktest.Event("s-1", fmt.Sprintf("e-%d", i))))
			r.RemoteAddr = tc.peer
			if tc.path != "" {
				r.URL.Path = tc.path
			}
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			w := h.do(r)
			if w.Code != tc.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.want)
			}
			if tc.want == 403 {
				if got := testutil.ToFloat64(h.handler.metrics.requests.WithLabelValues(resultForbidden)); got != 1 {
					t.Fatalf("forbidden requests = %v, want 1", got)
				}
				if strings.Contains(w.Body.String(), "203.0.113") {
					t.Fatalf("the 403 reveals the allowlist: %s", w.Body)
				}
			}
			if tc.wantFrom != "" {
				lines := logLines(t, logs.String(), "webhook rejected")
				if len(lines) != 1 || lines[0]["remote"] != tc.wantFrom || lines[0]["result"] != resultForbidden {
					t.Fatalf("rejection log %v, want one line with remote %s and result forbidden", lines, tc.wantFrom)
				}
				// The proxy that forwarded the request is named when it is not the client.
				peer := parseHostAddr(tc.peer).String()
				if got, _ := lines[0]["peer"].(string); (tc.wantFrom != peer) != (got == peer) {
					t.Fatalf("rejection log peer %q (client %s, peer %s): want the peer only when it differs", got, tc.wantFrom, peer)
				}
			}
		})
	}
}

func TestAddrConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad allowed entry", func(c *Config) { c.AllowedCIDRs = []string{"10.0.0.0/8", "10.0.0.0/33"} }, "ingress.allowed_cidrs[1]"},
		{"hostname in trusted proxies", func(c *Config) { c.TrustedProxies = []string{"lb.example.com"} }, "ingress.trusted_proxies[0]"},
		{"no header with proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.1"}; c.TrustedProxyHeader = "" }, "ingress.trusted_proxy_header"},
		{"body timeout zero", func(c *Config) { c.BodyReadTimeout = 0 }, "ingress.body_read_timeout"},
		{"body timeout above read timeout", func(c *Config) { c.BodyReadTimeout = c.ReadTimeout + time.Second }, "ingress.body_read_timeout"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "/tls/tls.crt" }, "ingress.tls.key_file"},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = "/tls/tls.key" }, "ingress.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	c := DefaultConfig()
	c.AllowedCIDRs, c.TrustedProxies = []string{"203.0.113.0/24", "2001:db8::1"}, []string{"::ffff:10.0.0.0/104"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid address lists refused: %v", err)
	}
}

// TestRejectionLogsSampled reproduces issue 9 problem 8 (rejection logs): 1 000 unauthenticated
// rejections must produce a bounded number of log lines, each naming the reason class and the
// remote address, and the suppressed count must surface in a later line.
func TestRejectionLogsSampled(t *testing.T) {
	var logs syncBuffer
	h := newHarness(t, func(s *harnessSettings) { s.logTo = &logs })
	const every = 200 * time.Millisecond
	h.handler.rejects.every = every
	start := time.Now()
	for i := range 1000 {
		var r *http.Request
		if i%2 == 0 {
			r = jwtRequest("not.a.jwt") // unauthorized
		} else {
			r = jwtRequest("x")
			r.Header.Set("Content-Type", "text/plain") // unsupported_media_type
		}
		r.RemoteAddr = fmt.Sprintf("192.0.2.%d:5000", i%250)
		if w := h.do(r); w.Code < 400 {
			t.Fatalf("request %d answered %d", i, w.Code)
		}
	}
	elapsed := time.Since(start)
	lines := logLines(t, logs.String(), "webhook rejected")
	// Two classes, each: the burst plus one line per `every` that passed.
	limit := 2 * (rejectLogBurst + int(elapsed/every) + 1)
	if len(lines) == 0 || len(lines) > limit {
		t.Fatalf("%d rejection log lines for 1000 rejections in %s, want 1..%d", len(lines), elapsed, limit)
	}
	for _, l := range lines {
		if l["result"] == nil || l["result"] == "" || !strings.HasPrefix(fmt.Sprint(l["remote"]), "192.0.2.") || l["reason"] == nil || l["level"] != "INFO" {
			t.Fatalf("log line without result, remote address or reason: %v", l)
		}
	}
	time.Sleep(every + 50*time.Millisecond)
	r := jwtRequest("not.a.jwt")
	r.RemoteAddr = "198.51.100.1:5000"
	h.do(r)
	lines = logLines(t, logs.String(), "webhook rejected")
	last := lines[len(lines)-1]
	if last["remote"] != "198.51.100.1" || last["result"] != resultUnauthorized || last["suppressed_since_last"].(float64) < 1 {
		t.Fatalf("line after the flood: %v, want remote 198.51.100.1, result unauthorized and a suppressed count", last)
	}
	var sum float64
	for _, l := range lines {
		sum += l["suppressed_since_last"].(float64)
	}
	if total := float64(len(lines)) + sum; total > 1001 {
		t.Fatalf("logged plus suppressed = %v, more than the 1001 rejections", total)
	}
}

// TestInflightRedeliveryJoins reproduces issue 9 problem 12 with a slow broker: two deliveries of
// one eventId while its produce is in flight write one record, and an acknowledgement that
// arrives after the 503 makes IDnow's retry a duplicate instead of a second record.
func TestInflightRedeliveryJoins(t *testing.T) {
	// slowBroker holds every produce request until release is closed.
	slowBroker := func(h *harness) (release func()) {
		ch := make(chan struct{})
		h.cluster.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
			h.cluster.KeepControl()
			h.cluster.SleepControl(func() { <-ch })
			return nil, nil, false
		})
		var once sync.Once
		release = func() { once.Do(func() { close(ch) }) }
		return release
	}
	post := func(h *harness, tok string) chan *answerOf {
		out := make(chan *answerOf, 1)
		go func() {
			w := h.do(jwtRequest(tok))
			var a answer
			_ = json.Unmarshal(w.Body.Bytes(), &a)
			out <- &answerOf{code: w.Code, status: a.Status}
		}()
		return out
	}
	t.Run("concurrent deliveries write once", func(t *testing.T) {
		h := newHarness(t, configure(func(c *Config, _ *webhook.Config) { c.ProduceTimeout = 5 * time.Second }))
		release := slowBroker(h)
		defer release()
		tok := h.token("RS256", webhooktest.Event("s-1", "e-join"))
		first := post(h, tok)
		waitFor(t, 5*time.Second, func() bool { return h.client.BufferedProduceRecords() == 1 }, "the first produce to be under way")
		second := post(h, h.token("RS256", webhooktest.Event("s-1", "e-join")))
		waitFor(t, 5*time.Second, func() bool { return testutil.ToFloat64(h.handler.metrics.inflightJoins) == 1 }, "the redelivery to join")
		release()
		a, b := <-first, <-second
		if a.code != 200 || a.status != resultAccepted || b.code != 200 || b.status != resultDuplicate {
			t.Fatalf("answers %+v and %+v, want 200 accepted and 200 duplicate", a, b)
		}
		if recs := h.records(); len(recs) != 1 {
			t.Fatalf("%d records for two deliveries of one event, want 1", len(recs))
		}
	})

	t.Run("late acknowledgement makes the retry a duplicate", func(t *testing.T) {
		h := newHarness(t) // produce_timeout 750ms
		release := slowBroker(h)
		defer release()
		tok := h.token("RS256", webhooktest.Event("s-1", "e-late"))
		if a := <-post(h, tok); a.code != 503 {
			t.Fatalf("first delivery with a stalled broker: %+v, want 503", a)
		}
		release() // the broker acknowledges the record after the 503 was answered
		waitFor(t, 10*time.Second, func() bool { return testutil.ToFloat64(h.handler.metrics.lateAcks) == 1 }, "the late acknowledgement")
		if a := <-post(h, tok); a.code != 200 || a.status != resultDuplicate {
			t.Fatalf("IDnow's retry after the late ack: %+v, want 200 duplicate", a)
		}
		if recs := h.records(); len(recs) != 1 {
			t.Fatalf("%d records after a 503, a late ack and a retry, want 1", len(recs))
		}
	})

	t.Run("retry during the late produce joins it", func(t *testing.T) {
		h := newHarness(t)
		release := slowBroker(h)
		defer release()
		tok := h.token("RS256", webhooktest.Event("s-1", "e-late-join"))
		if a := <-post(h, tok); a.code != 503 {
			t.Fatalf("first delivery with a stalled broker: %+v, want 503", a)
		}
		retry := post(h, tok)
		waitFor(t, 5*time.Second, func() bool { return testutil.ToFloat64(h.handler.metrics.inflightJoins) == 1 }, "the retry to join")
		release()
		if a := <-retry; a.code != 200 || a.status != resultDuplicate {
			t.Fatalf("retry while the first produce was in flight: %+v, want 200 duplicate", a)
		}
		if recs := h.records(); len(recs) != 1 {
			t.Fatalf("%d records, want 1", len(recs))
		}
	})
}

type answerOf struct {
	code   int
	status string
}

// syncBuffer is a bytes.Buffer safe for the handler's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines decodes the JSON log lines whose msg is msg.
func logLines(t *testing.T, out, msg string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == msg {
			lines = append(lines, m)
		}
	}
	return lines
}

// keysUnavailableVerifier fails every token the way the verifier does when a token's kid is
// unknown and the JWKS cannot be fetched: a wrapped webhook.ErrKeysUnavailable, possibly also
// carrying a VerificationError.
type keysUnavailableVerifier struct{ err error }

func (v keysUnavailableVerifier) VerifyData(context.Context, string, func(webhook.DataMember)) (*webhook.Claims, error) {
	return nil, v.err
}
func (keysUnavailableVerifier) CheckStaticHeader(http.Header) error { return nil }

// TestKeysUnavailableIs503: whatever wraps webhook.ErrKeysUnavailable, IDnow is told to retry
// (503 + Retry-After, result keys_unavailable), never 401, which IDnow would not retry.
func TestKeysUnavailableIs503(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"bare", webhook.ErrKeysUnavailable},
		{"wrapped with the kid", fmt.Errorf("kid %q unknown and the JWKS unreachable: %w", "k2", webhook.ErrKeysUnavailable)},
		{"also a verification error", &webhook.VerificationError{Reason: webhook.ReasonUnknownKey, Err: webhook.ErrKeysUnavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.handler.verifier = keysUnavailableVerifier{err: tc.err}
			w := h.do(jwtRequest("a.b.c"))
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "5" {
				t.Fatalf("got %d Retry-After %q, want 503 with Retry-After 5", w.Code, w.Header().Get("Retry-After"))
			}
			if got := testutil.ToFloat64(h.handler.metrics.requests.WithLabelValues(resultKeysUnavailable)); got != 1 {
				t.Fatalf("keys_unavailable requests = %v, want 1", got)
			}
		})
	}
}
