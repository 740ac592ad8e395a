package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reconciler runs a pass every Config.Interval while it is the group's leader.
type Reconciler struct {
	p   *passer
	cfg Config
	// groupOpts are the client options of the membership client (the shared options; the
	// reconciler adds the group).
	groupOpts []kgo.Opt
	log       *slog.Logger

	mu         sync.Mutex
	leader     bool
	leaderCh   chan struct{} // closed and replaced when leadership changes
	cancelPass context.CancelCauseFunc
}

// errLostLeadership cancels a pass whose reconciler no longer owns partition 0.
var errLostLeadership = errors.New("reconciler lost the leadership (partition 0 of topics.state moved to another member of reconcile.group)")

// New validates cfg and registers the metrics on reg. groupOpts are the client options for the
// group membership (brokers, TLS, SASL); deps.Producer writes the repair events.
func New(cfg Config, deps Deps, groupOpts []kgo.Opt, reg prometheus.Registerer) (*Reconciler, error) {
	if reg == nil {
		return nil, errors.New("reconcile: a metrics registry is required")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("reconcile metrics: %w", err)
	}
	p, err := newPasser(cfg, deps, m)
	if err != nil {
		return nil, err
	}
	return &Reconciler{p: p, cfg: cfg, groupOpts: groupOpts, log: deps.Log.With(slog.String("component", "reconciler")), leaderCh: make(chan struct{})}, nil
}

// StopTimeout is how long Run may take after its context ends: an abandoned pass's produce and
// leaving the group.
func (r *Reconciler) StopTimeout() time.Duration { return StopTimeout }

// StopTimeout is how long a reconciler may take to stop: the pass in progress is abandoned (it is
// idempotent) and its group left.
const StopTimeout = 15 * time.Second

// Leader reports whether this process is the active reconciler.
func (r *Reconciler) Leader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leader
}

// Run joins reconcile.group and, while leader, runs a pass at once and then every interval,
// until ctx ends. Pass failures are logged and counted; the next pass runs on schedule.
func (r *Reconciler) Run(ctx context.Context) error {
	topic := r.p.deps.StateTopic
	cl, err := kgo.NewClient(append(slices.Clone(r.groupOpts),
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.ownership(m[topic], true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.ownership(m[topic], false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { r.ownership(m[topic], false) }),
	)...)
	if err != nil {
		return fmt.Errorf("reconciler group client: %w", err)
	}
	// Membership only: the records are never needed, so nothing is fetched.
	cl.PauseFetchTopics(topic)
	defer func() {
		r.ownership([]int32{0}, false)
		closed := make(chan struct{})
		go func() { cl.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			r.log.Warn("leaving reconcile.group did not finish within 10s; closing in the background")
		}
	}()
	r.log.Info("reconciler started; waiting to be elected", slog.String("group", r.cfg.Group), slog.Duration("interval", r.cfg.Interval), slog.Duration("lookback", r.cfg.Lookback))

	var next time.Time
	for {
		r.mu.Lock()
		leader, changed := r.leader, r.leaderCh
		r.mu.Unlock()
		if !leader {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
				continue
			}
		}
		if wait := time.Until(next); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-changed:
				t.Stop()
				continue
			case <-t.C:
			}
		}
		next = time.Now().Add(r.cfg.Interval)
		r.runPass(ctx)
	}
}

// runPass runs one timed pass that leadership loss cancels.
func (r *Reconciler) runPass(ctx context.Context) {
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pctx, cancelTimeout := context.WithTimeout(pctx, r.cfg.PassTimeout)
	defer cancelTimeout()
	r.mu.Lock()
	if !r.leader {
		r.mu.Unlock()
		return
	}
	r.cancelPass = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.cancelPass = nil
		r.mu.Unlock()
	}()

	m := r.p.m
	start := time.Now()
	sum, err := r.p.pass(pctx, PassOptions{Since: start.Add(-r.cfg.Lookback)})
	d := time.Since(start)
	m.duration.Observe(d.Seconds())
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		m.passes.WithLabelValues("failure").Inc()
		if cause := context.Cause(pctx); errors.Is(cause, errLostLeadership) {
			err = cause
		}
		r.log.Error("reconciliation pass failed; the next pass runs on schedule", slog.Any("err", err),
			slog.Int("seen", sum.Seen), slog.Int("written", sum.WrittenTotal()), slog.Duration("took", d))
		return
	}
	m.passes.WithLabelValues("success").Inc()
	m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	r.log.Info("reconciliation pass done", slog.Int("flows", sum.Flows), slog.Int("seen", sum.Seen),
		slog.Int("complete", sum.Complete), slog.Int("pending", sum.Pending), slog.Int("written", sum.WrittenTotal()), slog.Any("written_by_status", sum.Written),
		slog.Duration("took", d))
}

// ownership follows partition 0 of topics.state: its owner is the leader. It must not block:
// franz-go calls it during the rebalance.
func (r *Reconciler) ownership(ps []int32, assigned bool) {
	if !slices.Contains(ps, 0) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader == assigned {
		return
	}
	r.leader = assigned
	close(r.leaderCh)
	r.leaderCh = make(chan struct{})
	if assigned {
		r.p.m.leader.Set(1)
		r.log.Info("elected as the active reconciler")
		return
	}
	r.p.m.leader.Set(0)
	if r.cancelPass != nil {
		r.cancelPass(errLostLeadership)
	}
	r.log.Info("no longer the active reconciler")
}

// Backfill runs one pass over an explicit window without leadership (an operator's command):
// idempotent, since every event it writes has the deterministic id of its session and status.
func Backfill(ctx context.Context, cfg Config, deps Deps, opts PassOptions) (Summary, error) {
	p, err := newPasser(cfg, deps, nil)
	if err != nil {
		return Summary{}, err
	}
	return p.pass(ctx, opts)
}
