package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// API is what the role needs from the IDnow API; *idnow.Client satisfies it.
type API interface {
	ListFlows(ctx context.Context) ([]idnow.Flow, error)
	CreateSession(ctx context.Context, flowID string, body idnow.CreateSessionRequest) (*idnow.CreatedSession, error)
	ListFlowSessions(ctx context.Context, flowID string, page idnow.ListPage) (*idnow.SessionPage, error)
}

// Decoder decodes records of one schema (both wire formats); *serde.Codec satisfies it.
type Decoder interface {
	Decode(ctx context.Context, b []byte, v any) error
}

// Encoder encodes records of one schema; *serde.Codec satisfies it.
type Encoder interface {
	Encode(v any) ([]byte, error)
	Schema() schemas.Schema
}

// Deps are what the role needs from the composition root.
type Deps struct {
	// KafkaOpts are the shared client options (kafka.ClientOpts(cfg.Kafka, "commands", reg)).
	KafkaOpts []kgo.Opt
	// TableOpts are client options without metric hooks, for reading topics.commands_state.
	TableOpts []kgo.Opt
	// Topics names topics.commands, topics.replies and topics.commands_state.
	Topics kafka.TopicsConfig
	// API creates and lists sessions; the process's one *idnow.Client.
	API API
	// Environment is idnow.environment, the API client's logical environment.
	Environment string
	// Commands decodes CreateSessionCommand records.
	Commands Decoder
	// Replies encodes CommandReply records.
	Replies Encoder
	// States encodes and StatesDecoder decodes CommandState records.
	States        Encoder
	StatesDecoder Decoder
	// Registry receives the idnow_connector_commands_* metrics.
	Registry prometheus.Registerer
	// Log receives operational logs, never command contents; nil discards them.
	Log *slog.Logger
	// TokenCheck reports whether the IDnow token endpoint answers; nil skips that check.
	TokenCheck func(ctx context.Context) error
	// Clock replaces time.Now (tests); nil: time.Now.
	Clock func() time.Time
}

// Commander is the commands role (see the package documentation).
type Commander struct {
	cfg     Config
	deps    Deps
	txnID   string
	m       *metrics
	log     *slog.Logger
	now     func() time.Time
	flows   *flowResolver
	table   *table
	allow   []allowed
	limiter *rate.Limiter

	running     atomic.Bool
	joined      atomic.Bool
	needCatchUp atomic.Bool
	inflight    atomic.Int64

	mu          sync.Mutex
	batchCancel context.CancelCauseFunc
	// owned are the partitions of topics.commands this member holds.
	owned map[int32]bool
	// answers are replies made in batches whose transaction has not committed (yet): a batch
	// consumed again after an abort reuses them instead of calling IDnow again.
	answers map[string]answer
}

type answer struct {
	reply     *schemas.CommandReply
	state     *schemas.CommandState
	flowID    string
	partition int32
}

var errRebalance = errors.New("consumer group rebalanced: partitions revoked or lost")

// New validates cfg and deps and registers the metrics; it does no I/O.
func New(cfg Config, deps Deps) (*Commander, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("commands config: %w", err)
	}
	if deps.API == nil || deps.Commands == nil || deps.Replies == nil || deps.States == nil || deps.StatesDecoder == nil || deps.Registry == nil {
		return nil, errors.New("commands: Deps.API, Commands, Replies, States, StatesDecoder and Registry are all required")
	}
	if deps.Environment == "" {
		return nil, errors.New("commands: Deps.Environment (idnow.environment) is required")
	}
	if err := deps.Topics.ValidateCommands(); err != nil {
		return nil, fmt.Errorf("commands: %w", err)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	instance, err := cfg.instanceID()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	c := &Commander{cfg: cfg, deps: deps, txnID: cfg.TransactionalID + "-" + instance, m: m,
		log: deps.Log.With(slog.String("component", "commands")), now: deps.Clock, table: newTable(cfg.DedupeWindow),
		limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), max(1, int(cfg.RateLimit))), answers: map[string]answer{}, owned: map[int32]bool{}}
	for _, p := range cfg.RedirectAllowlist {
		a, _ := parseAllowed(p) // checked by Validate
		c.allow = append(c.allow, a)
	}
	c.flows = &flowResolver{api: deps.API, env: deps.Environment, ttl: cfg.FlowCacheTTL, minGap: cfg.FlowRefreshInterval, now: deps.Clock, m: m, limiterW: c.wait}
	return c, nil
}

// TransactionalID returns the role's transactional id.
func (c *Commander) TransactionalID() string { return c.txnID }

// StopTimeout is how long Run may take to return after its context ends.
func (c *Commander) StopTimeout() time.Duration { return c.cfg.StopTimeout() }

// Ready returns nil once the group is joined and the IDnow token endpoint answered.
func (c *Commander) Ready(ctx context.Context) error {
	if !c.joined.Load() {
		return fmt.Errorf("commands role has not joined consumer group %q yet", c.cfg.Group)
	}
	if c.deps.TokenCheck != nil {
		if err := c.deps.TokenCheck(ctx); err != nil {
			return fmt.Errorf("commands: IDnow token endpoint: %w", err)
		}
	}
	return nil
}

// wait takes one request from the role's share of the IDnow budget.
func (c *Commander) wait(ctx context.Context) error {
	if err := c.limiter.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("commands.rate_limit: %w", err)
	}
	return nil
}

// track counts an IDnow call in flight, so a revocation can wait for the calls of the batch
// it cancels to end before another member takes the partitions over.
func (c *Commander) track(fn func() (*idnow.CreatedSession, error)) (*idnow.CreatedSession, error) {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	return fn()
}

func (c *Commander) track2(fn func() (*idnow.SessionPage, error)) (*idnow.SessionPage, error) {
	c.inflight.Add(1)
	defer c.inflight.Add(-1)
	return fn()
}

// Run consumes until ctx ends, then ends the open transaction and leaves the group within
// commands.shutdown_timeout. Kafka failures re-create the client with backoff; the
// uncommitted batch is consumed again.
func (c *Commander) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("commands: Run called twice")
	}
	shutdownCtx, cancelShutdown := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelShutdown()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.ShutdownTimeout, cancelShutdown) })
	defer stop()
	b := c.cfg.Retry.NewBackOff()
	c.log.Info("commands role starting", slog.String("group", c.cfg.Group), slog.String("topic", c.deps.Topics.Commands),
		slog.String("transactional_id", c.txnID))
	for {
		progressed, err := c.runClient(ctx, shutdownCtx)
		if ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("commands shutdown: %w", err)
			}
			c.log.Info("commands role stopped")
			return nil
		}
		if isFatal(err) {
			return fmt.Errorf("commands: %w", err)
		}
		if progressed {
			b.Reset()
		}
		wait := b.NextBackOff()
		c.m.restarts.Inc()
		c.log.Error("commands Kafka client failed; re-creating it, the uncommitted batch will be consumed again", slog.Duration("wait", wait), slog.Any("err", err))
		if retry.Wait(ctx, wait) != nil {
			return nil
		}
	}
}

var errClientConfig = errors.New("invalid Kafka client options")

func isFatal(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidTransactionTimeout) || errors.Is(err, kafka.ErrTopicMissing) || errors.Is(err, errClientConfig)
}

func (c *Commander) runClient(ctx, shutdownCtx context.Context) (progressed bool, err error) {
	c.joined.Store(false)
	defer func() {
		// Whatever this client owned, it owns nothing once it is gone.
		c.mu.Lock()
		clear(c.owned)
		c.mu.Unlock()
	}()
	opts := slices.Clone(c.deps.KafkaOpts)
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.deps.Topics.Commands),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, c.cfg.SessionTimeout/3)),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onRevoked),
		kgo.TransactionalID(c.txnID),
		kgo.TransactionTimeout(c.cfg.TransactionTimeout),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return false, fmt.Errorf("%w: new transactional group session: %w", errClientConfig, err)
	}
	defer func() { err = errors.Join(err, c.closeClient(shutdownCtx, sess.Close)) }()
	if err := c.ensureTopics(ctx, kadm.NewClient(sess.Client())); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, err
	}
	c.needCatchUp.Store(true)
	for {
		fs := sess.PollRecords(ctx, c.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return progressed, nil
		}
		if fs.IsClientClosed() {
			return progressed, errors.New("poll: client closed")
		}
		var fatal error
		fs.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if isFatal(err) {
				fatal = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
				return
			}
			c.log.Warn("fetch error; the client retries", slog.String("topic", topic), slog.Int("partition", int(p)), slog.Any("err", err))
		})
		if fatal != nil {
			return progressed, fatal
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		c.m.received.Add(float64(len(recs)))
		if c.needCatchUp.Swap(false) {
			if err := c.table.catchUp(ctx, c.deps.TableOpts, c.deps.Topics.CommandsState, c.deps.StatesDecoder, c.now()); err != nil {
				c.needCatchUp.Store(true)
				if ctx.Err() != nil {
					return progressed, nil
				}
				return progressed, fmt.Errorf("catch up with %s: %w", c.deps.Topics.CommandsState, err)
			}
			c.m.tableEntries.Set(float64(c.table.len()))
		}
		committed, err := c.batch(ctx, shutdownCtx, sess, recs)
		if err != nil {
			return progressed, err
		}
		progressed = progressed || committed
	}
}

func (c *Commander) closeClient(shutdownCtx context.Context, closeFn func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	select {
	case <-done:
		return nil
	case <-shutdownCtx.Done():
		return fmt.Errorf("leaving consumer group %q did not finish within commands.shutdown_timeout (%s)", c.cfg.Group, c.cfg.ShutdownTimeout)
	}
}

// ensureTopics creates or checks topics.commands, topics.replies and the compacted
// topics.commands_state (retention.ms = commands.dedupe_window when created here).
func (c *Commander) ensureTopics(ctx context.Context, adm *kadm.Client) error {
	t := c.deps.Topics
	if err := kafka.EnsureTopics(ctx, adm, t, t.Commands, t.Replies); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	details, err := adm.ListTopics(ctx, t.CommandsState)
	if err != nil {
		return fmt.Errorf("list topic %s: %w", t.CommandsState, err)
	}
	if d, ok := details[t.CommandsState]; ok && d.Err == nil {
		return c.checkStateTopic(ctx, adm)
	}
	if !t.Create {
		return fmt.Errorf("%w: topics.commands_state %q; create it with cleanup.policy=compact,delete and retention.ms=%d (commands.dedupe_window), or set topics.create: true",
			kafka.ErrTopicMissing, t.CommandsState, c.cfg.DedupeWindow.Milliseconds())
	}
	existed, err := kafka.CreateTopic(ctx, adm, t.Partitions, t.ReplicationFactor, map[string]*string{
		"cleanup.policy": kadm.StringPtr("compact,delete"),
		"retention.ms":   kadm.StringPtr(strconv.FormatInt(c.cfg.DedupeWindow.Milliseconds(), 10)),
	}, t.CommandsState)
	if err != nil {
		return err
	}
	if existed {
		return c.checkStateTopic(ctx, adm) // created meanwhile by another replica: check what it made
	}
	return nil
}

// checkStateTopic refuses a state topic without compaction: intents of long-answered commands
// would pile up, and deleted segments would lose replies inside the window.
func (c *Commander) checkStateTopic(ctx context.Context, adm *kadm.Client) error {
	t := c.deps.Topics.CommandsState
	cfgs, err := adm.DescribeTopicConfigs(ctx, t)
	if err != nil {
		return fmt.Errorf("describe configs of %s: %w", t, err)
	}
	rc, err := cfgs.On(t, nil)
	if err != nil || rc.Err != nil {
		return fmt.Errorf("describe configs of %s: %w", t, errors.Join(err, rc.Err))
	}
	for _, e := range rc.Configs {
		if e.Key == "cleanup.policy" && e.Value != nil && *e.Value == "delete" {
			return fmt.Errorf("topics.commands_state %q has cleanup.policy=delete; it must be compact or compact,delete (retention.ms >= commands.dedupe_window). Fix: kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=[compact,delete]", t, t)
		}
	}
	return nil
}

func (c *Commander) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.joined.Store(true)
	c.mu.Lock()
	for _, p := range assigned[c.deps.Topics.Commands] {
		c.owned[p] = true
	}
	// Answers of partitions that went to another member and did not come back: that member
	// looks their sessions up (most rebalances hand the same partitions back, so they are kept
	// until now).
	for id, a := range c.answers {
		if !c.owned[a.partition] {
			delete(c.answers, id)
		}
	}
	c.mu.Unlock()
	// Another member may have written intents or replies for these partitions' commands.
	c.needCatchUp.Store(true)
	c.log.Info("partitions assigned", slog.Any("partitions", assigned[c.deps.Topics.Commands]))
}

// revokeWait bounds how long a revocation waits for the cancelled batch's IDnow calls.
const revokeWait = 10 * time.Second

// onRevoked cancels the running batch (its transaction cannot commit any more) and waits a
// bounded time for its IDnow calls to return, so the next owner's lookups start after them.
func (c *Commander) onRevoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	if len(parts[c.deps.Topics.Commands]) == 0 {
		return
	}
	c.log.Info("partitions revoked", slog.Any("partitions", parts[c.deps.Topics.Commands]))
	c.mu.Lock()
	for _, p := range parts[c.deps.Topics.Commands] {
		delete(c.owned, p)
	}
	if c.batchCancel != nil {
		c.batchCancel(errRebalance)
	}
	c.mu.Unlock()
	deadline := time.Now().Add(revokeWait)
	for c.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Commander) uncommitted(id string) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.answers[id]
	return a, ok
}

// batch answers recs and commits replies, states and offsets in one transaction. committed is
// false when the transaction aborted (the batch comes again); err ends the client.
func (c *Commander) batch(ctx, shutdownCtx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record) (committed bool, err error) {
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.mu.Lock()
	c.batchCancel = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.batchCancel = nil
		c.mu.Unlock()
	}()

	works, err := c.prepareAll(bctx, recs)
	if err != nil {
		return false, c.abandon(ctx, bctx, shutdownCtx, sess, err)
	}
	if err := c.commitIntents(bctx, shutdownCtx, sess.Client(), works); err != nil {
		return false, c.abandon(ctx, bctx, shutdownCtx, sess, err)
	}
	if err := c.callAll(bctx, works); err != nil {
		return false, c.abandon(ctx, bctx, shutdownCtx, sess, err)
	}
	for _, w := range works {
		if w.dupOf != nil {
			rep := *w.dupOf.reply
			rep.Replayed = true
			w.reply, w.replay = &rep, true
		}
	}
	if err := sess.Begin(); err != nil {
		return false, fmt.Errorf("begin transaction: %w", err)
	}
	perr := c.produce(bctx, sess, works)
	try := kgo.TryCommit
	if perr != nil {
		try = kgo.TryAbort
	}
	ok, err := sess.End(shutdownCtx, try)
	if err != nil {
		c.m.transactions.WithLabelValues("reply", "aborted").Inc()
		return false, fmt.Errorf("end transaction: %w", errors.Join(err, perr))
	}
	if !ok {
		c.m.transactions.WithLabelValues("reply", "aborted").Inc()
		cause := "the consumer group rebalanced before the commit"
		if perr != nil {
			cause = perr.Error()
		}
		c.log.Warn("reply transaction aborted; the batch will be consumed again", slog.Int("records", len(recs)), slog.String("cause", cause))
		if perr != nil && ctx.Err() == nil {
			_ = retry.Wait(ctx, c.cfg.Retry.InitialBackoff)
		}
		return false, nil
	}
	c.m.transactions.WithLabelValues("reply", "committed").Inc()
	c.committed(works)
	return true, nil
}

// abandon ends a batch cut short before its reply transaction. On a rebalance the client goes
// on, so it is rewound to the committed offsets (an aborting End does that): the records of
// partitions it still owns come again instead of being skipped, the others go to their new
// owner. On shutdown nothing more is needed; any other error re-creates the client, which
// starts from the committed offsets too.
func (c *Commander) abandon(ctx, bctx, shutdownCtx context.Context, sess *kgo.GroupTransactSession, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(context.Cause(bctx), errRebalance):
		c.log.Info("batch abandoned after a rebalance; it will be consumed again")
		if _, endErr := sess.End(shutdownCtx, kgo.TryAbort); endErr != nil {
			return fmt.Errorf("rewind after a rebalance: %w", endErr)
		}
		return nil
	}
	return err
}

// prepareAll prepares every record; a flow list that cannot be read is retried with backoff
// until commands.give_up_after, then the commands naming flows are answered unavailable.
func (c *Commander) prepareAll(ctx context.Context, recs []*kgo.Record) ([]*work, error) {
	seen := map[string]*work{}
	works := make([]*work, 0, len(recs))
	for _, r := range recs {
		giveUp := c.now().Add(c.cfg.GiveUpAfter)
		b := c.cfg.Retry.NewBackOff()
		for {
			w, err := c.prepare(ctx, r, seen)
			if err == nil {
				works = append(works, w)
				break
			}
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if !c.now().Before(giveUp) {
				w := &work{rec: r, id: kafka.Header(r, HeaderCommandID)}
				var cmd schemas.CreateSessionCommand
				if c.deps.Commands.Decode(ctx, r.Value, &cmd) == nil && cmd.CommandID != "" {
					w.id, w.cmd = cmd.CommandID, &cmd
				}
				c.failed(w, schemas.ReasonUnavailable, fmt.Sprintf("the flow name could not be resolved: IDnow's flow list did not answer within commands.give_up_after (%s): %v", c.cfg.GiveUpAfter, err))
				works = append(works, w)
				break
			}
			c.log.Warn("reading the flow list failed; trying again", slog.Any("err", err))
			if werr := retry.Wait(ctx, b.NextBackOff()); werr != nil {
				return nil, werr
			}
		}
	}
	c.table.expire(c.now())
	c.m.tableEntries.Set(float64(c.table.len()))
	return works, nil
}

// commitIntents commits an intent for every command about to get its first create call, in a
// transaction of its own (no offsets), before any call is made.
func (c *Commander) commitIntents(ctx, shutdownCtx context.Context, cl *kgo.Client, works []*work) error {
	var recs []*kgo.Record
	var states []*schemas.CommandState
	now := c.now().UTC()
	for _, w := range works {
		if !w.needCall || w.lookupFirst {
			continue
		}
		first := w.firstAttempt
		st := &schemas.CommandState{CommandID: w.id, FlowID: &w.flowID, AttemptedAt: &first, UpdatedAt: now}
		r, err := c.stateRecord(st)
		if err != nil {
			return err
		}
		recs, states = append(recs, r), append(states, st)
	}
	if len(recs) == 0 {
		return nil
	}
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("begin intent transaction: %w", err)
	}
	perr := cl.ProduceSync(ctx, recs...).FirstErr()
	try := kgo.TryCommit
	if perr != nil {
		try = kgo.TryAbort
	}
	if err := cl.EndTransaction(shutdownCtx, try); err != nil {
		c.m.transactions.WithLabelValues("intent", "aborted").Inc()
		return fmt.Errorf("end intent transaction: %w", errors.Join(err, perr))
	}
	if perr != nil {
		c.m.transactions.WithLabelValues("intent", "aborted").Inc()
		return fmt.Errorf("produce intents: %w", perr)
	}
	c.m.transactions.WithLabelValues("intent", "committed").Inc()
	for _, st := range states {
		c.table.put(st)
	}
	return nil
}

// callAll runs the IDnow work of the batch, commands.concurrency at a time.
func (c *Commander) callAll(ctx context.Context, works []*work) error {
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	sem := make(chan struct{}, c.cfg.Concurrency)
	for _, w := range works {
		if !w.needCall {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.call(ctx, w); err != nil {
				once.Do(func() { firstErr = err })
				return
			}
			c.mu.Lock()
			c.answers[w.id] = answer{reply: w.reply, state: w.state, flowID: w.flowID, partition: w.rec.Partition}
			c.mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = context.Cause(ctx)
	}
	return firstErr
}

func (c *Commander) stateRecord(st *schemas.CommandState) (*kgo.Record, error) {
	v, err := c.deps.States.Encode(st)
	if err != nil {
		return nil, fmt.Errorf("encode command state: %w", err)
	}
	return &kgo.Record{Topic: c.deps.Topics.CommandsState, Key: []byte(st.CommandID), Value: v, Headers: []kgo.RecordHeader{
		{Key: serde.HeaderSchema, Value: []byte(c.deps.States.Schema().FullName)},
		{Key: HeaderCommandID, Value: []byte(st.CommandID)},
	}}, nil
}

// produce writes every reply (in record order) and every new state inside the transaction.
func (c *Commander) produce(ctx context.Context, sess *kgo.GroupTransactSession, works []*work) error {
	recs := make([]*kgo.Record, 0, 2*len(works))
	for _, w := range works {
		v, err := c.deps.Replies.Encode(w.reply)
		if err != nil {
			return fmt.Errorf("encode reply: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: c.deps.Topics.Replies, Key: w.rec.Key, Value: v, Headers: []kgo.RecordHeader{
			{Key: serde.HeaderSchema, Value: []byte(c.deps.Replies.Schema().FullName)},
			{Key: HeaderCommandID, Value: []byte(w.id)},
		}})
		if w.state != nil && !w.replay {
			r, err := c.stateRecord(w.state)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
	}
	if err := sess.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce replies: %w", err)
	}
	return nil
}

// committed records a committed batch: table, metrics, and the answers no longer needed.
func (c *Commander) committed(works []*work) {
	now := c.now()
	c.mu.Lock()
	for _, w := range works {
		delete(c.answers, w.id)
	}
	c.mu.Unlock()
	for _, w := range works {
		if w.state != nil && !w.replay {
			c.table.put(w.state)
		}
		reason := "none"
		if w.reply.Failed != nil {
			reason = w.reply.Failed.Reason
		}
		c.m.replies.WithLabelValues(w.reply.Outcome, reason).Inc()
		if w.replay {
			c.m.replayed.Inc()
		}
		if !w.rec.Timestamp.IsZero() {
			c.m.duration.Observe(now.Sub(w.rec.Timestamp).Seconds())
		}
	}
	c.m.tableEntries.Set(float64(c.table.len()))
}
