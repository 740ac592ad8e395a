package archive

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

// FileSource fetches vault files: *idnow.Client's GetFile (redirect to the presigned URL
// without the bearer token, https only, public targets only, size limit, streamed).
type FileSource interface {
	GetFile(ctx context.Context, vaultEntryID string) (*idnow.File, error)
}

// Deps are the archiver's collaborators.
type Deps struct {
	// KafkaOpts are the base client options (brokers, TLS, SASL, metrics).
	KafkaOpts []kgo.Opt
	Topics    kafka.TopicsConfig
	Files     FileSource
	// Enriched decodes topics.enriched; Archived encodes topics.archived.
	Enriched *serde.Codec
	Archived *serde.Codec
	// Bucket is the object store; Storage names it in records (blobstore.Redact).
	Bucket  *blob.Bucket
	Storage string
	// Environment is idnow.environment, used when a record names none.
	Environment string
	// Encryption, when set (privacy.mode encrypt), encrypts every object under the subject's
	// data key before upload.
	Encryption *Encryption
	Registry   prometheus.Registerer
	Log        *slog.Logger
	Version    string
}

// Archiver is the archiver role: a consumer group on topics.enriched that archives the
// evidence of every session reaching archive.on_status and indexes it in topics.archived.
type Archiver struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	m      *metrics
	txnID  string
	signer ed25519.PrivateKey
	keyID  string
	// spoolPrefix names this instance's spool files, so a restarted instance removes what a
	// killed predecessor with the same instance id left, and nothing of another instance's.
	spoolPrefix string

	running  atomic.Bool
	joined   atomic.Bool
	archived atomic.Int64
	missing  atomic.Int64
	inFlight atomic.Int64
	lastOK   atomic.Int64 // unix nanos of the last committed batch

	// batch cancels the batch being archived when the group takes partitions away.
	batch batchGuard

	// keyProducer commits the data keys the archiver makes (privacy.mode encrypt; nil
	// otherwise). Set by Run before any record is archived.
	keyProducer *kgo.Client
}

// New builds the archiver; nothing runs until Run.
func New(cfg Config, deps Deps) (*Archiver, error) {
	if err := errors.Join(cfg.Validate(), cfg.checkFiles()); err != nil {
		return nil, err
	}
	switch {
	case deps.Files == nil:
		return nil, errors.New("archive: Deps.Files is nil")
	case deps.Enriched == nil || deps.Archived == nil:
		return nil, errors.New("archive: Deps.Enriched and Deps.Archived codecs are required")
	case deps.Bucket == nil:
		return nil, errors.New("archive: Deps.Bucket is nil")
	case deps.Topics.Enriched == "" || deps.Topics.Archived == "":
		return nil, errors.New("archive: topics.enriched and topics.archived must be set")
	case deps.Encryption != nil && (deps.Encryption.Keys == nil || deps.Encryption.Pepper == nil || deps.Encryption.KeysTopic == "" || deps.Encryption.KeysOpts == nil):
		return nil, errors.New("archive: Deps.Encryption needs a key finder, the pepper, topics.keys and the keys client options")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("archive metrics: %w", err)
	}
	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err == nil && instance == "" {
			err = errors.New("the host name is empty")
		}
		if err != nil {
			return nil, fmt.Errorf("archive.instance_id is empty and the host name is unknown (%w); set archive.instance_id", err)
		}
	}
	a := &Archiver{cfg: cfg, deps: deps, log: log.With("component", "archiver"), m: m, txnID: cfg.TransactionalID + "-" + instance,
		spoolPrefix: "idnow-archive-" + spoolSafe.ReplaceAllString(cfg.TransactionalID+"-"+instance, "_") + "-"}
	if cfg.SigningKeyFile != "" {
		if a.signer, err = LoadSigningKey(cfg.SigningKeyFile); err != nil {
			return nil, fmt.Errorf("archive.signing_key_file: %w", err)
		}
		a.keyID = KeyID(a.signer.Public().(ed25519.PublicKey))
	}
	return a, nil
}

// StopTimeout is the budget the lifecycle gives the archiver to stop.
func (a *Archiver) StopTimeout() time.Duration { return a.cfg.StopTimeout() }

// Ready reports whether the archiver has a live Kafka client in its group.
func (a *Archiver) Ready(context.Context) error {
	if !a.joined.Load() {
		return errors.New("archiver has not joined its consumer group yet")
	}
	return nil
}

// Status is the archiver's progress for the status line and page.
type Status struct {
	Archived   int64
	Missing    int64
	InFlight   int64
	LastCommit time.Time
}

// Status returns the archiver's progress so far.
func (a *Archiver) Status() Status {
	s := Status{Archived: a.archived.Load(), Missing: a.missing.Load(), InFlight: a.inFlight.Load()}
	if n := a.lastOK.Load(); n > 0 {
		s.LastCommit = time.Unix(0, n)
	}
	return s
}

// Run consumes until ctx ends. A failing Kafka client is re-created after a backoff; only
// errors no new client can fix end Run.
func (a *Archiver) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("archive: Run called twice")
	}
	shutdownCtx, cancelShutdown := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelShutdown()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(a.cfg.ShutdownTimeout, cancelShutdown) })
	defer stop()
	a.removeStaleSpool()
	if a.deps.Encryption != nil {
		cl, err := kgo.NewClient(a.deps.Encryption.KeysOpts...)
		if err != nil {
			return fmt.Errorf("archive: keys topic producer: %w", err)
		}
		defer cl.Close()
		a.keyProducer = cl
	}
	b := a.cfg.Retry.NewBackOff()
	a.log.Info("archiver starting", slog.String("group", a.cfg.Group), slog.String("transactional_id", a.txnID),
		slog.String("topic", a.deps.Topics.Enriched), slog.String("storage", a.deps.Storage), slog.Any("on_status", a.cfg.OnStatus),
		slog.Bool("signed", a.signer != nil), slog.Bool("encrypted", a.deps.Encryption != nil))
	for {
		progressed, err := a.runClient(ctx, shutdownCtx)
		if ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("archive shutdown: %w", err)
			}
			a.log.Info("archiver stopped")
			return nil
		}
		if isFatal(err) {
			return fmt.Errorf("archive: %w", err)
		}
		if progressed {
			b.Reset()
		}
		wait := b.NextBackOff()
		a.log.Error("archiver Kafka client failed; re-creating it, the uncommitted batch will be archived again (idempotently)",
			slog.Duration("wait", wait), slog.Any("err", err))
		if retry.Wait(ctx, wait) != nil {
			return nil
		}
	}
}

var spoolSafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// removeStaleSpool deletes the spool files a killed predecessor with this instance id left.
func (a *Archiver) removeStaleSpool() {
	dir := a.cfg.SpoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	stale, _ := filepath.Glob(filepath.Join(dir, a.spoolPrefix+"*"))
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			a.log.Warn("cannot remove a stale spool file", slog.String("file", f), slog.Any("err", err))
			continue
		}
		a.log.Info("removed a spool file a previous run left", slog.String("file", f))
	}
}

func isFatal(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidTransactionTimeout) || errors.Is(err, kafka.ErrTopicMissing) ||
		errors.Is(err, errClientConfig)
}

var errClientConfig = errors.New("invalid Kafka client options")

// runClient runs one transactional group member until ctx ends or it fails.
func (a *Archiver) runClient(ctx, shutdownCtx context.Context) (progressed bool, err error) {
	defer a.joined.Store(false)
	opts := slices.Clone(a.deps.KafkaOpts)
	opts = append(opts,
		kgo.ConsumerGroup(a.cfg.Group),
		kgo.ConsumeTopics(a.deps.Topics.Enriched),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.SessionTimeout(a.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, a.cfg.SessionTimeout/3)),
		kgo.TransactionalID(a.txnID),
		kgo.TransactionTimeout(a.cfg.TransactionTimeout),
		// A member that lost partitions stops archiving its batch at once: the new owner
		// archives those sessions again, and two archivers writing one session's objects and
		// manifest at the same time would leave them out of step (every encrypted upload is
		// other bytes).
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			for _, ps := range revoked {
				if len(ps) > 0 {
					a.batch.rebalanced()
					return
				}
			}
		}),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) { a.batch.rebalanced() }),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return false, fmt.Errorf("%w: new transactional group session: %w", errClientConfig, err)
	}
	defer func() { err = errors.Join(err, a.closeClient(shutdownCtx, sess.Close)) }()
	t := a.deps.Topics
	topics := []string{t.Enriched, t.Archived}
	if a.deps.Encryption != nil {
		topics = append(topics, t.Keys)
	}
	if err := kafka.EnsureTopics(ctx, kadm.NewClient(sess.Client()), t, topics...); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("ensure topics: %w", err)
	}
	a.joined.Store(true)
	for {
		a.batch.reset()
		fetches := sess.PollRecords(ctx, a.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return progressed, nil
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			var all []error
			for _, fe := range errs {
				if errors.Is(fe.Err, context.Canceled) {
					continue
				}
				all = append(all, fmt.Errorf("fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err))
			}
			if len(all) > 0 {
				return progressed, errors.Join(all...)
			}
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		// The files are archived before the transaction begins: uploads are idempotent
		// (content-addressed keys, manifest last), so a batch archived twice costs time, never
		// a duplicate, and the transaction stays short however large the videos are.
		batchCtx, rebalanced, endBatch := a.batch.start(ctx)
		outs, err := a.archiveBatch(batchCtx, recs)
		abandoned := rebalanced()
		endBatch()
		if err != nil {
			if ctx.Err() != nil {
				// Abandoned mid-batch: nothing was produced, the offsets stay, the next owner
				// archives the batch again.
				return progressed, nil
			}
			if !abandoned {
				return progressed, err
			}
			// Partitions were revoked or lost mid-batch: the batch is abandoned, and an empty
			// aborted transaction rewinds this member to the committed offsets of the
			// partitions it kept, so their records are archived again, not skipped.
			if err := sess.Begin(); err != nil {
				return progressed, fmt.Errorf("begin transaction: %w", err)
			}
			if _, err := sess.End(shutdownCtx, kgo.TryAbort); err != nil {
				return progressed, fmt.Errorf("end transaction: %w", err)
			}
			a.m.transactions.WithLabelValues(transactionAborted).Inc()
			a.log.Info("partitions were revoked while archiving a batch; the batch is abandoned and archived again by their owners", slog.Int("records", len(recs)))
			continue
		}
		if err := sess.Begin(); err != nil {
			return progressed, fmt.Errorf("begin transaction: %w", err)
		}
		perr := produceAll(ctx, sess.Client(), outs)
		try := kgo.TryCommit
		if perr != nil {
			try = kgo.TryAbort
		}
		committed, err := sess.End(shutdownCtx, try)
		if err != nil {
			a.m.transactions.WithLabelValues(transactionAborted).Inc()
			return progressed, fmt.Errorf("end transaction: %w", errors.Join(err, perr))
		}
		if !committed {
			a.m.transactions.WithLabelValues(transactionAborted).Inc()
			a.log.Warn("archiver transaction aborted; the batch will be consumed and archived again", slog.Int("records", len(recs)), slog.Any("produce_err", perr))
			if perr != nil && retry.Wait(ctx, a.cfg.Retry.InitialBackoff) != nil {
				return progressed, nil
			}
			continue
		}
		progressed = true
		a.m.transactions.WithLabelValues(transactionCommit).Inc()
		now := time.Now()
		a.lastOK.Store(now.UnixNano())
		a.m.lastArchived.Set(float64(now.Unix()))
		for _, o := range outs {
			if o.record != nil {
				a.archived.Add(1)
				a.missing.Add(int64(o.missing))
			}
		}
	}
}

// produceAll produces the batch's ArchivedSession records and waits for every acknowledgement.
func produceAll(ctx context.Context, cl *kgo.Client, outs []output) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, o := range outs {
		if o.record == nil {
			continue
		}
		wg.Add(1)
		cl.Produce(ctx, o.record, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("produce to %s (key %s): %w", r.Topic, r.Key, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (a *Archiver) closeClient(shutdownCtx context.Context, closeFn func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	select {
	case <-done:
		return nil
	case <-shutdownCtx.Done():
		return fmt.Errorf("leaving consumer group %q did not finish within archive.shutdown_timeout (%s)", a.cfg.Group, a.cfg.ShutdownTimeout)
	}
}

// output is one input record's result: the ArchivedSession record to produce, or nil when the
// record is not archived (another status, undecodable).
type output struct {
	record  *kgo.Record
	missing int
}

// archiveBatch archives the batch's sessions, archive.concurrency at a time. The records of one
// session (one record key) are archived one after the other, in offset order: in parallel, two
// records of a session would write its objects and manifest at the same time, and the manifest
// could end up listing objects the other overwrote (every encrypted upload is other bytes). In
// order, the later record finds the earlier one's manifest. It fails only when ctx ends: every
// other failure is retried or recorded.
func (a *Archiver) archiveBatch(ctx context.Context, recs []*kgo.Record) ([]output, error) {
	outs := make([]output, len(recs))
	errs := make([]error, len(recs))
	sem := make(chan struct{}, a.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, idx := range bySession(recs) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, i := range idx {
				if outs[i], errs[i] = a.archiveRecord(ctx, recs[i]); errs[i] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return outs, nil
}

// bySession groups the indexes of recs by record key (the session id), each group in the order
// of recs (offset order within a partition, and a session's records share a partition). A
// record without a key is a group of its own.
func bySession(recs []*kgo.Record) [][]int {
	var groups [][]int
	at := map[string]int{}
	for i, r := range recs {
		if len(r.Key) == 0 {
			groups = append(groups, []int{i})
			continue
		}
		g, ok := at[string(r.Key)]
		if !ok {
			g = len(groups)
			at[string(r.Key)] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// errRebalanced cancels a batch whose member had partitions revoked or lost.
var errRebalanced = errors.New("partitions were revoked or lost")

// batchGuard lets the group's rebalance callbacks cancel the batch being archived.
type batchGuard struct {
	mu sync.Mutex
	// hit is set by a revocation since the last poll began, so a batch that starts after it is
	// cancelled at once.
	hit    bool
	cancel context.CancelCauseFunc
}

// reset is called before each poll: a revocation before the poll does not concern the records
// it returns (the client drops the revoked partitions' buffered records).
func (g *batchGuard) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hit = false
}

func (g *batchGuard) rebalanced() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hit = true
	if g.cancel != nil {
		g.cancel(errRebalanced)
	}
}

// start returns the batch's context, which a revocation cancels; rebalanced reports whether one
// did; end must be called when the batch is archived.
func (g *batchGuard) start(ctx context.Context) (bctx context.Context, rebalanced func() bool, end func()) {
	bctx, cancel := context.WithCancelCause(ctx)
	g.mu.Lock()
	g.cancel = cancel
	if g.hit {
		cancel(errRebalanced)
	}
	g.mu.Unlock()
	return bctx, func() bool { return errors.Is(context.Cause(bctx), errRebalanced) }, func() {
		g.mu.Lock()
		g.cancel = nil
		g.mu.Unlock()
		cancel(nil)
	}
}
