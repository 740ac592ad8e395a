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

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
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
	// Log receives operational logs; never record contents.
	Log *slog.Logger
	// Version is the connector version written into EnrichmentInfo.
	Version string
	// TokenCheck reports whether the IDnow token endpoint answers (idnow.Client.Token); nil
	// skips that part of readiness.
	TokenCheck func(ctx context.Context) error
}

// Enricher consumes SessionEvents and writes EnrichedSessions (see the package documentation).
type Enricher struct {
	cfg     Config
	deps    Deps
	txnID   string
	handler HandlerFunc
	m       *metrics
	log     *slog.Logger

	running atomic.Bool
	joined  atomic.Bool

	mu          sync.Mutex
	batchCancel context.CancelCauseFunc // cancels the batch being enriched; nil between batches
}

// errRebalance is the cause of a batch abandoned because the group took partitions away.
var errRebalance = errors.New("consumer group rebalanced: partitions revoked or lost")

// New validates cfg, registers the metrics and builds the handler chain. It does no I/O.
func New(cfg Config, deps Deps) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("enrich config: %w", err)
	}
	if deps.API == nil || deps.Events == nil || deps.Enriched == nil || deps.Registry == nil || deps.Log == nil {
		return nil, errors.New("enrich: Deps.API, Events, Enriched, Registry and Log are all required")
	}
	if err := deps.Topics.Validate(); err != nil {
		return nil, fmt.Errorf("enrich: %w", err)
	}
	instance, err := cfg.instanceID()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("enrich metrics: %w", err)
	}
	e := &Enricher{cfg: cfg, deps: deps, txnID: cfg.TransactionalID + "-" + instance, m: m,
		log: deps.Log.With(slog.String("component", "enricher"))}
	core := NewHandler(HandlerDeps{
		API: deps.API, Events: deps.Events, Enriched: deps.Enriched, Topic: deps.Topics.Enriched,
		Policy: cfg.DataBlocks, Version: deps.Version,
	})
	e.handler = Chain(core, Metrics(m), DLQ(deps.Topics.DLQ, e.log), Retry(cfg.Retry, m, e.log))
	return e, nil
}

// TransactionalID returns the transactional id used under exactly_once.
func (e *Enricher) TransactionalID() string { return e.txnID }

// Ready returns nil once the consumer group has been joined and the IDnow token endpoint
// answered; otherwise it says which is missing.
func (e *Enricher) Ready(ctx context.Context) error {
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

	b := &backoff.ExponentialBackOff{InitialInterval: e.cfg.Retry.InitialBackoff, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: e.cfg.Retry.MaxBackoff}
	b.Reset()
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
		errors.Is(err, errClientConfig)
}

// errClientConfig marks options the client refuses; no retry can fix them.
var errClientConfig = errors.New("invalid Kafka client options")

// runClient runs one client (one transactional producer and group member) until ctx ends or it
// fails. progressed reports whether at least one batch was committed.
func (e *Enricher) runClient(ctx, shutdownCtx context.Context) (progressed bool, err error) {
	e.joined.Store(false)
	opts := slices.Clone(e.deps.KafkaOpts)
	opts = append(opts,
		kgo.ConsumerGroup(e.cfg.Group),
		kgo.ConsumeTopics(e.deps.Topics.Sessions),
		// A new group starts at the beginning: events written before the first enricher ran
		// are enriched too.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(e.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, e.cfg.SessionTimeout/3)),
		kgo.OnPartitionsAssigned(e.onAssigned),
		kgo.OnPartitionsRevoked(e.onRevoked),
		kgo.OnPartitionsLost(e.onLost),
	)
	if e.cfg.Delivery == DeliveryExactlyOnce {
		opts = append(opts, kgo.TransactionalID(e.txnID), kgo.TransactionTimeout(e.cfg.TransactionTimeout), kgo.RequireStableFetchOffsets())
		sess, err := kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return false, fmt.Errorf("%w: new transactional group session: %w", errClientConfig, err)
		}
		defer func() { err = errors.Join(err, e.closeClient(shutdownCtx, sess.Close)) }()
		if err := e.ensureTopics(ctx, sess.Client()); err != nil {
			return false, err
		}
		return e.loopExactlyOnce(ctx, shutdownCtx, sess)
	}
	opts = append(opts, kgo.DisableAutoCommit())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return false, fmt.Errorf("%w: new group client: %w", errClientConfig, err)
	}
	defer func() { err = errors.Join(err, e.closeClient(shutdownCtx, cl.Close)) }()
	if err := e.ensureTopics(ctx, cl); err != nil {
		return false, err
	}
	return e.loopAtLeastOnce(ctx, cl)
}

func (e *Enricher) ensureTopics(ctx context.Context, cl *kgo.Client) error {
	t := e.deps.Topics
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(cl), t, t.Sessions, t.Enriched, t.DLQ); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ensure topics: %w", err)
	}
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

// loopExactlyOnce runs batches as transactions: begin, enrich everything, produce everything,
// End with commit. End aborts instead when the group rebalanced meanwhile, and rewinds to the
// committed offsets, so the batch is consumed again and the aborted output stays invisible.
func (e *Enricher) loopExactlyOnce(ctx, shutdownCtx context.Context, sess *kgo.GroupTransactSession) (progressed bool, err error) {
	for {
		recs, err := e.poll(ctx, sess.PollRecords)
		if err != nil || ctx.Err() != nil {
			return progressed, err
		}
		if len(recs) == 0 {
			continue
		}
		if err := sess.Begin(); err != nil {
			return progressed, fmt.Errorf("begin transaction: %w", err)
		}
		results, perr := e.processBatch(ctx, recs, true)
		if perr == nil {
			perr = produceAll(ctx, sess.Client(), results)
		}
		try := kgo.TryCommit
		if perr != nil {
			try = kgo.TryAbort
		}
		committed, err := sess.End(shutdownCtx, try)
		if err != nil {
			e.m.aborted()
			return progressed, fmt.Errorf("end transaction: %w", err)
		}
		if !committed {
			e.m.aborted()
			reason := "the consumer group rebalanced before the commit"
			if perr != nil {
				reason = perr.Error()
			}
			e.log.Info("transaction aborted; the batch will be consumed again", slog.Int("records", len(recs)), slog.String("reason", reason))
			if perr != nil && ctx.Err() == nil && !errors.Is(perr, errRebalance) {
				// A produce failure: give the brokers a moment before the batch comes again.
				if !sleepCtx(ctx, e.cfg.Retry.InitialBackoff) {
					return progressed, nil
				}
			}
			continue
		}
		progressed = true
		e.m.committed(results, time.Now())
	}
}

// loopAtLeastOnce produces each batch, waits for every acknowledgement and only then commits
// the batch's offsets. A batch left unfinished at shutdown is not committed and is consumed
// again by the next owner.
func (e *Enricher) loopAtLeastOnce(ctx context.Context, cl *kgo.Client) (progressed bool, err error) {
	for {
		recs, err := e.poll(ctx, cl.PollRecords)
		if err != nil || ctx.Err() != nil {
			return progressed, err
		}
		if len(recs) == 0 {
			continue
		}
		results, err := e.processBatch(ctx, recs, false)
		if err != nil {
			return progressed, nil // only the end of ctx stops a batch here
		}
		if err := e.produceUntilAcked(ctx, cl, results); err != nil {
			if ctx.Err() != nil {
				return progressed, nil
			}
			return progressed, err
		}
		if err := cl.CommitRecords(ctx, recs...); err != nil {
			if ctx.Err() != nil {
				return progressed, nil
			}
			// The output is written; after a rebalance the new owner enriches these events
			// again, which at_least_once allows.
			e.log.Warn("committing offsets failed; the batch's events may be enriched again", slog.Any("err", err))
			continue
		}
		progressed = true
		e.m.committed(results, time.Now())
	}
}

// poll fetches one batch and updates the consumption metrics. It returns an error only for
// fetch errors a new client would not fix by itself being retried internally.
func (e *Enricher) poll(ctx context.Context, pollFn func(context.Context, int) kgo.Fetches) ([]*kgo.Record, error) {
	fs := pollFn(ctx, e.cfg.MaxPollRecords)
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
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			e.m.setLag(p.Partition, p.HighWatermark-(p.Records[n-1].Offset+1))
		}
	})
	e.m.consumed.Add(float64(len(recs)))
	return recs, nil
}

// processBatch runs the handler chain over recs: records of one key (session) in their log
// order, different keys in parallel up to enrich.concurrency. With cancelOnRebalance, a revoke
// or loss of partitions cancels the batch, since its transaction can no longer commit.
func (e *Enricher) processBatch(ctx context.Context, recs []*kgo.Record, cancelOnRebalance bool) ([]Result, error) {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if cancelOnRebalance {
		e.mu.Lock()
		e.batchCancel = cancel
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			e.batchCancel = nil
			e.mu.Unlock()
		}()
	}
	var keys []string
	groups := map[string][]int{}
	for i, r := range recs {
		k := string(r.Key)
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	results := make([]Result, len(recs))
	work := make(chan []int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(e.cfg.Concurrency, len(keys)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idxs := range work {
				for _, i := range idxs {
					res, err := e.handler(bctx, &Message{Record: recs[i]})
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						cancel(err)
						break
					}
					results[i] = res
				}
			}
		}()
	}
feed:
	for _, k := range keys {
		select {
		case work <- groups[k]:
		case <-bctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(bctx); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		if cause := context.Cause(bctx); errors.Is(cause, errRebalance) {
			return nil, errRebalance
		}
		return nil, firstErr
	}
	return results, nil
}

// produceAll produces every result record, in batch order, and waits for the outcome.
func produceAll(ctx context.Context, cl *kgo.Client, results []Result) error {
	var out []*kgo.Record
	for _, r := range results {
		out = append(out, r.Records...)
	}
	if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records: %w", len(out), err)
	}
	return nil
}

// produceUntilAcked produces the results and re-produces records whose produce failed with a
// retryable error, with backoff, until all are acknowledged: a record is never skipped.
func (e *Enricher) produceUntilAcked(ctx context.Context, cl *kgo.Client, results []Result) error {
	var pending []*kgo.Record
	for _, r := range results {
		pending = append(pending, r.Records...)
	}
	b := &backoff.ExponentialBackOff{InitialInterval: e.cfg.Retry.InitialBackoff, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: e.cfg.Retry.MaxBackoff}
	b.Reset()
	for len(pending) > 0 {
		var failed []*kgo.Record
		var lastErr error
		for _, r := range cl.ProduceSync(ctx, pending...) {
			if r.Err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !kafka.IsRetryable(r.Err) {
					return fmt.Errorf("produce to %s: %w", r.Record.Topic, r.Err)
				}
				lastErr = r.Err
				// A fresh record: franz-go does not allow producing the same *Record twice.
				failed = append(failed, &kgo.Record{Topic: r.Record.Topic, Key: r.Record.Key, Value: r.Record.Value, Headers: r.Record.Headers})
			}
		}
		pending = failed
		if len(pending) > 0 {
			wait := b.NextBackOff()
			e.log.Warn("produce failed with a retryable error; producing again", slog.Int("records", len(pending)), slog.Duration("wait", wait), slog.Any("err", lastErr))
			if !sleepCtx(ctx, wait) {
				return ctx.Err()
			}
		}
	}
	return nil
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
	e.log.Info("partitions assigned", slog.Any("partitions", assigned[e.deps.Topics.Sessions]))
}

func (e *Enricher) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	e.rebalanced("revoked", revoked)
}

func (e *Enricher) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	e.rebalanced("lost", lost)
}

// rebalanced cancels the running batch (its transaction would be aborted anyway) and forgets the
// lag of partitions this member no longer owns. It must not block: franz-go calls it while the
// rebalance waits.
func (e *Enricher) rebalanced(how string, parts map[string][]int32) {
	ps := parts[e.deps.Topics.Sessions]
	if len(ps) == 0 {
		return
	}
	e.log.Info("partitions "+how, slog.Any("partitions", ps))
	e.m.dropLag(ps)
	e.mu.Lock()
	if e.batchCancel != nil {
		e.batchCancel(errRebalance)
	}
	e.mu.Unlock()
}
