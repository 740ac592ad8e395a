package ingress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// raiseFDLimit makes room for n more open files (each loopback connection costs two: the client's
// and the server's end), or skips the test when the hard limit does not allow it.
func raiseFDLimit(t *testing.T, n uint64) {
	t.Helper()
	// On a developer's machine a low limit skips the test; in CI (CI set, as .ci/run runs) it
	// fails, so the proof of issue 9's slow-body fix cannot quietly disappear.
	cannot := t.Skipf
	if os.Getenv("CI") != "" {
		cannot = t.Fatalf
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		cannot("cannot read the open-file limit: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		cannot("open-file hard limit %d is below the %d this test needs (ulimit -Hn)", lim.Max, n)
	}
	old := lim
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		cannot("cannot raise the open-file limit to %d: %v", n, err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// TestSlowBodyFloodDoesNotStarveWebhooks reproduces issue 9 problem 2: 1 100 unauthenticated
// connections send their headers and 3 bytes of a 60 000-byte body, then stall. They must not
// hold the ingress.max_concurrent slots (1 024 by default): a valid signed webhook sent while all
// of them are open is answered 2xx within 3 s.
func TestSlowBodyFloodDoesNotStarveWebhooks(t *testing.T) {
	const slow = 1100
	raiseFDLimit(t, 2*slow+512)
	h := newHarness(t, configure(func(c *Config, _ *webhook.Config) {
		// Long enough that every slow connection is still open when the valid webhook arrives,
		// however slowly this machine opens them: the point is that they hold no slot meanwhile.
		c.BodyReadTimeout = 20 * time.Second
		c.ReadTimeout = 30 * time.Second
		c.WriteTimeout = 31 * time.Second
	}))
	if h.handler.cfg.MaxConcurrent >= slow {
		t.Fatalf("max_concurrent %d: the flood must outnumber the slots", h.handler.cfg.MaxConcurrent)
	}
	in := startIngress(t, h)
	addr := in.Addr()

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/jwt\r\nContent-Length: 60000\r\n\r\nabc", h.handler.cfg.Path, addr)
	for i := range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatalf("slow connection %d: write: %v", i, err)
		}
	}
	// Wait until the server has parsed every slow request's headers and is reading its body.
	waitFor(t, 20*time.Second, func() bool { return in.handlerEntered.Load() >= slow }, "every slow request to reach the handler")
	if n := testutilGauge(h.handler); n != 0 {
		t.Fatalf("%v concurrency slots held by requests whose bodies have not arrived, want 0", n)
	}

	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	tok := h.token("RS256", webhooktest.Event("s-flood", "e-flood"))
	resp, err := client.Post("http://"+addr+h.handler.cfg.Path, "application/jwt", bytes.NewBufferString(tok))
	if err != nil {
		t.Fatalf("valid webhook during the flood: %v (not answered within 3 s)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid webhook during the flood: %d %s, want 200", resp.StatusCode, body)
	}
	// The flood was real: every slow connection is still open and unanswered.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := c.Read(make([]byte, 1))
		var ne net.Error
		if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("slow connection %d was answered or closed during the test (%d bytes, %v)", i, n, err)
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
