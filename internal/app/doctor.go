package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// ErrHangingTransactions is what Doctor returns when it found hanging, coordinator-stuck or
// foreign transactions and did not abort them, so the command exits non-zero and a script or
// probe notices.
var ErrHangingTransactions = errors.New("hanging transactions found")

// MinTransactionTimeout is the smallest fallback threshold the doctor accepts: below it a live
// batch of the enricher (or of any producer) could be taken for a hanging transaction.
const MinTransactionTimeout = time.Minute

// Statuses of an open transaction in the doctor's report.
const (
	// StatusOpen: within its threshold; nothing to do.
	StatusOpen = "open"
	// StatusHanging: the coordinator no longer holds the transaction (Kafka's find-hanging
	// definition: its markers were never written) and it is older than its threshold. Aborting
	// it is safe: no coordinator will ever complete it.
	StatusHanging = "HANGING"
	// StatusCoordinatorStuck: the coordinator still holds the transaction (Ongoing,
	// PrepareCommit, PrepareAbort) past its timeout. The coordinator completes or aborts it
	// itself once it works again; aborting it from outside may contradict a commit decision.
	StatusCoordinatorStuck = "COORDINATOR-STUCK"
)

// DoctorOptions are the `doctor` subcommand's flags.
type DoctorOptions struct {
	Brokers []string // empty: kafka.brokers, else the embedded broker's listen address
	// TransactionTimeout is the fallback threshold for a transaction whose producer's own
	// timeout the coordinator does not report and whose leader's transaction.max.timeout.ms
	// cannot be read; 0 = enrich.transaction_timeout. An explicit value must be at least
	// MinTransactionTimeout; enrich.transaction_timeout below it is raised to it.
	TransactionTimeout time.Duration
	// Abort writes abort markers for the hanging transactions, as `kafka-transactions.sh abort`.
	Abort bool
	// Force, with Abort, also aborts coordinator-stuck transactions and foreign ones on the
	// shared __consumer_offsets partition. It can lose or duplicate data: see docs/operations.md.
	Force bool
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
	// Age is measured from the transaction's start as the coordinator reports it when the
	// coordinator holds it, else from the producer's last write to the partition (the leader
	// does not report when the transaction began there); AgeFrom says which.
	Age     time.Duration
	AgeFrom string
	// Threshold is the age past which the transaction is hanging or stuck: the producer's own
	// transaction timeout when the coordinator reports it, else the leader's
	// transaction.max.timeout.ms, else the fallback; ThresholdFrom says which.
	Threshold     time.Duration
	ThresholdFrom string

	TransactionalID  string // "" when the coordinator lists no transactional id for the producer
	CoordinatorState string // the coordinator's state of that transactional id; "" when unknown
	CoordinatorPID   int64  // the producer id the coordinator holds for the transactional id; -1 when unknown
	Coordinator      int32  // the coordinator broker of the transactional id; -1 when unknown
	// CoordinatorHolds reports whether the coordinator has this partition in the producer's
	// current transaction (same producer id, transaction ongoing or being completed).
	CoordinatorHolds bool
	// Foreign: on the __consumer_offsets partition, which other groups share, and not from a
	// transactional id of the connector (enrich.transactional_id + "-", or
	// commands.transactional_id + "-" when the commands role is enabled): not ours to abort.
	Foreign bool

	Status string // StatusOpen, StatusHanging or StatusCoordinatorStuck
	Reason string // why it hangs or is stuck, or a note on an open one

	Aborted  bool  // abort markers were written (only with --abort)
	AbortErr error // the marker write failed
}

// abortable reports whether --abort (and --force) may write an abort marker for o.
func (o OpenTransaction) abortable(force bool) bool {
	switch o.Status {
	case StatusHanging:
		return force || !o.Foreign
	case StatusCoordinatorStuck:
		return force
	}
	return false
}

// DoctorReport is what Doctor found and did.
type DoctorReport struct {
	Partitions int               // partitions scanned
	Skipped    []string          // topics that do not exist (nothing can hang there)
	Open       []OpenTransaction // every open transaction, sorted by topic, partition, producer
	Fallback   time.Duration     // the fallback threshold used
	Hanging    int               // StatusHanging, foreign ones included
	Stuck      int               // StatusCoordinatorStuck
	Foreign    int               // hanging or stuck and foreign
	Aborted    int
}

// Doctor lists the open, hanging and coordinator-stuck transactions on the partitions the
// enricher writes and commits to: topics.sessions, topics.enriched, topics.dlq, the state topic
// and the __consumer_offsets partition of enrich.group. With opts.Abort it aborts the hanging ones.
//
// A transaction is hanging, as in Kafka's `kafka-transactions.sh find-hanging`, when a
// partition's leader has it open while its coordinator does not hold it (the transactional id
// is Empty, CompleteCommit, CompleteAbort or Dead, has moved on to another producer id, does
// not have this partition, or is unknown) and it is older than its threshold. Its commit or
// abort markers were never written (e.g. a broker that went down while writing them) and no
// coordinator will ever write them: the partition's last stable offset is pinned for good, so
// read_committed consumers and the group's offset fetch (UNSTABLE_OFFSET_COMMIT) wait for ever.
// A transaction the coordinator still holds past its timeout is "coordinator stuck": the
// coordinator ends it once it can (it may be committing it right now), so it is only reported.
//
// Aborting writes an abort marker to each hanging partition with the producer id, epoch and
// coordinator epoch the leader reports (WriteTxnMarkers), as `kafka-transactions.sh abort` does.
// The records of the aborted transaction become invisible to read_committed readers; for the
// enricher that means the events of that batch are consumed again and enriched once. With
// opts.Force it also aborts coordinator-stuck and foreign transactions.
//
// It returns ErrHangingTransactions when hanging, stuck or foreign transactions exist and were
// not aborted, and an error when a partition could not be described or a marker could not be
// written.
func Doctor(ctx context.Context, cfg Config, opts DoctorOptions, out io.Writer) (DoctorReport, error) {
	var rep DoctorReport
	fallback := opts.TransactionTimeout
	switch {
	case fallback < 0 || fallback > 0 && fallback < MinTransactionTimeout:
		return rep, fmt.Errorf("doctor: --transaction-timeout %s is below the minimum %s: a live batch could be taken for a hanging transaction; use e.g. --transaction-timeout 15m (Kafka's default transaction.max.timeout.ms)", fallback, MinTransactionTimeout)
	case fallback == 0 && cfg.Enrich.TransactionTimeout <= 0:
		return rep, fmt.Errorf("doctor: enrich.transaction_timeout %s must be positive, or pass e.g. --transaction-timeout 15m", cfg.Enrich.TransactionTimeout)
	case fallback == 0:
		// enrich.transaction_timeout is tuned for the enricher, possibly very short; the
		// doctor never goes below the minimum.
		fallback = max(cfg.Enrich.TransactionTimeout, MinTransactionTimeout)
	}
	if opts.Force && !opts.Abort {
		return rep, errors.New("doctor: --force only makes sense with --abort (it widens what --abort aborts)")
	}
	rep.Fallback = fallback
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
	open, failed := kafka.OpenTransactions(described)
	for _, f := range failed {
		partErrs = append(partErrs, f.Error())
	}
	candidates := make([]OpenTransaction, 0, len(open))
	for _, dp := range open {
		candidates = append(candidates, OpenTransaction{
			Topic: dp.Topic, Partition: dp.Partition, Leader: dp.Leader,
			ProducerID: dp.ProducerID, ProducerEpoch: dp.ProducerEpoch, CoordinatorEpoch: dp.CoordinatorEpoch,
			StartOffset: dp.CurrentTxnStartOffset, LastWrite: time.UnixMilli(dp.LastTimestamp),
			CoordinatorPID: -1, Coordinator: -1,
		})
	}

	coord, err := coordinatorView(ctx, adm, candidates)
	if err != nil {
		return rep, err
	}
	limits := brokerMaxTimeouts(ctx, adm, candidates)
	rep.Open = classifyOpenTransactions(candidates, coord, doctorLimits{
		now: now(), fallback: fallback, brokerMax: limits, txnPrefixes: connectorTxnPrefixes(cfg),
	})
	for _, o := range rep.Open {
		switch o.Status {
		case StatusHanging:
			rep.Hanging++
		case StatusCoordinatorStuck:
			rep.Stuck++
		}
		if o.Foreign && o.Status != StatusOpen {
			rep.Foreign++
		}
	}

	var abortErr error
	if opts.Abort && slices.ContainsFunc(rep.Open, func(o OpenTransaction) bool { return o.abortable(opts.Force) }) {
		abortErr = abortHanging(ctx, adm, rep.Open, opts.Force)
		for _, o := range rep.Open {
			if o.Aborted {
				rep.Aborted++
			}
		}
	}
	printDoctorReport(out, rep, opts)

	var errs []error
	if len(partErrs) > 0 {
		errs = append(errs, fmt.Errorf("doctor: could not describe the producers of every partition, so the report is incomplete: %s", strings.Join(partErrs, "; ")))
	}
	if abortErr != nil {
		errs = append(errs, abortErr)
	}
	if left := leftOver(rep.Open); left != "" {
		errs = append(errs, fmt.Errorf("%w: %s (see docs/operations.md, Hanging transactions)", ErrHangingTransactions, left))
	}
	return rep, errors.Join(errs...)
}

// leftOver describes the hanging, stuck and foreign transactions still open (not aborted), each
// kind with what to do about it; "" when none is left.
func leftOver(open []OpenTransaction) string {
	var hanging, stuck, foreign []string
	for _, o := range open {
		if o.Status == StatusOpen || o.Aborted {
			continue
		}
		p := fmt.Sprintf("%s[%d]", o.Topic, o.Partition)
		switch {
		case o.Foreign:
			foreign = append(foreign, p)
		case o.Status == StatusCoordinatorStuck:
			stuck = append(stuck, p)
		default:
			hanging = append(hanging, p)
		}
	}
	var parts []string
	if len(hanging) > 0 {
		parts = append(parts, fmt.Sprintf("%d hanging on %s; run `idnow-connector doctor --abort` to abort them", len(hanging), strings.Join(slices.Compact(hanging), ", ")))
	}
	if len(stuck) > 0 {
		parts = append(parts, fmt.Sprintf("%d held by a stuck coordinator on %s; check the coordinator broker and its logs: Kafka completes or times them out itself once it works (--abort --force only as a last resort: it may lose or duplicate events)", len(stuck), strings.Join(slices.Compact(stuck), ", ")))
	}
	if len(foreign) > 0 {
		parts = append(parts, fmt.Sprintf("%d foreign (not a transactional id of the connector) on the shared %s; tell their owners, abort them only with --abort --force", len(foreign), strings.Join(slices.Compact(foreign), ", ")))
	}
	return strings.Join(parts, "; ")
}

// doctorPartitions returns the partitions to scan: every partition of the connector's topics
// and the __consumer_offsets partition that holds enrich.group's offsets. Topics that do not
// exist are returned as skipped; when none exists there is nothing to diagnose, which is an
// error (most likely the wrong brokers or topic names).
func doctorPartitions(ctx context.Context, adm *kadm.Client, cfg Config) (kadm.TopicsSet, []string, error) {
	// The enricher's transactions write the state topic too: a transaction hanging there pins
	// its last stable offset, and a restore (read_committed) stops short of the state behind it.
	names := []string{cfg.Topics.Sessions, cfg.Topics.Enriched, cfg.Topics.DLQ, cfg.Topics.StateTopic()}
	if cfg.Commands.Enabled {
		// The commands role's transactions write replies and command states (a missing topic is
		// skipped like any other: the role may not run in this deployment).
		names = append(names, cfg.Topics.Replies, cfg.Topics.CommandsState)
	}
	topics := slices.Compact(slices.Sorted(slices.Values(names)))
	md, err := adm.Metadata(ctx, append(slices.Clone(topics), kafka.ConsumerOffsetsTopic)...)
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
	if td, ok := md.Topics[kafka.ConsumerOffsetsTopic]; ok && td.Err == nil && len(td.Partitions) > 0 {
		if cfg.Enrich.Group != "" {
			set.Add(kafka.ConsumerOffsetsTopic, kafka.GroupOffsetsPartition(cfg.Enrich.Group, len(td.Partitions)))
		}
		if cfg.Commands.Enabled && cfg.Commands.Group != "" {
			set.Add(kafka.ConsumerOffsetsTopic, kafka.GroupOffsetsPartition(cfg.Commands.Group, len(td.Partitions)))
		}
	}
	return set, skipped, nil
}

// coordinatorTxn is what the coordinator says about one producer id.
type coordinatorTxn struct {
	txnID       string
	state       string
	pid         int64
	topics      kadm.TopicsSet
	timeout     time.Duration // the producer's transaction timeout; 0 when not reported
	start       time.Time     // the current transaction's start; zero when none
	coordinator int32
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
		c := coordinatorTxn{txnID: id, state: d.State, pid: d.ProducerID, topics: d.Topics,
			timeout: time.Duration(d.TimeoutMillis) * time.Millisecond, coordinator: d.Coordinator}
		if d.StartTimestamp > 0 {
			c.start = time.UnixMilli(d.StartTimestamp)
		}
		view[pid] = c
	}
	return view, nil
}

// brokerMaxTimeouts reads transaction.max.timeout.ms of the candidates' partition leaders: no
// transaction a broker accepted can have a longer timeout, so it is the threshold Kafka's
// find-hanging uses when the producer's own timeout is unknown. A broker whose config cannot be
// read is left out (the fallback threshold applies); the doctor must still work without the
// DescribeConfigs permission.
func brokerMaxTimeouts(ctx context.Context, adm *kadm.Client, candidates []OpenTransaction) map[int32]time.Duration {
	limits := map[int32]time.Duration{}
	var leaders []int32
	for _, c := range candidates {
		leaders = append(leaders, c.Leader)
	}
	slices.Sort(leaders)
	leaders = slices.Compact(leaders)
	if len(leaders) == 0 {
		return limits
	}
	rcs, _ := adm.DescribeBrokerConfigs(ctx, leaders...) // per-broker errors are in rcs; see above
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		id, err := strconv.ParseInt(rc.Name, 10, 32)
		if err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "transaction.max.timeout.ms" || c.Value == nil {
				continue
			}
			if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && ms > 0 {
				limits[int32(id)] = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return limits
}

// doctorLimits is what classifyOpenTransactions measures against.
type doctorLimits struct {
	now       time.Time
	fallback  time.Duration
	brokerMax map[int32]time.Duration // transaction.max.timeout.ms by broker id
	// txnPrefixes: the connector's transactional ids start with one of them (the enricher's,
	// and the commands role's when it runs).
	txnPrefixes []string
}

// connectorTxnPrefixes are the prefixes of the transactional ids the connector's roles use.
func connectorTxnPrefixes(cfg Config) []string {
	prefixes := []string{cfg.Enrich.TransactionalID + "-"}
	if cfg.Commands.Enabled && cfg.Commands.TransactionalID != "" {
		prefixes = append(prefixes, cfg.Commands.TransactionalID+"-")
	}
	return prefixes
}

func (l doctorLimits) ours(txnID string) bool {
	for _, p := range l.txnPrefixes {
		if strings.HasPrefix(txnID, p) {
			return true
		}
	}
	return false
}

// classifyOpenTransactions fills in the coordinator's view and decides the status of each open
// transaction. It mirrors Kafka's FindHangingTransactions check (TransactionsCommand.java): the
// coordinator "holds" an open transaction when the producer's transactional id still has that
// producer id and the partition is part of its ongoing (or completing) transaction; only a
// transaction it does not hold can be hanging. One it holds past its timeout is stuck.
func classifyOpenTransactions(open []OpenTransaction, coord map[int64]coordinatorTxn, lim doctorLimits) []OpenTransaction {
	out := slices.Clone(open)
	for i := range out {
		o := &out[i]
		c, known := coord[o.ProducerID]
		if known {
			o.TransactionalID, o.CoordinatorState, o.CoordinatorPID, o.Coordinator = c.txnID, c.state, c.pid, c.coordinator
			switch c.state {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				o.CoordinatorHolds = c.pid == o.ProducerID && c.topics.Lookup(o.Topic, o.Partition)
			}
		}
		o.Age, o.AgeFrom = lim.now.Sub(o.LastWrite), "last write"
		if o.CoordinatorHolds && !c.start.IsZero() {
			o.Age, o.AgeFrom = lim.now.Sub(c.start), "transaction start"
		}
		switch bmax, ok := lim.brokerMax[o.Leader]; {
		case known && c.pid == o.ProducerID && c.timeout > 0:
			o.Threshold, o.ThresholdFrom = c.timeout, "producer's transaction timeout"
		case ok:
			o.Threshold, o.ThresholdFrom = bmax, fmt.Sprintf("transaction.max.timeout.ms of broker %d", o.Leader)
		default:
			o.Threshold, o.ThresholdFrom = lim.fallback, "fallback --transaction-timeout"
		}
		o.Foreign = o.Topic == kafka.ConsumerOffsetsTopic && !lim.ours(o.TransactionalID)
		o.Status = StatusOpen
		switch {
		case o.Age > o.Threshold && !o.CoordinatorHolds:
			o.Status = StatusHanging
			o.Reason = fmt.Sprintf("open for %s (since its %s), longer than the %s %s, and the coordinator %s: its commit or abort markers were never written",
				round(o.Age), o.AgeFrom, o.ThresholdFrom, o.Threshold, coordinatorSays(*o, known))
		case o.Age > o.Threshold:
			o.Status = StatusCoordinatorStuck
			o.Reason = fmt.Sprintf("open for %s (since its %s), longer than the %s %s, but the coordinator (broker %d) still holds it in state %s: it ends it itself once it works again; check that broker and its logs",
				round(o.Age), o.AgeFrom, o.ThresholdFrom, o.Threshold, o.Coordinator, o.CoordinatorState)
		case !o.CoordinatorHolds:
			o.Reason = fmt.Sprintf("the coordinator %s; within the %s %s its markers may still be being written", coordinatorSays(*o, known), o.ThresholdFrom, o.Threshold)
		}
		if o.Foreign && o.Status != StatusOpen {
			o.Reason += fmt.Sprintf("; foreign: not a transactional id of the connector (%s*) on the __consumer_offsets partition other groups share", strings.Join(lim.txnPrefixes, "*, "))
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

// abortHanging writes an abort marker for every transaction abortable with force, with the
// producer id, epoch and coordinator epoch its partition's leader reported, and records the
// outcome on each.
func abortHanging(ctx context.Context, adm *kadm.Client, open []OpenTransaction, force bool) error {
	var ends []kafka.TxnEnd
	var idx []int
	for i, o := range open {
		if o.abortable(force) {
			ends = append(ends, kafka.TxnEnd{Topic: o.Topic, Partition: o.Partition, ProducerID: o.ProducerID,
				ProducerEpoch: o.ProducerEpoch, CoordinatorEpoch: o.CoordinatorEpoch})
			idx = append(idx, i)
		}
	}
	results, _ := kafka.WriteTxnEnds(ctx, adm, ends) // a request failure is in every result it left
	var errs []error
	for j, err := range results {
		o := &open[idx[j]]
		if err == nil {
			o.Aborted = true
			continue
		}
		o.AbortErr = err
		errs = append(errs, fmt.Errorf("doctor: abort producer %d epoch %d on %s[%d]: %w", o.ProducerID, o.ProducerEpoch, o.Topic, o.Partition, err))
	}
	return errors.Join(errs...)
}

func printDoctorReport(out io.Writer, rep DoctorReport, opts DoctorOptions) {
	for _, t := range rep.Skipped {
		fmt.Fprintf(out, "topic %s does not exist; skipped\n", t)
	}
	if len(rep.Open) == 0 {
		fmt.Fprintf(out, "no open transactions on %d partitions\n", rep.Partitions)
		return
	}
	fmt.Fprintln(out, "AGE: since the transaction's start when the coordinator holds it, else since the producer's last write to the partition (DescribeProducers); THRESHOLD: the producer's own transaction timeout, else the leader's transaction.max.timeout.ms, else --transaction-timeout")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tPRODUCER_ID\tEPOCH\tCOORD_EPOCH\tSTART_OFFSET\tLAST_WRITE\tAGE\tTHRESHOLD\tTRANSACTIONAL_ID\tCOORDINATOR\tSTATUS")
	for _, o := range rep.Open {
		status := o.Status
		if o.Foreign && o.Status != StatusOpen {
			status += " (foreign)"
		}
		switch {
		case o.Aborted:
			status += ", aborted"
		case o.AbortErr != nil:
			status += ", abort failed"
		}
		coord := o.CoordinatorState
		if coord == "" {
			coord = "-"
		} else if !o.CoordinatorHolds {
			coord += " (does not hold it)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			o.Topic, o.Partition, o.Leader, o.ProducerID, o.ProducerEpoch, o.CoordinatorEpoch, o.StartOffset,
			o.LastWrite.UTC().Format(time.RFC3339), round(o.Age), o.Threshold, cmp.Or(o.TransactionalID, "-"), coord, status)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "%d open transactions on %d partitions scanned: %d hanging, %d coordinator-stuck, %d of them foreign (fallback threshold %s)\n",
		len(rep.Open), rep.Partitions, rep.Hanging, rep.Stuck, rep.Foreign, rep.Fallback)
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
	case opts.Abort && rep.Aborted > 0:
		fmt.Fprintf(out, "aborted %d of %d hanging or stuck transactions\n", rep.Aborted, rep.Hanging+rep.Stuck)
	case opts.Abort && rep.Hanging+rep.Stuck > 0:
		fmt.Fprintln(out, "nothing aborted: coordinator-stuck and foreign transactions are aborted only with --abort --force")
	case rep.Hanging+rep.Stuck > 0:
		fmt.Fprintln(out, "nothing aborted; run again with --abort to abort the hanging transactions (see the advice above for stuck and foreign ones)")
	}
}

func round(d time.Duration) time.Duration { return d.Round(time.Second) }
