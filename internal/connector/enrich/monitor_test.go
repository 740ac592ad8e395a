package enrich

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// fakeOffsets is an OffsetSource whose answers a test sets directly, for states kfake cannot
// produce on demand (offsets unstable while commits still move them).
type fakeOffsets struct {
	end, lso, start map[string]map[int32]int64
	committed       map[int32]int64
	unstable        map[int32]bool
}

func listed(m map[string]map[int32]int64, topics []string) kadm.ListedOffsets {
	out := kadm.ListedOffsets{}
	for _, t := range topics {
		for p, o := range m[t] {
			if out[t] == nil {
				out[t] = map[int32]kadm.ListedOffset{}
			}
			out[t][p] = kadm.ListedOffset{Topic: t, Partition: p, Offset: o}
		}
	}
	return out
}

func (f *fakeOffsets) ListStartOffsets(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
	return listed(f.start, topics), nil
}

func (f *fakeOffsets) ListEndOffsets(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
	return listed(f.end, topics), nil
}

func (f *fakeOffsets) ListCommittedOffsets(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
	return listed(f.lso, topics), nil
}

func (f *fakeOffsets) offsets(stable bool) kadm.OffsetResponses {
	t := testTopics.Sessions
	out := kadm.OffsetResponses{t: {}}
	for p, at := range f.committed {
		r := kadm.OffsetResponse{Offset: kadm.Offset{Topic: t, Partition: p, At: at}}
		if stable && f.unstable[p] {
			r.Err = kerr.UnstableOffsetCommit
		}
		out[t][p] = r
	}
	return out
}

func (f *fakeOffsets) FetchOffsets(context.Context, string) (kadm.OffsetResponses, error) {
	return f.offsets(false), nil
}

func (f *fakeOffsets) FetchStableOffsets(context.Context, string) (kadm.OffsetResponses, error) {
	return f.offsets(true), nil
}

// TestRefreshHangingDetection drives the detector through time with an injected offset source:
// offsets that stay unstable and put, or a last stable offset that stays behind, become a
// hanging transaction after enrich.transaction_timeout; offsets that are unstable at every look
// but keep moving (busy transactional commits) never do; lag is end minus committed.
func TestRefreshHangingDetection(t *testing.T) {
	s, out := testTopics.Sessions, testTopics.Enriched
	src := &fakeOffsets{
		end:       map[string]map[int32]int64{s: {0: 100, 1: 50}, out: {2: 12}},
		lso:       map[string]map[int32]int64{s: {0: 100, 1: 50}, out: {2: 12}},
		start:     map[string]map[int32]int64{s: {0: 0, 1: 10}},
		committed: map[int32]int64{0: 40},
		unstable:  map[int32]bool{},
	}
	e := &Enricher{cfg: DefaultConfig(), deps: Deps{Topics: testTopics}, m: testMetrics(t), log: discardLog(), progress: newProgress()}
	e.cfg.TransactionTimeout = time.Minute
	e.progress.assign([]int32{0, 1})
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration) { e.refresh(t.Context(), src, t0.Add(at), nil) }
	hanging := func() float64 { return testutil.ToFloat64(e.m.hanging) }

	step(0)
	if l0, l1 := testutil.ToFloat64(e.m.lag.WithLabelValues("0")), testutil.ToFloat64(e.m.lag.WithLabelValues("1")); l0 != 60 || l1 != 40 {
		t.Fatalf("lag %v and %v, want 60 (100-40) and 40 (50 minus log start 10, nothing committed)", l0, l1)
	}

	// Busy but healthy: unstable at every look, committed offset moving.
	src.unstable[0] = true
	for i := range 10 {
		src.committed[0] = 40 + int64(i)
		step(time.Duration(i) * 30 * time.Second)
		if hanging() != 0 {
			t.Fatalf("look %d: unstable offsets that keep moving reported as hanging", i)
		}
	}
	// Stuck: unstable and put for longer than the timeout.
	step(5 * time.Minute)
	step(5*time.Minute + 61*time.Second)
	if hanging() != 1 || testutil.ToFloat64(e.m.blocked) != 1 {
		t.Fatalf("hanging %v blocked %v, want 1 and 1", hanging(), testutil.ToFloat64(e.m.blocked))
	}
	if err := e.progress.problem(); err == nil || !strings.Contains(err.Error(), s+"/0: group offsets unstable") {
		t.Fatalf("readiness %v", err)
	}
	// Resolved; then an output partition's last stable offset stays behind its end offset.
	src.unstable[0] = false
	src.lso[out][2] = 10
	step(7 * time.Minute)
	if hanging() != 0 || testutil.ToFloat64(e.m.blocked) != 0 || e.progress.problem() != nil {
		t.Fatalf("after resolution: hanging %v, readiness %v", hanging(), e.progress.problem())
	}
	step(7*time.Minute + 30*time.Second)
	if hanging() != 0 {
		t.Fatal("a transaction open for 30s reported as hanging (timeout 1m)")
	}
	step(8*time.Minute + time.Second)
	if err := e.progress.problem(); hanging() != 1 || err == nil || !strings.Contains(err.Error(), out+"/2: last stable offset 10") {
		t.Fatalf("hanging %v, readiness %v: want the enriched partition named", hanging(), err)
	}
	src.lso[out][2] = 12
	step(9 * time.Minute)
	if hanging() != 0 {
		t.Fatal("hanging stays after the transaction ended")
	}
}

// TestStallWatchdog: waiting input without a commit for stall_after is a stall; a commit or no
// waiting input clears it.
func TestStallWatchdog(t *testing.T) {
	e := &Enricher{cfg: DefaultConfig(), m: testMetrics(t), log: discardLog(), progress: newProgress()}
	e.cfg.StallAfter = time.Minute
	t0 := time.Unix(1000, 0)
	stalled := func() float64 { return testutil.ToFloat64(e.m.stalled) }

	e.evalStall(t0) // nothing waiting
	e.progress.pending.Store(5)
	e.evalStall(t0.Add(time.Hour)) // starts waiting now, after an hour of idling: not stalled
	if stalled() != 0 {
		t.Fatal("stalled as soon as input arrived after a quiet hour")
	}
	e.evalStall(t0.Add(time.Hour + 61*time.Second))
	if stalled() != 1 || e.progress.problem() == nil {
		t.Fatal("no stall after waiting longer than stall_after")
	}
	e.progress.lastCommit.Store(t0.Add(time.Hour + 62*time.Second).UnixNano())
	e.evalStall(t0.Add(time.Hour + 63*time.Second))
	if stalled() != 0 || e.progress.problem() != nil {
		t.Fatal("stall stays after a commit")
	}
	e.progress.pending.Store(0)
	e.progress.lag[3] = 7 // lag alone counts as waiting input
	e.evalStall(t0.Add(time.Hour + 3*time.Minute))
	if stalled() != 1 {
		t.Fatal("lag without a commit for stall_after is not a stall")
	}
	e.progress.lag[3] = 0
	e.evalStall(t0.Add(time.Hour + 4*time.Minute))
	if stalled() != 0 {
		t.Fatal("stall stays with nothing waiting")
	}
}
