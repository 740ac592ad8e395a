package enrich

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
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
		wg.Go(func() { e.refresh(t.Context(), src, time.Now()) })
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
