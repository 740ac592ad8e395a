package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// OffsetSource is what the progress monitor reads from Kafka; kadmOffsets implements it on a
// kadm client. Tests inject their own where kfake cannot produce a state.
type OffsetSource interface {
	ListStartOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	ListEndOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	// ListCommittedOffsets returns the last stable offsets (read_committed end offsets).
	ListCommittedOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	// FetchOffsets returns the group's committed offsets, pending transactional ones aside.
	FetchOffsets(ctx context.Context, group string) (kadm.OffsetResponses, error)
	// FetchStableOffsets is the fetch group members make (require_stable): partitions with
	// offsets of an open transaction answer UNSTABLE_OFFSET_COMMIT.
	FetchStableOffsets(ctx context.Context, group string) (kadm.OffsetResponses, error)
}

// kadmOffsets is the OffsetSource on a kadm client.
type kadmOffsets struct{ *kadm.Client }

func (k kadmOffsets) FetchStableOffsets(ctx context.Context, group string) (kadm.OffsetResponses, error) {
	return k.FetchOffsets(kadm.RequireStable(ctx), group)
}

// topicPartition names a partition in logs, readiness and the hanging-transaction report.
type topicPartition struct {
	topic     string
	partition int32
}

func (tp topicPartition) String() string { return tp.topic + "/" + strconv.Itoa(int(tp.partition)) }

// lsoMark is an offset that has not moved, and since when: a last stable offset behind its
// partition's end offset, or the committed offset of a partition whose offsets are unstable.
type lsoMark struct {
	lso   int64
	since time.Time
}

// progress is the enricher's view of its own progress, shared by the poll loop, the monitor
// and Ready. The loop writes pending, lastCommit and lastHandled; the monitor the rest.
type progress struct {
	pending    atomic.Int64 // records polled and not committed yet
	lastCommit atomic.Int64 // unix nanoseconds of the last commit; 0 = none yet
	// lastHandled is the unix nanoseconds of the last event the handler finished; 0 = none
	// yet. A batch of max_poll_records at idnow.rate_limit (plus a Retry-After) can take longer
	// than stall_after to commit while every event progresses.
	lastHandled atomic.Int64

	mu            sync.Mutex
	assigned      map[int32]bool // input partitions this member owns
	lag           map[int32]int64
	waitingSince  time.Time
	stalledReason string                     // empty = not stalled
	unstableSince map[topicPartition]lsoMark // the committed offset when first seen unstable
	lsoMarks      map[topicPartition]lsoMark
	hanging       []topicPartition
	hangingReason string // empty = none
}

func newProgress() *progress {
	return &progress{assigned: map[int32]bool{}, lag: map[int32]int64{},
		unstableSince: map[topicPartition]lsoMark{}, lsoMarks: map[topicPartition]lsoMark{}}
}

func (p *progress) assign(parts []int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range parts {
		p.assigned[q] = true
	}
}

// unassign forgets parts and calls dropLag for them, under p.mu: refresh sets the lag series
// under p.mu too, so a refresh running meanwhile cannot re-create the series of a revoked
// partition after it was dropped (it would never be deleted).
func (p *progress) unassign(parts []int32, dropLag func([]int32)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, q := range parts {
		delete(p.assigned, q)
		delete(p.lag, q)
	}
	dropLag(parts)
}

// problem returns why readiness fails, or nil.
func (p *progress) problem() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.stalledReason != "" {
		errs = append(errs, errors.New(p.stalledReason))
	}
	if p.hangingReason != "" {
		errs = append(errs, errors.New(p.hangingReason))
	}
	return errors.Join(errs...)
}

// monitor refreshes the consumer lag and the hanging-transaction check every enrich.lag_interval
// until ctx ends, and while a transaction hangs repairs the enricher's own (repair is nil under
// at_least_once). It runs beside each Kafka client the enricher creates, on that client.
func (e *Enricher) monitor(ctx context.Context, src OffsetSource, repair *txnRepair) {
	t := time.NewTicker(e.cfg.LagInterval)
	defer t.Stop()
	for {
		e.refresh(ctx, src, time.Now(), repair)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchdog evaluates the stall condition until ctx ends. It runs for all of Run, also while the
// Kafka client is being re-created, so a client that keeps failing is reported too.
func (e *Enricher) watchdog(ctx context.Context) {
	t := time.NewTicker(max(min(e.cfg.LagInterval, e.cfg.StallAfter/4), 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.evalStall(now)
		}
	}
}

// refresh reads end offsets, last stable offsets and the group's committed offsets, sets the
// lag of this member's partitions the way Kafka's tooling computes it (end offset minus the
// committed offset; minus the log start offset when nothing is committed yet, as
// kadm.CalculateGroupLagWithStartOffsets does) and updates the hanging-transaction state. A
// hanging transaction that is one of the enricher's own is repaired first (repair is nil under
// at_least_once): it is not reported, the next refresh sees the offsets move. A failed read
// leaves the previous values: the next refresh tries again.
func (e *Enricher) refresh(ctx context.Context, src OffsetSource, now time.Time, repair *txnRepair) {
	hanging, causes, ok := e.observe(ctx, src, now)
	if !ok {
		return
	}
	if repair != nil {
		if len(hanging) == 0 {
			repair.episodeOver()
		} else if e.repairHanging(ctx, repair, now) > 0 {
			return
		}
	}
	e.publishHanging(hanging, causes)
}

// observe reads the offsets, updates the lag and the marks, and returns the partitions blocked
// by a transaction for longer than enrich.transaction_timeout, with why; ok is false when a read
// failed.
func (e *Enricher) observe(ctx context.Context, src OffsetSource, now time.Time) (hanging []topicPartition, causes []string, ok bool) {
	t := e.deps.Topics
	topics := []string{t.Sessions, t.Enriched, t.DLQ}
	if e.store != nil {
		// The transactions write the state topic too; one hanging there pins what a restore
		// (read_committed) reads.
		topics = append(topics, t.StateTopic())
	}
	ends, err := src.ListEndOffsets(ctx, topics...)
	if err != nil {
		e.refreshFailed(ctx, "list end offsets", err)
		return nil, nil, false
	}
	lsos, err := src.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		e.refreshFailed(ctx, "list last stable offsets", err)
		return nil, nil, false
	}
	starts, err := src.ListStartOffsets(ctx, t.Sessions)
	if err != nil {
		e.refreshFailed(ctx, "list start offsets", err)
		return nil, nil, false
	}
	committed, err := src.FetchOffsets(ctx, e.cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = kadm.OffsetResponses{}, nil // a new group: nothing committed yet
	}
	if err != nil {
		e.refreshFailed(ctx, "fetch the group's committed offsets", err)
		return nil, nil, false
	}
	// The same fetch the group members make (require_stable): it answers
	// UNSTABLE_OFFSET_COMMIT while a transaction with offsets for the group is open.
	stable, stableErr := src.FetchStableOffsets(ctx, e.cfg.Group)
	if errors.Is(stableErr, kerr.GroupIDNotFound) {
		stable, stableErr = kadm.OffsetResponses{}, nil
	}
	if stableErr != nil && !errors.Is(stableErr, kerr.UnstableOffsetCommit) {
		e.refreshFailed(ctx, "fetch the group's stable offsets", stableErr)
		return nil, nil, false
	}

	p := e.progress
	p.mu.Lock()
	defer p.mu.Unlock()

	if len(p.assigned) > 0 {
		// Partitions a previous client owned and this one does not: no longer ours to report.
		// (Between clients the last values stay, so the watchdog still sees the backlog.)
		for part := range p.lag {
			if !p.assigned[part] {
				delete(p.lag, part)
				e.m.dropLag([]int32{part})
			}
		}
	}
	for part := range p.assigned {
		end, ok := ends.Lookup(t.Sessions, part)
		if !ok || end.Err != nil {
			continue
		}
		from := int64(-1)
		if c, ok := committed.Lookup(t.Sessions, part); ok && c.Err == nil && c.At >= 0 {
			from = c.At
		} else if s, ok := starts.Lookup(t.Sessions, part); ok && s.Err == nil {
			from = s.Offset
		}
		if from < 0 {
			continue
		}
		lag := max(end.Offset-from, 0)
		p.lag[part] = lag
		e.m.setLag(part, lag)
	}

	// Unstable group offsets: every input partition the group has offsets for, or all of them
	// when the whole fetch answered UNSTABLE_OFFSET_COMMIT. The enricher's own commits make the
	// offsets unstable for a moment each; they also move the committed offset, which resets
	// the clock, so only offsets that stay unstable and stay put count.
	unstable := map[topicPartition]bool{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Topic != t.Sessions {
			return
		}
		tp := topicPartition{o.Topic, o.Partition}
		if stableErr != nil {
			unstable[tp] = true
			return
		}
		if c, ok := stable.Lookup(o.Topic, o.Partition); ok && errors.Is(c.Err, kerr.UnstableOffsetCommit) {
			unstable[tp] = true
		}
	})
	for tp := range p.unstableSince {
		if !unstable[tp] {
			delete(p.unstableSince, tp)
		}
	}
	for tp := range unstable {
		at := int64(-1)
		if c, ok := committed.Lookup(tp.topic, tp.partition); ok && c.Err == nil {
			at = c.At
		}
		if m, ok := p.unstableSince[tp]; !ok || m.lso != at {
			p.unstableSince[tp] = lsoMark{lso: at, since: now}
		}
	}

	// An open transaction keeps a partition's last stable offset behind its end offset; a
	// transaction that ends moves it. One that stays put is hanging: read_committed consumers
	// (this enricher on topics.sessions, downstream readers of the output topics) cannot pass it.
	seen := map[topicPartition]bool{}
	ends.Each(func(end kadm.ListedOffset) {
		if end.Err != nil {
			return
		}
		tp := topicPartition{end.Topic, end.Partition}
		lso, ok := lsos.Lookup(end.Topic, end.Partition)
		if !ok || lso.Err != nil || lso.Offset >= end.Offset {
			return
		}
		seen[tp] = true
		if m, ok := p.lsoMarks[tp]; !ok || m.lso != lso.Offset {
			p.lsoMarks[tp] = lsoMark{lso: lso.Offset, since: now}
		}
	})
	for tp := range p.lsoMarks {
		if !seen[tp] {
			delete(p.lsoMarks, tp)
		}
	}

	limit := e.cfg.TransactionTimeout
	for tp, m := range p.unstableSince {
		if now.Sub(m.since) > limit {
			hanging = append(hanging, tp)
			causes = append(causes, fmt.Sprintf("%s: group offsets unstable for %s", tp, now.Sub(m.since).Round(time.Second)))
		}
	}
	for tp, m := range p.lsoMarks {
		if now.Sub(m.since) > limit && !slices.Contains(hanging, tp) {
			hanging = append(hanging, tp)
			causes = append(causes, fmt.Sprintf("%s: last stable offset %d behind the end offset for %s", tp, m.lso, now.Sub(m.since).Round(time.Second)))
		}
	}
	slices.SortFunc(hanging, func(a, b topicPartition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return int(a.partition - b.partition)
	})
	slices.Sort(causes)
	return hanging, causes, true
}

// publishHanging sets the hanging-transaction gauge and readiness, and logs a change.
func (e *Enricher) publishHanging(hanging []topicPartition, causes []string) {
	p := e.progress
	p.mu.Lock()
	defer p.mu.Unlock()
	limit := e.cfg.TransactionTimeout
	changed := !slices.Equal(hanging, p.hanging)
	p.hanging = hanging
	e.m.setHanging(len(hanging))
	if len(hanging) == 0 {
		if changed {
			e.log.Info("hanging transaction resolved: offsets are stable and last stable offsets move again")
		}
		p.hangingReason = ""
		return
	}
	names := make([]string, len(hanging))
	for i, tp := range hanging {
		names[i] = tp.String()
	}
	p.hangingReason = fmt.Sprintf("hanging transaction on %s for longer than enrich.transaction_timeout (%s): %s; "+
		"diagnose with `idnow-connector doctor`: it aborts (--abort) only transactions the coordinator no longer holds (docs/operations.md)", strings.Join(names, ", "), limit, strings.Join(causes, "; "))
	if changed {
		e.log.Error("hanging transaction: a transaction stays open past enrich.transaction_timeout and blocks consumption; "+
			"diagnose with `idnow-connector doctor` (it tells a transaction the coordinator forgot, which --abort may end, from one still held)",
			slog.String("partitions", strings.Join(names, ",")), slog.String("causes", strings.Join(causes, "; ")),
			slog.Duration("transaction_timeout", limit))
	}
}

func (e *Enricher) refreshFailed(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	e.log.Warn("progress monitor: cannot "+what+"; lag and the hanging-transaction check keep their last values", slog.Any("err", err))
}

// evalStall sets the stalled state: input is waiting (records polled and not committed, or lag
// on this member's partitions) and neither a commit nor a handled event happened for
// enrich.stall_after, counted from the latest of the last commit, the last handled event and
// the moment input started waiting.
func (e *Enricher) evalStall(now time.Time) {
	p := e.progress
	p.mu.Lock()
	defer p.mu.Unlock()
	var lag int64
	for _, l := range p.lag {
		lag += l
	}
	pending := p.pending.Load()
	if pending == 0 && lag == 0 {
		p.waitingSince = time.Time{}
		if p.stalledReason != "" {
			e.log.Info("enricher no longer stalled: no input waiting")
		}
		p.stalledReason = ""
		e.m.stalled.Set(0)
		return
	}
	if p.waitingSince.IsZero() {
		p.waitingSince = now
	}
	ref := p.waitingSince
	for _, last := range []int64{p.lastCommit.Load(), p.lastHandled.Load()} {
		if last > 0 && time.Unix(0, last).After(ref) {
			ref = time.Unix(0, last)
		}
	}
	idle := now.Sub(ref)
	if idle < e.cfg.StallAfter {
		if p.stalledReason != "" {
			e.log.Info("enricher no longer stalled: a batch committed or an event was handled")
		}
		p.stalledReason = ""
		e.m.stalled.Set(0)
		return
	}
	was := p.stalledReason != ""
	p.stalledReason = fmt.Sprintf("enricher stalled: input is waiting (%d records polled and uncommitted, lag %d) and neither a commit nor a handled event for %s (enrich.stall_after %s); the log says why (aborted transactions, retries, hanging transactions)",
		pending, lag, idle.Round(time.Second), e.cfg.StallAfter)
	e.m.stalled.Set(1)
	if !was {
		e.log.Error("enricher stalled: input is waiting and neither a commit nor a handled event for enrich.stall_after",
			slog.Int64("pending", pending), slog.Int64("lag", lag), slog.Duration("idle", idle), slog.Duration("stall_after", e.cfg.StallAfter))
	}
}
