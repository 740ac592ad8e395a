package app

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDoctorHangingTransaction leaves a transactional producer's transaction open on one
// partition of the enriched topic (begun, produced, never ended; the producer's own timeout is
// long, so the broker does not abort it) and runs the doctor against kfake, which answers
// DescribeProducers, ListTransactions, DescribeTransactions and WriteTxnMarkers: within the
// transaction timeout it is listed as open and nothing fails; past it, it is reported as
// hanging with a non-zero result; with --abort the abort marker is written and the partition's
// last stable offset moves past the abandoned records.
func TestDoctorHangingTransaction(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "idnow.sessions", "idnow.sessions.enriched", "idnow.sessions.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Enrich.TransactionTimeout = time.Minute
	ctx := t.Context()

	pr, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("abandoned-enricher"),
		kgo.TransactionTimeout(10*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pr.Close)
	if err := pr.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := &kgo.Record{Topic: cfg.Topics.Enriched, Partition: 1, Key: []byte("s-1"), Value: []byte{byte(i)}}
		if err := pr.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce in the transaction: %v", err)
		}
	}
	// The producer is abandoned here, as a crashed enricher or a broker that skipped its
	// markers leaves it.

	adm := kadm.NewClient(newTestClient(t, c.ListenAddrs()))
	stable := func() (lso, end int64) {
		t.Helper()
		ls, err := adm.ListCommittedOffsets(ctx, cfg.Topics.Enriched)
		if err != nil {
			t.Fatalf("last stable offsets: %v", err)
		}
		es, err := adm.ListEndOffsets(ctx, cfg.Topics.Enriched)
		if err != nil {
			t.Fatalf("end offsets: %v", err)
		}
		l, _ := ls.Lookup(cfg.Topics.Enriched, 1)
		e, _ := es.Lookup(cfg.Topics.Enriched, 1)
		return l.Offset, e.Offset
	}
	if lso, end := stable(); lso != 0 || end != 3 {
		t.Fatalf("before the doctor: last stable offset %d, end %d; want 0 and 3 (the open transaction pins it)", lso, end)
	}

	var out bytes.Buffer
	rep, err := Doctor(ctx, cfg, DoctorOptions{}, &out)
	if err != nil {
		t.Fatalf("within the timeout the doctor failed: %v\n%s", err, out.String())
	}
	if len(rep.Open) != 1 || rep.Hanging != 0 {
		t.Fatalf("within the timeout: %d open, %d hanging; want 1 open, 0 hanging\n%s", len(rep.Open), rep.Hanging, out.String())
	}
	o := rep.Open[0]
	if o.Topic != cfg.Topics.Enriched || o.Partition != 1 || o.StartOffset != 0 || o.TransactionalID != "abandoned-enricher" || !o.CoordinatorHolds {
		t.Fatalf("open transaction reported as %+v; want %s[1] from offset 0, transactional id abandoned-enricher, held by the coordinator", o, cfg.Topics.Enriched)
	}

	// Two minutes later (the clock moved, nothing else): hanging, and the command fails.
	later := func() time.Time { return time.Now().Add(2 * time.Minute) }
	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later}, &out)
	if !errors.Is(err, ErrHangingTransactions) {
		t.Fatalf("past the timeout the doctor returned %v, want ErrHangingTransactions\n%s", err, out.String())
	}
	if rep.Hanging != 1 || rep.Aborted != 0 {
		t.Fatalf("past the timeout: %d hanging, %d aborted; want 1 and 0\n%s", rep.Hanging, rep.Aborted, out.String())
	}
	for _, want := range []string{"TOPIC", cfg.Topics.Enriched, "abandoned-enricher", "HANGING", "--abort"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report does not mention %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(err.Error(), cfg.Topics.Enriched+"[1]") == false {
		t.Errorf("error %q does not name the partition %s[1]", err, cfg.Topics.Enriched)
	}
	if lso, _ := stable(); lso != 0 {
		t.Fatalf("the doctor without --abort moved the last stable offset to %d", lso)
	}

	// --transaction-timeout overrides enrich.transaction_timeout: with 5 minutes it is not hanging.
	out.Reset()
	if rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later, TransactionTimeout: 5 * time.Minute}, &out); err != nil || rep.Hanging != 0 {
		t.Fatalf("with a 5m timeout: %d hanging, err %v; want none\n%s", rep.Hanging, err, out.String())
	}

	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later, Abort: true}, &out)
	if err != nil {
		t.Fatalf("doctor --abort: %v\n%s", err, out.String())
	}
	if rep.Hanging != 1 || rep.Aborted != 1 || !rep.Open[0].Aborted {
		t.Fatalf("doctor --abort: %d hanging, %d aborted; want 1 and 1\n%s", rep.Hanging, rep.Aborted, out.String())
	}
	t.Logf("doctor --abort:\n%s", out.String())
	if !strings.Contains(out.String(), "aborted 1 of 1 hanging transactions") {
		t.Errorf("--abort output does not say what it aborted:\n%s", out.String())
	}
	if lso, end := stable(); lso != end || end != 4 {
		t.Fatalf("after --abort: last stable offset %d, end %d; want both 4 (3 records and the abort marker)", lso, end)
	}
}

// TestDoctorNothingOpen: a cluster with the topics and no open transaction reports so and
// succeeds; a topic that does not exist is named as skipped; brokers with none of the topics are
// an error that says what to check.
func TestDoctorNothingOpen(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "idnow.sessions", "idnow.sessions.enriched"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = c.ListenAddrs()
	var out bytes.Buffer
	rep, err := Doctor(t.Context(), cfg, DoctorOptions{}, &out)
	if err != nil {
		t.Fatalf("doctor: %v\n%s", err, out.String())
	}
	if rep.Partitions != 6 || len(rep.Open) != 0 || len(rep.Skipped) != 1 || rep.Skipped[0] != cfg.Topics.DLQ {
		t.Fatalf("report %+v; want 6 partitions scanned, nothing open, %s skipped", rep, cfg.Topics.DLQ)
	}
	for _, want := range []string{"topic idnow.sessions.dlq does not exist; skipped", "no open transactions on 6 partitions"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}

	cfg.Topics.Sessions, cfg.Topics.Enriched, cfg.Topics.DLQ = "typo.a", "typo.b", "typo.c"
	if _, err := Doctor(t.Context(), cfg, DoctorOptions{}, &out); err == nil || !strings.Contains(err.Error(), "check kafka.brokers and topics.*") {
		t.Fatalf("doctor on a cluster without the topics: %v, want an error saying what to check", err)
	}
	cfg.Enrich.TransactionTimeout = 0
	if _, err := Doctor(t.Context(), cfg, DoctorOptions{}, &out); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Fatalf("doctor with a zero timeout: %v, want a validation error", err)
	}
}

// TestClassifyOpenTransactions covers the coordinator cases kfake cannot produce, above all
// Kafka's own hanging definition: the partition's leader has an open transaction that the
// coordinator no longer holds (its markers were never written).
func TestClassifyOpenTransactions(t *testing.T) {
	const timeout = time.Minute
	held := func(pid int64, state string) coordinatorTxn {
		return coordinatorTxn{txnID: "enricher-0", state: state, pid: pid, topics: kadm.TopicsSet{"enriched": {1: {}}}}
	}
	tests := []struct {
		name        string
		age         time.Duration
		coord       map[int64]coordinatorTxn
		wantHolds   bool
		wantHanging bool
		wantReason  string
	}{
		{"held and young", 10 * time.Second, map[int64]coordinatorTxn{7: held(7, "Ongoing")}, true, false, ""},
		{"held while committing", 10 * time.Second, map[int64]coordinatorTxn{7: held(7, "PrepareCommit")}, true, false, ""},
		{"held past the timeout", 2 * time.Minute, map[int64]coordinatorTxn{7: held(7, "Ongoing")}, true, true, "still holds it (Ongoing)"},
		{"unknown producer, young", 10 * time.Second, nil, false, false, "may still be being written"},
		{"unknown producer, past the timeout", 2 * time.Minute, nil, false, true, "knows no transactional id"},
		{"coordinator completed it, markers lost", 2 * time.Minute, map[int64]coordinatorTxn{7: held(7, "CompleteCommit")}, false, true, "in state CompleteCommit without this partition"},
		{"transactional id moved to a new producer id", 2 * time.Minute, map[int64]coordinatorTxn{7: held(9, "Ongoing")}, false, true, "moved enricher-0 on to producer id 9"},
		{"ongoing on other partitions only", 2 * time.Minute, map[int64]coordinatorTxn{7: {txnID: "enricher-0", state: "Ongoing", pid: 7, topics: kadm.TopicsSet{"enriched": {0: {}}}}}, false, true, "without this partition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := []OpenTransaction{{Topic: "enriched", Partition: 1, ProducerID: 7, Age: tt.age, CoordinatorPID: -1}}
			got := classifyOpenTransactions(open, tt.coord, timeout)[0]
			if got.CoordinatorHolds != tt.wantHolds || got.Hanging != tt.wantHanging {
				t.Errorf("holds %v hanging %v, want %v %v (reason %q)", got.CoordinatorHolds, got.Hanging, tt.wantHolds, tt.wantHanging, got.Reason)
			}
			if tt.wantReason == "" && got.Reason != "" || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tt.wantReason)
			}
		})
	}
}

// TestGroupOffsetsPartition checks the __consumer_offsets partition against values computed with
// Java's String.hashCode, including its MinInt32 case.
func TestGroupOffsetsPartition(t *testing.T) {
	for _, tt := range []struct {
		group      string
		partitions int
		want       int32
	}{
		{"hello", 50, 22},                   // hashCode 99162322
		{"polygenelubricants", 50, 0},       // hashCode MinInt32
		{"idnow-connector-enricher", 50, 8}, // hashCode -1294738140
		{"itest.group.TestX.0a1b2c3d", 10, 8},
		{"é-group", 50, 7},
	} {
		if got := groupOffsetsPartition(tt.group, tt.partitions); got != tt.want {
			t.Errorf("groupOffsetsPartition(%q, %d) = %d, want %d", tt.group, tt.partitions, got, tt.want)
		}
	}
}

func newTestClient(t *testing.T, seeds []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
