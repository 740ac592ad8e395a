package ingress

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

// TestShutdownIgnoresUnusedConnections: a connection a client opened and has not sent a byte on
// (HTTP clients dial spares and park them in their idle pool) carries no webhook, so it must not
// hold up a SIGTERM. net/http's Shutdown waits up to 5 s for such connections before it counts
// them as idle; with ingress.shutdown_timeout below that, a stop with nothing in flight failed
// with "some in-flight webhooks were not answered" (seen in the integration suite with
// shutdown_timeout 5s). A webhook answered before the stop still gets its answer, and the
// keep-alive connection it used does not hold up the stop either.
func TestShutdownIgnoresUnusedConnections(t *testing.T) {
	h := newHarness(t, configure(func(c *Config, _ *webhook.Config) { c.ShutdownTimeout = 2 * time.Second }))
	in, err := newIngress(h.handler.cfg, h.handler, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	listen(t, in)
	stop := run(t, in)
	url := "http://" + in.Addr() + h.handler.cfg.Path

	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Post(url, "application/jwt", bytes.NewBufferString(h.token("RS256", webhooktest.Event("s-1", "e-before-stop"))))
	if err != nil {
		t.Fatalf("webhook before the stop: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook before the stop answered %d, want 200", resp.StatusCode)
	}

	unused, err := net.Dial("tcp", in.Addr())
	if err != nil {
		t.Fatalf("open an unused connection: %v", err)
	}
	t.Cleanup(func() { _ = unused.Close() })
	// The server must have accepted it (it is in StateNew) before the stop begins.
	for deadline := time.Now().Add(5 * time.Second); in.newConns() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the server did not accept the unused connection within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop with an unused connection open: %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("stop took %s with nothing in flight, want well under ingress.shutdown_timeout", took)
	}
	// The unused connection was closed by the server.
	_ = unused.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := unused.Read(make([]byte, 1)); err == nil {
		t.Errorf("the unused connection is still open after the stop (read %d bytes)", n)
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Errorf("the unused connection is still open after the stop: %v", err)
	}
}

// newConns counts the connections the server accepted and has read no request on.
func (in *Ingress) newConns() int {
	in.unused.mu.Lock()
	defer in.unused.mu.Unlock()
	return len(in.unused.conns)
}
