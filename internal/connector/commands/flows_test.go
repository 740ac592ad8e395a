package commands

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
)

// flowAPI serves a flow list that tests change, and counts the reads.
type flowAPI struct {
	API
	flows []idnow.Flow
	err   error
	reads int
}

func (f *flowAPI) ListFlows(context.Context) ([]idnow.Flow, error) {
	f.reads++
	return f.flows, f.err
}

// TestFlowResolver checks name resolution: case and spaces ignored, the list cached for the TTL,
// read again on an unknown name at most once per refresh interval, duplicate names refused, and
// a stale list kept when a refresh fails.
func TestFlowResolver(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	api := &flowAPI{flows: []idnow.Flow{{ID: "f1", Name: "AutoIdent"}, {ID: "f2", Name: "Twice"}, {ID: "f3", Name: "twice "}}}
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &flowResolver{api: api, env: "live", ttl: time.Minute, minGap: 10 * time.Second, now: func() time.Time { return now }, m: m,
		limiterW: func(context.Context) error { return nil }}
	ctx := context.Background()
	resolve := func(name string) (string, string) {
		t.Helper()
		id, reason, _, err := r.resolve(ctx, name)
		if err != nil {
			t.Fatalf("resolve %q: %v", name, err)
		}
		return id, reason
	}
	if id, reason := resolve("  autoident "); id != "f1" || reason != "" {
		t.Fatalf("autoident: %q %q", id, reason)
	}
	if _, reason := resolve("TWICE"); reason != "ambiguous_flow_name" {
		t.Fatalf("twice: reason %q", reason)
	}
	// A miss right after the list was read does not read it again; one past the refresh
	// interval does.
	if _, reason := resolve("New flow"); reason != "unknown_flow" || api.reads != 1 {
		t.Fatalf("unknown name right after a read: reason %q after %d reads", reason, api.reads)
	}
	now = now.Add(11 * time.Second)
	if _, reason := resolve("New flow"); reason != "unknown_flow" || api.reads != 2 {
		t.Fatalf("unknown name: reason %q after %d reads, want unknown_flow after a re-read (2)", reason, api.reads)
	}
	// Another miss within the refresh interval does not read the list again.
	if _, reason := resolve("New flow"); reason != "unknown_flow" || api.reads != 2 {
		t.Fatalf("second miss: %q, %d reads", reason, api.reads)
	}
	// After the interval the new flow is found.
	api.flows = append(api.flows, idnow.Flow{ID: "f4", Name: "New flow"})
	now = now.Add(11 * time.Second)
	if id, _ := resolve("New flow"); id != "f4" || api.reads != 3 {
		t.Fatalf("new flow: %q after %d reads", id, api.reads)
	}
	// A hit within the TTL does not read; after the TTL it does, and a failed read keeps the
	// stale list.
	if resolve("AutoIdent"); api.reads != 3 {
		t.Fatalf("hit within ttl read the list (%d)", api.reads)
	}
	now = now.Add(time.Minute)
	api.err = errors.New("IDnow down")
	if id, _ := resolve("AutoIdent"); id != "f1" || api.reads != 4 {
		t.Fatalf("stale list: %q after %d reads", id, api.reads)
	}
	if v := testutil.ToFloat64(m.flowRefresh.WithLabelValues("error")); v != 1 {
		t.Fatalf("flow list errors %v, want 1", v)
	}
	// Without any list, a failed read is an error (retried by the caller).
	r2 := &flowResolver{api: &flowAPI{err: errors.New("down")}, ttl: time.Minute, now: func() time.Time { return now }, m: m,
		limiterW: func(context.Context) error { return nil }}
	var fe *errFlowList
	if _, _, _, err := r2.resolve(ctx, "x"); !errors.As(err, &fe) {
		t.Fatalf("no list: %v", err)
	}
}
