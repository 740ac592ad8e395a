package progress

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock                   { return &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }
func lines(b *bytes.Buffer) []string         { return strings.Split(strings.TrimRight(b.String(), "\n"), "\n") }
func reporter(w io.Writer, c *fakeClock, o Options) *Reporter {
	o.Now = c.now
	return New(w, o)
}

// TestLinesWhenNotATerminal: into a buffer (a pipe, a log) the reporter writes plain lines, at
// most one per interval, with count, total, percentage, detail and elapsed time, and always a
// last line.
func TestLinesWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	r := reporter(&out, c, Options{Name: "dlq-replay", Unit: "records", Total: 200, Interval: 5 * time.Second})
	if r.Bar() {
		t.Fatal("a bytes.Buffer is not a terminal")
	}
	r.Update(10, "replayed 10")
	c.advance(2 * time.Second)
	r.Update(40, "replayed 40") // within the interval: not written
	c.advance(4 * time.Second)
	r.Update(90, "replayed 80, skipped 10")
	c.advance(time.Second)
	r.Finish(200, "replayed 180, skipped 20")
	r.Update(200, "after finish") // ignored
	r.Finish(200, "twice")        // ignored
	want := []string{
		"dlq-replay: 10/200 records (5%), replayed 10, 0s",
		"dlq-replay: 90/200 records (45%), replayed 80, skipped 10, 6s",
		"dlq-replay: 200/200 records (100%), replayed 180, skipped 20, 7s",
	}
	if got := lines(&out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLinesUnknownTotal: without a total, lines count without a percentage until SetTotal.
func TestLinesUnknownTotal(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	r := reporter(&out, c, Options{Name: "backfill", Unit: "flows"})
	r.Update(0, "listing flows")
	c.advance(time.Second)
	r.SetTotal(4)
	r.Update(1, "sessions seen 7")
	r.Interrupt(func() { out.WriteString("a line of the command's own\n") })
	r.Finish(4, "sessions seen 30")
	want := []string{
		"backfill: 0 flows, listing flows, 0s",
		"backfill: 1/4 flows (25%), sessions seen 7, 1s",
		"a line of the command's own",
		"backfill: 4/4 flows (100%), sessions seen 30, 1s",
	}
	if got := lines(&out); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBarIntoWriter: in bar mode the bar redraws in place (carriage returns, no newline until
// the end), shows the count, unit and detail, ends full with one newline, and Interrupt clears
// it before a line of the command's own.
func TestBarIntoWriter(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Options{Name: "dlq-replay", Unit: "records", Total: 50, Mode: ModeBar})
	if !r.Bar() {
		t.Fatal("ModeBar did not draw a bar")
	}
	r.Update(10, "replayed 10")
	r.Interrupt(func() { out.WriteString("replay idnow.sessions.dlq[0]@9\n") })
	r.Update(25, "replayed 25")
	r.Finish(50, "replayed 50")
	s := out.String()
	for _, want := range []string{"dlq-replay: replayed 10", "10/50", "dlq-replay: replayed 50", "50/50", "100%", "records", "\r", "replay idnow.sessions.dlq[0]@9\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("bar output lacks %q:\n%q", want, s)
		}
	}
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 2 {
		t.Errorf("want exactly the interrupting line's newline and one final newline:\n%q", s)
	}
}

// TestBarSpinnerThenTotal: a bar whose total is unknown at first spins, and becomes a bar with a
// count once SetTotal tells the total; finishing short of it keeps the bar where it stands.
func TestBarSpinnerThenTotal(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Options{Name: "backfill", Unit: "flows", Mode: ModeBar})
	r.Update(0, "listing flows")
	r.SetTotal(3)
	r.Update(2, "sessions seen 5")
	r.Finish(2, "interrupted")
	s := out.String()
	if !strings.Contains(s, "2/3") || !strings.Contains(s, "backfill: interrupted") || !strings.HasSuffix(s, "\n") {
		t.Errorf("bar output:\n%q", s)
	}
}

// TestAutoDetectsTerminal: on a real terminal (a pty) auto mode draws a bar; a regular file gets
// lines.
func TestAutoDetectsTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty on this machine: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	var mu sync.Mutex
	var seen bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			seen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	r := New(tty, Options{Name: "dlq-replay", Unit: "records", Total: 4})
	if !r.Bar() {
		t.Fatal("auto mode on a pty did not choose the bar")
	}
	r.Update(1, "replayed 1")
	r.Finish(4, "replayed 4")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		s := seen.String()
		mu.Unlock()
		if strings.Contains(s, "4/4") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminal showed %q, want the full bar", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tty.Close()
	ptmx.Close()
	<-done

	f, err := os.Create(t.TempDir() + "/progress.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f, Options{}).Bar() {
		t.Fatal("a regular file got a bar")
	}
}

// TestLogHandlerInterruptsBar: a log line written while the bar is drawn clears the bar first,
// so it starts on a line of its own; in line mode the handler is unchanged.
func TestLogHandlerInterruptsBar(t *testing.T) {
	var out bytes.Buffer
	r := New(&out, Options{Name: "backfill", Unit: "flows", Total: 4, Mode: ModeBar})
	log := slog.New(r.LogHandler(slog.NewTextHandler(&out, nil))).With("component", "idnow")
	r.Update(1, "sessions seen 3")
	before := out.Len()
	log.Warn("idnow token fetch failed")
	logged := out.String()[before:]
	if !strings.HasPrefix(logged, "\r") || !strings.Contains(logged, "msg=\"idnow token fetch failed\" component=idnow\n") {
		t.Fatalf("log line while the bar is drawn: %q", logged)
	}
	h := slog.NewTextHandler(&out, nil)
	if New(&out, Options{Mode: ModeLines}).LogHandler(h) != slog.Handler(h) {
		t.Fatal("line mode wrapped the log handler")
	}
}

// TestBarRedrawnAfterInterrupt: a line printed through Interrupt clears the bar, and the next
// Update draws it again at once, even within the redraw throttle.
func TestBarRedrawnAfterInterrupt(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	r := reporter(&out, c, Options{Name: "dlq-replay", Unit: "offsets", Total: 10, Mode: ModeBar})
	r.Update(1, "replayed 1")
	r.Interrupt(func() { out.WriteString("replay idnow.sessions.dlq[0]@1\n") })
	before := out.Len()
	c.advance(time.Millisecond) // well within the throttle
	r.Update(2, "replayed 2")
	if drawn := out.String()[before:]; !strings.Contains(drawn, "2/10") {
		t.Fatalf("after an interrupt the bar stayed hidden; drawn %q", drawn)
	}
	before = out.Len()
	c.advance(time.Millisecond)
	r.Update(3, "replayed 3")
	if drawn := out.String()[before:]; drawn != "" {
		t.Fatalf("the throttle no longer holds without an interrupt: drawn %q", drawn)
	}
}
