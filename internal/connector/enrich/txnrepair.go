package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
// The enricher knows what it decided: it records the outcome of every transaction it ended by
// producer id and epoch, and when the monitor sees a hanging transaction it writes the markers
// that were skipped, with that outcome, so the transaction ends on every partition as it ended
// on the others. Only ended transactions are repaired (an epoch before the producer's current
// one), and only under transaction version 2, where an id and epoch name one transaction
// (recordOutcome). Any other hanging transaction is reported for `idnow-connector doctor`.

// maxTxnOutcomes bounds the outcomes kept: at the default commit interval of 100 ms about seven
// minutes of transactions, far past the transaction timeout a repair waits for.
const maxTxnOutcomes = 4096

type txnKey struct {
	pid   int64
	epoch int16
}

type txnOutcome uint8

const (
	outcomeCommit txnOutcome = iota + 1
	outcomeAbort
	outcomeMixed // both outcomes recorded under one id and epoch: unknown, never repaired
)

// txnOutcomes remembers how the enricher's transactions ended, by producer id and epoch.
type txnOutcomes struct {
	mu    sync.Mutex
	m     map[txnKey]txnOutcome
	order []txnKey // oldest first, for eviction
}

// record notes that the transaction of pid and epoch ended with a commit (or an abort).
func (o *txnOutcomes) record(pid int64, epoch int16, commit bool) {
	out := outcomeAbort
	if commit {
		out = outcomeCommit
	}
	k := txnKey{pid, epoch}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[txnKey]txnOutcome{}
	}
	prev, ok := o.m[k]
	switch {
	case !ok:
		o.m[k] = out
		o.order = append(o.order, k)
		if len(o.order) > maxTxnOutcomes {
			delete(o.m, o.order[0])
			o.order = slices.Delete(o.order, 0, 1)
		}
	case prev != out:
		o.m[k] = outcomeMixed
	}
}

// lookup returns whether the transaction of pid and epoch was committed, and whether that is
// known.
func (o *txnOutcomes) lookup(pid int64, epoch int16) (commit, known bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.m[txnKey{pid, epoch}] {
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

// recordOutcome records the outcome of the transaction of pid and epoch (the producer before
// End) when End ended one. Under transaction version 2 (KIP-890, Kafka 4.0's default) every
// EndTxn bumps the epoch, so one id and epoch name exactly one transaction, and an epoch that did
// not move means End had nothing to end. Older transaction versions keep the epoch, many
// transactions share it and no outcome is recorded: their hanging transactions are left to the
// doctor.
func (e *Enricher) recordOutcome(ctx context.Context, cl *kgo.Client, pid int64, epoch int16, committed bool) {
	if after, afterEpoch, ok := producerOf(ctx, cl); ok && (after != pid || afterEpoch != epoch) {
		e.outcomes.record(pid, epoch, committed)
	}
}

// txnAdmin is what the repair asks of Kafka; *kadm.Client has it.
type txnAdmin interface {
	ListTopics(ctx context.Context, topics ...string) (kadm.TopicDetails, error)
	DescribeProducers(ctx context.Context, s kadm.TopicsSet) (kadm.DescribedProducersTopics, error)
	WriteTxnMarkers(ctx context.Context, markers ...kadm.TxnMarkers) (kadm.TxnMarkersResponses, error)
}

// txnRepair is the repair's view of one Kafka client: its admin requests and its producer.
type txnRepair struct {
	adm     txnAdmin
	current func(context.Context) (pid int64, epoch int16, err error) // the client's producer now
}

// repairPartitions are the partitions the enricher's transactions write: the output topics, the
// state topic and the __consumer_offsets partition of the group.
func (e *Enricher) repairPartitions(ctx context.Context, adm txnAdmin) (kadm.TopicsSet, error) {
	t := e.deps.Topics
	topics := []string{t.Enriched, t.DLQ, kafka.ConsumerOffsetsTopic}
	if e.store != nil {
		topics = append(topics, t.StateTopic())
	}
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list topics %v: %w", topics, err)
	}
	set := kadm.TopicsSet{}
	for _, d := range details {
		if d.Err != nil {
			continue // a topic that does not exist holds no transaction
		}
		if d.Topic == kafka.ConsumerOffsetsTopic {
			if n := len(d.Partitions); n > 0 {
				set.Add(d.Topic, kafka.GroupOffsetsPartition(e.cfg.Group, n))
			}
			continue
		}
		for p := range d.Partitions {
			set.Add(d.Topic, p)
		}
	}
	return set, nil
}

// repairHanging writes the markers the coordinator skipped for the enricher's own ended
// transactions still open on its partitions longer than enrich.transaction_timeout, with the
// outcome the enricher decided. It returns how many partitions it repaired; failures are
// logged and tried again at the next refresh.
func (e *Enricher) repairHanging(ctx context.Context, r txnRepair, now time.Time) int {
	curPID, curEpoch, err := r.current(ctx)
	if err != nil {
		return 0 // no producer now (being re-created): the next refresh tries again
	}
	set, err := e.repairPartitions(ctx, r.adm)
	if err != nil {
		e.repairFailed(ctx, err)
		return 0
	}
	described, err := r.adm.DescribeProducers(ctx, set)
	if err != nil {
		if _, partial := errors.AsType[*kadm.ShardErrors](err); !partial {
			e.repairFailed(ctx, fmt.Errorf("describe producers: %w", err))
			return 0
		}
	}
	type target struct {
		p      kadm.DescribedProducer
		commit bool
	}
	var targets []target
	var markers []kadm.TxnMarkers
	described.EachPartition(func(dp kadm.DescribedProducersPartition) {
		if dp.Err != nil {
			return
		}
		for _, p := range dp.ActiveProducers.Sorted() {
			if p.CurrentTxnStartOffset < 0 || now.Sub(time.UnixMilli(p.LastTimestamp)) <= e.cfg.TransactionTimeout {
				continue // no open transaction, or one that may still be ending
			}
			if p.ProducerID == curPID && p.ProducerEpoch >= curEpoch {
				continue // the transaction in progress (or the coordinator's own timeout abort)
			}
			commit, known := e.outcomes.lookup(p.ProducerID, p.ProducerEpoch)
			if !known {
				continue // not one the enricher ended, or its outcome is not known: the doctor's
			}
			targets = append(targets, target{p, commit})
			markers = append(markers, kadm.TxnMarkers{
				ProducerID: p.ProducerID, ProducerEpoch: p.ProducerEpoch, Commit: commit,
				CoordinatorEpoch: max(p.CoordinatorEpoch, 0), Topics: kadm.TopicsSet{p.Topic: {p.Partition: {}}},
			})
		}
	})
	if len(markers) == 0 {
		return 0
	}
	resp, err := r.adm.WriteTxnMarkers(ctx, markers...)
	if err != nil {
		e.repairFailed(ctx, fmt.Errorf("write transaction markers: %w", err))
	}
	repaired := 0
	for _, tg := range targets {
		p := tg.p
		res, ok := resp[p.ProducerID].Topics[p.Topic].Partitions[p.Partition]
		marker := map[bool]string{true: "commit", false: "abort"}[tg.commit]
		attrs := []any{slog.String("topic", p.Topic), slog.Int("partition", int(p.Partition)),
			slog.Int64("producer_id", p.ProducerID), slog.Int("producer_epoch", int(p.ProducerEpoch)),
			slog.Int64("start_offset", p.CurrentTxnStartOffset), slog.String("marker", marker)}
		switch {
		case !ok && err != nil:
			continue // logged above
		case !ok:
			e.log.Warn("repairing a hanging transaction: the partition's leader did not answer; trying again at the next refresh", attrs...)
		case res.Err != nil:
			e.log.Warn("repairing a hanging transaction failed; trying again at the next refresh", append(attrs, slog.Any("err", res.Err))...)
		default:
			repaired++
			e.m.repaired.WithLabelValues(marker).Inc()
			e.log.Warn("repaired a hanging transaction: the coordinator had completed it without this partition (no leader while it wrote the markers); wrote the "+marker+" marker the enricher decided", attrs...)
		}
	}
	return repaired
}

func (e *Enricher) repairFailed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	e.log.Warn("cannot check the hanging transaction for one of the enricher's own; trying again at the next refresh", slog.Any("err", err))
}
