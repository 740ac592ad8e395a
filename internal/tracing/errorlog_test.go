package tracing

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestErrorLogThrottled: a collector that stays down is one warning, not one per batch; the next
// warning says how many failures it left out.
func TestErrorLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	l := newErrorLog(slog.New(slog.NewTextHandler(&buf, nil)), 50*time.Millisecond)
	for range 5 {
		l.Handle(errors.New("connection refused"))
	}
	if n := strings.Count(buf.String(), "exporting spans failed"); n != 1 {
		t.Fatalf("%d warnings for 5 failures at once, want 1:\n%s", n, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	l.Handle(errors.New("connection refused"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "failures_not_logged_since_last=4") {
		t.Fatalf("lines:\n%s", buf.String())
	}
}
