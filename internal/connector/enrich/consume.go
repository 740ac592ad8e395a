package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// consume is the enricher's loop for both delivery modes (sess is nil under at_least_once). It
// polls ahead while earlier events are being enriched (up to enrich.max_in_flight uncommitted
// events), and commits what is finished when the oldest finished event has waited
// enrich.commit_interval or enrich.max_batch_records are finished: under exactly_once one
// transaction with exactly those events' output and offsets, under at_least_once their output,
// every acknowledgement awaited, then their offsets. Workers keep enriching while a commit runs.
func (e *Enricher) consume(ctx, shutdownCtx context.Context, cl *kgo.Client, sess *kgo.GroupTransactSession) (progressed bool, err error) {
	f := e.startFlow(ctx)
	defer func() { e.endFlow(f, context.Canceled) }()
	for {
		if ctx.Err() != nil {
			return progressed, e.shutdown(shutdownCtx, cl, sess, f)
		}
		if cause := f.broken(); cause != nil {
			n := f.uncommitted()
			e.endFlow(f, cause)
			if err := e.rewind(ctx, shutdownCtx, sess, n, cause); err != nil {
				return progressed, err
			}
			f = e.startFlow(ctx)
			continue
		}
		due, wait := f.due(time.Now(), e.cfg.CommitInterval)
		if due {
			ok, err := e.commitBatch(ctx, shutdownCtx, cl, sess, f, f.take())
			if err != nil {
				return progressed, err
			}
			progressed = progressed || ok
			continue
		}
		room := f.room(e.cfg.MaxInFlight)
		if room <= 0 {
			// Fetching pauses: franz-go buffers at most what it fetched before, until polled.
			f.wait(wait)
			continue
		}
		pctx, cancel := context.WithTimeout(f.ctx, wait)
		f.setPollCancel(cancel)
		recs, err := e.poll(ctx, pctx, cl, min(e.cfg.MaxPollRecords, room))
		f.setPollCancel(nil)
		cancel()
		if err == nil {
			err = e.admit(ctx, f, recs)
		}
		// Under at_least_once the client holds back rebalances from the poll's return until
		// here (kgo.BlockRebalanceOnPoll): a revoke that ran between the poll and the add
		// would drop its partition's work in flight, and the polled records, added after it
		// into a fresh queue, would then commit that partition's offset past the dropped ones.
		// Now a revoke finds them in the flow and drops them too. (No-op under exactly_once.)
		cl.AllowRebalance()
		if err != nil {
			return progressed, err
		}
	}
}

// admit restores the state of recs' partitions where needed and adds recs to the flow. Records
// polled after the flow broke are not added: they lie beyond the committed offsets the consumer
// is about to be rewound to.
func (e *Enricher) admit(ctx context.Context, f *flow, recs []*kgo.Record) error {
	if len(recs) == 0 || f.broken() != nil {
		return nil
	}
	if err := e.restoreFor(ctx, recs); err != nil {
		return err
	}
	f.add(recs)
	e.noteInFlight(f)
	return nil
}

// startFlow starts the workers of a new flow and publishes it to the rebalance callbacks.
func (e *Enricher) startFlow(ctx context.Context) *flow {
	f := newFlow(ctx, e.cfg.Concurrency, e.cfg.MaxBatchRecords, e.enrichRecord)
	e.mu.Lock()
	e.cur = f
	e.mu.Unlock()
	e.noteInFlight(f)
	return f
}

// endFlow stops f's workers; its uncommitted records are consumed again from the committed
// offsets (by this member after a rewind, or by the partitions' next owner).
func (e *Enricher) endFlow(f *flow, cause error) {
	e.mu.Lock()
	if e.cur == f {
		e.cur = nil
	}
	e.mu.Unlock()
	f.stop(cause)
	e.progress.pending.Store(0)
	e.m.uncommitted.Set(0)
}

// noteInFlight publishes the uncommitted count to the stall watchdog and the gauge.
func (e *Enricher) noteInFlight(f *flow) {
	n := f.uncommitted()
	// Lag is not taken from the fetch's high watermark: fetched batches wait in the client's
	// buffer while that number goes stale. The monitor reads it from the group.
	e.progress.pending.Store(int64(n))
	e.m.uncommitted.Set(float64(n))
}

// rewind returns the consumer to the committed offsets after the flow broke: under exactly_once
// by ending the session's transaction with an abort (which also clears its rebalance mark),
// under at_least_once, which has no such rewind, by returning an error so that a new client
// starts from the committed offsets.
func (e *Enricher) rewind(ctx, shutdownCtx context.Context, sess *kgo.GroupTransactSession, uncommitted int, cause error) error {
	if sess == nil {
		return fmt.Errorf("enriching failed; the uncommitted events will be consumed again: %w", cause)
	}
	if _, err := sess.End(shutdownCtx, kgo.TryAbort); err != nil {
		e.m.aborted()
		return fmt.Errorf("end transaction: %w", err)
	}
	if uncommitted > 0 || !errors.Is(cause, errRebalance) {
		// A rebalance with nothing in flight voided nothing.
		e.m.aborted()
		e.log.Warn("transaction aborted; the uncommitted events will be consumed again", slog.Int("records", uncommitted),
			slog.Int("cached_results", e.cache.len()), slog.String("cause", cause.Error()))
	}
	if !errors.Is(cause, errRebalance) {
		// A handler failure: give the dependencies a moment before the events come again.
		sleepCtx(ctx, e.cfg.Retry.InitialBackoff)
	}
	return nil
}

// shutdown stops enriching and commits what is finished, within enrich.shutdown_timeout.
func (e *Enricher) shutdown(shutdownCtx context.Context, cl *kgo.Client, sess *kgo.GroupTransactSession, f *flow) error {
	cause := f.broken()
	f.stop(context.Canceled)
	if f.wasAbandoned() || cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		// A rebalance or failure voided the work in flight before the stop, or a batch was
		// left unfinished (aborted, or its produce cut short by the stop): the ready records
		// behind it lie past it and are consumed again.
		return nil
	}
	for {
		batch := f.take()
		if len(batch) == 0 {
			return nil
		}
		ok, err := e.commitBatch(shutdownCtx, shutdownCtx, cl, sess, f, batch)
		if err != nil {
			return err
		}
		if !ok || shutdownCtx.Err() != nil {
			// After an abort the session has rewound its partitions: later batches lie beyond
			// the committed offsets and commitOnly would refuse them. They are consumed again.
			return nil
		}
	}
}

// commitBatch writes batch's output and commits exactly its offsets. ok reports a commit. A
// batch left unfinished (an aborted transaction, or a produce the stop cut short) abandons the
// flow: the loop rewinds, and a shutdown commits nothing behind it. err is returned for failures
// a new client has to fix.
func (e *Enricher) commitBatch(ctx, shutdownCtx context.Context, cl *kgo.Client, sess *kgo.GroupTransactSession, f *flow, batch []*entry) (ok bool, err error) {
	recs, results := recordsOf(batch)
	e.m.batchSize.Observe(float64(len(batch)))
	spans := e.startCommitSpans(results)
	if sess == nil {
		if err := e.produceUntilAcked(ctx, cl, recs, results); err != nil {
			spans.end(false, err)
			if ctx.Err() != nil {
				// The stop cut the produce short: part of the batch's output may be unwritten.
				f.abandon(fmt.Errorf("produce interrupted by the stop: %w", err))
				return false, nil
			}
			return false, err
		}
		err := cl.CommitRecords(ctx, recs...)
		spans.end(err == nil, err)
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			// The output is written; after a rebalance the new owner enriches these events
			// again, which at_least_once allows. A later commit covers their offsets otherwise.
			e.log.Warn("committing offsets failed; the events may be enriched again", slog.Int("records", len(recs)), slog.Any("err", err))
		}
		e.commitDone(recs, results)
		f.release(batch)
		e.noteInFlight(f)
		return err == nil, nil
	}

	if err := sess.Begin(); err != nil {
		spans.end(false, err)
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	perr := e.produceTxn(ctx, cl, recs, results)
	try := kgo.TryCommit
	if perr != nil {
		try = kgo.TryAbort
	}
	// The outcome is recorded by the transaction's producer id and epoch, so a marker the broker
	// skips can be written later with what was decided (txnrepair.go).
	pid, epoch, known := producerOf(shutdownCtx, cl)
	committed, err := sess.End(kgo.PreTxnCommitFnContext(shutdownCtx, commitOnly(batchOffsets(recs))), try)
	if known {
		e.recordOutcome(pid, epoch, try, committed, err)
	}
	spans.end(committed, errors.Join(perr, err))
	if err != nil {
		e.m.aborted()
		e.log.Warn("ending the transaction failed; re-creating the Kafka client, the uncommitted events will be consumed again",
			slog.Int("records", len(recs)), slog.Any("err", err), slog.Any("batch_err", perr))
		return false, fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		// The session rewound every partition to its committed offsets: all work in flight
		// is void. rewind (in the loop) logs and counts the abort.
		cause := errRebalance
		if perr != nil {
			cause = perr
		}
		f.abandon(cause)
		return false, nil
	}
	e.commitDone(recs, results)
	f.release(batch)
	e.noteInFlight(f)
	return true, nil
}

// batchOffsets is the offset to commit per partition of recs: one past the last record.
func batchOffsets(recs []*kgo.Record) map[string]map[int32]kgo.EpochOffset {
	out := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		ps := out[r.Topic]
		if ps == nil {
			ps = map[int32]kgo.EpochOffset{}
			out[r.Topic] = ps
		}
		if cur, ok := ps[r.Partition]; !ok || r.Offset+1 > cur.Offset {
			ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		}
	}
	return out
}

// errCommitOffsets marks a transaction whose offsets did not match its records; it is never
// committed.
var errCommitOffsets = errors.New("transactional offset commit does not cover the batch")

// commitOnly rewrites the session's TxnOffsetCommit to exactly offsets. The session would
// commit every polled offset; records polled ahead and still being enriched must not be. A
// partition of offsets missing from the request (the session holds nothing uncommitted there,
// which a batch of records it polled cannot produce) fails the commit rather than lose output.
func commitOnly(offsets map[string]map[int32]kgo.EpochOffset) func(*kmsg.TxnOffsetCommitRequest) error {
	return func(req *kmsg.TxnOffsetCommitRequest) error {
		want := 0
		for _, ps := range offsets {
			want += len(ps)
		}
		found := 0
		topics := req.Topics[:0]
		for _, t := range req.Topics {
			ps := t.Partitions[:0]
			for _, p := range t.Partitions {
				eo, ok := offsets[t.Topic][p.Partition]
				if !ok {
					continue
				}
				p.Offset, p.LeaderEpoch = eo.Offset, eo.Epoch
				ps = append(ps, p)
				found++
			}
			if len(ps) > 0 {
				t.Partitions = ps
				topics = append(topics, t)
			}
		}
		req.Topics = topics
		if found != want {
			return fmt.Errorf("%w: %d of %d partitions in the request", errCommitOffsets, found, want)
		}
		return nil
	}
}

// enrichRecord decides with the state store whether r is enriched, runs the handler chain and
// attaches the session's new state. ks is the session's state across its records in flight.
func (e *Enricher) enrichRecord(ctx context.Context, ks *keyState, r *kgo.Record) (Result, error) {
	var (
		ev *schemas.SessionEvent
		d  state.Decision
	)
	if e.store != nil {
		if ev, d = e.gate(ctx, ks, r); d.Skip != "" {
			return Result{Skipped: d.Skip}, nil
		}
	}
	res, err := e.handle(ctx, r, d.OutOfOrder)
	if err == nil && e.store != nil {
		res, err = e.withState(ks, r, ev, res)
	}
	return res, err
}
