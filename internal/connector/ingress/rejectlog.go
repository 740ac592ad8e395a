package ingress

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rejection logs are sampled per result class: at most rejectLogBurst lines at once and then
// one per rejectLogEvery. Under an attack or a misconfigured sender this keeps the log readable
// and cheap, while idnow_connector_ingress_requests_total{result} still counts every rejection.
const (
	rejectLogEvery = 10 * time.Second
	rejectLogBurst = 5
)

// rejectLog writes sampled lines about unanswered or refused webhooks. Each line carries the
// result class, the client address and how many lines of that class were suppressed since the
// previous one, so the volume stays visible.
type rejectLog struct {
	log   *slog.Logger
	every time.Duration
	burst int
	mu    sync.Mutex
	per   map[string]*rejectClass // keyed by result label: a bounded set
}

type rejectClass struct {
	limiter    *rate.Limiter
	suppressed int64
}

func newRejectLog(log *slog.Logger) *rejectLog {
	return &rejectLog{log: log, every: rejectLogEvery, burst: rejectLogBurst, per: make(map[string]*rejectClass)}
}

// record logs one rejection, or counts it as suppressed; level is Warn for answers that are the receiver's fault (5xx) and
// Info for the sender's (4xx).
func (l *rejectLog) record(ctx context.Context, level slog.Level, result string, status int, client, peer, reason string) {
	l.mu.Lock()
	c := l.per[result]
	if c == nil {
		c = &rejectClass{limiter: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.per[result] = c
	}
	if !c.limiter.Allow() {
		c.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := c.suppressed
	c.suppressed = 0
	l.mu.Unlock()

	attrs := []slog.Attr{
		slog.String("result", result),
		slog.Int("status", status),
		slog.String("remote", client),
	}
	if peer != client {
		attrs = append(attrs, slog.String("peer", peer))
	}
	attrs = append(attrs, slog.String("reason", reason), slog.Int64("suppressed_since_last", suppressed))
	msg := "webhook rejected"
	if status >= 500 {
		msg = "webhook not accepted"
	}
	// ctx carries the webhook's span when tracing is on: the line gets its trace_id.
	l.log.LogAttrs(ctx, level, msg, attrs...)
}
