package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf16"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumerOffsetsTopic is Kafka's internal topic that holds committed offsets, including the
// enricher's transactional offset commits.
const consumerOffsetsTopic = "__consumer_offsets"

// ErrHangingTransactions is what Doctor returns when it found hanging transactions and did not
// abort them (no --abort), so the command exits non-zero and a script or probe notices.
var ErrHangingTransactions = errors.New("hanging transactions found")

// DoctorOptions are the `doctor` subcommand's flags.
type DoctorOptions struct {
	Brokers []string // empty: kafka.brokers, else the embedded broker's listen address
	// TransactionTimeout is how long a transaction may stay open on a partition before it
	// counts as hanging; 0 = enrich.transaction_timeout.
	TransactionTimeout time.Duration
	// Abort writes abort markers for the hanging transactions, as `kafka-transactions.sh abort`.
	Abort bool
	// Now is the clock the ages are measured against; nil = time.Now.
	Now func() time.Time
}

// OpenTransaction is one producer's open transaction on one partition, as the partition's
// leader reports it (DescribeProducers), with what the transaction coordinator says about the
// producer (ListTransactions, DescribeTransactions).
type OpenTransaction struct {
	Topic            string
	Partition        int32
	Leader           int32
	ProducerID       int64
	ProducerEpoch    int16
	CoordinatorEpoch int32
	StartOffset      int64     // first offset of the open transaction on this partition
	LastWrite        time.Time // the producer's last write to the partition
	Age              time.Duration

	TransactionalID  string // "" when the coordinator lists no transactional id for the producer
	CoordinatorState string // the coordinator's state of that transactional id; "" when unknown
	CoordinatorPID   int64  // the producer id the coordinator holds for the transactional id; -1 when unknown
	// CoordinatorHolds reports whether the coordinator has this partition in the producer's
	// current transaction (same producer id, transaction ongoing or being completed).
	CoordinatorHolds bool

	Hanging bool
	Reason  string // why it is hanging, or a note on an open one

	Aborted  bool  // abort markers were written (only with --abort)
	AbortErr error // the marker write failed
}

// DoctorReport is what Doctor found and did.
type DoctorReport struct {
	Partitions int               // partitions scanned
	Skipped    []string          // topics that do not exist (nothing can hang there)
	Open       []OpenTransaction // every open transaction, hanging or not, sorted by topic, partition, producer
	Hanging    int
	Aborted    int
}

// Doctor lists the open and hanging transactions on the partitions the enricher writes and
// commits to: topics.sessions, topics.enriched, topics.dlq and the __consumer_offsets partition
// of enrich.group. With opts.Abort it aborts the hanging ones.
//
// A transaction is hanging when it has been open on a partition for longer than the
// transaction timeout. The coordinator normally aborts a transaction at its timeout, so one
// still open after it is stuck: either the coordinator no longer holds it (its commit or abort
// markers were never written, Kafka's `kafka-transactions.sh find-hanging` definition, e.g. a
// broker that went down while writing them) or the coordinator has not acted on it. Either way
// the partition's last stable offset is pinned: read_committed consumers of the topic and the
// group's offset fetch (UNSTABLE_OFFSET_COMMIT) wait for ever. A transaction the coordinator no
// longer holds but that is younger than the timeout is listed, not flagged: its markers may be
// in the middle of being written.
//
// Aborting writes an abort marker to each hanging partition with the producer id, epoch and
// coordinator epoch the leader reports (WriteTxnMarkers), as `kafka-transactions.sh abort` does.
// The records of the aborted transaction become invisible to read_committed readers; for the
// enricher that means the events of that batch are consumed again and enriched once.
//
// It returns ErrHangingTransactions when hanging transactions exist and were not aborted, and
// an error when a partition could not be described or a marker could not be written.
func Doctor(ctx context.Context, cfg Config, opts DoctorOptions, out io.Writer) (DoctorReport, error) {
	var rep DoctorReport
	timeout := opts.TransactionTimeout
	if timeout == 0 {
		timeout = cfg.Enrich.TransactionTimeout
	}
	if timeout <= 0 {
		return rep, fmt.Errorf("doctor: transaction timeout %s must be positive, e.g. --transaction-timeout 60s", timeout)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	brokers := opts.Brokers
	if len(brokers) == 0 {
		brokers = cfg.Kafka.Brokers
	}
	if len(brokers) == 0 {
		brokers = []string{cfg.Kafka.Embedded.Listen}
	}
	kc := cfg.Kafka
	kc.Brokers = brokers
	base, err := newKafkaOpts(kc, "doctor")
	if err != nil {
		return rep, err
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return rep, fmt.Errorf("doctor: kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	scan, skipped, err := doctorPartitions(ctx, adm, cfg)
	if err != nil {
		return rep, err
	}
	rep.Skipped = skipped
	for _, ps := range scan {
		rep.Partitions += len(ps)
	}

	described, err := adm.DescribeProducers(ctx, scan)
	var partErrs []string
	if err != nil {
		if _, ok := errors.AsType[*kadm.ShardErrors](err); !ok {
			return rep, fmt.Errorf("doctor: describe producers on %v: %w", scan.Topics(), err)
		}
		// Some brokers answered: report what they said, and fail at the end.
		partErrs = append(partErrs, err.Error())
	}
	var candidates []OpenTransaction
	described.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil {
			partErrs = append(partErrs, fmt.Sprintf("%s[%d]: %v", p.Topic, p.Partition, p.Err))
			return
		}
		for _, dp := range p.ActiveProducers.Sorted() {
			// Idempotent producers (the ingress) are listed too; only those with an open
			// transaction on the partition matter here.
			if dp.CurrentTxnStartOffset < 0 {
				continue
			}
			last := time.UnixMilli(dp.LastTimestamp)
			candidates = append(candidates, OpenTransaction{
				Topic: dp.Topic, Partition: dp.Partition, Leader: dp.Leader,
				ProducerID: dp.ProducerID, ProducerEpoch: dp.ProducerEpoch, CoordinatorEpoch: dp.CoordinatorEpoch,
				StartOffset: dp.CurrentTxnStartOffset, LastWrite: last, Age: now().Sub(last), CoordinatorPID: -1,
			})
		}
	})

	coord, err := coordinatorView(ctx, adm, candidates)
	if err != nil {
		return rep, err
	}
	rep.Open = classifyOpenTransactions(candidates, coord, timeout)
	for _, o := range rep.Open {
		if o.Hanging {
			rep.Hanging++
		}
	}

	var abortErr error
	if opts.Abort && rep.Hanging > 0 {
		abortErr = abortHanging(ctx, adm, rep.Open)
		for _, o := range rep.Open {
			if o.Aborted {
				rep.Aborted++
			}
		}
	}
	printDoctorReport(out, rep, timeout, opts.Abort)

	var errs []error
	if len(partErrs) > 0 {
		errs = append(errs, fmt.Errorf("doctor: could not describe the producers of every partition, so the report is incomplete: %s", strings.Join(partErrs, "; ")))
	}
	if abortErr != nil {
		errs = append(errs, abortErr)
	}
	if !opts.Abort && rep.Hanging > 0 {
		errs = append(errs, fmt.Errorf("%w: %d on %s; run `idnow-connector doctor --abort` to abort them (see docs/operations.md, Hanging transactions)",
			ErrHangingTransactions, rep.Hanging, hangingPartitions(rep.Open)))
	}
	return rep, errors.Join(errs...)
}

// doctorPartitions returns the partitions to scan: every partition of the connector's topics
// and the __consumer_offsets partition that holds enrich.group's offsets. Topics that do not
// exist are returned as skipped; when none exists there is nothing to diagnose, which is an
// error (most likely the wrong brokers or topic names).
func doctorPartitions(ctx context.Context, adm *kadm.Client, cfg Config) (kadm.TopicsSet, []string, error) {
	topics := slices.Compact(slices.Sorted(slices.Values([]string{cfg.Topics.Sessions, cfg.Topics.Enriched, cfg.Topics.DLQ})))
	md, err := adm.Metadata(ctx, append(slices.Clone(topics), consumerOffsetsTopic)...)
	if err != nil {
		return nil, nil, fmt.Errorf("doctor: metadata of %v: %w", topics, err)
	}
	set := kadm.TopicsSet{}
	var skipped []string
	for _, t := range topics {
		td, ok := md.Topics[t]
		if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			skipped = append(skipped, t)
			continue
		}
		if td.Err != nil {
			return nil, nil, fmt.Errorf("doctor: metadata of topic %s: %w", t, td.Err)
		}
		for p := range td.Partitions {
			set.Add(t, p)
		}
	}
	if len(set) == 0 {
		return nil, nil, fmt.Errorf("doctor: none of the connector's topics %v exists on %v; check kafka.brokers and topics.*", topics, md.Brokers.NodeIDs())
	}
	// A group that never committed has no offsets partition to block; the internal topic only
	// exists once some group used the cluster.
	if td, ok := md.Topics[consumerOffsetsTopic]; ok && td.Err == nil && len(td.Partitions) > 0 && cfg.Enrich.Group != "" {
		set.Add(consumerOffsetsTopic, groupOffsetsPartition(cfg.Enrich.Group, len(td.Partitions)))
	}
	return set, skipped, nil
}

// groupOffsetsPartition is the __consumer_offsets partition Kafka stores group's offsets in:
// abs(Java String.hashCode(group)) mod the partition count (GroupCoordinator.partitionFor).
func groupOffsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, c := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(c)
	}
	// Kafka's Utils.abs: the sign bit cleared, so MinInt32 maps to 0 rather than overflowing.
	return int32(int64(h&0x7fffffff) % int64(partitions))
}

// coordinatorTxn is what the coordinator says about one producer id.
type coordinatorTxn struct {
	txnID  string
	state  string
	pid    int64
	topics kadm.TopicsSet
}

// coordinatorView asks the transaction coordinators which transactional ids the candidates'
// producer ids belong to and describes those transactions. A producer id without a listed
// transactional id maps to nothing: the coordinator does not know it (any more).
func coordinatorView(ctx context.Context, adm *kadm.Client, candidates []OpenTransaction) (map[int64]coordinatorTxn, error) {
	view := map[int64]coordinatorTxn{}
	if len(candidates) == 0 {
		return view, nil
	}
	var pids []int64
	for _, c := range candidates {
		pids = append(pids, c.ProducerID)
	}
	slices.Sort(pids)
	pids = slices.Compact(pids)
	listed, err := adm.ListTransactions(ctx, pids, nil)
	if err != nil {
		// Without every coordinator's answer a transaction could be called hanging while its
		// coordinator holds it: refuse to guess.
		return nil, fmt.Errorf("doctor: list transactions of producer ids %v at the coordinators: %w", pids, err)
	}
	byTxn := map[string]int64{}
	for _, l := range listed.Sorted() {
		if slices.Contains(pids, l.ProducerID) {
			byTxn[l.TxnID] = l.ProducerID
		}
	}
	if len(byTxn) == 0 {
		return view, nil
	}
	ids := make([]string, 0, len(byTxn))
	for id := range byTxn {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	desc, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil {
		return nil, fmt.Errorf("doctor: describe transactions %v: %w", ids, err)
	}
	for _, id := range ids {
		pid := byTxn[id]
		d, ok := desc[id]
		if !ok || d.Err != nil {
			if ok && !errors.Is(d.Err, kerr.TransactionalIDNotFound) {
				return nil, fmt.Errorf("doctor: describe transaction %s: %w", id, d.Err)
			}
			continue
		}
		view[pid] = coordinatorTxn{txnID: id, state: d.State, pid: d.ProducerID, topics: d.Topics}
	}
	return view, nil
}

// classifyOpenTransactions fills in the coordinator's view and decides which open transactions
// hang. It mirrors Kafka's FindHangingTransactions check (TransactionsCommand.java): the
// coordinator "holds" an open transaction when the producer's transactional id still has that
// producer id and the partition is part of its ongoing (or completing) transaction. It then
// applies the timeout to both cases: see Doctor.
func classifyOpenTransactions(open []OpenTransaction, coord map[int64]coordinatorTxn, timeout time.Duration) []OpenTransaction {
	out := slices.Clone(open)
	for i := range out {
		o := &out[i]
		c, known := coord[o.ProducerID]
		if known {
			o.TransactionalID, o.CoordinatorState, o.CoordinatorPID = c.txnID, c.state, c.pid
			switch c.state {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				o.CoordinatorHolds = c.pid == o.ProducerID && c.topics.Lookup(o.Topic, o.Partition)
			}
		}
		switch {
		case o.Age > timeout && !o.CoordinatorHolds:
			o.Hanging = true
			o.Reason = fmt.Sprintf("open for %s, longer than the transaction timeout %s, and the coordinator %s: its commit or abort markers were never written",
				round(o.Age), timeout, coordinatorSays(*o, known))
		case o.Age > timeout:
			o.Hanging = true
			o.Reason = fmt.Sprintf("open for %s, longer than the transaction timeout %s; the coordinator still holds it (%s) and has not ended it",
				round(o.Age), timeout, o.CoordinatorState)
		case !o.CoordinatorHolds:
			o.Reason = fmt.Sprintf("the coordinator %s; within the timeout its markers may still be being written", coordinatorSays(*o, known))
		}
	}
	slices.SortFunc(out, func(a, b OpenTransaction) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.ProducerID, b.ProducerID))
	})
	return out
}

func coordinatorSays(o OpenTransaction, known bool) string {
	switch {
	case !known:
		return "knows no transactional id for this producer id"
	case o.CoordinatorPID != o.ProducerID:
		return fmt.Sprintf("has moved %s on to producer id %d", o.TransactionalID, o.CoordinatorPID)
	default:
		return fmt.Sprintf("has %s in state %s without this partition", o.TransactionalID, o.CoordinatorState)
	}
}

// abortHanging writes an abort marker for every hanging transaction, with the producer id,
// epoch and coordinator epoch its partition's leader reported, and records the outcome on each.
// Kafka's abort command uses coordinator epoch 0 when the leader reports none (-1).
func abortHanging(ctx context.Context, adm *kadm.Client, open []OpenTransaction) error {
	var markers []kadm.TxnMarkers
	for _, o := range open {
		if !o.Hanging {
			continue
		}
		markers = append(markers, kadm.TxnMarkers{
			ProducerID: o.ProducerID, ProducerEpoch: o.ProducerEpoch, Commit: false,
			CoordinatorEpoch: max(o.CoordinatorEpoch, 0), Topics: kadm.TopicsSet{o.Topic: {o.Partition: {}}},
		})
	}
	resp, err := adm.WriteTxnMarkers(ctx, markers...)
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("doctor: write abort markers: %w", err))
	}
	for i := range open {
		o := &open[i]
		if !o.Hanging {
			continue
		}
		r, ok := resp[o.ProducerID].Topics[o.Topic].Partitions[o.Partition]
		switch {
		case !ok:
			o.AbortErr = errors.New("no answer from the partition's leader")
		case r.Err != nil:
			o.AbortErr = r.Err
		default:
			o.Aborted = true
			continue
		}
		errs = append(errs, fmt.Errorf("doctor: abort producer %d epoch %d on %s[%d]: %w", o.ProducerID, o.ProducerEpoch, o.Topic, o.Partition, o.AbortErr))
	}
	return errors.Join(errs...)
}

func hangingPartitions(open []OpenTransaction) string {
	var ps []string
	for _, o := range open {
		if o.Hanging {
			ps = append(ps, fmt.Sprintf("%s[%d]", o.Topic, o.Partition))
		}
	}
	return strings.Join(slices.Compact(ps), ", ")
}

func printDoctorReport(out io.Writer, rep DoctorReport, timeout time.Duration, abort bool) {
	for _, t := range rep.Skipped {
		fmt.Fprintf(out, "topic %s does not exist; skipped\n", t)
	}
	if len(rep.Open) == 0 {
		fmt.Fprintf(out, "no open transactions on %d partitions\n", rep.Partitions)
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tPRODUCER_ID\tEPOCH\tCOORD_EPOCH\tSTART_OFFSET\tLAST_WRITE\tAGE\tTRANSACTIONAL_ID\tCOORDINATOR\tSTATUS")
	for _, o := range rep.Open {
		status := "open"
		switch {
		case o.Aborted:
			status = "HANGING, aborted"
		case o.AbortErr != nil:
			status = "HANGING, abort failed"
		case o.Hanging:
			status = "HANGING"
		}
		coord := o.CoordinatorState
		if coord == "" {
			coord = "-"
		} else if !o.CoordinatorHolds {
			coord += " (not this partition)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n",
			o.Topic, o.Partition, o.Leader, o.ProducerID, o.ProducerEpoch, o.CoordinatorEpoch, o.StartOffset,
			o.LastWrite.UTC().Format(time.RFC3339), round(o.Age), cmp.Or(o.TransactionalID, "-"), coord, status)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "%d open transactions on %d partitions scanned, %d hanging (transaction timeout %s)\n", len(rep.Open), rep.Partitions, rep.Hanging, timeout)
	for _, o := range rep.Open {
		if o.Reason == "" {
			continue
		}
		fmt.Fprintf(out, "  %s[%d] producer %d: %s", o.Topic, o.Partition, o.ProducerID, o.Reason)
		if o.AbortErr != nil {
			fmt.Fprintf(out, "; abort failed: %v", o.AbortErr)
		}
		fmt.Fprintln(out)
	}
	switch {
	case abort && rep.Hanging > 0:
		fmt.Fprintf(out, "aborted %d of %d hanging transactions\n", rep.Aborted, rep.Hanging)
	case rep.Hanging > 0:
		fmt.Fprintln(out, "nothing aborted; run again with --abort to abort the hanging transactions")
	}
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
