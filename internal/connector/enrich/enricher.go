package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
)

// Deps are what the enricher needs from the composition root.
type Deps struct {
	// KafkaOpts are the shared client options (internal/kafka.ClientOpts(cfg.Kafka, "enricher",
	// reg)); the enricher adds the group, transaction and consume options.
	KafkaOpts []kgo.Opt
	// Topics names the input, output and dead-letter topics; missing ones are created when
	// Topics.Create is set.
	Topics kafka.TopicsConfig
	// API reads sessions and data blocks; *idnow.Client satisfies it.
	API SessionAPI
	// Events decodes SessionEvent records (both encodings); a *serde.Codec for the SessionEvent schema.
	Events Decoder
	// Enriched encodes EnrichedSession records; a *serde.Codec for the EnrichedSession schema.
	Enriched Encoder
	// Registry receives the idnow_connector_enrich_* metrics; one registry per enricher.
	Registry prometheus.Registerer
	// Log receives operational logs, never record contents; nil discards them.
	Log *slog.Logger
	// Version is the connector version written into EnrichmentInfo.
	Version string
	// TokenCheck reports whether the IDnow token endpoint answers (idnow.Client.Token); nil
	// skips that part of readiness.
	TokenCheck func(ctx context.Context) error
	// State encodes and decodes the SessionState records of Topics.State. When set, the
	// enricher keeps the pipeline state: it restores the partitions it owns, skips event ids
	// already enriched, flags out-of-order events and writes each session's state with its
	// EnrichedSession (in the same transaction under exactly_once). nil runs without it.
	State StateCodec
	// Privacy applies privacy.mode to every EnrichedSession (internal/privacy); nil writes
	// them in plain. Its data keys are produced to Topics.Keys in the batch's transaction.
	Privacy *privacy.Protector
	// StateOpts are client options for the short-lived clients that restore state partitions:
	// KafkaOpts without metric hooks (kprom registers its series once per registry, and a
	// restore client lives next to the group client). Required with State.
	StateOpts []kgo.Opt
	// Tracer, when set, continues each event's trace from its record headers (Trace) and
	// adds a span per event for the produce and commit of its batch; nil: no spans.
	Tracer trace.TracerProvider
}

// Enricher consumes SessionEvents and writes EnrichedSessions (see the package documentation).
type Enricher struct {
	cfg     Config
	deps    Deps
	txnID   string
	handler HandlerFunc
	m       *metrics
	log     *slog.Logger
	tracer  trace.Tracer // nil when tracing is off

	running atomic.Bool
	joined  atomic.Bool

	mu  sync.Mutex
	cur *flow // the records in flight; nil while no client consumes

	// deniedTopic is the output topic refusing writes (TOPIC_AUTHORIZATION_FAILED), "" when
	// none; only the poll loop touches it (outputDenied).
	deniedTopic string

	limits   limits        // output record size limits, read at each client start
	cache    resultCache   // results of the uncommitted batch, reused when it comes again
	progress *progress     // lag, stall and hanging-transaction state
	outcomes txnOutcomes   // how the transactions this enricher ended ended, to repair skipped markers
	store    *state.Store  // restored pipeline state of the owned partitions; nil without Deps.State
	sm       *stateMetrics // nil without Deps.State

	// offsetSource builds what the progress monitor reads; nil = kadm on the enricher's client.
	// Tests replace it to present states kfake cannot produce.
	offsetSource func(*kgo.Client) OffsetSource
}

// errRebalance is the cause of a batch abandoned because the group took partitions away.
var errRebalance = errors.New("consumer group rebalanced: partitions revoked or lost")

// New validates cfg, registers the metrics and builds the handler chain. It does no I/O.
func New(cfg Config, deps Deps) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enrich config: %w", err)
	}
	if deps.API == nil || deps.Events == nil || deps.Enriched == nil || deps.Registry == nil {
		return nil, errors.New("enrich: Deps.API, Events, Enriched and Registry are all required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if err := deps.Topics.Validate(); err != nil {
		return nil, fmt.Errorf("enrich: %w", err)
	}
	deps.Topics.State = deps.Topics.StateTopic()
	instance, err := cfg.instanceID()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("enrich metrics: %w", err)
	}
	e := &Enricher{cfg: cfg, deps: deps, txnID: cfg.TransactionalID + "-" + instance, m: m,
		log: deps.Log.With(slog.String("component", "enricher")), progress: newProgress()}
	if deps.State != nil {
		if len(deps.StateOpts) == 0 {
			return nil, errors.New("enrich: Deps.StateOpts are required with Deps.State")
		}
		e.store = state.NewStore()
		if e.sm, err = newStateMetrics(deps.Registry, e.store); err != nil {
			return nil, fmt.Errorf("enrich state metrics: %w", err)
		}
	}
	core := NewHandler(HandlerDeps{
		API: deps.API, Events: deps.Events, Enriched: deps.Enriched, Topic: deps.Topics.Enriched,
		Policy: cfg.DataBlocks, Version: deps.Version, Log: e.log, Privacy: deps.Privacy,
		MaxRecordBytes: func() int { return e.limits.get(deps.Topics.Enriched) },
	})
	mw := []Middleware{Metrics(m), DLQ(deps.Topics.DLQ, e.log), Retry(cfg.Retry, m, e.log)}
	if deps.Tracer != nil {
		e.tracer = deps.Tracer.Tracer(instrumentationName)
		mw = append([]Middleware{Trace(deps.Tracer)}, mw...)
	}
	e.handler = Chain(core, mw...)
	return e, nil
}

// TransactionalID returns the transactional id used under exactly_once.
func (e *Enricher) TransactionalID() string { return e.txnID }

// Ready returns nil once the consumer group has been joined and the IDnow token endpoint
// answered, and while the enricher is neither stalled nor blocked by a hanging transaction;
// otherwise it says what is wrong.
func (e *Enricher) Ready(ctx context.Context) error {
	if err := e.progress.problem(); err != nil {
		return err
	}
	if !e.joined.Load() {
		return fmt.Errorf("enricher has not joined consumer group %q yet", e.cfg.Group)
	}
	if e.deps.TokenCheck != nil {
		if err := e.deps.TokenCheck(ctx); err != nil {
			return fmt.Errorf("enricher: IDnow token endpoint: %w", err)
		}
	}
	return nil
}

// Run consumes until ctx ends, then finishes or aborts the open transaction, leaves the group
// and returns within enrich.shutdown_timeout. Kafka client and transaction failures re-create
// the client with backoff (the uncommitted batch is consumed again); Run returns early only on
// errors that retrying cannot fix (fenced by another member with the same transactional id,
// authorization, missing topics that may not be created).
func (e *Enricher) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("enrich: Run called twice")
	}
	// shutdownCtx lives on after ctx ends, for at most ShutdownTimeout, so the open transaction
	// can be ended and the group left after the stop signal.
	shutdownCtx, cancelShutdown := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelShutdown()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(e.cfg.ShutdownTimeout, cancelShutdown) })
	defer stop()

	wdCtx, stopWatchdog := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.watchdog(wdCtx) })
	defer wg.Wait()
	defer stopWatchdog()

	b := e.cfg.Retry.backoff().NewBackOff()
	e.log.Info("enricher starting", slog.String("group", e.cfg.Group), slog.String("delivery", e.cfg.Delivery),
		slog.String("transactional_id", e.txnID), slog.String("topic", e.deps.Topics.Sessions))
	for {
		progressed, err := e.runClient(ctx, shutdownCtx)
		if ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("enrich shutdown: %w", err)
			}
			e.log.Info("enricher stopped")
			return nil
		}
		if isFatal(err) {
			return fmt.Errorf("enrich: %w", err)
		}
		if progressed {
			b.Reset()
		}
		wait := b.NextBackOff()
		e.m.restarts.Inc()
		e.log.Error("enricher Kafka client failed; re-creating it, the uncommitted batch will be consumed again",
			slog.Duration("wait", wait), slog.Any("err", err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// isFatal reports errors that a new client would hit again at once.
func isFatal(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidTransactionTimeout) || errors.Is(err, kafka.ErrTopicMissing) ||
		errors.Is(err, errClientConfig) || errors.Is(err, state.ErrNotCoPartitioned)
}

// errClientConfig marks options the client refuses; no retry can fix them.
var errClientConfig = errors.New("invalid Kafka client options")

// runClient runs one client (one transactional producer and group member) until ctx ends or it
// fails. progressed reports whether at least one batch was committed.
func (e *Enricher) runClient(ctx, shutdownCtx context.Context) (progressed bool, err error) {
	e.joined.Store(false)
	// Whatever this client owned, it owns nothing once it is gone.
	defer e.forgetAssignment()
	opts := slices.Clone(e.deps.KafkaOpts)
	opts = append(opts,
		// franz-go sizes batches per topic by the limits resolveLimits reads before the first
		// produce, so it never builds a batch the broker refuses for its size.
		kgo.ProducerBatchMaxBytesFn(e.limits.batchBytes),
		kgo.ConsumerGroup(e.cfg.Group),
		kgo.ConsumeTopics(e.deps.Topics.Sessions),
		// A new group starts at the beginning: events written before the first enricher ran
		// are enriched too.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(int32(e.cfg.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(e.cfg.FetchMaxPartitionBytes)),
		kgo.SessionTimeout(e.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, e.cfg.SessionTimeout/3)),
		kgo.OnPartitionsAssigned(e.onAssigned),
		kgo.OnPartitionsRevoked(e.onRevoked),
		kgo.OnPartitionsLost(e.onLost),
	)
	if e.store != nil {
		opts = append(opts, kgo.RecordPartitioner(statePartitioner{topic: e.deps.Topics.State, def: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}))
	}
	if e.cfg.Delivery == DeliveryExactlyOnce {
		// Offsets are fetched with RequireStable (a partition with a pending transactional
		// commit answers "retry" instead of a stale offset): franz-go v1.22 always sets it for
		// group consumers, so the former kgo.RequireStableFetchOffsets option is gone from here.
		opts = append(opts, kgo.TransactionalID(e.txnID), kgo.TransactionTimeout(e.cfg.TransactionTimeout))
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return false, fmt.Errorf("%w: new transactional group session: %w", errClientConfig, err)
		}
		defer func() { err = errors.Join(err, e.closeClient(shutdownCtx, sess.Close)) }()
		if err := e.ensureTopics(ctx, sess.Client()); err != nil {
			return false, err
		}
		defer e.startMonitor(ctx, sess.Client())()
		return e.consume(ctx, shutdownCtx, sess.Client(), sess)
	}
	// Rebalances wait while polled records are being added to the flow (see consume), so a
	// revoke always finds the records of its partitions there. The wait includes restoring the
	// state of newly assigned partitions, which must stay within the group's rebalance timeout
	// (franz-go's default, 60 s; BENCHMARKS.md: about 3 s per million sessions).
	opts = append(opts, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return false, fmt.Errorf("%w: new group client: %w", errClientConfig, err)
	}
	defer func() { err = errors.Join(err, e.closeClient(shutdownCtx, cl.Close)) }()
	if err := e.ensureTopics(ctx, cl); err != nil {
		return false, err
	}
	defer e.startMonitor(ctx, cl)()
	return e.consume(ctx, shutdownCtx, cl, nil)
}

// startMonitor runs the progress monitor on cl until the returned function is called.
func (e *Enricher) startMonitor(ctx context.Context, cl *kgo.Client) (stop func()) {
	adm := kadm.NewClient(cl)
	var src OffsetSource = kadmOffsets{adm}
	if e.offsetSource != nil {
		src = e.offsetSource(cl)
	}
	var repair *txnRepair
	if e.cfg.Delivery == DeliveryExactlyOnce {
		repair = newTxnRepair(adm, cl.ProducerID)
	}
	mctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.monitor(mctx, src, repair) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// forgetAssignment clears what a closed client owned: its partitions and the polled records it
// will never commit. The last lag values stay until the next client's first refresh, so a
// client that keeps failing still shows its backlog to the watchdog; cached results stay for
// the next client, which most likely gets the same partitions and consumes the same batch again.
func (e *Enricher) forgetAssignment() {
	p := e.progress
	p.mu.Lock()
	clear(p.assigned)
	p.mu.Unlock()
	p.pending.Store(0)
	if e.store != nil {
		e.store.DropAll()
	}
}

// ensureTopics creates or checks the topics and reads the output limits before anything is
// produced.
func (e *Enricher) ensureTopics(ctx context.Context, cl *kgo.Client) error {
	t := e.deps.Topics
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, t, t.Sessions, t.Enriched, t.DLQ); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ensure topics: %w", err)
	}
	if e.store != nil {
		if err := state.EnsureTopic(ctx, adm, t); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ensure state topic: %w", err)
		}
	}
	e.resolveLimits(ctx, adm, t.Enriched, t.DLQ)
	return nil
}

// closeClient leaves the group and closes the client, giving up waiting when shutdownCtx ends
// (the close then finishes in the background).
func (e *Enricher) closeClient(shutdownCtx context.Context, closeFn func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	select {
	case <-done:
		return nil
	case <-shutdownCtx.Done():
		return fmt.Errorf("leaving consumer group %q did not finish within enrich.shutdown_timeout (%s)", e.cfg.Group, e.cfg.ShutdownTimeout)
	}
}

// commitDone records a committed batch: metrics, progress, and the cache entries it no longer
// needs.
func (e *Enricher) commitDone(recs []*kgo.Record, results []Result) {
	now := time.Now()
	e.cache.forget(recs)
	// Results of partitions that moved to another member and never came back: that member
	// enriched them.
	e.dropUnowned()
	e.progress.lastCommit.Store(now.UnixNano())
	e.m.committed(results, now)
	e.commitState(recs, results)
}

// poll fetches up to n records, waiting at most until pctx ends, and updates the consumption
// metrics. It returns an error only for fetch errors a new client would not fix by itself being
// retried internally.
func (e *Enricher) poll(ctx, pctx context.Context, cl *kgo.Client, n int) ([]*kgo.Record, error) {
	fs := cl.PollRecords(pctx, n)
	if ctx.Err() != nil {
		return nil, nil
	}
	if fs.IsClientClosed() {
		return nil, errors.New("poll: client closed")
	}
	var fatal error
	fs.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if isFatal(err) {
			fatal = fmt.Errorf("fetch %s/%d: %w", topic, partition, err)
			return
		}
		e.log.Warn("fetch error; the client retries", slog.String("topic", topic), slog.Int("partition", int(partition)), slog.Any("err", err))
	})
	if fatal != nil {
		return nil, fatal
	}
	recs := fs.Records()
	e.m.consumed.Add(float64(len(recs)))
	return recs, nil
}

// handle returns the cached result of r, or runs the handler chain and caches its result.
func (e *Enricher) handle(ctx context.Context, r *kgo.Record, outOfOrder bool) (Result, error) {
	if c, ok := e.cache.get(r); ok {
		return c.res, nil
	}
	res, err := e.handler(ctx, &Message{Record: r, OutOfOrder: outOfOrder})
	if err != nil {
		return Result{}, err
	}
	e.cache.put(r, cachedResult{res: res})
	// Progress for the stall watchdog, also while the batch is far from its commit (rate
	// limit, Retry-After); a result taken from the cache is not progress.
	e.progress.lastHandled.Store(time.Now().UnixNano())
	return res, nil
}

// produceTxn produces the batch inside the open transaction. When a record is refused for good
// (too large, invalid, policy), the transaction cannot commit any more:
// the record's result is replaced by a DLQ record, in the cache, and an error aborts the
// transaction; the batch comes again and commits with the DLQ record, without asking the API
// again. Transient errors abort too, and the batch is retried as it is.
func (e *Enricher) produceTxn(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, results []Result) error {
	idxs := make([]int, len(results))
	for i := range idxs {
		idxs[i] = i
	}
	failed, transient, err := e.produceRound(ctx, cl, recs, results, idxs)
	if err != nil {
		return err
	}
	if len(failed) == 0 {
		return nil
	}
	if transient != nil {
		return fmt.Errorf("produce: %d of the batch's records failed: %w", len(failed), transient)
	}
	return fmt.Errorf("produce: %d records refused for good by the broker; they are dead-lettered when the batch comes again", len(failed))
}

// produceUntilAcked produces the results and re-produces records whose produce failed with a
// retryable error, with backoff, until all are acknowledged: a record is never skipped. A record
// refused for good is replaced by its DLQ record, which is produced instead.
func (e *Enricher) produceUntilAcked(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, results []Result) error {
	pending := make([]int, len(results))
	for i := range pending {
		pending[i] = i
	}
	b := e.cfg.Retry.backoff().NewBackOff()
	for len(pending) > 0 {
		failed, transient, err := e.produceRound(ctx, cl, recs, results, pending)
		if err != nil {
			return err
		}
		pending = failed
		if transient != nil {
			wait := b.NextBackOff()
			e.log.Warn("produce failed with a retryable error; producing again", slog.Int("records", len(pending)), slog.Duration("wait", wait), slog.Any("err", transient))
			if !sleepCtx(ctx, wait) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// produceRound produces the records of results[idxs] (fresh copies), in their order, and waits
// for every outcome. It returns the indexes that must be produced again: refused for good (their result
// now being the DLQ record, also in the cache) or failed transiently (transient is the first
// such error). Records the broker refused for good together with others (too large, invalid,
// policy) are produced one by one next time, to tell a record refused by itself from the
// healthy records that shared its batch (or a batch too large: the topic's limit lowered since
// start-up). err is set when even a bare DLQ record is refused, or the
// context ended.
func (e *Enricher) produceRound(ctx context.Context, cl *kgo.Client, recs []*kgo.Record, results []Result, idxs []int) (failed []int, transient, err error) {
	errsOf := map[int]error{}
	// An output topic refusing writes for lack of an ACL; see outputDenied.
	var denied string
	var deniedErr error
	note := func(i int, r *kgo.Record, perr error) {
		if errsOf[i] == nil {
			errsOf[i] = perr
		}
		if errors.Is(perr, kerr.TopicAuthorizationFailed) {
			denied, deniedErr = r.Topic, perr
		}
	}
	// refusedWith is, per result index produced together with others, how many of them the
	// broker refused with the same per-record class in that call. It answers too-large,
	// INVALID_RECORD, CORRUPT_MESSAGE and POLICY_VIOLATION for a whole partition batch, so the
	// healthy records sharing it get the same answer.
	refusedWith := map[int]int{}
	var together []*kgo.Record
	// The result index of each record: ProduceSync reports outcomes in completion order, not
	// in the order the records were given.
	togetherIdx := map[*kgo.Record]int{}
	produceTogether := func() {
		if len(together) == 0 {
			return
		}
		byClass := map[string]map[int]bool{}
		for _, r := range cl.ProduceSync(ctx, together...) {
			if r.Err == nil {
				continue
			}
			i := togetherIdx[r.Record]
			note(i, r.Record, r.Err)
			if class := produceRejection(r.Err); class != "" {
				if byClass[class] == nil {
					byClass[class] = map[int]bool{}
				}
				byClass[class][i] = true
			}
		}
		for _, set := range byClass {
			for i := range set {
				refusedWith[i] = len(set)
			}
		}
		together = together[:0]
		clear(togetherIdx)
	}
	for _, i := range idxs {
		c, _ := e.cache.get(recs[i])
		out := freshRecords(results[i])
		if !c.alone {
			for _, r := range out {
				together = append(together, r)
				togetherIdx[r] = i
			}
			continue
		}
		// The records before this one are written first: a session's records keep their log
		// order in topics.enriched, and its state records theirs in the compacted state topic.
		produceTogether()
		// One at a time: each record is its own batch.
		for _, r := range out {
			if perr := cl.ProduceSync(ctx, r).FirstErr(); perr != nil {
				note(i, r, perr)
			}
		}
	}
	produceTogether()
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	e.outputDenied(denied, deniedErr)
	for _, i := range idxs {
		perr := errsOf[i]
		if perr == nil {
			continue
		}
		failed = append(failed, i)
		class := produceRejection(perr)
		switch {
		case class == "":
			if transient == nil {
				transient = perr
			}
		case refusedWith[i] > 1:
			// Several records refused with the same class at once: a batch was, not
			// necessarily each of them. Produce each alone next time; only a record refused
			// on its own is dead-lettered.
			e.cache.put(recs[i], cachedResult{res: results[i], alone: true})
			if transient == nil {
				transient = fmt.Errorf("%d records refused together (%s); producing each alone: %w", refusedWith[i], class, perr)
			}
		default:
			res, derr := e.deadLetter(recs[i], results[i], class, perr)
			if derr != nil {
				return nil, nil, derr
			}
			results[i] = res
			e.cache.put(recs[i], cachedResult{res: res, alone: true})
		}
	}
	return failed, transient, nil
}

// deadLetter turns a result the broker refused for good into the event's DLQ record. A refused
// DLQ record is replaced by one without the original value (headers say why); when even that
// is refused, nothing more can be done for the record and the error is returned.
func (e *Enricher) deadLetter(src *kgo.Record, prev Result, class string, perr error) (Result, error) {
	topic := e.deps.Topics.DLQ
	produced := topic
	if len(prev.Records) > 0 {
		produced = prev.Records[0].Topic
	}
	cause := rejectionError(produced, perr)
	if prev.DLQClass != "" {
		if len(prev.Records) > 0 && prev.Records[0].Value == nil {
			return Result{}, fmt.Errorf("the dead-letter record of %s/%d@%d was refused even without its value: %w", src.Topic, src.Partition, src.Offset, perr)
		}
		rec := dlqRecord(topic, &Message{Record: src, Attempts: 1}, prev.DLQClass, fmt.Errorf("%s; the original value was dropped from this DLQ record: %w", prev.DLQClass, cause))
		rec.Value = nil
		e.log.Warn("dead-letter record refused by the broker; writing it without the original value",
			slog.String("topic", src.Topic), slog.Int("partition", int(src.Partition)), slog.Int64("offset", src.Offset), slog.Any("err", perr))
		return Result{Records: []*kgo.Record{rec}, DLQClass: prev.DLQClass, span: prev.span}, nil
	}
	e.log.Warn("output record refused for good by the broker; sending the event to the dead-letter topic",
		slog.String("class", class), slog.String("dlq_topic", topic), slog.String("topic", src.Topic),
		slog.Int("partition", int(src.Partition)), slog.Int64("offset", src.Offset), slog.Any("err", perr))
	return Result{Records: []*kgo.Record{dlqRecord(topic, &Message{Record: src, Attempts: 1}, class, cause)}, DLQClass: class, span: prev.span}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (e *Enricher) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	e.joined.Store(true)
	ps := assigned[e.deps.Topics.Sessions]
	e.progress.assign(ps)
	if e.store != nil && len(ps) > 0 {
		// A newly assigned partition was not owned in the previous session, so state held for
		// it is stale: a GroupTransactSession passes only the first revoke or loss to
		// onRevoked/onLost until its next End, and the store may have missed the drop.
		e.store.Drop(ps...)
	}
	e.dropUnowned()
	e.log.Info("partitions assigned", slog.Any("partitions", assigned[e.deps.Topics.Sessions]))
}

func (e *Enricher) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	e.rebalanced("revoked", revoked)
}

func (e *Enricher) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	e.rebalanced("lost", lost)
}

// rebalanced voids the work in flight that can no longer commit (under exactly_once all of it:
// the transaction would be aborted anyway; under at_least_once that of the partitions taken
// away) and forgets the lag of partitions this member no longer owns. It must not block: franz-go calls it while the
// rebalance waits.
func (e *Enricher) rebalanced(how string, parts map[string][]int32) {
	ps := parts[e.deps.Topics.Sessions]
	if len(ps) == 0 {
		return
	}
	e.log.Info("partitions "+how, slog.Any("partitions", ps))
	e.progress.unassign(ps, e.m.dropLag)
	if e.store != nil {
		// The next owner restores these partitions from the topic, including what this
		// member committed last.
		e.store.Drop(ps...)
	}
	// The cache is kept: most rebalances hand the same partitions back, and their batch then
	// comes again without asking the API. The next assignment or commit drops the entries of
	// partitions not handed back (dropUnowned).
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur == nil {
		return
	}
	if e.cfg.Delivery == DeliveryExactlyOnce {
		// The session aborts the open or next transaction and rewinds every partition to its
		// committed offset: all work in flight is void.
		e.cur.cancel(errRebalance)
		return
	}
	// at_least_once keeps consuming the other partitions from where it is; the records of
	// these are abandoned, and whoever owns them now consumes them again.
	e.cur.drop(ps)
	e.progress.pending.Store(int64(e.cur.uncommitted()))
}

// StopTimeout is how long Run may take to return after its context ends: enrich.shutdown_timeout
// to end the open transaction and leave the group, plus a margin for closing the client.
func (e *Enricher) StopTimeout() time.Duration { return e.cfg.StopTimeout() }
