package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sp(s string) *string { return &s }

func TestDecide(t *testing.T) {
	completed := &schemas.SessionState{SessionID: "s", LatestStatus: sp("COMPLETED"), EnrichedEventIDs: []string{"e1", "e2"}}
	running := &schemas.SessionState{SessionID: "s", LatestStatus: sp("RUNNING"), EnrichedEventIDs: []string{"e1"}}
	tests := []struct {
		name   string
		prev   *schemas.SessionState
		id, st string
		want   Decision
	}{
		{"nothing enriched", nil, "e1", "CREATED", Decision{}},
		{"same event id", completed, "e2", "COMPLETED", Decision{Skip: SkipAlreadyEnriched}},
		{"same id, other status still skipped", completed, "e1", "RUNNING", Decision{Skip: SkipAlreadyEnriched}},
		{"terminal status under another id", completed, "rec-x", "completed", Decision{Skip: SkipStatusEnriched}},
		{"late running after completed", completed, "e3", "RUNNING", Decision{OutOfOrder: true}},
		{"late created after running", running, "e0", "CREATED", Decision{OutOfOrder: true}},
		{"forward", running, "e5", "COMPLETED", Decision{}},
		{"same non-terminal status is news", running, "e6", "RUNNING", Decision{}},
		{"unknown status never out of order", completed, "e7", "ON_HOLD", Decision{}},
		{"empty status", completed, "e8", "", Decision{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(tc.prev, tc.id, tc.st); got != tc.want {
				t.Fatalf("Decide(%q, %q) = %+v, want %+v", tc.id, tc.st, got, tc.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	s := Apply(nil, "s", "e1", "CREATED", "", now)
	s = Apply(s, "s", "e2", "COMPLETED", "accepted", now)
	prev := s
	s = Apply(s, "s", "e3", "RUNNING", "", now)
	if *s.LatestStatus != "COMPLETED" || *s.Outcome != "accepted" {
		t.Fatalf("a late RUNNING changed the latest status: %+v", s)
	}
	if len(prev.EnrichedEventIDs) != 2 {
		t.Fatalf("Apply modified its input: %v", prev.EnrichedEventIDs)
	}
	if got := strings.Join(s.EnrichedEventIDs, ","); got != "e1,e2,e3" {
		t.Fatalf("event ids = %s", got)
	}
	for i := range MaxEventIDs + 10 {
		s = Apply(s, "s", fmt.Sprintf("x%d", i), "", "", now)
	}
	if len(s.EnrichedEventIDs) != MaxEventIDs || s.EnrichedEventIDs[MaxEventIDs-1] != fmt.Sprintf("x%d", MaxEventIDs+9) {
		t.Fatalf("bounded list: %d ids, last %s", len(s.EnrichedEventIDs), s.EnrichedEventIDs[len(s.EnrichedEventIDs)-1])
	}
}

func TestReconcileEventIDDeterministic(t *testing.T) {
	a, b := ReconcileEventID("ses-1", "COMPLETED"), ReconcileEventID("ses-1", "completed")
	if a != b {
		t.Fatalf("status case changed the id: %s vs %s", a, b)
	}
	if len(a) != 36 || !strings.HasPrefix(a, "rec-") {
		t.Fatalf("id %q: want rec- and 32 hex digits", a)
	}
	// Pinned: reconcilers of other versions must derive the same id, or a status is repaired twice.
	if a != "rec-eb700dd9e19411199bfa7a0be5a540fa" {
		t.Fatalf("ReconcileEventID(ses-1, COMPLETED) = %s; the derivation changed", a)
	}
	if ReconcileEventID("ses-1", "ABORTED") == a || ReconcileEventID("ses-2", "COMPLETED") == a {
		t.Fatal("ids of different sessions or statuses collide")
	}
}

func TestComplete(t *testing.T) {
	st := &schemas.SessionState{SessionID: "s", LatestStatus: sp("RUNNING"), EnrichedEventIDs: []string{ReconcileEventID("s", "ON_HOLD")}}
	for status, want := range map[string]bool{"CREATED": true, "RUNNING": true, "COMPLETED": false, "ON_HOLD": true, "OTHER": false} {
		if got := Complete(st, status); got != want {
			t.Errorf("Complete(RUNNING state, %s) = %v, want %v", status, got, want)
		}
	}
	if Complete(nil, "CREATED") {
		t.Error("a session with no state is complete")
	}
}

const (
	sessions = "idnow.sessions"
	stTopic  = "idnow.sessions.state"
)

func topics() kafka.TopicsConfig {
	t := kafka.DefaultTopicsConfig()
	t.Sessions, t.State, t.Partitions = sessions, stTopic, 3
	return t
}

func cluster(t *testing.T, seed ...kfake.Opt) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(3, sessions)}, seed...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

func TestEnsureTopic(t *testing.T) {
	c, cl := cluster(t)
	adm := kadm.NewClient(cl)
	if err := EnsureTopic(t.Context(), adm, topics()); err != nil {
		t.Fatalf("create: %v", err)
	}
	// A fresh client: kadm answers ListTopics from the client's metadata cache.
	fresh, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	adm = kadm.NewClient(fresh)
	d, err := adm.ListTopics(t.Context(), stTopic)
	if err != nil || len(d[stTopic].Partitions) != 3 {
		t.Fatalf("state topic: %v partitions, err %v; want 3 like the sessions", len(d[stTopic].Partitions), err)
	}
	rc, err := adm.DescribeTopicConfigs(t.Context(), stTopic)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := rc.On(stTopic, nil)
	policy := ""
	for _, e := range cfg.Configs {
		if e.Key == "cleanup.policy" && e.Value != nil {
			policy = *e.Value
		}
	}
	if policy != "compact" {
		t.Fatalf("cleanup.policy = %q, want compact", policy)
	}
	if err := EnsureTopic(t.Context(), adm, topics()); err != nil {
		t.Fatalf("second start: %v", err)
	}

	// A state topic with another partition count is refused, saying how to fix it.
	_, cl2 := cluster(t, kfake.SeedTopics(4, stTopic))
	err = EnsureTopic(t.Context(), kadm.NewClient(cl2), topics())
	if !errors.Is(err, ErrNotCoPartitioned) || !strings.Contains(err.Error(), "has 4 partitions") || !strings.Contains(err.Error(), "new topic name") {
		t.Fatalf("mismatch: err = %v", err)
	}
	// A non-compacted one too.
	_, cl3 := cluster(t)
	adm3 := kadm.NewClient(cl3)
	if _, err := adm3.CreateTopic(t.Context(), 3, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, stTopic); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopic(t.Context(), adm3, topics()); err == nil || !strings.Contains(err.Error(), "cleanup.policy=compact") {
		t.Fatalf("delete policy: err = %v", err)
	}
	// Missing without topics.create.
	_, cl4 := cluster(t)
	tc := topics()
	tc.Create = false
	if err := EnsureTopic(t.Context(), kadm.NewClient(cl4), tc); !errors.Is(err, kafka.ErrTopicMissing) || !strings.Contains(err.Error(), "--partitions 3") {
		t.Fatalf("missing: err = %v", err)
	}
}

// TestRestore writes state records in committed and aborted transactions and a tombstone, and
// checks that Restore installs exactly the committed latest values of the asked partitions.
func TestRestore(t *testing.T) {
	c, admCl := cluster(t, kfake.SeedTopics(3, stTopic))
	_ = admCl
	codec, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	p, err := kgo.NewClient(append(opts, kgo.TransactionalID("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now()
	put := func(part int32, id string, st *schemas.SessionState, commit bool) {
		t.Helper()
		if err := p.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var v []byte
		if st != nil {
			if v, err = codec.Encode(st); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: stTopic, Partition: part, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := p.EndTransaction(t.Context(), kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	put(0, "a", Apply(nil, "a", "e1", "CREATED", "", now), true)
	put(0, "a", Apply(nil, "a", "e2", "COMPLETED", "accepted", now), true)
	put(0, "b", Apply(nil, "b", "x", "CREATED", "", now), true)
	put(0, "b", nil, true) // erased
	put(1, "c", Apply(nil, "c", "y", "RUNNING", "", now), true)
	put(1, "c", Apply(nil, "c", "z", "COMPLETED", "", now), false) // aborted: never counts
	put(2, "d", Apply(nil, "d", "w", "RUNNING", "", now), true)

	s := NewStore()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := s.Restore(ctx, opts, stTopic, codec, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("restored %d sessions, want 2 (a, c)", n)
	}
	if a, ok := s.Get(0, "a"); !ok || *a.State("a").LatestStatus != "COMPLETED" || a.State("a").EnrichedEventIDs[0] != "e2" {
		t.Fatalf("a = %+v, want the last committed value", a)
	}
	if _, ok := s.Get(0, "b"); ok {
		t.Fatal("b was erased by a tombstone but restored")
	}
	if c, ok := s.Get(1, "c"); !ok || *c.State("c").LatestStatus != "RUNNING" {
		t.Fatalf("c = %+v, want RUNNING (the COMPLETED write was aborted)", c)
	}
	if _, ok := s.Get(2, "d"); s.Restored(2) || ok {
		t.Fatal("partition 2 was not asked for")
	}
	s.Drop(0)
	if s.Restored(0) || !s.Restored(1) {
		t.Fatal("Drop(0) must forget 0 only")
	}
	all, err := ReadAll(ctx, opts, stTopic, codec)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all["d"] == nil {
		t.Fatalf("ReadAll = %d sessions, want a, c, d", len(all))
	}
}

// TestViewCatchUp: the view reads only what was added since the last call, applies tombstones
// and drops sessions last changed before the window.
func TestViewCatchUp(t *testing.T) {
	c, _ := cluster(t, kfake.SeedTopics(3, stTopic))
	codec, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	p, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	put := func(id string, st *schemas.SessionState) {
		t.Helper()
		var v []byte
		if st != nil {
			if v, err = codec.Encode(st); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: stTopic, Key: []byte(id), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	window := now.Add(-time.Hour)
	put("a", Apply(nil, "a", "e1", "CREATED", "", now))
	put("old", Apply(nil, "old", "e0", "COMPLETED", "", now.Add(-48*time.Hour)))
	v := NewView(opts, stTopic, codec)
	got, err := v.CatchUp(t.Context(), window)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a"] == nil {
		t.Fatalf("first catch-up: %v, want only a (old is outside the window)", keysOf(got))
	}
	put("a", Apply(got["a"], "a", "e2", "COMPLETED", "accepted", now))
	put("b", Apply(nil, "b", "x", "RUNNING", "", now))
	put("b", nil)
	put("c", Apply(nil, "c", "y", "RUNNING", "", now))
	got, err = v.CatchUp(t.Context(), window)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"] == nil || *got["a"].LatestStatus != "COMPLETED" || got["c"] == nil {
		t.Fatalf("second catch-up: %v, want a (now COMPLETED) and c; b was erased", keysOf(got))
	}
	put("c", nil)
	if got, err = v.CatchUp(t.Context(), window); err != nil || len(got) != 1 {
		t.Fatalf("third catch-up: %v, %v; want a only", keysOf(got), err)
	}
}

func keysOf(m map[string]*schemas.SessionState) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestEnsureTopicCreatedMeanwhile: a state topic another replica or role (the reconciler)
// created between the listing and the create is checked, not an error. The first listing is
// answered as if the topic were missing; the create then finds it there.
func TestEnsureTopicCreatedMeanwhile(t *testing.T) {
	c, _ := cluster(t)
	// The listing is answered from the client's metadata cache until MetadataMinAge: short here,
	// so the check after the create sees the topic without waiting 5 s.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(t.Context(), 3, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, stTopic); err != nil {
		t.Fatal(err)
	}
	port := func(addr string) int32 {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.Atoi(p)
		return int32(n)
	}(c.ListenAddrs()[0])
	c.ControlKey(kmsg.Metadata.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.MetadataRequest)
		if len(req.Topics) != 2 {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 0, "127.0.0.1", port
		resp.Brokers = append(resp.Brokers, b)
		st := kmsg.NewMetadataResponseTopic()
		st.Topic, st.ErrorCode = kmsg.StringPtr(stTopic), kerr.UnknownTopicOrPartition.Code
		se := kmsg.NewMetadataResponseTopic()
		se.Topic = kmsg.StringPtr(sessions)
		for p := range int32(3) {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition, rp.Leader, rp.Replicas, rp.ISR = p, 0, []int32{0}, []int32{0}
			se.Partitions = append(se.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, se, st)
		return resp, nil, true
	})
	if err := EnsureTopic(t.Context(), adm, topics()); err != nil {
		t.Fatalf("a state topic created meanwhile: %v", err)
	}
}
