//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
)

const (
	// hangingKey marks the record of the abandoned transaction on the sessions topic; it is
	// aborted by the doctor, so read_committed readers never see it, but the read_uncommitted
	// reader of the test does and leaves it out.
	hangingKey = "__itest_hanging__"

	// hangingTxnTimeout is enrich.transaction_timeout in the hanging-transaction test: short,
	// so detection comes quickly, and what the doctor takes as its timeout from the config.
	hangingTxnTimeout = 10 * time.Second

	// hangingLagInterval is enrich.lag_interval in the hanging-transaction test: how often the
	// enricher reads the offsets that reveal a hanging transaction.
	hangingLagInterval = 2 * time.Second

	// detectWithin bounds how long the enricher may take to report the hanging transaction:
	// the issue asks for transaction_timeout plus a minute.
	detectWithin = hangingTxnTimeout + time.Minute

	// hangingMetric is the enricher's gauge of partitions blocked by a hanging transaction.
	hangingMetric = "idnow_connector_enrich_hanging_transactions"
)

// TestHangingTransaction reproduces problem 10 of issue 9 on a real broker: a transaction left
// open on partition 0 of the sessions topic (the enricher's input) while its coordinator
// considers the transactional id idle (Empty), the state a broker that skipped its commit or
// abort markers leaves behind (the coordinator finished the transaction, the partition never
// learnt). It is made with a raw transactional Produce to a partition never added to the
// transaction, which the broker accepts with transaction.partition.verification.enable=false
// (see openHangingTransaction). The partition's last stable offset stays at that record: the
// enricher (read_committed) cannot consume the events behind it. The test shows the enricher
// reporting it (ERROR log naming the partition, the hanging-transactions gauge above 0, /readyz
// failing with the reason) within enrich.transaction_timeout plus a minute; `idnow-connector
// doctor` listing it as HANGING and exiting non-zero; `doctor --abort` releasing it; and the
// enricher resuming by itself with every event enriched exactly once. Alongside, an ordinary
// abandoned transaction the coordinator still holds (on the DLQ topic, 10-minute timeout, older
// than enrich.transaction_timeout) must be listed as open and left alone by --abort: aborting a
// transaction the coordinator holds could contradict its commit decision.
func TestHangingTransaction(t *testing.T) {
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	sim := startSimulator(t)

	ingress := p.startSimIngress(t, sim, nil)
	ecfg := p.enricherSettings(sim, "hanging").with(settings{
		"enrich.transaction_timeout": hangingTxnTimeout.String(),
		// The check runs every lag_interval: detection comes within transaction_timeout plus
		// one interval of the first refresh that sees the open transaction (default 15s).
		"enrich.lag_interval": hangingLagInterval.String(),
	})
	enricher := startChild(t, "enricher", "enricher", ecfg)

	// Some events enriched before: the group has committed offsets on every partition.
	sim.CreateSessions(10)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)

	// The hanging transaction on the input partition 0.
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	pid, epoch, offset := openHangingTransaction(t, seeds, p.sessions, 0, hangingTxnTimeout)
	abandoned := time.Now()
	t.Logf("transaction of producer %d (epoch %d) left open on %s[0] at offset %d, its coordinator idle", pid, epoch, p.sessions, offset)

	// A transaction the coordinator holds: begun, written to the DLQ topic, abandoned.
	held := newClient(t, seeds, kgo.TransactionalID(uniqueName(t, "held")),
		kgo.TransactionTimeout(10*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := held.BeginTransaction(); err != nil {
		t.Fatalf("begin the held transaction: %v", err)
	}
	if err := held.ProduceSync(ctx, &kgo.Record{Topic: p.dlq, Partition: 0, Value: []byte("held")}).FirstErr(); err != nil {
		t.Fatalf("produce in the held transaction: %v", err)
	}
	heldPID, _, err := held.ProducerID(ctx)
	if err != nil {
		t.Fatalf("producer id of the held transaction: %v", err)
	}

	// More events: those on partition 0 wait behind the open transaction.
	sim.CreateSessions(20)
	simtest.WaitIdle(t, sim, 2*time.Minute)

	// Detection by the enricher.
	reason := waitFor(t, "the enricher reports the hanging transaction (gauge, readiness)", detectWithin, func() (bool, string) {
		gauge, gerr := metricValue(enricher.admin, hangingMetric)
		status, body, rerr := get("http://" + enricher.admin + "/readyz")
		state := fmt.Sprintf("%s = %v (%v); /readyz %d %q (%v)", hangingMetric, gauge, gerr, status, body, rerr)
		return gerr == nil && gauge > 0 && rerr == nil && status != http.StatusOK && strings.Contains(body, "hanging transaction"), state
	})
	t.Logf("enricher reported it %s after the transaction was abandoned: %s", time.Since(abandoned).Round(time.Second), reason)
	if !strings.Contains(reason, p.sessions) {
		t.Errorf("readiness does not name the blocked topic %s: %s", p.sessions, reason)
	}
	if line := logLine(t, enricher, "hanging transaction", `"level":"ERROR"`); line == "" {
		t.Errorf("the enricher logged no ERROR line containing %q", "hanging transaction")
	} else if !strings.Contains(line, p.sessions) {
		t.Errorf("the ERROR line does not name the partition's topic %s: %s", p.sessions, line)
	}
	if done, total, err := p.progress(ctx, newAdmin(t, seeds)); err != nil || done >= total {
		t.Fatalf("the group committed %d of %d records (err %v) while the transaction was open; the test proves nothing", done, total, err)
	}

	// The doctor lists it and fails without --abort.
	doctorCfg := p.base().with(settings{"enrich.group": p.group, "enrich.transaction_timeout": hangingTxnTimeout.String()})
	out, code := runDoctor(t, doctorCfg)
	t.Logf("idnow-connector doctor (exit %d):\n%s", code, out)
	if code == 0 {
		t.Errorf("doctor exited 0 with a hanging transaction")
	}
	row := doctorRow(out, p.sessions, 0, pid)
	switch {
	case row == "":
		t.Errorf("doctor does not list producer %d on %s[0]", pid, p.sessions)
	case !strings.Contains(row, "HANGING") || !strings.Contains(row, "Empty"):
		t.Errorf("doctor lists producer %d on %s[0] but not as hanging with its coordinator Empty: %s", pid, p.sessions, row)
	}
	if row := doctorRow(out, p.dlq, 0, heldPID); !strings.HasSuffix(strings.TrimSpace(row), " open") {
		t.Errorf("doctor does not list the held transaction of producer %d on %s[0] as open: %q", heldPID, p.dlq, row)
	}

	// --abort releases the hanging one and leaves the held one alone; the enricher resumes by
	// itself.
	out, code = runDoctor(t, doctorCfg, "--abort")
	t.Logf("idnow-connector doctor --abort (exit %d):\n%s", code, out)
	if code != 0 {
		t.Errorf("doctor --abort exited %d", code)
	}
	if row := doctorRow(out, p.sessions, 0, pid); !strings.Contains(row, "aborted") {
		t.Errorf("doctor --abort does not report producer %d on %s[0] as aborted: %q", pid, p.sessions, row)
	}
	if row := doctorRow(out, p.dlq, 0, heldPID); row == "" || strings.Contains(row, "aborted") {
		t.Errorf("doctor --abort touched the transaction the coordinator holds (producer %d on %s[0]): %q", heldPID, p.dlq, row)
	}
	// Its producer ends it, as the coordinator would at its timeout.
	if err := held.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort the held transaction: %v", err)
	}
	// The abort marker is now the last offset of partition 0. Consumers never see a marker, so
	// a group's committed offset stops before it and "committed = end offset" could never
	// hold: more events go through until some land on partition 0 behind the marker (each
	// round of 10 sessions misses it with probability (2/3)^10).
	adm := newAdmin(t, seeds)
	marker := endOffset(t, adm, p.sessions, 0)
	for round := 0; endOffset(t, adm, p.sessions, 0) <= marker; round++ {
		if round == 8 {
			t.Fatalf("80 more sessions and none on %s[0]; cannot tell the enricher passed the abort marker at %d", p.sessions, marker-1)
		}
		sim.CreateSessions(10)
		simtest.WaitIdle(t, sim, 2*time.Minute)
	}
	began := time.Now()
	p.waitConsumed(1, 2*time.Minute)
	t.Logf("enricher caught up %s after the abort", time.Since(began).Round(time.Millisecond))
	waitFor(t, "the enricher clears the hanging state (gauge 0, ready)", 2*time.Minute, func() (bool, string) {
		gauge, gerr := metricValue(enricher.admin, hangingMetric)
		status, body, rerr := get("http://" + enricher.admin + "/readyz")
		return gerr == nil && gauge == 0 && rerr == nil && status == http.StatusOK,
			fmt.Sprintf("%s = %v (%v); /readyz %d %q (%v)", hangingMetric, gauge, gerr, status, body, rerr)
	})
	if out, code := runDoctor(t, doctorCfg); code != 0 {
		t.Errorf("doctor after the abort exited %d:\n%s", code, out)
	}
	enricher.stop()
	ingress.stop()

	var input []*kgo.Record
	for _, r := range p.readAll(p.sessions) {
		if string(r.Key) != hangingKey {
			input = append(input, r)
		}
	}
	_, inputByID := decodeEvents(t, input)
	got, enrichedByID := decodeEnriched(t, p.readCommitted(p.enriched))
	checkOnePerEvent(t, inputByID, enrichedByID)
	if dlq := p.readCommitted(p.dlq); len(dlq) != 0 {
		t.Errorf("%d records on the DLQ, want none (the aborted record must never reach the enricher)", len(dlq))
	}
	t.Logf("%d SessionEvents, %d enriched records visible to read_committed", len(inputByID), len(got))
}

// waitFor polls cond every 250 ms until it holds, failing the test with cond's last
// description after timeout. It returns the description of the state that satisfied it.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) string {
	t.Helper()
	began := time.Now()
	for {
		ok, state := cond()
		if ok {
			return state
		}
		if time.Since(began) > timeout {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// get fetches url and returns the status and the body.
func get(url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// metricValue returns the value of an unlabelled series from the child's /metrics.
func metricValue(admin, name string) (float64, error) {
	status, body, err := get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", status)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no series %s on /metrics", name)
}

// logLine returns the first line of the child's output that contains every part, or "".
func logLine(t testing.TB, c *child, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatalf("read %s's log: %v", c.name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return line
		}
	}
	return ""
}

// runDoctor runs `idnow-connector doctor` with cfg and args and returns its output and exit code.
func runDoctor(t testing.TB, cfg settings, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, connectorBinary(t), append([]string{"doctor"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = cfg.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return out.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("run doctor: %v\n%s", err, out.String())
	}
	return out.String(), 0
}

// doctorRow returns the doctor's table row for producer pid on topic[partition], or "".
func doctorRow(out, topic string, partition int32, pid int64) string {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == topic && f[1] == strconv.Itoa(int(partition)) && f[3] == strconv.FormatInt(pid, 10) {
			return line
		}
	}
	return ""
}

// endOffset returns the end offset (high watermark) of topic[partition].
func endOffset(t testing.TB, adm *kadm.Client, topic string, partition int32) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok {
		t.Fatalf("no end offset for %s[%d]", topic, partition)
	}
	return o.Offset
}

// openHangingTransaction leaves a transaction open on topic[partition] that its coordinator does
// not hold, as a broker that skipped the partition's marker leaves it: it gets a producer id for
// a fresh transactional id (InitProducerId, with txnTimeout) and writes one transactional batch
// straight to the partition (writeUnaddedBatch). The coordinator keeps the id Empty. It returns
// the producer id and epoch and the record's offset.
func openHangingTransaction(t testing.TB, seeds []string, topic string, partition int32, txnTimeout time.Duration) (int64, int16, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	cl := newClient(t, seeds, kgo.MaxVersions(kversion.V3_9_0())) // as before transaction version 2
	txnID := uniqueName(t, "hanging")
	init := kmsg.NewPtrInitProducerIDRequest()
	init.TransactionalID = &txnID
	init.TransactionTimeoutMillis = int32(txnTimeout / time.Millisecond)
	ir, err := init.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(ir.ErrorCode)
	}
	if err != nil {
		t.Fatalf("InitProducerId for %s: %v", txnID, err)
	}
	return ir.ProducerID, ir.ProducerEpoch, writeUnaddedBatch(t, seeds, txnID, ir.ProducerID, ir.ProducerEpoch, topic, partition)
}

// writeUnaddedBatch writes one transactional batch of producer pid and epoch (of transactional id
// txnID) straight to topic[partition] (Produce v11, before transaction version 2), never adding
// the partition to a transaction: the partition then holds a transaction its coordinator does
// not, as after a skipped marker. The broker accepts that only without partition verification
// (KIP-890), so transaction.partition.verification.enable is switched off for the cluster while
// the batch is written and restored right after. It returns the record's offset.
func writeUnaddedBatch(t testing.TB, seeds []string, txnID string, pid int64, epoch int16, topic string, partition int32) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	const verification = "transaction.partition.verification.enable"
	adm := newAdmin(t, seeds)
	set := func(v *string) {
		t.Helper()
		op := kadm.SetConfig
		if v == nil {
			op = kadm.DeleteConfig
		}
		resps, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: verification, Value: v}})
		for _, r := range resps {
			err = cmp.Or(err, r.Err)
		}
		if err != nil {
			t.Fatalf("alter %s on the cluster: %v", verification, err)
		}
	}
	off := "false"
	set(&off)
	defer set(nil)
	// The broker applies a dynamic config asynchronously; give it a moment.
	time.Sleep(2 * time.Second)

	// Produce v11: version 12 adds partitions to the transaction implicitly.
	cl := newClient(t, seeds, kgo.MaxVersions(kversion.V3_9_0()))
	rec := kmsg.Record{Key: []byte(hangingKey), Value: []byte("never committed"), TimestampDelta64: 0}
	body := rec.AppendTo(nil)
	rec.Length = int32(len(body) - 1) // the varint 0 of Length took one byte
	now := time.Now().UnixMilli()
	batch := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2,
		Attributes:     0x10, // transactional, no compression
		FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: pid, ProducerEpoch: epoch, FirstSequence: 0,
		NumRecords: 1, Records: rec.AppendTo(nil),
	}
	raw := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))                                          // Length: after itself
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli))) // CRC: from Attributes on

	req := kmsg.NewPtrProduceRequest()
	req.TransactionID, req.Acks, req.TimeoutMillis = &txnID, -1, int32(opTimeout/time.Millisecond)
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, raw
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	// The request must reach the partition's leader.
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	leader := md.Topics[topic].Partitions[partition].Leader
	resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
	if err != nil {
		t.Fatalf("transactional produce to %s[%d]: %v", topic, partition, err)
	}
	pr := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(pr.ErrorCode); err != nil {
		t.Fatalf("transactional produce to %s[%d] (partition verification still on?): %v %v", topic, partition, err, pr.ErrorMessage)
	}
	return pr.BaseOffset
}

// TestEnricherRepairsItsHangingTransaction shows the enricher ending one of its own hanging
// transactions with the outcome it decided, on a real broker. The state is the one a single
// broker's controlled shutdown leaves when it skips a commit's markers on a partition without a
// leader (TestBrokerOutage meets it now and then): a batch of the enricher's producer id, at an
// epoch whose transaction the enricher committed, open on a partition its coordinator completed
// the transaction without. The batch is written straight to the DLQ's partition 0
// (writeUnaddedBatch), at the epoch before the producer's current one: under transaction
// version 2 every commit bumps the epoch, so that is the enricher's last transaction, which
// committed. After enrich.transaction_timeout the enricher writes the commit marker itself: the
// record becomes visible to read_committed readers, the last stable offset moves on, the
// enricher logs and counts the repair, and the pipeline carries on, every event enriched once.
func TestEnricherRepairsItsHangingTransaction(t *testing.T) {
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	sim := startSimulator(t)
	ingress := p.startSimIngress(t, sim, nil)
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "repair").with(settings{
		"enrich.transaction_timeout": hangingTxnTimeout.String(),
		"enrich.lag_interval":        hangingLagInterval.String(),
	}))
	sim.CreateSessions(10)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)

	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	adm := newAdmin(t, seeds)
	txnID := p.txnID + "-repair"
	desc, err := adm.DescribeTransactions(ctx, txnID)
	var d kadm.DescribedTransaction
	if err == nil {
		d, err = desc.On(txnID, nil)
	}
	if err == nil {
		err = d.Err
	}
	if err != nil {
		t.Fatalf("describe the enricher's transactional id %s: %v", txnID, err)
	}
	if d.State != "CompleteCommit" || d.ProducerEpoch < 1 {
		t.Fatalf("the enricher's transactional id %s is %s at epoch %d; want its last transaction committed (CompleteCommit), epoch >= 1", txnID, d.State, d.ProducerEpoch)
	}
	epoch := d.ProducerEpoch - 1 // the committed transaction's epoch: EndTxn moved it on by one
	offset := writeUnaddedBatch(t, seeds, txnID, d.ProducerID, epoch, p.dlq, 0)
	written := time.Now()
	t.Logf("batch of the enricher's producer %d, epoch %d, left open on %s[0] at offset %d", d.ProducerID, epoch, p.dlq, offset)

	waitFor(t, "the enricher repairs the transaction (the DLQ's last stable offset passes the batch)", detectWithin, func() (bool, string) {
		lsos, err := adm.ListCommittedOffsets(ctx, p.dlq)
		if err != nil {
			return false, err.Error()
		}
		o, _ := lsos.Lookup(p.dlq, 0)
		return o.Offset > offset, fmt.Sprintf("last stable offset %d (%v)", o.Offset, o.Err)
	})
	t.Logf("repaired %s after the batch was written", time.Since(written).Round(time.Second))
	line := logLine(t, enricher, "repaired a hanging transaction")
	for _, want := range []string{p.dlq, `"marker":"commit"`, fmt.Sprintf(`"producer_epoch":%d`, epoch)} {
		if !strings.Contains(line, want) {
			t.Errorf("the repair's log line does not contain %s: %q", want, line)
		}
	}
	// Repaired before it is reported: no ERROR line, no page.
	if line := logLine(t, enricher, "hanging transaction", `"level":"ERROR"`); line != "" {
		t.Errorf("the enricher reported the transaction it repaired: %s", line)
	}
	if n, err := labelledMetricValue(enricher.admin, "idnow_connector_enrich_hanging_transactions_repaired_total", `marker="commit"`); err != nil || n != 1 {
		t.Errorf("hanging_transactions_repaired_total{marker=commit} = %v (%v), want 1", n, err)
	}

	// The pipeline carries on.
	sim.CreateSessions(10)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)
	enricher.stop()
	ingress.stop()
	dlq := p.readCommitted(p.dlq)
	if len(dlq) != 1 || string(dlq[0].Key) != hangingKey {
		t.Errorf("%d records visible on the DLQ, want only the repaired batch (committed by the marker)", len(dlq))
	}
	_, inputByID := decodeEvents(t, p.readAll(p.sessions))
	got, enrichedByID := decodeEnriched(t, p.readCommitted(p.enriched))
	checkOnePerEvent(t, inputByID, enrichedByID)
	t.Logf("%d SessionEvents, %d enriched records visible to read_committed", len(inputByID), len(got))
}

// labelledMetricValue returns the value of the series of name whose labels contain labels
// (e.g. `marker="commit"`) from the child's /metrics.
func labelledMetricValue(admin, name, labels string) (float64, error) {
	status, body, err := get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", status)
	}
	for line := range strings.SplitSeq(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		ls, v, ok := strings.Cut(rest, "} ")
		if ok && strings.Contains(ls, labels) {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no series %s{%s} on /metrics", name, labels)
}
