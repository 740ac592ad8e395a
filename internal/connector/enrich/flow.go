package enrich

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// flow holds the records polled and not yet committed, and the workers enriching them. Records
// enter in log order (add); a queue per session (partition and key) hands one session's records
// to one worker at a time, in order, so sessions are enriched in parallel and each session's
// events in sequence; a record becomes ready for a commit only when every earlier record of its
// partition is ready too, so a commit's offsets cover exactly the records whose output it writes.
//
// The poll loop owns the Kafka client: it adds records, takes ready ones and commits them while
// the workers keep enriching. A flow lives until the consumer position is rewound (an aborted
// transaction, a rebalance under exactly_once, a handler failure): then it is stopped and a new
// one starts from the committed offsets.
type flow struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	enrich func(ctx context.Context, ks *keyState, r *kgo.Record) (Result, error)
	wg     sync.WaitGroup
	// kick wakes the poll loop when a batch's worth of records is ready (size trigger).
	kick chan struct{}

	mu         sync.Mutex
	cond       *sync.Cond  // on mu: runnable grew or the flow closed
	runnable   []*keyQueue // sessions with records and no worker, oldest first
	closed     bool        // stop was called: workers return
	parts      map[int32]*partFlow
	ready      []*entry // ready records in per-partition log order, not yet taken for a commit
	firstReady time.Time
	inFlight   int                // records added and not committed or dropped
	pollCancel context.CancelFunc // cancels the poll in progress (size trigger); nil when none
	maxBatch   int
	// abandoned: a batch taken for a commit was neither committed nor released (see abandon).
	abandoned bool
}

// partFlow is one input partition's records in the flow.
type partFlow struct {
	ctx     context.Context
	cancel  context.CancelFunc
	entries []*entry // not yet ready, in log order from head
	head    int
	keys    map[string]*keyQueue
	dropped bool // revoked (at_least_once): its records are discarded, never committed
}

// keyQueue is one session's records of a partition, handled by one worker at a time.
type keyQueue struct {
	p           *partFlow
	key         string
	recs        []*entry // waiting, in log order
	busy        bool     // queued for or held by a worker
	uncommitted int      // records of the queue added and not committed
	// ks carries the session's state across its records while any of them is uncommitted: the
	// state store advances only when a commit is done.
	ks keyState
}

// entry is one polled record and, once done, its result.
type entry struct {
	rec  *kgo.Record
	kq   *keyQueue
	res  Result
	done bool
}

func newFlow(ctx context.Context, workers, maxBatch int,
	enrich func(ctx context.Context, ks *keyState, r *kgo.Record) (Result, error)) *flow {
	fctx, cancel := context.WithCancelCause(ctx)
	f := &flow{ctx: fctx, cancel: cancel, enrich: enrich, kick: make(chan struct{}, 1),
		parts: map[int32]*partFlow{}, maxBatch: maxBatch}
	f.cond = sync.NewCond(&f.mu)
	for range workers {
		f.wg.Go(f.worker)
	}
	return f
}

// stop cancels the flow with cause and waits for its workers; only the poll loop calls it, once.
func (f *flow) stop(cause error) {
	f.cancel(cause)
	f.mu.Lock()
	f.closed = true
	f.cond.Broadcast()
	f.mu.Unlock()
	f.wg.Wait()
}

// abandon records that a batch taken for a commit was neither committed nor released (its
// transaction aborted, or the stop cut its produce short) and breaks the flow with cause. The
// ready records behind that batch lie past it, so nothing of this flow may commit any more. The
// mark is kept apart from the cause because a stop may have cancelled the flow already, and
// then the cause stays context.Canceled.
func (f *flow) abandon(cause error) {
	f.mu.Lock()
	f.abandoned = true
	f.mu.Unlock()
	f.cancel(cause)
}

// wasAbandoned reports whether abandon was called.
func (f *flow) wasAbandoned() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.abandoned
}

// broken returns why the flow ended early (rebalance, handler failure), nil while it runs.
func (f *flow) broken() error {
	if f.ctx.Err() == nil {
		return nil
	}
	return context.Cause(f.ctx)
}

// add takes polled records into the flow and queues their sessions for the workers.
func (f *flow) add(recs []*kgo.Record) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range recs {
		p := f.parts[r.Partition]
		if p == nil {
			pctx, cancel := context.WithCancel(f.ctx)
			p = &partFlow{ctx: pctx, cancel: cancel, keys: map[string]*keyQueue{}}
			f.parts[r.Partition] = p
		}
		kq := p.keys[string(r.Key)]
		if kq == nil {
			kq = &keyQueue{p: p, key: string(r.Key)}
			p.keys[kq.key] = kq
		}
		en := &entry{rec: r, kq: kq}
		p.entries = append(p.entries, en)
		kq.recs = append(kq.recs, en)
		kq.uncommitted++
		f.inFlight++
		if !kq.busy {
			kq.busy = true
			f.runnable = append(f.runnable, kq)
			f.cond.Signal()
		}
	}
}

// worker enriches sessions' records in order until the flow stops.
func (f *flow) worker() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		for len(f.runnable) == 0 && !f.closed {
			f.cond.Wait()
		}
		if f.closed {
			return
		}
		kq := f.runnable[0]
		f.runnable[0] = nil
		f.runnable = f.runnable[1:]
		for {
			if len(kq.recs) == 0 || kq.p.dropped || f.ctx.Err() != nil {
				kq.busy = false
				f.forgetKeyLocked(kq)
				break
			}
			en := kq.recs[0]
			kq.recs[0] = nil
			kq.recs = kq.recs[1:]
			f.mu.Unlock()
			res, err := f.enrich(kq.p.ctx, &kq.ks, en.rec)
			if err != nil && kq.p.ctx.Err() == nil {
				// Nothing may be skipped: the flow ends and the uncommitted records are
				// consumed again.
				f.cancel(err)
			}
			f.mu.Lock()
			if err == nil {
				f.finishLocked(en, res)
			}
		}
	}
}

// finishLocked records en's result and moves its partition's ready prefix to the ready list;
// the caller holds f.mu.
func (f *flow) finishLocked(en *entry, res Result) {
	p := en.kq.p
	if p.dropped {
		return
	}
	en.res, en.done = res, true
	for p.head < len(p.entries) && p.entries[p.head].done {
		if len(f.ready) == 0 {
			f.firstReady = time.Now()
		}
		f.ready = append(f.ready, p.entries[p.head])
		p.entries[p.head] = nil
		p.head++
	}
	if p.head == len(p.entries) {
		p.entries, p.head = p.entries[:0], 0
	} else if p.head > 1024 && p.head > len(p.entries)/2 {
		n := copy(p.entries, p.entries[p.head:])
		clear(p.entries[n:])
		p.entries, p.head = p.entries[:n], 0
	}
	if len(f.ready) >= f.maxBatch {
		if f.pollCancel != nil {
			f.pollCancel()
		}
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// due reports whether the ready records should commit now, and otherwise how long until they
// should (interval when none is ready).
func (f *flow) due(now time.Time, interval time.Duration) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ready) == 0 {
		return false, interval
	}
	if len(f.ready) >= f.maxBatch {
		return true, 0
	}
	wait := f.firstReady.Add(interval).Sub(now)
	return wait <= 0, wait
}

// take removes up to maxBatch ready records for a commit; a prefix of the ready list is a
// log-order prefix of each partition's uncommitted records.
func (f *flow) take() []*entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(len(f.ready), f.maxBatch)
	batch := make([]*entry, n)
	copy(batch, f.ready)
	rest := copy(f.ready, f.ready[n:])
	clear(f.ready[rest:])
	f.ready = f.ready[:rest]
	if rest > 0 {
		// The remaining records waited at least as long as the batch's last one.
		f.firstReady = time.Now()
	}
	return batch
}

// release forgets committed (or, under at_least_once, written) records: they leave the in-flight
// count, and sessions with nothing left in the flow are dropped, their state now in the store.
func (f *flow) release(batch []*entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, en := range batch {
		// Taken records count until released, also when their partition was dropped meanwhile.
		f.inFlight--
		if !en.kq.p.dropped {
			en.kq.uncommitted--
			f.forgetKeyLocked(en.kq)
		}
	}
}

// forgetKeyLocked drops kq from its partition once it holds nothing; the caller holds f.mu.
func (f *flow) forgetKeyLocked(kq *keyQueue) {
	if kq.busy || len(kq.recs) > 0 || kq.uncommitted > 0 {
		return
	}
	if kq.p.keys[kq.key] == kq {
		delete(kq.p.keys, kq.key)
	}
}

// drop discards the records of partitions this member lost (at_least_once keeps polling the
// others from where it is): their enrichment is cancelled and their ready records are not
// committed; the partitions' new owner consumes them again from the committed offsets.
func (f *flow) drop(partitions []int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, part := range partitions {
		p := f.parts[part]
		if p == nil {
			continue
		}
		p.dropped = true
		p.cancel()
		delete(f.parts, part)
		f.inFlight -= len(p.entries) - p.head
	}
	kept := f.ready[:0]
	for _, en := range f.ready {
		if en.kq.p.dropped {
			f.inFlight--
			continue
		}
		kept = append(kept, en)
	}
	clear(f.ready[len(kept):])
	f.ready = kept
}

// room is how many more records may be added before max_in_flight is reached.
func (f *flow) room(maxInFlight int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maxInFlight - f.inFlight
}

// uncommitted is the number of records in flight.
func (f *flow) uncommitted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inFlight
}

// setPollCancel registers the cancel function of the poll in progress (nil when it is over).
func (f *flow) setPollCancel(c context.CancelFunc) {
	f.mu.Lock()
	f.pollCancel = c
	f.mu.Unlock()
}

// wait blocks for at most d, until the size trigger fires or the flow ends.
func (f *flow) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.kick:
	case <-f.ctx.Done():
	}
}

// recordsOf returns the records and results of a batch.
func recordsOf(batch []*entry) ([]*kgo.Record, []Result) {
	recs := make([]*kgo.Record, len(batch))
	results := make([]Result, len(batch))
	for i, en := range batch {
		recs[i], results[i] = en.rec, en.res
	}
	return recs, results
}
