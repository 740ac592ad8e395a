package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/state"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TargetRestore is the child that restores every partition of a state topic into a
// state.Store, the enricher's restore path, and reports how long it took.
const TargetRestore = "restore"

// RestoreConfig bounds the state restore benchmark.
type RestoreConfig struct {
	Exe      string
	Brokers  []string // a real cluster; empty starts an embedded broker in this process
	Sessions int      // session states written
	// Versions is the records written per session (the last one wins). 1 is a fully compacted
	// topic; the enricher writes one record per enriched event, and Kafka never compacts the
	// active segment, so an uncompacted topic holds about as many records as events enriched.
	Versions   int
	Partitions int // partitions of the state topic
	EventIDs   int // enriched event ids per session state
	TxnRecords int // records per fill transaction
	RunTimeout time.Duration
}

// DefaultRestoreConfig is the figure: 1 000 000 sessions over 6 partitions.
func DefaultRestoreConfig() RestoreConfig {
	return RestoreConfig{Sessions: 1_000_000, Versions: 1, Partitions: 6, EventIDs: 4, TxnRecords: 10000, RunTimeout: 10 * time.Minute}
}

// Validate reports a config the runner cannot honour.
func (c RestoreConfig) Validate() error {
	var errs []error
	if c.Exe == "" {
		errs = append(errs, errors.New("restore bench: no executable to start the restoring child from"))
	}
	if c.Sessions <= 0 || c.Sessions > 5_000_000 {
		errs = append(errs, errors.New("restore bench: -sessions must be between 1 and 5000000, e.g. 1000000"))
	}
	if c.Versions < 1 || c.Versions > 64 || int64(c.Sessions)*int64(c.Versions) > 20_000_000 {
		errs = append(errs, errors.New("restore bench: -versions must be between 1 and 64, with -sessions x -versions at most 20000000"))
	}
	if c.Partitions <= 0 || c.Partitions > 1000 {
		errs = append(errs, errors.New("restore bench: -partitions must be between 1 and 1000, e.g. 6"))
	}
	if c.EventIDs < 1 || c.EventIDs > state.MaxEventIDs {
		errs = append(errs, fmt.Errorf("restore bench: -event-ids must be between 1 and %d", state.MaxEventIDs))
	}
	if c.TxnRecords <= 0 {
		errs = append(errs, errors.New("restore bench: -txn-records must be positive, e.g. 10000"))
	}
	if c.RunTimeout <= 0 {
		errs = append(errs, errors.New("restore bench: -run-timeout must be positive, e.g. 10m"))
	}
	return errors.Join(errs...)
}

// RestoreResult is what the restoring child reports.
type RestoreResult struct {
	Sessions int           `json:"sessions"`
	Took     time.Duration `json:"took"`
	// LiveHeap is the heap still allocated after a GC once the restore is done: what holding
	// the restored sessions costs, without the garbage of decoding them.
	LiveHeap int64 `json:"liveHeap"`
}

// RestoreReport is the outcome of the restore benchmark.
type RestoreReport struct {
	Broker      string
	Config      RestoreConfig
	Bytes       int64 // record value bytes written
	Fill        time.Duration
	Result      RestoreResult
	PeakRSS     int64 // the restoring child's VmHWM, holding every restored session
	RunnerPeak  int64 // this process's VmHWM (the embedded broker holds the topic in memory)
	RecordsRead int64 // records in the topic (end offsets, control records included)
}

// RunRestore fills a state topic with cfg.Sessions SessionState records, written in
// transactions as the enricher writes them, then starts a child that restores all partitions
// with state.Store.Restore (read_committed) and reports the time; the child's peak RSS is the
// memory of the restored store plus the client's buffers.
func RunRestore(ctx context.Context, cfg RestoreConfig, log *slog.Logger) (*RestoreReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	brokers, broker, stopBroker, err := startBroker(cfg.Brokers, log)
	if err != nil {
		return nil, err
	}
	defer stopBroker()
	rep := &RestoreReport{Broker: broker, Config: cfg}
	topic := fmt.Sprintf("bench.restore.r%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(topic+"-fill"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.MaxBufferedRecords(cfg.TxnRecords+1))
	if err != nil {
		return nil, fmt.Errorf("state fill producer: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopic(ctx, int32(cfg.Partitions), -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return nil, fmt.Errorf("create state topic %s: %w", topic, err)
	}
	start := time.Now()
	if rep.Bytes, err = fillState(ctx, cl, topic, cfg); err != nil {
		return nil, err
	}
	rep.Fill = time.Since(start)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends.Each(func(o kadm.ListedOffset) { rep.RecordsRead += o.Offset })
	log.Info("state topic filled", "topic", topic, "sessions", cfg.Sessions, "took", rep.Fill)

	ps := make([]int32, cfg.Partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	t := kafka.DefaultTopicsConfig()
	t.State = topic
	spec := TargetSpec{Kind: TargetRestore, Brokers: brokers, Topics: t, Partitions: ps}
	child, err := StartChild(cfg.Exe, spec, cfg.RunTimeout)
	if err != nil {
		return nil, err
	}
	rep.PeakRSS, err = child.PeakRSS()
	stopErr := child.Stop(30 * time.Second)
	if err = errors.Join(err, stopErr); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(child.URL), &rep.Result); err != nil {
		return nil, fmt.Errorf("restore child's result %q: %w", child.URL, err)
	}
	if rep.Result.Sessions != cfg.Sessions {
		return nil, fmt.Errorf("restore child restored %d sessions, want %d", rep.Result.Sessions, cfg.Sessions)
	}
	rep.RunnerPeak, _ = selfKiB("VmHWM")
	rep.RunnerPeak <<= 10
	return rep, nil
}

// fillState writes cfg.Versions SessionStates per session (all of a session's versions after
// every session's previous one, as sessions progress side by side), keyed by session id and
// spread over the partitions, in transactions of cfg.TxnRecords records, and returns the value
// bytes written.
func fillState(ctx context.Context, cl *kgo.Client, topic string, cfg RestoreConfig) (int64, error) {
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		return 0, err
	}
	var bytes int64
	now := time.Now().UTC().Truncate(time.Millisecond)
	status, outcome := "COMPLETED", "SUCCESS"
	total := cfg.Sessions * cfg.Versions
	for lo := 0; lo < total; lo += cfg.TxnRecords {
		if err := cl.BeginTransaction(); err != nil {
			return bytes, fmt.Errorf("begin fill transaction: %w", err)
		}
		for i := lo; i < min(lo+cfg.TxnRecords, total); i++ {
			sid := fmt.Sprintf("bench-session-%08d", i%cfg.Sessions)
			ids := make([]string, cfg.EventIDs)
			for j := range ids {
				ids[j] = fmt.Sprintf("%s-event-%d", sid, j)
			}
			v, err := codec.Encode(&schemas.SessionState{SessionID: sid, LatestStatus: &status, Outcome: &outcome, EnrichedEventIDs: ids, UpdatedAt: now})
			if err != nil {
				return bytes, err
			}
			bytes += int64(len(v))
			cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % cfg.Sessions % cfg.Partitions), Key: []byte(sid), Value: v}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			return bytes, fmt.Errorf("flush fill transaction: %w", err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return bytes, fmt.Errorf("commit fill transaction: %w", err)
		}
	}
	return bytes, nil
}

// serveRestore restores spec.Partitions of spec.Topics.State with the enricher's restore path
// and reports {"sessions":n,"took":ns} on its READY line; it then holds the store until ctx
// ends, so that the runner reads its peak RSS with every session resident.
func serveRestore(ctx context.Context, spec TargetSpec, stdout io.Writer) error {
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionStateSchema()}, nil)
	if err != nil {
		return err
	}
	opts, err := kafka.ClientOpts(kafkaConfig(spec), "enricher-state", nil)
	if err != nil {
		return err
	}
	store := state.NewStore()
	start := time.Now()
	n, err := store.Restore(ctx, opts, spec.Topics.State, codec, spec.Partitions)
	if err != nil {
		return err
	}
	took := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := json.Marshal(RestoreResult{Sessions: n, Took: took, LiveHeap: int64(ms.HeapAlloc)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s%s\n", readyPrefix, b)
	<-ctx.Done()
	if store.Len() != n { // keeps the store reachable (and resident) until the runner has read the peak
		return fmt.Errorf("restored store changed from %d to %d sessions", n, store.Len())
	}
	return nil
}

// Write renders the report as the table BENCHMARKS.md quotes.
func (r *RestoreReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\n## State restore (broker: %s)\n\n", r.Broker)
	fmt.Fprintln(w, "| sessions | records/session | partitions | event ids/session | records in topic | value bytes | fill | restore | sessions/s | restore child peak RSS | live heap after restore | runner peak RSS |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %s | %s | **%s** | %.0f | **%s** | %s | %s |\n", r.Result.Sessions, r.Config.Versions, r.Config.Partitions, r.Config.EventIDs,
		r.RecordsRead, mib(r.Bytes), r.Fill.Round(100*time.Millisecond), r.Result.Took.Round(10*time.Millisecond),
		float64(r.Result.Sessions)/r.Result.Took.Seconds(), mib(r.PeakRSS), mib(r.Result.LiveHeap), mib(r.RunnerPeak))
}

// selfKiB reads a field of this process's /proc status, in KiB.
func selfKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read own status: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}
