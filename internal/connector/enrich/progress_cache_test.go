package enrich

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// signalOffsets is a fakeOffsets that closes read once refresh made its last read, so a test
// knows refresh is about to take p.mu.
type signalOffsets struct {
	*fakeOffsets
	read chan struct{}
}

func (s signalOffsets) FetchStableOffsets(ctx context.Context, group string) (kadm.OffsetResponses, error) {
	defer close(s.read)
	return s.fakeOffsets.FetchStableOffsets(ctx, group)
}

// TestRevokeDropsLagUnderLock reproduces the review finding on the lag series: rebalanced
// dropped the series outside p.mu and then unassigned the partition, so a refresh in between
// re-created the series of a revoked partition, and nothing deleted it again. The test holds
// p.mu, lets a refresh queue for it first and the revoke second, then releases it: the refresh
// sets the lag, the revoke must delete it.
func TestRevokeDropsLagUnderLock(t *testing.T) {
	s := testTopics.Sessions
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: testTopics}, m: testMetrics(t), log: discardLog(), progress: newProgress()}
	series := func() int { return testutil.CollectAndCount(e.m.lag) }
	for round := range 10 {
		src := signalOffsets{&fakeOffsets{
			end: map[string]map[int32]int64{s: {0: 100}}, lso: map[string]map[int32]int64{s: {0: 100}},
			start: map[string]map[int32]int64{s: {0: 0}}, committed: map[int32]int64{0: 40}, unstable: map[int32]bool{},
		}, make(chan struct{})}
		e.progress.assign([]int32{0})
		e.progress.mu.Lock()
		var wg sync.WaitGroup
		wg.Go(func() { e.refresh(t.Context(), src, time.Now(), nil) })
		<-src.read
		time.Sleep(20 * time.Millisecond) // refresh now waits on p.mu
		wg.Go(func() { e.rebalanced("revoked", map[string][]int32{s: {0}}) })
		time.Sleep(20 * time.Millisecond) // the revoke waits on p.mu, after the refresh
		e.progress.mu.Unlock()
		wg.Wait()
		if n := series(); n != 0 {
			t.Fatalf("round %d: %d consumer_lag series left after partition 0 was revoked, want 0", round, n)
		}
	}
}

// TestStallCountsHandledEvents reproduces the review finding on the stall watchdog: a batch of
// max_poll_records at idnow.rate_limit takes longer than stall_after to commit, and a false
// critical alert fired while every event progressed. An event finished by the handler now
// counts as progress; input waiting with neither a commit nor a handled event is still a stall.
func TestStallCountsHandledEvents(t *testing.T) {
	e := &Enricher{cfg: DefaultConfig(), m: testMetrics(t), log: discardLog(), progress: newProgress()}
	e.cfg.StallAfter = time.Minute
	e.cfg.Concurrency = 2
	t0 := time.Unix(1000, 0)
	stalled := func() float64 { return testutil.ToFloat64(e.m.stalled) }

	e.progress.pending.Store(100)
	e.evalStall(t0) // the batch starts waiting
	// Slow but moving: an event handled every 30s, no commit for 3 minutes.
	for i := 1; i <= 6; i++ {
		now := t0.Add(time.Duration(i) * 30 * time.Second)
		e.progress.lastHandled.Store(now.Add(-time.Second).UnixNano())
		e.evalStall(now)
		if stalled() != 0 || e.progress.problem() != nil {
			t.Fatalf("at %s: stalled while an event was handled a second ago", now.Sub(t0))
		}
	}
	// Nothing handled or committed for longer than stall_after: stalled.
	e.evalStall(t0.Add(3*time.Minute + 61*time.Second))
	if stalled() != 1 || e.progress.problem() == nil {
		t.Fatal("no stall after neither a commit nor a handled event for stall_after")
	}

	// enrichRecord records handled events (cached results are not new progress).
	e2 := &Enricher{cfg: e.cfg, m: testMetrics(t), log: discardLog(), progress: newProgress(),
		handler: func(context.Context, *Message) (Result, error) { return Result{}, nil }}
	before := time.Now().UnixNano()
	if _, err := e2.enrichRecord(t.Context(), &keyState{}, &kgo.Record{Topic: "in", Key: []byte("k"), Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if got := e2.progress.lastHandled.Load(); got < before {
		t.Fatalf("lastHandled %d not set by a handled event (handling started at %d)", got, before)
	}
	e2.progress.lastHandled.Store(0)
	if _, err := e2.enrichRecord(t.Context(), &keyState{}, &kgo.Record{Topic: "in", Key: []byte("k"), Offset: 1}); err != nil {
		t.Fatal(err)
	}
	if got := e2.progress.lastHandled.Load(); got != 0 {
		t.Fatal("a result taken from the cache counted as a handled event")
	}
}

func cachedOf(size int) cachedResult {
	return cachedResult{res: Result{Records: []*kgo.Record{{Value: make([]byte, size)}}}}
}

// TestResultCacheBoundedByBytes reproduces the review finding on the result cache: it was bounded
// by record count only, so max_poll_records results of up to max.message.bytes each stayed in
// memory. Beyond its byte bound the oldest entries go; replaced and committed entries do not
// count twice.
func TestResultCacheBoundedByBytes(t *testing.T) {
	c := &resultCache{maxBytes: 1000}
	rec := func(p int32, off int64) *kgo.Record { return &kgo.Record{Topic: "in", Partition: p, Offset: off} }
	for off := range int64(10) {
		c.put(rec(0, off), cachedOf(100))
	}
	if c.len() != 10 || c.size() != 1000 {
		t.Fatalf("%d entries of %d bytes, want 10 and 1000", c.len(), c.size())
	}
	c.put(rec(0, 0), cachedResult{res: cachedOf(100).res, alone: true}) // replaced: now the newest
	if c.len() != 10 || c.size() != 1000 {
		t.Fatalf("after a replacement: %d entries of %d bytes, want 10 and 1000", c.len(), c.size())
	}
	c.put(rec(0, 10), cachedOf(250))
	if c.size() > 1000 {
		t.Fatalf("cache holds %d bytes, bound 1000", c.size())
	}
	for _, off := range []int64{1, 2, 3} {
		if _, ok := c.get(rec(0, off)); ok {
			t.Errorf("offset %d (among the oldest) still cached beyond the byte bound", off)
		}
	}
	for _, off := range []int64{0, 4, 10} {
		if _, ok := c.get(rec(0, off)); !ok {
			t.Errorf("offset %d (among the newest) dropped", off)
		}
	}
	c.forget([]*kgo.Record{rec(0, 10)})
	if want := 7 * 100; c.size() != want {
		t.Errorf("after forgetting 250 bytes: %d bytes cached, want %d", c.size(), want)
	}
	// One result larger than the bound stays: its batch needs it when it comes again.
	c.put(rec(1, 0), cachedOf(5000))
	if _, ok := c.get(rec(1, 0)); !ok || c.len() != 1 {
		t.Errorf("a result over the bound: cached %v, %d entries, want it alone", ok, c.len())
	}
	if len(c.order) > 2*c.len()+64 {
		t.Errorf("insertion order holds %d places for %d entries", len(c.order), c.len())
	}
}

// TestCacheDropsRevokedPartitions reproduces the review finding on stale cache entries: results
// of partitions revoked and assigned to another member stayed cached. An assignment that does
// not hand a partition back drops its entries; one that does keeps them (the batch comes again
// without API calls).
func TestCacheDropsRevokedPartitions(t *testing.T) {
	s := testTopics.Sessions
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: testTopics}, m: testMetrics(t), log: discardLog(), progress: newProgress()}
	rec := func(p int32) *kgo.Record { return &kgo.Record{Topic: s, Partition: p, Offset: 5} }
	e.onAssigned(t.Context(), nil, map[string][]int32{s: {0, 1, 2}})
	for p := range int32(3) {
		e.cache.put(rec(p), cachedOf(10))
	}
	// Eager: everything revoked, 0 and 2 handed back.
	e.onRevoked(t.Context(), nil, map[string][]int32{s: {0, 1, 2}})
	if e.cache.len() != 3 {
		t.Fatalf("revoking dropped cache entries before the new assignment: %d left, want 3", e.cache.len())
	}
	e.onAssigned(t.Context(), nil, map[string][]int32{s: {0, 2}})
	for p, want := range map[int32]bool{0: true, 1: false, 2: true} {
		if _, ok := e.cache.get(rec(p)); ok != want {
			t.Errorf("partition %d cached %v after the assignment, want %v", p, ok, want)
		}
	}
	// Cooperative: 2 revoked with no new assignment; the next commit drops it.
	e.onRevoked(t.Context(), nil, map[string][]int32{s: {2}})
	e.commitDone([]*kgo.Record{{Topic: s, Partition: 0, Offset: 9}}, nil)
	if _, ok := e.cache.get(rec(2)); ok {
		t.Error("partition 2 still cached after it was revoked and a batch committed")
	}
	if _, ok := e.cache.get(rec(0)); !ok {
		t.Error("an owned partition's entry dropped by a commit of other records")
	}
}
