package enrich

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRevokeWaitsForPolledRecords: under at_least_once no revoke may run between a poll's
// return and its records joining the flow. There it would drop the revoked partition's work in
// flight, and the polled records, added after it into a fresh queue, would be enriched and
// commit that partition's offset past the dropped records (lost, if the new owner fetched its
// offset after that commit). The first member's first poll is held in its state restore (the
// restore client cannot dial) while a second member joins and the group starts rebalancing: the
// first member's revoke must wait until the restore is over and the records are in the flow.
func TestRevokeWaitsForPolledRecords(t *testing.T) {
	brokers := newCluster(t)
	sim := startSim(t, 12)
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	api := newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3)

	holdFirstRestore, restoring, releaseOnce := holdFirstDial(t)

	logs := &syncBuffer{}
	cfgA, cfgB := testConfig("a"), testConfig("b")
	cfgA.Delivery, cfgB.Delivery = DeliveryAtLeastOnce, DeliveryAtLeastOnce
	a := runEnricher(t, brokers, cfgA, Deps{API: api, Log: slog.New(slog.NewTextHandler(logs, nil)),
		State: newStateCodec(t), StateOpts: []kgo.Opt{kgo.SeedBrokers(brokers...), holdFirstRestore}})
	select {
	case <-restoring:
	case <-time.After(30 * time.Second):
		t.Fatal("member a never restored state: its first poll returned nothing")
	}
	if strings.Contains(logs.String(), "state restored") {
		t.Fatal("the restore finished although its client could not dial")
	}

	startStatefulEnricher(t, brokers, api, cfgB)
	adm := kadm.NewClient(newProducer(t, brokers))
	eventually(t, 30*time.Second, "the group rebalancing for member b", func() bool {
		groups, err := adm.DescribeGroups(t.Context(), cfgA.Group)
		if err != nil {
			return false
		}
		g, ok := groups[cfgA.Group]
		return ok && (g.State != "Stable" || len(g.Members) > 1)
	}, func() string { return "the group stayed stable with one member" })
	// Member a's heartbeats (every 667 ms with the test's 2 s session timeout) learn of the
	// rebalance; without the hold its revoke would run within a few of them.
	time.Sleep(3 * time.Second)
	if out := logs.String(); strings.Contains(out, "partitions revoked") {
		t.Fatalf("member a revoked partitions while records of its poll were not yet in the flow:\n%s", out)
	}
	releaseOnce()

	waitConsumed(t, brokers, cfgA.Group, 60*time.Second)
	if err := a.stop(); err != nil {
		t.Fatalf("member a Run: %v", err)
	}
	out := logs.String()
	if restored, revoked := strings.Index(out, "state restored"), strings.Index(out, "partitions revoked"); restored < 0 || revoked >= 0 && revoked < restored {
		t.Errorf("member a's revoke did not wait for its restore (restored at %d, revoked at %d):\n%s", restored, revoked, out)
	}
	checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), cfgA.DataBlocks, true)
}

// holdFirstDial returns a client option whose first dial waits until release is called (or the
// test ends), a channel closed when that dial began, and release. Given to the state restore
// clients, it holds the first restore open for as long as a test needs.
func holdFirstDial(t *testing.T) (opt kgo.Opt, dialing <-chan struct{}, release func()) {
	began, released := make(chan struct{}), make(chan struct{})
	var first sync.Once
	var dialer net.Dialer
	opt = kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		held := false
		first.Do(func() { held = true; close(began) })
		if held {
			select {
			case <-released:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return dialer.DialContext(ctx, network, host)
	})
	release = sync.OnceFunc(func() { close(released) })
	t.Cleanup(release)
	return opt, began, release
}
