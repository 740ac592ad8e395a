// Package progress shows how far a long command (backfill, dlq-replay, archive verify) has come:
// a progress bar (github.com/schollz/progressbar) when its output is a terminal, where a person
// watches it redraw in place, and otherwise a plain line at most once per interval plus a last
// one at the end, which reads well in a CI log, a pipe or kubectl logs.
//
//	p := progress.New(os.Stderr, progress.Options{Name: "dlq-replay", Unit: "records", Total: n})
//	for ... { p.Update(done, fmt.Sprintf("replayed %d", replayed)) }
//	p.Finish(done, "replayed 12, skipped 3")
//
// A Reporter is safe for concurrent use.
package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// The values of Options.Mode.
const (
	ModeAuto  = ""      // a bar when the writer is a terminal, lines otherwise
	ModeBar   = "bar"   // always a bar (tests, or a caller that knows better)
	ModeLines = "lines" // always plain lines
)

// DefaultInterval is how often plain lines are written at most.
const DefaultInterval = time.Second

// barInterval is how often the bar is redrawn at most: smooth for the eye, cheap for a loop
// that updates per record.
const barInterval = 100 * time.Millisecond

// Options describe one progress display.
type Options struct {
	// Name starts every line and the bar, e.g. "backfill".
	Name string
	// Unit counts what Total and done count, e.g. "records", "flows".
	Unit string
	// Total is the amount of work when known; 0 = unknown (a spinner, no percentage), until
	// SetTotal tells it.
	Total int64
	// Mode is ModeAuto, ModeBar or ModeLines.
	Mode string
	// Interval is the least time between two plain lines; 0 = DefaultInterval.
	Interval time.Duration
	// Now replaces time.Now for the plain lines' throttle (tests).
	Now func() time.Time
}

// Reporter displays the progress of one command.
type Reporter struct {
	w    io.Writer
	opts Options

	mu       sync.Mutex
	bar      *progressbar.ProgressBar // bar mode, created on the first Update
	barMode  bool
	total    int64
	last     time.Time // last plain line
	started  time.Time
	finished bool
}

// New returns a Reporter writing to w (normally the process's stderr, so stdout keeps the
// command's own output).
func New(w io.Writer, opts Options) *Reporter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	bar := opts.Mode == ModeBar || (opts.Mode == ModeAuto && IsTerminal(w))
	return &Reporter{w: w, opts: opts, barMode: bar, total: opts.Total, started: opts.Now()}
}

// IsTerminal reports whether w is a terminal (an *os.File on a tty).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) //nolint:gosec // a file descriptor fits in int on every platform Go supports
}

// Bar reports whether the Reporter draws a bar (else it writes lines).
func (r *Reporter) Bar() bool { return r.barMode }

// SetTotal sets the amount of work once it is known.
func (r *Reporter) SetTotal(total int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil && r.total <= 0 && total > 0 {
		// A spinner does not turn into a bar: the next Update draws a new one with the total.
		_ = r.bar.Clear()
		r.bar = nil
	} else if r.bar != nil && total > 0 {
		r.bar.ChangeMax64(total)
	}
	r.total = total
}

// Update reports done units of work and a short detail ("replayed 12, skipped 3"). Lines are
// throttled to one per interval; the bar redraws at most ten times a second.
func (r *Reporter) Update(done int64, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	now := r.opts.Now()
	if r.barMode {
		// The bar is throttled here rather than by the library, so that Finish always
		// draws the final state.
		if r.bar == nil || now.Sub(r.last) >= barInterval {
			r.last = now
			r.drawBar(done, detail)
		}
		return
	}
	if !r.last.IsZero() && now.Sub(r.last) < r.opts.Interval {
		return
	}
	r.last = now
	fmt.Fprintln(r.w, r.line(done, detail, now))
}

// Interrupt runs write, which prints a line of its own to the same terminal, without mixing it
// into the bar: the bar is cleared first and redrawn on the next Update (whatever the redraw
// throttle says, so it does not stay hidden until the next update after the throttle). In
// line mode it just runs write.
func (r *Reporter) Interrupt(write func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil && !r.finished {
		_ = r.bar.Clear()
		r.last = time.Time{}
	}
	write()
}

// LogHandler wraps h so that each log line is written like an Interrupt: a line logged to the
// terminal the bar is drawn on gets a line of its own instead of landing in the bar. In line mode
// h is returned as it is.
func (r *Reporter) LogHandler(h slog.Handler) slog.Handler {
	if !r.barMode {
		return h
	}
	return &logHandler{Handler: h, r: r}
}

type logHandler struct {
	slog.Handler
	r *Reporter
}

func (h *logHandler) Handle(ctx context.Context, rec slog.Record) error {
	var err error
	h.r.Interrupt(func() { err = h.Handler.Handle(ctx, rec) })
	return err
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{Handler: h.Handler.WithAttrs(attrs), r: h.r}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{Handler: h.Handler.WithGroup(name), r: h.r}
}

// Finish shows the final state (a full bar when the total was reached, and always a last line
// in line mode) and ends the display; later calls do nothing.
func (r *Reporter) Finish(done int64, detail string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.finished = true
	if r.barMode {
		r.drawBar(done, detail)
		if r.total > 0 && done >= r.total {
			_ = r.bar.Finish() // a full bar; completing it writes the final newline
		}
		if !r.bar.IsFinished() {
			_ = r.bar.Exit() // keeps the bar as it stands and writes the final newline
		}
		return
	}
	fmt.Fprintln(r.w, r.line(done, detail, r.opts.Now()))
}

func (r *Reporter) drawBar(done int64, detail string) {
	desc := r.opts.Name
	if detail != "" {
		desc += ": " + detail
	}
	if r.bar == nil {
		max := r.total
		if max <= 0 {
			max = -1 // a spinner until the total is known
		}
		r.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(r.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetItsString(r.opts.Unit),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetWidth(30),
			// No background redraw goroutine for the spinner: it moves on each Update.
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.w) }),
		)
	} else {
		r.bar.Describe(desc)
	}
	_ = r.bar.Set64(done)
}

// line is one plain progress line: "dlq-replay: 120/500 records (24%), replayed 100, skipped 20, 3s".
func (r *Reporter) line(done int64, detail string, now time.Time) string {
	var b strings.Builder
	b.WriteString(r.opts.Name)
	b.WriteString(": ")
	if r.total > 0 {
		fmt.Fprintf(&b, "%d/%d %s (%d%%)", done, r.total, r.opts.Unit, done*100/r.total)
	} else {
		fmt.Fprintf(&b, "%d %s", done, r.opts.Unit)
	}
	if detail != "" {
		b.WriteString(", ")
		b.WriteString(detail)
	}
	fmt.Fprintf(&b, ", %s", now.Sub(r.started).Round(time.Second))
	return b.String()
}
