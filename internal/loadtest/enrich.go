package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// EnrichConfig bounds the enricher benchmark.
type EnrichConfig struct {
	Exe         string
	Brokers     []string      // a real cluster; empty starts an embedded broker in this process
	Events      int           // backlog per throughput run
	Latency     time.Duration // fixed simulator API latency L
	Concurrency []int         // enrich.concurrency levels C
	Deliveries  []string      // enrich.delivery modes
	// StateStore lists the state-store settings each (C, delivery) drain runs with, in order:
	// true wires Deps.State as internal/app does (the product's only mode), false leaves it nil,
	// the enricher as it was before the state store, to measure what the store costs.
	StateStore []bool
	// Privacy lists the privacy.mode settings each (C, delivery, state) drain runs with, in
	// order: plain (no Protector, the default) and/or encrypt (a development KEK and pepper, the
	// keys topic, Deps.Privacy as internal/app wires it). Repeats are allowed (plain,encrypt,
	// plain,encrypt) so the ratio is taken over interleaved runs.
	Privacy       []string
	MemoryEvents  int           // backlog drained for the memory measurement; 0 skips it
	MemoryLatency time.Duration // API latency during the memory drain
	RunTimeout    time.Duration // bound on each drain
	ProfileDir    string        // when set, the enricher of the memory drain writes enricher.pprof here
	// MemoryLimitMiB, when positive, is the Go soft memory limit of the memory drain's enricher
	// (debug.SetMemoryLimit, what GOMEMLIMIT=<n>MiB sets), to compare the peak with and without.
	MemoryLimitMiB int
	// HeapProfileDir, when set, receives enricher-heap.pprof: the memory drain's enricher's
	// heap in use near the end of the drain (go tool pprof -sample_index=inuse_space).
	HeapProfileDir string
	// MaxPollRecords overrides enrich.max_poll_records (batch and transaction size) when
	// positive; 0 keeps the product default, which is what the report's headline measures.
	MaxPollRecords int
}

// DefaultEnrichConfig is what `make bench` runs.
func DefaultEnrichConfig() EnrichConfig {
	return EnrichConfig{
		Events: 20000, Latency: 50 * time.Millisecond, Concurrency: []int{64, 256},
		Deliveries:   []string{enrich.DeliveryExactlyOnce, enrich.DeliveryAtLeastOnce},
		StateStore:   []bool{true},
		Privacy:      []string{schemas.PrivacyPlain},
		MemoryEvents: 200000, MemoryLatency: 5 * time.Millisecond, RunTimeout: 5 * time.Minute,
	}
}

// Validate reports a config the runner cannot honour.
func (c EnrichConfig) Validate() error {
	var errs []error
	if c.Exe == "" {
		errs = append(errs, errors.New("enricher bench: no executable to start the enricher from"))
	}
	if c.Events <= 0 || c.Events > 2_000_000 {
		errs = append(errs, errors.New("enricher bench: -events must be between 1 and 2000000, e.g. 20000"))
	}
	if c.Latency <= 0 {
		errs = append(errs, errors.New("enricher bench: -latency must be positive, e.g. 50ms: the API-bound limit divides by it"))
	}
	if len(c.Concurrency) == 0 || slices.ContainsFunc(c.Concurrency, func(n int) bool { return n <= 0 }) {
		errs = append(errs, errors.New("enricher bench: -concurrency must list positive levels, e.g. 64,256"))
	}
	for _, d := range c.Deliveries {
		if d != enrich.DeliveryExactlyOnce && d != enrich.DeliveryAtLeastOnce {
			errs = append(errs, fmt.Errorf("enricher bench: -delivery %q: use exactly_once and/or at_least_once", d))
		}
	}
	if len(c.StateStore) == 0 {
		errs = append(errs, errors.New("enricher bench: -state must list on and/or off, e.g. on,off"))
	}
	if len(c.Privacy) == 0 || slices.ContainsFunc(c.Privacy, func(m string) bool { return m != schemas.PrivacyPlain && m != schemas.PrivacyEncrypt }) {
		errs = append(errs, errors.New("enricher bench: -privacy must list plain and/or encrypt, e.g. plain,encrypt"))
	}
	if c.MemoryEvents < 0 || c.MemoryEvents > 2_000_000 {
		errs = append(errs, errors.New("enricher bench: -memory-events must be between 0 and 2000000"))
	}
	if c.MemoryLimitMiB < 0 {
		errs = append(errs, errors.New("enricher bench: -memory-limit-mib must be 0 (none) or positive"))
	}
	if c.MaxPollRecords < 0 {
		errs = append(errs, errors.New("enricher bench: -max-poll-records must be 0 (product default) or positive"))
	}
	if c.RunTimeout <= 0 {
		errs = append(errs, errors.New("enricher bench: -run-timeout must be positive, e.g. 5m"))
	}
	return errors.Join(errs...)
}

// EnrichRun is one drain of a backlog by one enricher process.
type EnrichRun struct {
	Concurrency   int
	Delivery      string
	State         bool   // the state store was on (Deps.State set)
	Privacy       string // privacy.mode of the drain: plain or encrypt
	Latency       time.Duration
	Events        int
	Elapsed       time.Duration // steady-state window: from 5 % committed to 100 % committed
	EventsPerSec  float64
	CallsPerEvent float64 // API requests the simulator served / events
	Limit         float64 // C / (calls per event x L)
	DLQ           int64   // records written to the DLQ (must be 0: no faults are injected)
	PeakRSS       int64
	RSSSamples    []int64       // KiB, every 250 ms
	CPUPerEvent   time.Duration // the enricher's CPU (user+system) over the steady-state window per event
	// MemoryLimitMiB is the enricher's Go soft memory limit (0: none).
	MemoryLimitMiB int
}

// Ratio is the measured rate over the API-bound limit.
func (r EnrichRun) Ratio() float64 {
	if r.Limit == 0 {
		return 0
	}
	return r.EventsPerSec / r.Limit
}

// EnrichReport is the outcome of the enricher benchmark.
type EnrichReport struct {
	Broker         string
	MaxPollRecords int // the override in effect, 0 = product default
	Runs           []EnrichRun
	Memory         *EnrichRun
}

// RunEnrich runs the enricher benchmark. The simulator and the broker run in this process; each
// enricher runs as a child process with its own consumer group over the same backlog, so every
// run starts from offset 0 of the same records.
func RunEnrich(ctx context.Context, cfg EnrichConfig, log *slog.Logger) (*EnrichReport, error) {
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
	sc := idnowsim.DefaultConfig()
	sc.Listen = "127.0.0.1:0"
	sc.Seed = 6
	sc.StepDelay, sc.StepJitter = time.Millisecond, 0
	sc.WebhookURL = ""
	sim, err := idnowsim.New(sc, idnowsim.Deps{Registry: prometheus.NewRegistry(), Log: log.With("component", "simulator")})
	if err != nil {
		return nil, err
	}
	if err := sim.Start(ctx); err != nil {
		return nil, errors.Join(err, sim.Close())
	}
	defer func() { _ = sim.Close() }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MaxBufferedRecords(50000))
	if err != nil {
		return nil, fmt.Errorf("backlog producer: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	rep := &EnrichReport{Broker: broker, MaxPollRecords: cfg.MaxPollRecords}

	// Sessions are shared by several events (event i belongs to session i mod sessions), the
	// way a session emits created, step and completed events. There are enough of them that a
	// session's events lie further apart in a partition (sessions/partitions records) than one
	// enrich.max_poll_records batch (500): the enricher enriches one session's events in order,
	// so repeats inside a batch would serialise and measure the backlog's shape, not the enricher.
	biggest := max(cfg.Events, cfg.MemoryEvents)
	sessions := sim.CreateSessions(min(biggest, max(6000, min(biggest/4, 25000))))
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = sim.WaitIdle(wctx)
	cancel()
	if err != nil {
		return nil, err
	}
	status := map[string]string{}
	for _, s := range sim.Sessions() {
		status[s.SessionID] = s.Status
	}

	topics := kafka.DefaultTopicsConfig()
	topics.Partitions = 6
	backlog := func(name string, n int) (kafka.TopicsConfig, error) {
		t := topics
		t.Sessions, t.Enriched, t.DLQ = "bench.sessions."+name, "bench.enriched."+name, "bench.dlq."+name
		if err := kafka.EnsureTopics(ctx, adm, t, t.Sessions, t.Enriched, t.DLQ); err != nil {
			return t, err
		}
		return t, produceBacklog(ctx, cl, t.Sessions, n, sessions, status)
	}

	tp, err := backlog(run, cfg.Events)
	if err != nil {
		return nil, err
	}
	if err := sim.SetFaults(idnowsim.Faults{Latency: cfg.Latency, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		return nil, err
	}
	for _, c := range cfg.Concurrency {
		for _, d := range cfg.Deliveries {
			for i, st := range cfg.StateStore {
				for j, pm := range cfg.Privacy {
					r, err := drain(ctx, cfg, sim, adm, brokers, tp, fmt.Sprintf("%s-%s-%d-%d-%d", run, d, c, i, j), c, d, st, pm, cfg.Events, cfg.Latency, drainOpts{}, log)
					if err != nil {
						return nil, err
					}
					rep.Runs = append(rep.Runs, r)
				}
			}
		}
	}
	if cfg.MemoryEvents > 0 {
		tp, err := backlog(run+"-mem", cfg.MemoryEvents)
		if err != nil {
			return nil, err
		}
		if err := sim.SetFaults(idnowsim.Faults{Latency: cfg.MemoryLatency, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
			return nil, err
		}
		c := slices.Max(cfg.Concurrency)
		var prof drainOpts
		if cfg.ProfileDir != "" {
			prof.cpu = filepath.Join(cfg.ProfileDir, "enricher.pprof")
		}
		if cfg.HeapProfileDir != "" {
			prof.heap = filepath.Join(cfg.HeapProfileDir, "enricher-heap.pprof")
		}
		prof.memoryLimitMiB = cfg.MemoryLimitMiB
		r, err := drain(ctx, cfg, sim, adm, brokers, tp, run+"-mem", c, enrich.DeliveryExactlyOnce, cfg.StateStore[0], cfg.Privacy[0], cfg.MemoryEvents, cfg.MemoryLatency, prof, log)
		if err != nil {
			return nil, err
		}
		rep.Memory = &r
	}
	return rep, nil
}

// produceBacklog writes n SessionEvents for the given sessions, keyed by session id and encoded
// as the ingress encodes them. A session's events announce CREATED, then RUNNING, and its final
// status on its last event in the backlog, as IDnow's webhooks do: with the state store on, every
// event is then enriched (a terminal status repeated under another event id would be skipped as
// already enriched, and the comparison with the store off would measure skipped work).
func produceBacklog(ctx context.Context, cl *kgo.Client, topic string, n int, sessions []string, status map[string]string) error {
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range n {
		sid := sessions[i%len(sessions)]
		seq := int64(i/len(sessions) + 1)
		st := backlogStatus(i, n, len(sessions), status[sid])
		ev := &schemas.SessionEvent{
			EventID: fmt.Sprintf("%s-%d", topic, i), EventName: "session.status", EventSequence: &seq,
			SessionID: sid, SessionStatus: &st, ReceivedAt: now, DeliveryVariant: schemas.DeliveryJWTBody,
		}
		v, err := codec.Encode(ev)
		if err != nil {
			return err
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(sid), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush backlog: %w", err)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("produce backlog to %s: %w", topic, err)
	default:
		return nil
	}
}

// backlogStatus is the status event i of an n-event backlog over sessions sessions announces:
// CREATED on a session's first event, its final status on its last, RUNNING in between.
func backlogStatus(i, n, sessions int, final string) string {
	switch {
	case i+sessions >= n:
		return final
	case i < sessions:
		return "CREATED"
	}
	return "RUNNING"
}

// drainOpts are the files a drain's enricher writes its CPU and heap profiles to (empty: none),
// and its Go soft memory limit in MiB (0: none).
type drainOpts struct {
	cpu, heap      string
	memoryLimitMiB int
}

// drain starts one enricher child on the backlog and waits until its group committed every
// offset, measuring the steady-state rate between 5 % and 100 % committed.
func drain(ctx context.Context, cfg EnrichConfig, sim *idnowsim.Simulator, adm *kadm.Client, brokers []string, tp kafka.TopicsConfig,
	id string, conc int, delivery string, withState bool, privacyMode string, n int, latency time.Duration, prof drainOpts, log *slog.Logger) (EnrichRun, error) {
	r := EnrichRun{Concurrency: conc, Delivery: delivery, State: withState, Privacy: privacyMode, Events: n, Latency: latency, MemoryLimitMiB: prof.memoryLimitMiB}
	// Each drain gets its own state topic: a second drain of the same backlog must start with
	// nothing enriched, or it would skip every event the previous drain enriched.
	tp.State = "bench.state." + id
	tp.Keys = "bench.keys." + id
	apiBefore := sim.Stats().APIRequests
	spec := TargetSpec{
		Kind: TargetEnricher, Brokers: brokers, Topics: tp,
		APIURL: sim.APIURL(), TokenURL: sim.TokenURL(), ClientID: sim.Config().ClientID, ClientSecret: sim.Config().ClientSecret,
		Environment: sim.Config().Environment, Delivery: delivery, Concurrency: conc, Group: "bench-" + id, Instance: id,
		MaxPollRecords: cfg.MaxPollRecords, State: withState, Privacy: privacyMode,
	}
	spec.CPUProfile, spec.HeapProfile, spec.MemoryLimitMiB = prof.cpu, prof.heap, prof.memoryLimitMiB
	child, err := StartChild(cfg.Exe, spec, 30*time.Second)
	if err != nil {
		return r, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = child.Stop(30 * time.Second)
		}
	}()
	deadline := time.Now().Add(cfg.RunTimeout)
	var (
		t0     time.Time
		c0     int64
		cpu0   time.Duration
		a0     int64 // API requests served at t0
		warmAt = int64(n) / 20
	)
	for {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("enricher (C=%d, %s) did not drain %d events within %s\n%s", conc, delivery, n, cfg.RunTimeout, child.Logs())
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		done, err := committed(ctx, adm, spec.Group, tp.Sessions)
		if err != nil {
			continue // the group may not exist yet
		}
		if t0.IsZero() && done >= warmAt {
			t0, c0 = time.Now(), done
			cpu0, _ = ProcessCPU(child.Pid())
			a0 = sim.Stats().APIRequests
		}
		if done >= int64(n) {
			r.Elapsed = time.Since(t0)
			r.EventsPerSec = float64(done-c0) / r.Elapsed.Seconds()
			// What the window itself saw: API requests per committed event, and the mean
			// number of requests in flight (requests × L / elapsed), which C bounds.
			a1 := sim.Stats().APIRequests
			log.Info("enricher drain window", "calls_per_event", float64(a1-a0)/float64(done-c0),
				"mean_requests_in_flight", float64(a1-a0)*latency.Seconds()/r.Elapsed.Seconds(), "concurrency", conc)
			if cpu, err := ProcessCPU(child.Pid()); err == nil && done > c0 {
				r.CPUPerEvent = (cpu - cpu0) / time.Duration(done-c0)
			}
			break
		}
	}
	r.CallsPerEvent = float64(sim.Stats().APIRequests-apiBefore) / float64(n)
	r.Limit = float64(conc) / (r.CallsPerEvent * latency.Seconds())
	r.PeakRSS, _ = child.PeakRSS()
	r.RSSSamples = child.RSSSamples()
	stopped = true
	if err := child.Stop(30 * time.Second); err != nil {
		return r, err
	}
	ends, err := adm.ListEndOffsets(ctx, tp.DLQ)
	if err != nil {
		return r, fmt.Errorf("read DLQ end offsets: %w", err)
	}
	ends.Each(func(o kadm.ListedOffset) { r.DLQ += o.Offset })
	log.Info("enricher drain done", "concurrency", conc, "delivery", delivery, "state", withState, "privacy", privacyMode, "events_per_sec", int(r.EventsPerSec),
		"limit", int(r.Limit), "calls_per_event", r.CallsPerEvent, "dlq", r.DLQ)
	return r, nil
}

// committed sums the group's committed offsets on topic.
func committed(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	resp, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return 0, err
	}
	var sum int64
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			sum += o.At
		}
	})
	return sum, nil
}

// Write renders the report as the markdown tables BENCHMARKS.md quotes.
func (r *EnrichReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\n## Enricher throughput (broker: %s)\n\n", r.Broker)
	if r.MaxPollRecords > 0 {
		fmt.Fprintf(w, "enrich.max_poll_records overridden to %d (what-if)\n\n", r.MaxPollRecords)
	}
	fmt.Fprintln(w, "| C | delivery | state store | privacy | L | events | events/s | API calls/event | limit C/(calls×L) | ratio | DLQ | peak RSS | CPU/event |")
	fmt.Fprintln(w, "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.Runs {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %d | %.0f | %.2f | %.0f | **%.2f** | %d | %s | %s |\n", x.Concurrency, x.Delivery, onOff(x.State), x.Privacy, x.Latency,
			x.Events, x.EventsPerSec, x.CallsPerEvent, x.Limit, x.Ratio(), x.DLQ, mib(x.PeakRSS), micros(x.CPUPerEvent))
	}
	// The encryption cost: mean throughput of the encrypt drains over the plain ones of the same
	// C, delivery and state setting (interleaved when -privacy repeats them).
	type pk struct {
		k     string
		state bool
	}
	sum, cnt := map[pk]map[string]float64{}, map[pk]map[string]int{}
	for _, x := range r.Runs {
		k := pk{fmt.Sprintf("C=%d, %s, state store %s", x.Concurrency, x.Delivery, onOff(x.State)), x.State}
		if sum[k] == nil {
			sum[k], cnt[k] = map[string]float64{}, map[string]int{}
		}
		sum[k][x.Privacy] += x.EventsPerSec
		cnt[k][x.Privacy]++
	}
	for _, k := range slices.SortedFunc(maps.Keys(sum), func(a, b pk) int { return strings.Compare(a.k, b.k) }) {
		p, e := cnt[k][schemas.PrivacyPlain], cnt[k][schemas.PrivacyEncrypt]
		if p > 0 && e > 0 {
			fmt.Fprintf(w, "\nencryption cost at %s: encrypt/plain throughput %.2f (means of %d and %d drains)\n", k.k,
				(sum[k][schemas.PrivacyEncrypt]/float64(e))/(sum[k][schemas.PrivacyPlain]/float64(p)), e, p)
		}
	}
	// The delivery comparison uses the runs with the first state setting; the state comparison
	// pairs on and off runs of the same C and delivery.
	byC := map[int]map[string]float64{}
	byState := map[string]map[bool]float64{}
	for _, x := range r.Runs {
		if byC[x.Concurrency] == nil {
			byC[x.Concurrency] = map[string]float64{}
		}
		if _, seen := byC[x.Concurrency][x.Delivery]; !seen {
			byC[x.Concurrency][x.Delivery] = x.EventsPerSec
		}
		k := fmt.Sprintf("C=%d, %s", x.Concurrency, x.Delivery)
		if byState[k] == nil {
			byState[k] = map[bool]float64{}
		}
		if x.Privacy == r.Runs[0].Privacy {
			byState[k][x.State] = x.EventsPerSec
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byState)) {
		if m := byState[k]; m[true] > 0 && m[false] > 0 {
			fmt.Fprintf(w, "\nstate store cost at %s: on/off throughput %.2f\n", k, m[true]/m[false])
		}
	}
	for _, x := range r.Runs {
		m := byC[x.Concurrency]
		if x.Delivery == enrich.DeliveryExactlyOnce && x.State == r.Runs[0].State && m[enrich.DeliveryAtLeastOnce] > 0 {
			fmt.Fprintf(w, "\nexactly-once cost at C=%d: %.0f%% of at-least-once throughput\n", x.Concurrency, 100*m[enrich.DeliveryExactlyOnce]/m[enrich.DeliveryAtLeastOnce])
		}
	}
	if m := r.Memory; m != nil {
		limit := "no Go memory limit"
		if m.MemoryLimitMiB > 0 {
			limit = fmt.Sprintf("Go memory limit %d MiB", m.MemoryLimitMiB)
		}
		fmt.Fprintf(w, "\n## Enricher memory: drained %d events (C=%d, %s, state store %s, L=%s, %s) at %.0f events/s\n\n", m.Events, m.Concurrency, m.Delivery, onOff(m.State), m.Latency, limit, m.EventsPerSec)
		fmt.Fprintf(w, "Peak RSS (VmHWM) %s; %s\n", mib(m.PeakRSS), growth(m.RSSSamples))
		fmt.Fprintf(w, "\nHighest RSS in each tenth of the drain: %s\n", tenths(m.RSSSamples))
	}
}

// growth compares the resident set in the second quarter of a drain with the last quarter: a
// steady process holds it flat once its buffers are warm.
func growth(samples []int64) string {
	if len(samples) < 8 {
		return fmt.Sprintf("too few RSS samples (%d) to judge growth", len(samples))
	}
	q := len(samples) / 4
	med := func(s []int64) int64 {
		c := slices.Clone(s)
		slices.Sort(c)
		return c[len(c)/2]
	}
	a, b := med(samples[q:2*q]), med(samples[3*q:])
	return fmt.Sprintf("median RSS in the 2nd quarter of the drain %s, in the last quarter %s (%+.1f%%)",
		mib(a<<10), mib(b<<10), 100*float64(b-a)/float64(a))
}

// tenths returns the highest RSS sample of each tenth of a drain, to show when the peak came
// (a start-up transient, or growth).
func tenths(samples []int64) string {
	if len(samples) < 10 {
		return fmt.Sprintf("too few RSS samples (%d)", len(samples))
	}
	parts := make([]string, 10)
	for i := range parts {
		part := samples[i*len(samples)/10 : (i+1)*len(samples)/10]
		parts[i] = strconv.FormatInt(slices.Max(part)>>10, 10)
	}
	return strings.Join(parts, ", ") + " MiB"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
