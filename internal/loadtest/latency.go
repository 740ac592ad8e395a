package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
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

// Exe is an enricher executable under test, with the label the report gives it (e.g. before,
// after): any build of idnow-bench, since children are started as `<exe> serve-target <spec>`.
type Exe struct {
	Label, Path string
}

// LatencyConfig bounds the end-to-end latency benchmark: per executable, the peak rate of a
// backlog drain, then paced load at fractions of that peak.
type LatencyConfig struct {
	Exes        []Exe
	Brokers     []string      // a real cluster; empty starts an embedded broker in this process
	Concurrency int           // enrich.concurrency C
	Latency     time.Duration // fixed simulator API latency L
	Delivery    string
	Fractions   []float64     // of the measured peak rate, e.g. 0.25, 0.5, 0.9
	Duration    time.Duration // paced sending per level
	PeakEvents  int           // backlog of the peak drain
	RunTimeout  time.Duration // bound on each drain and on each level's tail
}

// DefaultLatencyConfig is the issue-16 latency run without the before executable.
func DefaultLatencyConfig() LatencyConfig {
	return LatencyConfig{Concurrency: 64, Latency: 50 * time.Millisecond, Delivery: enrich.DeliveryExactlyOnce,
		Fractions: []float64{0.25, 0.5, 0.9}, Duration: 15 * time.Second, PeakEvents: 20000, RunTimeout: 3 * time.Minute}
}

// Validate reports a config the runner cannot honour.
func (c LatencyConfig) Validate() error {
	var errs []error
	if len(c.Exes) == 0 {
		errs = append(errs, errors.New("latency bench: no executable"))
	}
	if c.Concurrency <= 0 || c.Latency <= 0 || c.Duration <= 0 || c.RunTimeout <= 0 {
		errs = append(errs, errors.New("latency bench: -concurrency, -latency, -duration and -run-timeout must be positive"))
	}
	if c.PeakEvents <= 0 || c.PeakEvents > 2_000_000 {
		errs = append(errs, errors.New("latency bench: -peak-events must be between 1 and 2000000"))
	}
	if len(c.Fractions) == 0 || slices.ContainsFunc(c.Fractions, func(f float64) bool { return f <= 0 || f > 1 }) {
		errs = append(errs, errors.New("latency bench: -fractions must list shares of the peak in (0, 1], e.g. 0.25,0.5,0.9"))
	}
	if c.Delivery != enrich.DeliveryExactlyOnce && c.Delivery != enrich.DeliveryAtLeastOnce {
		errs = append(errs, fmt.Errorf("latency bench: -delivery %q: use exactly_once or at_least_once", c.Delivery))
	}
	return errors.Join(errs...)
}

// LatencyLevel is one paced run: events sent at Rate for the configured duration.
type LatencyLevel struct {
	Fraction, Rate      float64
	Sent, Received      int
	Measured            int // events after the warm-up, whose latencies the percentiles cover
	P50, P99, P999, Max time.Duration
	CPUPerEvent         time.Duration
}

// LatencyRun is one executable's peak drain and its paced levels.
type LatencyRun struct {
	Exe    Exe
	Peak   EnrichRun
	Levels []LatencyLevel
}

// LatencyReport is the outcome of the latency benchmark.
type LatencyReport struct {
	Broker string
	Config LatencyConfig
	Runs   []LatencyRun
}

// benchEnv is the broker, simulator and backlog producer the enricher benchmarks share.
type benchEnv struct {
	brokers  []string
	broker   string
	sim      *idnowsim.Simulator
	cl       *kgo.Client
	adm      *kadm.Client
	sessions []string
	status   map[string]string
	run      string
	closers  []func()
}

func (b *benchEnv) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		b.closers[i]()
	}
}

// newBenchEnv starts (or uses) the broker and the simulator with n sessions already final, as
// RunEnrich does.
func newBenchEnv(ctx context.Context, given []string, n int, log *slog.Logger) (*benchEnv, error) {
	b := &benchEnv{run: fmt.Sprintf("r%d", time.Now().UnixNano())}
	brokers, broker, stopBroker, err := startBroker(given, log)
	if err != nil {
		return nil, err
	}
	b.brokers, b.broker = brokers, broker
	b.closers = append(b.closers, stopBroker)
	sc := idnowsim.DefaultConfig()
	sc.Listen = "127.0.0.1:0"
	sc.Seed = 16
	sc.StepDelay, sc.StepJitter = time.Millisecond, 0
	sc.WebhookURL = ""
	sim, err := idnowsim.New(sc, idnowsim.Deps{Registry: prometheus.NewRegistry(), Log: log.With("component", "simulator")})
	if err != nil {
		b.close()
		return nil, err
	}
	if err := sim.Start(ctx); err != nil {
		b.close()
		return nil, errors.Join(err, sim.Close())
	}
	b.sim = sim
	b.closers = append(b.closers, func() { _ = sim.Close() })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MaxBufferedRecords(50000))
	if err != nil {
		b.close()
		return nil, fmt.Errorf("backlog producer: %w", err)
	}
	b.cl, b.adm = cl, kadm.NewClient(cl)
	b.closers = append(b.closers, cl.Close)
	b.sessions = sim.CreateSessions(n)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = sim.WaitIdle(wctx)
	cancel()
	if err != nil {
		b.close()
		return nil, err
	}
	b.status = map[string]string{}
	for _, s := range sim.Sessions() {
		b.status[s.SessionID] = s.Status
	}
	return b, nil
}

// topics creates a fresh topic set named after name.
func (b *benchEnv) topics(ctx context.Context, name string) (kafka.TopicsConfig, error) {
	t := kafka.DefaultTopicsConfig()
	t.Partitions = 6
	t.Sessions, t.Enriched, t.DLQ = "bench.sessions."+name, "bench.enriched."+name, "bench.dlq."+name
	t.State, t.Keys = "bench.state."+name, "bench.keys."+name
	return t, kafka.EnsureTopics(ctx, b.adm, t, t.Sessions, t.Enriched, t.DLQ)
}

// enricherSpec is the child spec of one enricher member on tp, wired as internal/app wires it
// (state store on, privacy plain).
func (b *benchEnv) enricherSpec(tp kafka.TopicsConfig, group, instance, delivery string, conc int) TargetSpec {
	return TargetSpec{
		Kind: TargetEnricher, Brokers: b.brokers, Topics: tp,
		APIURL: b.sim.APIURL(), TokenURL: b.sim.TokenURL(), ClientID: b.sim.Config().ClientID, ClientSecret: b.sim.Config().ClientSecret,
		Environment: b.sim.Config().Environment, Delivery: delivery, Concurrency: conc, Group: group, Instance: instance,
		State: true, Privacy: schemas.PrivacyPlain,
	}
}

// waitGroupStable waits until group is Stable with members members.
func waitGroupStable(ctx context.Context, adm *kadm.Client, group string, members int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "not described yet"
	for time.Now().Before(deadline) {
		gs, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := gs[group]; ok && g.Err == nil {
				last = fmt.Sprintf("state %s, %d members", g.State, len(g.Members))
				if g.State == "Stable" && len(g.Members) == members {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("group %s not stable with %d members within %s (%s)", group, members, timeout, last)
}

// RunLatency runs the latency benchmark for every executable in turn.
func RunLatency(ctx context.Context, cfg LatencyConfig, log *slog.Logger) (*LatencyReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	env, err := newBenchEnv(ctx, cfg.Brokers, max(6000, min(cfg.PeakEvents/4, 25000)), log)
	if err != nil {
		return nil, err
	}
	defer env.close()
	rep := &LatencyReport{Broker: env.broker, Config: cfg}
	peakTopics, err := env.topics(ctx, env.run+"-peak")
	if err != nil {
		return nil, err
	}
	if err := produceBacklog(ctx, env.cl, peakTopics.Sessions, cfg.PeakEvents, env.sessions, env.status); err != nil {
		return nil, err
	}
	if err := env.sim.SetFaults(idnowsim.Faults{Latency: cfg.Latency, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		return nil, err
	}
	adm := env.adm
	for i, exe := range cfg.Exes {
		ec := EnrichConfig{Exe: exe.Path, RunTimeout: cfg.RunTimeout}
		peak, err := drain(ctx, ec, env.sim, adm, env.brokers, peakTopics, fmt.Sprintf("%s-peak-%d", env.run, i),
			cfg.Concurrency, cfg.Delivery, true, schemas.PrivacyPlain, cfg.PeakEvents, cfg.Latency, drainOpts{}, log)
		if err != nil {
			return nil, fmt.Errorf("%s: peak drain: %w", exe.Label, err)
		}
		run := LatencyRun{Exe: exe, Peak: peak}
		for j, f := range cfg.Fractions {
			lv, err := env.paced(ctx, cfg, exe, fmt.Sprintf("%s-lat-%d-%d", env.run, i, j), f*peak.EventsPerSec, log)
			if err != nil {
				return nil, fmt.Errorf("%s at %.0f%% of peak: %w", exe.Label, 100*f, err)
			}
			lv.Fraction = f
			run.Levels = append(run.Levels, lv)
		}
		rep.Runs = append(rep.Runs, run)
	}
	return rep, nil
}

// paced starts one enricher on empty topics, sends SessionEvents to its input at rate for
// cfg.Duration as the ingress writes them (receivedAt = the send time) and measures, per event,
// the time from sending to a read_committed reader receiving its EnrichedSession.
func (b *benchEnv) paced(ctx context.Context, cfg LatencyConfig, exe Exe, id string, rate float64, log *slog.Logger) (LatencyLevel, error) {
	lv := LatencyLevel{Rate: rate}
	tp, err := b.topics(ctx, id)
	if err != nil {
		return lv, err
	}
	spec := b.enricherSpec(tp, "bench-"+id, id, cfg.Delivery, cfg.Concurrency)
	child, err := StartChild(exe.Path, spec, 30*time.Second)
	if err != nil {
		return lv, err
	}
	defer func() { _ = child.Stop(30 * time.Second) }()
	if err := waitGroupStable(ctx, b.adm, spec.Group, 1, 30*time.Second); err != nil {
		return lv, fmt.Errorf("%w\n%s", err, child.Logs())
	}

	n := max(1, int(rate*cfg.Duration.Seconds()))
	sentAt := make([]time.Time, n)
	gotAt := make([]time.Time, n)
	var mu sync.Mutex
	received := 0
	reader, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(tp.Enriched),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return lv, fmt.Errorf("latency reader: %w", err)
	}
	defer reader.Close()
	rctx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for rctx.Err() == nil {
			fs := reader.PollFetches(rctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				i := eventIndex(r, id)
				if i < 0 || i >= n {
					return
				}
				mu.Lock()
				if gotAt[i].IsZero() {
					gotAt[i] = now
					received++
				}
				mu.Unlock()
			})
		}
	}()
	defer func() {
		stopReader()
		<-readerDone
	}()

	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		return lv, err
	}
	// No linger: the ingress writes each webhook's event with ProduceSync, which does not wait
	// for a batch to fill either.
	prod, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
	if err != nil {
		return lv, fmt.Errorf("latency producer: %w", err)
	}
	defer prod.Close()
	cpu0, _ := ProcessCPU(child.Pid())
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	var perr error
	var perrMu sync.Mutex
	for sent < n {
		select {
		case <-ctx.Done():
			tick.Stop()
			return lv, ctx.Err()
		case <-tick.C:
		}
		due := min(n, int(rate*time.Since(start).Seconds())+1)
		for ; sent < due; sent++ {
			sid := b.sessions[sent%len(b.sessions)]
			st := "RUNNING"
			seq := int64(sent/len(b.sessions) + 1)
			now := time.Now()
			ev := &schemas.SessionEvent{EventID: fmt.Sprintf("%s-%d", id, sent), EventName: "session.status", EventSequence: &seq,
				SessionID: sid, SessionStatus: &st, ReceivedAt: now.UTC().Truncate(time.Millisecond), DeliveryVariant: schemas.DeliveryJWTBody}
			v, err := codec.Encode(ev)
			if err != nil {
				tick.Stop()
				return lv, err
			}
			sentAt[sent] = now
			prod.Produce(ctx, &kgo.Record{Topic: tp.Sessions, Key: []byte(sid), Value: v}, func(_ *kgo.Record, err error) {
				if err != nil {
					perrMu.Lock()
					perr = errors.Join(perr, err)
					perrMu.Unlock()
				}
			})
		}
	}
	tick.Stop()
	if err := prod.Flush(ctx); err != nil {
		return lv, err
	}
	perrMu.Lock()
	err = perr
	perrMu.Unlock()
	if err != nil {
		return lv, fmt.Errorf("produce events: %w", err)
	}
	deadline := time.Now().Add(cfg.RunTimeout)
	for {
		mu.Lock()
		r := received
		mu.Unlock()
		if r >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cpu, err := ProcessCPU(child.Pid()); err == nil {
		lv.CPUPerEvent = (cpu - cpu0) / time.Duration(n)
	}
	stopReader()
	<-readerDone
	lv.Sent, lv.Received = n, received
	// The first fifth (at most 3 s) is warm-up: connections, the state restore, the first
	// transaction.
	warm := start.Add(min(3*time.Second, cfg.Duration/5))
	var lat []time.Duration
	for i := range n {
		if sentAt[i].Before(warm) {
			continue
		}
		if gotAt[i].IsZero() {
			lat = append(lat, never) // never arrived: counts as the worst
			continue
		}
		lat = append(lat, gotAt[i].Sub(sentAt[i]))
	}
	slices.Sort(lat)
	lv.Measured = len(lat)
	if len(lat) > 0 {
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		lv.P50, lv.P99, lv.P999, lv.Max = q(0.50), q(0.99), q(0.999), lat[len(lat)-1]
	}
	log.Info("latency level done", "exe", exe.Label, "rate", int(rate), "sent", n, "received", received, "p50", lv.P50, "p99", lv.P99)
	return lv, nil
}

// eventIndex returns i of the event id "<id>-<i>" in r's event-id header, -1 when absent.
func eventIndex(r *kgo.Record, id string) int {
	for _, h := range r.Headers {
		if h.Key != serde.HeaderEventID {
			continue
		}
		var i int
		if _, err := fmt.Sscanf(string(h.Value), id+"-%d", &i); err != nil {
			return -1
		}
		return i
	}
	return -1
}

// Write renders the report as markdown.
func (r *LatencyReport) Write(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\n## End-to-end latency (broker: %s; C=%d, %s, L=%s, state store on)\n\n", r.Broker, c.Concurrency, c.Delivery, c.Latency)
	fmt.Fprintln(w, "| enricher | peak events/s | calls/event | calls×L | share of peak | events/s sent | events | received | p50 | p99 | p99.9 | max | CPU/event |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range r.Runs {
		callsL := time.Duration(run.Peak.CallsPerEvent * float64(c.Latency))
		for _, lv := range run.Levels {
			fmt.Fprintf(w, "| %s | %.0f | %.2f | %s | %.0f%% | %.0f | %d | %d | %s | %s | %s | %s | %s |\n", run.Exe.Label, run.Peak.EventsPerSec,
				run.Peak.CallsPerEvent, callsL.Round(time.Millisecond), 100*lv.Fraction, lv.Rate, lv.Sent, lv.Received,
				latencyMs(lv.P50), latencyMs(lv.P99), latencyMs(lv.P999), latencyMs(lv.Max), micros(lv.CPUPerEvent))
		}
	}
	fmt.Fprintln(w, "\nLatency: from producing the SessionEvent (receivedAt, as the ingress writes it) to a read_committed reader receiving its EnrichedSession; the first fifth of each level (at most 3 s) is warm-up and not counted; an event never received counts as infinite.")
	for _, run := range r.Runs {
		fmt.Fprintf(w, "\n%s: peak drain %.0f events/s (ratio %.2f of C/(calls×L)), CPU %s per event at the peak\n", run.Exe.Label, run.Peak.EventsPerSec, run.Peak.Ratio(), micros(run.Peak.CPUPerEvent))
	}
}

// latencyMs renders a latency, "∞" for an event never received.
func latencyMs(d time.Duration) string {
	if d >= never {
		return "∞"
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// never is the latency of an event that was never received.
const never = time.Duration(1 << 62)
