package app

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// openTestTransaction starts a kfake cluster with the connector's topics and leaves a
// transactional producer's transaction open on partition 1 of the enriched topic (begun, 3
// records produced, never ended; the producer's own timeout is 10 minutes, so kfake does not
// abort it during the test). It returns the cluster, the config pointing at it, the producer id
// and a function returning the partition's last stable and end offsets.
func openTestTransaction(t *testing.T) (*kfake.Cluster, Config, int64, func() (int64, int64)) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "idnow.sessions", "idnow.sessions.enriched", "idnow.sessions.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Enrich.TransactionTimeout = time.Minute
	ctx := t.Context()

	pr, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("idnow-enricher-pod-0"),
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
	pid, _, err := pr.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The producer is abandoned here, as a crashed enricher leaves it.

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
	return c, cfg, pid, stable
}

// TestDoctorHeldTransactionIsNotAborted: a transaction its coordinator still holds (Ongoing) is
// never "hanging". Within the producer's own 10-minute timeout it is open even though it is older
// than enrich.transaction_timeout (the reviewer's finding: the doctor used to abort it); past
// that timeout it is reported as coordinator-stuck with a non-zero result, and --abort alone
// leaves it alone; only --abort --force writes the abort marker.
func TestDoctorHeldTransactionIsNotAborted(t *testing.T) {
	_, cfg, _, stable := openTestTransaction(t)
	ctx := t.Context()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

	var out bytes.Buffer
	rep, err := Doctor(ctx, cfg, DoctorOptions{Now: at(2 * time.Minute)}, &out)
	if err != nil {
		t.Fatalf("2m into a 10m transaction the doctor failed: %v\n%s", err, out.String())
	}
	if len(rep.Open) != 1 || rep.Hanging != 0 || rep.Stuck != 0 {
		t.Fatalf("2m in: %d open, %d hanging, %d stuck; want 1, 0, 0\n%s", len(rep.Open), rep.Hanging, rep.Stuck, out.String())
	}
	o := rep.Open[0]
	if o.Topic != cfg.Topics.Enriched || o.Partition != 1 || o.StartOffset != 0 || o.TransactionalID != "idnow-enricher-pod-0" ||
		!o.CoordinatorHolds || o.Status != StatusOpen || o.Threshold != 10*time.Minute || o.AgeFrom != "transaction start" {
		t.Fatalf("open transaction reported as %+v; want %s[1] from offset 0, held, open, threshold 10m (the producer's), age from the transaction start", o, cfg.Topics.Enriched)
	}
	out.Reset()
	if rep, err = Doctor(ctx, cfg, DoctorOptions{Now: at(2 * time.Minute), Abort: true}, &out); err != nil || rep.Aborted != 0 {
		t.Fatalf("--abort 2m into a held transaction: %d aborted, err %v; want nothing aborted and no error\n%s", rep.Aborted, err, out.String())
	}

	later := at(11 * time.Minute)
	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later}, &out)
	if !errors.Is(err, ErrHangingTransactions) {
		t.Fatalf("past its own timeout the doctor returned %v, want ErrHangingTransactions\n%s", err, out.String())
	}
	if rep.Stuck != 1 || rep.Hanging != 0 || rep.Open[0].Status != StatusCoordinatorStuck {
		t.Fatalf("past its own timeout: %d stuck, %d hanging; want 1 stuck, 0 hanging\n%s", rep.Stuck, rep.Hanging, out.String())
	}
	for _, want := range []string{"TOPIC", "THRESHOLD", "since the producer's last write", "idnow-enricher-pod-0", StatusCoordinatorStuck, "check that broker and its logs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report does not mention %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(err.Error(), "stuck coordinator on "+cfg.Topics.Enriched+"[1]") || !strings.Contains(err.Error(), "--abort --force") {
		t.Errorf("error %q does not name the partition and the last resort", err)
	}

	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later, Abort: true}, &out)
	if !errors.Is(err, ErrHangingTransactions) || rep.Aborted != 0 {
		t.Fatalf("--abort on a stuck transaction: %d aborted, err %v; want 0 and ErrHangingTransactions\n%s", rep.Aborted, err, out.String())
	}
	if lso, _ := stable(); lso != 0 {
		t.Fatalf("--abort without --force moved the last stable offset to %d", lso)
	}
	if !strings.Contains(out.String(), "only with --abort --force") {
		t.Errorf("--abort output does not say why nothing was aborted:\n%s", out.String())
	}

	if _, err := Doctor(ctx, cfg, DoctorOptions{Now: later, Force: true}, &out); err == nil || !strings.Contains(err.Error(), "only makes sense with --abort") {
		t.Fatalf("--force without --abort: %v, want a usage error", err)
	}

	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: later, Abort: true, Force: true}, &out)
	if err != nil || rep.Aborted != 1 || !rep.Open[0].Aborted {
		t.Fatalf("--abort --force: %d aborted, err %v; want 1 and none\n%s", rep.Aborted, err, out.String())
	}
	if lso, end := stable(); lso != end || end != 4 {
		t.Fatalf("after --abort --force: last stable offset %d, end %d; want both 4 (3 records and the abort marker)", lso, end)
	}
}

// TestDoctorAbortsWhatTheCoordinatorForgot reproduces issue 9's case: the coordinator finished
// the transaction (CompleteCommit) but the partition never got its marker. kfake writes markers
// reliably, so the coordinator's answer is replaced: DescribeTransactions says CompleteCommit for
// the producer, with a 1-minute timeout. Within that timeout the transaction is only listed;
// past it, it hangs, and --abort alone writes the marker and releases the partition.
func TestDoctorAbortsWhatTheCoordinatorForgot(t *testing.T) {
	c, cfg, pid, stable := openTestTransaction(t)
	ctx := t.Context()
	c.ControlKey(kmsg.DescribeTransactions.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.DescribeTransactionsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
		for _, id := range req.TransactionalIDs {
			st := kmsg.NewDescribeTransactionsResponseTransactionState()
			st.TransactionalID, st.State, st.ProducerID, st.TimeoutMillis, st.StartTimestamp = id, "CompleteCommit", pid, 60_000, -1
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
		return resp, nil, true
	})
	at := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

	var out bytes.Buffer
	rep, err := Doctor(ctx, cfg, DoctorOptions{Now: at(30 * time.Second), Abort: true}, &out)
	if err != nil || rep.Hanging != 0 || rep.Aborted != 0 || len(rep.Open) != 1 || rep.Open[0].CoordinatorHolds {
		t.Fatalf("30s in: %d open, %d hanging, %d aborted, err %v; want 1 open, not held, nothing aborted\n%s", len(rep.Open), rep.Hanging, rep.Aborted, err, out.String())
	}
	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: at(2 * time.Minute)}, &out)
	if !errors.Is(err, ErrHangingTransactions) || rep.Hanging != 1 || rep.Open[0].Status != StatusHanging || rep.Open[0].AgeFrom != "last write" {
		t.Fatalf("2m in: %d hanging, err %v; want 1 hanging (age from the last write), ErrHangingTransactions\n%s", rep.Hanging, err, out.String())
	}
	if !strings.Contains(out.String(), "in state CompleteCommit without this partition") || !strings.Contains(err.Error(), "doctor --abort") {
		t.Errorf("report or error does not explain the hanging transaction: %v\n%s", err, out.String())
	}
	out.Reset()
	rep, err = Doctor(ctx, cfg, DoctorOptions{Now: at(2 * time.Minute), Abort: true}, &out)
	if err != nil || rep.Aborted != 1 {
		t.Fatalf("--abort: %d aborted, err %v; want 1 and none\n%s", rep.Aborted, err, out.String())
	}
	if !strings.Contains(out.String(), "aborted 1 of 1") {
		t.Errorf("--abort output does not say what it aborted:\n%s", out.String())
	}
	if lso, end := stable(); lso != end || end != 4 {
		t.Fatalf("after --abort: last stable offset %d, end %d; want both 4", lso, end)
	}
}

// TestDoctorTimeoutMinimum: an explicit --transaction-timeout below a minute is refused; an
// enrich.transaction_timeout below it is raised to it.
func TestDoctorTimeoutMinimum(t *testing.T) {
	_, cfg, _, _ := openTestTransaction(t)
	var out bytes.Buffer
	if _, err := Doctor(t.Context(), cfg, DoctorOptions{TransactionTimeout: 30 * time.Second}, &out); err == nil || !strings.Contains(err.Error(), "below the minimum 1m0s") {
		t.Fatalf("--transaction-timeout 30s: %v, want an error naming the minimum", err)
	}
	cfg.Enrich.TransactionTimeout = 10 * time.Second
	rep, err := Doctor(t.Context(), cfg, DoctorOptions{}, &out)
	if err != nil || rep.Fallback != MinTransactionTimeout {
		t.Fatalf("enrich.transaction_timeout 10s: fallback %s, err %v; want 1m and no error", rep.Fallback, err)
	}
	if rep, err = Doctor(t.Context(), cfg, DoctorOptions{TransactionTimeout: 20 * time.Minute}, &out); err != nil || rep.Fallback != 20*time.Minute {
		t.Fatalf("--transaction-timeout 20m: fallback %s, err %v", rep.Fallback, err)
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
	// The commands role's topics and the state topic are scanned too (commands.enabled is the
	// default); here they do not exist either.
	if want := []string{cfg.Topics.Replies, cfg.Topics.CommandsState, cfg.Topics.DLQ, cfg.Topics.StateTopic()}; rep.Partitions != 6 || len(rep.Open) != 0 || !slices.Equal(rep.Skipped, want) {
		t.Fatalf("report %+v; want 6 partitions scanned, nothing open, %v skipped", rep, want)
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

// TestClassifyOpenTransactions covers the coordinator cases kfake cannot produce: Kafka's own
// hanging definition (open on the partition, not held by the coordinator, older than the
// threshold), coordinator-stuck ones, the threshold's sources and foreign transactional ids on
// the shared __consumer_offsets partition.
func TestClassifyOpenTransactions(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	held := func(pid int64, state string, timeout time.Duration) map[int64]coordinatorTxn {
		return map[int64]coordinatorTxn{7: {txnID: "idnow-enricher-pod-0", state: state, pid: pid, timeout: timeout,
			start: now.Add(-20 * time.Minute), coordinator: 2, topics: kadm.TopicsSet{"enriched": {1: {}}}}}
	}
	lim := doctorLimits{now: now, fallback: time.Minute, brokerMax: map[int32]time.Duration{1: 15 * time.Minute}, txnPrefixes: []string{"idnow-enricher-", "idnow-connector-commands-"}}
	tests := []struct {
		name        string
		topic       string
		leader      int32
		age         time.Duration // since the last write
		coord       map[int64]coordinatorTxn
		wantHolds   bool
		wantStatus  string
		wantForeign bool
		wantAbort   [2]bool // abortable without and with --force
		wantReason  string
	}{
		{"held, older than enrich's timeout, within its own", "enriched", 1, 10 * time.Second, held(7, "Ongoing", 30*time.Minute), true, StatusOpen, false, [2]bool{false, false}, ""},
		{"held while committing past its own timeout", "enriched", 1, 10 * time.Second, held(7, "PrepareCommit", 10*time.Minute), true, StatusCoordinatorStuck, false, [2]bool{false, true}, "still holds it in state PrepareCommit"},
		{"held, age from the transaction start", "enriched", 1, time.Second, held(7, "Ongoing", 10*time.Minute), true, StatusCoordinatorStuck, false, [2]bool{false, true}, "since its transaction start"},
		{"unknown producer within the broker's max timeout", "enriched", 1, 10 * time.Minute, nil, false, StatusOpen, false, [2]bool{false, false}, "may still be being written"},
		{"unknown producer past the broker's max timeout", "enriched", 1, 16 * time.Minute, nil, false, StatusHanging, false, [2]bool{true, true}, "transaction.max.timeout.ms of broker 1"},
		{"unknown producer, broker config unreadable: fallback", "enriched", 3, 2 * time.Minute, nil, false, StatusHanging, false, [2]bool{true, true}, "fallback --transaction-timeout 1m0s"},
		{"coordinator completed it, markers lost", "enriched", 1, 2 * time.Minute, held(7, "CompleteCommit", time.Minute), false, StatusHanging, false, [2]bool{true, true}, "in state CompleteCommit without this partition"},
		{"transactional id moved to a new producer id: the broker's max applies", "enriched", 1, 2 * time.Minute, held(9, "Ongoing", time.Minute), false, StatusOpen, false, [2]bool{false, false}, "moved idnow-enricher-pod-0 on to producer id 9"},
		{"ongoing on other partitions only", "enriched", 1, 2 * time.Minute, map[int64]coordinatorTxn{7: {txnID: "idnow-enricher-pod-0", state: "Ongoing", pid: 7, timeout: time.Minute, topics: kadm.TopicsSet{"enriched": {0: {}}}}}, false, StatusHanging, false, [2]bool{true, true}, "without this partition"},
		{"ours on the offsets partition", kafka.ConsumerOffsetsTopic, 1, 2 * time.Minute, held(7, "CompleteAbort", time.Minute), false, StatusHanging, false, [2]bool{true, true}, "CompleteAbort"},
		{"the commands role's on the offsets partition", kafka.ConsumerOffsetsTopic, 1, 2 * time.Minute, map[int64]coordinatorTxn{7: {txnID: "idnow-connector-commands-pod-1", state: "CompleteAbort", pid: 7, timeout: time.Minute}}, false, StatusHanging, false, [2]bool{true, true}, "CompleteAbort"},
		{"foreign on the offsets partition", kafka.ConsumerOffsetsTopic, 1, 2 * time.Minute, map[int64]coordinatorTxn{7: {txnID: "billing-app-1", state: "Empty", pid: 7, timeout: time.Minute}}, false, StatusHanging, true, [2]bool{false, true}, "foreign"},
		{"unknown id on the offsets partition is foreign", kafka.ConsumerOffsetsTopic, 1, 16 * time.Minute, nil, false, StatusHanging, true, [2]bool{false, true}, "foreign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := []OpenTransaction{{Topic: tt.topic, Partition: 1, Leader: tt.leader, ProducerID: 7, LastWrite: now.Add(-tt.age), CoordinatorPID: -1, Coordinator: -1}}
			got := classifyOpenTransactions(open, tt.coord, lim)[0]
			if got.CoordinatorHolds != tt.wantHolds || got.Status != tt.wantStatus || got.Foreign != tt.wantForeign {
				t.Errorf("holds %v status %s foreign %v, want %v %s %v (reason %q)", got.CoordinatorHolds, got.Status, got.Foreign, tt.wantHolds, tt.wantStatus, tt.wantForeign, got.Reason)
			}
			if a := [2]bool{got.abortable(false), got.abortable(true)}; a != tt.wantAbort {
				t.Errorf("abortable without/with --force %v, want %v", a, tt.wantAbort)
			}
			if tt.wantReason == "" && got.Reason != "" || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tt.wantReason)
			}
		})
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
