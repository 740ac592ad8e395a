package enrich

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// Repairing the enricher's own hanging transactions.
//
// Once the transaction coordinator has decided a transaction (PrepareCommit or PrepareAbort), it
// writes the commit or abort marker to every partition of it. A partition that has no leader at
// that moment is taken for deleted and skipped (Kafka's TransactionMarkerChannelManager): the
// coordinator completes the transaction without it, and the partition keeps an open transaction
// that no coordinator will ever end. That happens when the only replica of a partition goes
// away while a commit completes, e.g. a single broker (or topics with replication factor 1)
// restarted gracefully while the enricher commits: the controlled shutdown leaves the partitions
// leaderless before the coordinator stops. The partition's last stable offset is pinned from
// then on; read_committed readers stop there, and a pending offset commit on
// __consumer_offsets keeps the group's offsets unstable, so the enricher cannot consume that
// input partition again.
//
// The enricher knows what it decided: it records the outcome of every transaction it ends by
// producer id and epoch, and when the monitor sees a hanging transaction it writes the markers
// that were skipped, with that outcome, so the transaction ends on every partition as it ended
// on the others. It repairs only what it can prove: a transaction it ended (an epoch before the
// producer's current one), whose outcome is certain, and that is the only transaction it ended
// under that id and epoch (with transaction version 2, Kafka 4.0's default, each EndTxn bumps
// the epoch; before it, many transactions share one). Any other hanging transaction is reported
// for `idnow-connector doctor`.
//
// If a later transaction of the same producer wrote to the partition, the partition's open
// transaction reaches into it and its epoch is the later one: that transaction's marker, from
// the coordinator or from here, ends both (Kafka's own behaviour; the older batches' outcome was
// lost with their marker).

// Outcomes are kept for outcomeRetention(cfg) and at most maxTxnOutcomes: a repair needs the
// outcome until the hang has lasted enrich.transaction_timeout and the monitor looked again.
const maxTxnOutcomes = 1 << 16

// outcomeRetention is how long an outcome is kept: twice the time a repair can take to start.
func outcomeRetention(cfg Config) time.Duration {
	return 2*(cfg.TransactionTimeout+cfg.LagInterval) + time.Minute
}

type txnKey struct {
	pid   int64
	epoch int16
}

type txnOutcome uint8

const (
	outcomeCommit txnOutcome = iota + 1
	outcomeAbort
	// outcomeUnknown: the outcome is not certain (End failed, or a commit came back as not
	// committed: franz-go then aborts by reloading the producer id, and the coordinator may have
	// committed after all), or more than one transaction ended under the id and epoch (brokers
	// before transaction version 2 keep one epoch for many). Never repaired.
	outcomeUnknown
)

type recordedOutcome struct {
	key txnKey
	at  time.Time
	seq uint64
}

type outcomeEntry struct {
	out txnOutcome
	seq uint64 // of its latest record
}

// txnOutcomes remembers how the enricher's transactions ended, by producer id and epoch. Each
// End is recorded, so an id and epoch that saw two transactions is known to be ambiguous.
type txnOutcomes struct {
	mu    sync.Mutex
	m     map[txnKey]outcomeEntry
	order []recordedOutcome // oldest first, for eviction
	seq   uint64
}

// record notes that a transaction of pid and epoch ended with out, at now, and forgets outcomes
// older than retention.
func (o *txnOutcomes) record(pid int64, epoch int16, out txnOutcome, now time.Time, retention time.Duration) {
	k := txnKey{pid, epoch}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[txnKey]outcomeEntry{}
	}
	if _, seen := o.m[k]; seen {
		out = outcomeUnknown
	}
	o.seq++
	o.m[k] = outcomeEntry{out, o.seq}
	o.order = append(o.order, recordedOutcome{k, now, o.seq})
	drop := 0
	for drop < len(o.order) && (len(o.order)-drop > maxTxnOutcomes || now.Sub(o.order[drop].at) > retention) {
		// A key recorded again later stays until its latest record goes.
		if r := o.order[drop]; o.m[r.key].seq == r.seq {
			delete(o.m, r.key)
		}
		drop++
	}
	// Resliced, not shifted: append reallocates once the front is used up, copying only what is
	// kept, so a commit costs O(1) amortised.
	o.order = o.order[drop:]
}

// lookup returns whether the transaction of pid and epoch was committed, and whether that is
// known.
func (o *txnOutcomes) lookup(pid int64, epoch int16) (commit, known bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.m[txnKey{pid, epoch}].out {
	case outcomeCommit:
		return true, true
	case outcomeAbort:
		return false, true
	}
	return false, false
}

// producerOf is the client's producer id and epoch; ok is false when it has none (its producer
// id failed, or ctx ended).
func producerOf(ctx context.Context, cl *kgo.Client) (pid int64, epoch int16, ok bool) {
	pid, epoch, err := cl.ProducerID(ctx)
	return pid, epoch, err == nil
}

// recordOutcome records how End ended the transaction of pid and epoch (the producer before
// End, whose epoch the transaction's batches carry): committed, aborted because the enricher
// asked for an abort, or unknown.
func (e *Enricher) recordOutcome(pid int64, epoch int16, try kgo.TransactionEndTry, committed bool, endErr error) {
	out := outcomeUnknown
	switch {
	case endErr != nil:
	case committed:
		out = outcomeCommit
	case try == kgo.TryAbort:
		out = outcomeAbort
	}
	e.outcomes.record(pid, epoch, out, time.Now(), outcomeRetention(e.cfg))
}

// txnAdmin is what the repair asks of Kafka; *kadm.Client has it.
type txnAdmin interface {
	ListTopics(ctx context.Context, topics ...string) (kadm.TopicDetails, error)
	DescribeProducers(ctx context.Context, s kadm.TopicsSet) (kadm.DescribedProducersTopics, error)
	kafka.TxnMarkerWriter
}

// txnRepair is the repair's view of one Kafka client and what it remembers between refreshes.
// Only the monitor goroutine of that client uses it.
type txnRepair struct {
	adm txnAdmin
	// current is the client's producer now. cl.ProducerID loads the producer id when the client
	// has failed it, which its next produce, Begin or End would do anyway: no new effect.
	current func(context.Context) (pid int64, epoch int16, err error)

	failures map[repairTarget]int // marker writes refused, by target
	warned   map[string]bool      // problems logged in this hang episode
}

// repairTarget is one open transaction on one partition.
type repairTarget struct {
	topic     string
	partition int32
	pid       int64
	epoch     int16
}

// maxRepairFailures is how often a marker write may be refused before the repair leaves the
// transaction to the doctor.
const maxRepairFailures = 5

func newTxnRepair(adm txnAdmin, current func(context.Context) (int64, int16, error)) *txnRepair {
	return &txnRepair{adm: adm, current: current, failures: map[repairTarget]int{}, warned: map[string]bool{}}
}

// episodeOver forgets the problems logged once nothing hangs any more.
func (r *txnRepair) episodeOver() {
	clear(r.warned)
	clear(r.failures)
}

// warnOnce logs msg at WARN once per hang episode (the monitor tries every enrich.lag_interval).
func (e *Enricher) warnOnce(ctx context.Context, r *txnRepair, msg string, attrs ...any) {
	if ctx.Err() != nil || r.warned[msg] {
		return
	}
	r.warned[msg] = true
	e.log.Warn(msg, attrs...)
}

// repairTopics are the topics the enricher's transactions write: the output topics, the state
// topic and __consumer_offsets (the group's partition of it).
func (e *Enricher) repairTopics() []string {
	t := e.deps.Topics
	topics := []string{t.Enriched, t.DLQ, kafka.ConsumerOffsetsTopic}
	if e.store != nil {
		topics = append(topics, t.StateTopic())
	}
	return topics
}

// describeOpen returns the open transactions on the partitions the enricher's transactions
// write, one topic at a time: a topic the enricher may not describe (DescribeProducers needs
// READ on it, __consumer_offsets included) is logged once and left out.
func (e *Enricher) describeOpen(ctx context.Context, r *txnRepair) []kadm.DescribedProducer {
	var open []kadm.DescribedProducer
	for _, topic := range e.repairTopics() {
		// One listing per topic: kadm fails a whole listing when one topic is not authorised.
		details, err := r.adm.ListTopics(ctx, topic)
		if errors.Is(err, kerr.TopicAuthorizationFailed) {
			e.warnOnce(ctx, r, "repairing hanging transactions: the enricher may not describe "+topic+
				" (its principal needs DESCRIBE and READ on it); its transactions are left to `idnow-connector doctor`", slog.Any("err", err))
			continue
		}
		if err != nil {
			e.warnOnce(ctx, r, "repairing hanging transactions: cannot list "+topic+"; trying again at the next refresh", slog.Any("err", err))
			continue
		}
		d, ok := details[topic]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			continue // a topic that does not exist holds no transaction
		}
		set := kadm.TopicsSet{}
		if topic == kafka.ConsumerOffsetsTopic {
			set.Add(topic, kafka.GroupOffsetsPartition(e.cfg.Group, len(d.Partitions)))
		} else {
			for p := range d.Partitions {
				set.Add(topic, p)
			}
		}
		described, err := r.adm.DescribeProducers(ctx, set)
		if err != nil {
			if _, partial := errors.AsType[*kadm.ShardErrors](err); !partial {
				e.warnOnce(ctx, r, "repairing hanging transactions: cannot describe the producers of "+topic+
					" (the enricher's principal needs READ on it); its transactions are left to `idnow-connector doctor`", slog.Any("err", err))
				continue
			}
		}
		txns, _ := kafka.OpenTransactions(described) // a partition not described is looked at next time
		open = append(open, txns...)
	}
	return open
}

// repairHanging writes the markers the coordinator skipped for the enricher's own ended
// transactions still open on its partitions, the last write to the partition longer than
// enrich.transaction_timeout ago, with the outcome the enricher decided. It returns how many
// partitions it repaired; failures are logged once per hang episode and tried again at the next
// refresh, a refused marker at most maxRepairFailures times.
func (e *Enricher) repairHanging(ctx context.Context, r *txnRepair, now time.Time) int {
	curPID, curEpoch, err := r.current(ctx)
	if err != nil {
		return 0 // no producer now (being re-created): the next refresh tries again
	}
	var targets []repairTarget
	var ends []kafka.TxnEnd
	for _, p := range e.describeOpen(ctx, r) {
		if now.Sub(time.UnixMilli(p.LastTimestamp)) <= e.cfg.TransactionTimeout {
			continue // may still be ending
		}
		if p.ProducerID == curPID && p.ProducerEpoch >= curEpoch {
			continue // the transaction in progress (or the coordinator's own timeout abort)
		}
		commit, known := e.outcomes.lookup(p.ProducerID, p.ProducerEpoch)
		rt := repairTarget{p.Topic, p.Partition, p.ProducerID, p.ProducerEpoch}
		if !known || r.failures[rt] >= maxRepairFailures {
			continue // not one the enricher ended, its outcome uncertain, or given up: the doctor's
		}
		// The marker carries the epoch after the transaction's, as the coordinator writes it
		// under transaction version 2 (a marker at the batches' own epoch is refused there); a
		// leader checking the older way accepts any epoch not below the batches'.
		markerEpoch := p.ProducerEpoch
		if markerEpoch < math.MaxInt16 {
			markerEpoch++
		}
		targets = append(targets, rt)
		ends = append(ends, kafka.TxnEnd{Topic: p.Topic, Partition: p.Partition, ProducerID: p.ProducerID,
			ProducerEpoch: markerEpoch, CoordinatorEpoch: p.CoordinatorEpoch, Commit: commit})
	}
	if len(ends) == 0 {
		return 0
	}
	results, reqErr := kafka.WriteTxnEnds(ctx, r.adm, ends)
	if reqErr != nil {
		e.warnOnce(ctx, r, "repairing hanging transactions: writing the markers failed (the enricher's principal needs ClusterAction on the cluster); trying again at the next refresh", slog.Any("err", reqErr))
	}
	repaired := 0
	for i, rt := range targets {
		marker := "abort"
		if ends[i].Commit {
			marker = "commit"
		}
		attrs := []any{slog.String("topic", rt.topic), slog.Int("partition", int(rt.partition)),
			slog.Int64("producer_id", rt.pid), slog.Int("producer_epoch", int(rt.epoch)), slog.String("marker", marker)}
		switch err := results[i]; {
		case err == nil:
			repaired++
			e.m.repaired.WithLabelValues(marker).Inc()
			e.log.Warn("repaired a hanging transaction: the coordinator had completed it without this partition (no leader while it wrote the markers); wrote the "+marker+" marker the enricher decided", attrs...)
		case reqErr != nil && errors.Is(err, reqErr):
			// The request failed: logged above, tried again at the next refresh.
		default:
			r.failures[rt]++
			if r.failures[rt] == maxRepairFailures {
				e.log.Error("repairing a hanging transaction: the partition's leader refused the marker "+strconv.Itoa(maxRepairFailures)+
					" times; left to `idnow-connector doctor` (docs/operations.md, Hanging transactions)", append(attrs, slog.Any("err", err))...)
			}
		}
	}
	return repaired
}
