package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// ScaleOutRun is one window: the load spread over some ingress replicas.
type ScaleOutRun struct {
	Concurrency int
	Replicas    int
	Requests    int // successful, summed over the rounds
	Errors      int
	Elapsed     time.Duration // summed over the rounds
	IngressCPU  time.Duration // all replicas
	RunnerCPU   time.Duration // the load generator (and the embedded broker, when used)
	Machine     time.Duration // busy CPU of the whole machine
}

// RPS is successful requests per second.
func (r ScaleOutRun) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// ScaleOutReport is the outcome of the ingress scale-out benchmark.
type ScaleOutReport struct {
	Broker string
	Rounds int
	Cores  int
	Runs   []ScaleOutRun // per level: 1 replica, then 2
}

// RunIngressScaleOut measures one ingress replica against two behind a round-robin in the load
// generator: with two replicas the connections alternate between them (connection i goes to
// replica i mod 2), as a connection-level load balancer spreads them. Both replicas run
// throughout; the one-replica windows use the first only. Windows alternate between one and two
// replicas, with new tokens every window. The machine's busy cores are reported next to the
// rate: on a machine where the load generator, broker and replicas share few cores, the machine
// and not the ingress is the bound.
func RunIngressScaleOut(ctx context.Context, cfg IngressCPUConfig, log *slog.Logger) (rep *ScaleOutReport, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	brokers, broker, signer, stop, err := startSigning(cfg.Brokers, log)
	if err != nil {
		return nil, err
	}
	defer stop()
	run := fmt.Sprintf("s%d", time.Now().UnixNano())
	topics := kafka.DefaultTopicsConfig()
	topics.Sessions = "bench.ingress-scaleout." + run
	topics.Partitions = 6
	var replicas []*Child
	defer func() {
		for _, c := range replicas {
			err = errors.Join(err, c.Stop(15*time.Second))
		}
	}()
	for range 2 {
		c, err := StartChild(cfg.Exe, TargetSpec{Kind: TargetIngress, Brokers: brokers, Topics: topics, JWKSURL: signer.JWKSURL()}, 30*time.Second)
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, c)
	}
	warm, err := signer.SignMany(run+"-warm", 2000, 30*time.Minute)
	if err != nil {
		return nil, err
	}
	for _, c := range replicas {
		if _, err := Load(ctx, LoadConfig{URL: c.URL, Tokens: warm, Concurrency: 16, Duration: cfg.Warmup}); err != nil {
			return nil, err
		}
	}
	rep = &ScaleOutReport{Broker: broker, Rounds: cfg.Rounds, Cores: runtime.NumCPU()}
	for li, level := range cfg.Levels {
		runs := [2]ScaleOutRun{{Concurrency: level, Replicas: 1}, {Concurrency: level, Replicas: 2}}
		for round := range cfg.Rounds {
			for k := range 2 {
				n := (k+round+li)%2 + 1
				tokens, err := signer.SignMany(fmt.Sprintf("%s-l%d-r%d-n%d", run, li, round, n), cfg.MaxRequests, 30*time.Minute)
				if err != nil {
					return nil, err
				}
				w, err := scaleOutWindow(ctx, replicas[:n], tokens, level, cfg.Duration)
				if err != nil {
					return nil, err
				}
				r := &runs[n-1]
				r.Requests += w.Requests
				r.Errors += w.Errors
				r.Elapsed += w.Elapsed
				r.IngressCPU += w.IngressCPU
				r.RunnerCPU += w.RunnerCPU
				r.Machine += w.Machine
				log.Info("scale-out window done", "replicas", n, "concurrency", level, "round", round+1, "rps", int(w.RPS()))
			}
		}
		rep.Runs = append(rep.Runs, runs[:]...)
	}
	return rep, nil
}

// scaleOutWindow posts tokens at concurrency conc, the connections split round-robin over the
// replicas, and measures the CPU every party used.
func scaleOutWindow(ctx context.Context, replicas []*Child, tokens []string, conc int, d time.Duration) (ScaleOutRun, error) {
	var w ScaleOutRun
	cpu0 := make([]time.Duration, len(replicas))
	for i, c := range replicas {
		var err error
		if cpu0[i], err = ProcessCPU(c.Pid()); err != nil {
			return w, err
		}
	}
	self0, err := ProcessCPU(os.Getpid())
	if err != nil {
		return w, err
	}
	busy0, err := machineBusy()
	if err != nil {
		return w, err
	}
	// Connection i goes to replica i mod n: each replica gets its share of the connections and a
	// disjoint share of the tokens.
	n := len(replicas)
	results := make([]LoadResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range replicas {
		share := conc / n
		if i < conc%n {
			share++
		}
		var mine []string
		for j := i; j < len(tokens); j += n {
			mine = append(mine, tokens[j])
		}
		wg.Go(func() {
			results[i], errs[i] = Load(ctx, LoadConfig{URL: c.URL, Tokens: mine, Concurrency: max(1, share), Duration: d})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return w, err
	}
	for i, c := range replicas {
		cpu1, err := ProcessCPU(c.Pid())
		if err != nil {
			return w, err
		}
		w.IngressCPU += cpu1 - cpu0[i]
		w.Requests += results[i].Requests - results[i].Errors
		w.Errors += results[i].Errors
		w.Elapsed = max(w.Elapsed, results[i].Elapsed)
	}
	self1, err := ProcessCPU(os.Getpid())
	if err != nil {
		return w, err
	}
	busy1, err := machineBusy()
	if err != nil {
		return w, err
	}
	w.RunnerCPU, w.Machine = self1-self0, busy1-busy0
	return w, nil
}

// Write renders the report as the markdown table BENCHMARKS.md quotes.
func (r *ScaleOutReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\n## Ingress scale-out (broker: %s; %d rounds, windows alternating; %d cores)\n\n", r.Broker, r.Rounds, r.Cores)
	fmt.Fprintln(w, "| conc | replicas | req/s | ratio vs 1 replica | ingress cores (all replicas) | runner cores (load generator, embedded broker) | machine busy cores | requests | errors |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var one float64
	for _, run := range r.Runs {
		ratio := ""
		if run.Replicas == 1 {
			one = run.RPS()
		} else if one > 0 {
			ratio = fmt.Sprintf("**%.2f**", run.RPS()/one)
		}
		fmt.Fprintf(w, "| %d | %d | %.0f | %s | %.2f | %.2f | %.2f of %d | %d | %d |\n", run.Concurrency, run.Replicas, run.RPS(), ratio,
			cores(run.IngressCPU, run.Elapsed), cores(run.RunnerCPU, run.Elapsed), cores(run.Machine, run.Elapsed), r.Cores, run.Requests, run.Errors)
	}
}

// ScaleConfig bounds the enricher scale-out benchmark: the same backlog drained by 1, 2, 3...
// members of one consumer group while the API latency is the bound.
type ScaleConfig struct {
	Exe         string
	Brokers     []string
	Members     []int
	Concurrency int           // enrich.concurrency per member
	Latency     time.Duration // fixed simulator API latency L
	Delivery    string
	Events      int
	RunTimeout  time.Duration
}

// DefaultScaleConfig keeps the API the bound on 2 cores: 3 members at C=32, L=50 ms need
// about 1 000 events/s.
func DefaultScaleConfig() ScaleConfig {
	return ScaleConfig{Members: []int{1, 2, 3}, Concurrency: 32, Latency: 50 * time.Millisecond,
		Delivery: enrich.DeliveryExactlyOnce, Events: 12000, RunTimeout: 3 * time.Minute}
}

// Validate reports a config the runner cannot honour.
func (c ScaleConfig) Validate() error {
	var errs []error
	if c.Exe == "" {
		errs = append(errs, errors.New("scale-out bench: no executable"))
	}
	if len(c.Members) == 0 || slices.ContainsFunc(c.Members, func(n int) bool { return n <= 0 || n > 6 }) {
		errs = append(errs, errors.New("scale-out bench: -members must list member counts between 1 and 6 (the partitions), e.g. 1,2,3"))
	}
	if c.Concurrency <= 0 || c.Latency <= 0 || c.RunTimeout <= 0 {
		errs = append(errs, errors.New("scale-out bench: -concurrency, -latency and -run-timeout must be positive"))
	}
	if c.Events <= 0 || c.Events > 2_000_000 {
		errs = append(errs, errors.New("scale-out bench: -events must be between 1 and 2000000"))
	}
	if c.Delivery != enrich.DeliveryExactlyOnce && c.Delivery != enrich.DeliveryAtLeastOnce {
		errs = append(errs, fmt.Errorf("scale-out bench: -delivery %q: use exactly_once or at_least_once", c.Delivery))
	}
	return errors.Join(errs...)
}

// ScaleRun is one drain by Members members.
type ScaleRun struct {
	Members       int
	EventsPerSec  float64
	CallsPerEvent float64
	Limit         float64 // Members × C / (calls × L)
	DLQ           int64
}

// ScaleReport is the outcome of the scale-out benchmark.
type ScaleReport struct {
	Broker string
	Config ScaleConfig
	Runs   []ScaleRun
}

// RunScale drains a fresh backlog with each member count in turn. The members start on empty
// topics and the backlog is written once the group is stable, so the rate measures the members
// sharing the partitions, not their joining.
func RunScale(ctx context.Context, cfg ScaleConfig, log *slog.Logger) (*ScaleReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	env, err := newBenchEnv(ctx, cfg.Brokers, max(6000, min(cfg.Events/4, 25000)), log)
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.sim.SetFaults(idnowsim.Faults{Latency: cfg.Latency, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		return nil, err
	}
	rep := &ScaleReport{Broker: env.broker, Config: cfg}
	for i, m := range cfg.Members {
		r, err := env.scaleDrain(ctx, cfg, fmt.Sprintf("%s-scale-%d", env.run, i), m, log)
		if err != nil {
			return nil, fmt.Errorf("%d members: %w", m, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return rep, nil
}

func (b *benchEnv) scaleDrain(ctx context.Context, cfg ScaleConfig, id string, members int, log *slog.Logger) (ScaleRun, error) {
	r := ScaleRun{Members: members}
	tp, err := b.topics(ctx, id)
	if err != nil {
		return r, err
	}
	group := "bench-" + id
	var children []*Child
	defer func() {
		for _, c := range children {
			_ = c.Stop(30 * time.Second)
		}
	}()
	for k := range members {
		spec := b.enricherSpec(tp, group, fmt.Sprintf("%s-m%d", id, k), cfg.Delivery, cfg.Concurrency)
		c, err := StartChild(cfg.Exe, spec, 30*time.Second)
		if err != nil {
			return r, err
		}
		children = append(children, c)
	}
	if err := waitGroupStable(ctx, b.adm, group, members, time.Minute); err != nil {
		return r, err
	}
	apiBefore := b.sim.Stats().APIRequests
	if err := produceBacklog(ctx, b.cl, tp.Sessions, cfg.Events, b.sessions, b.status); err != nil {
		return r, err
	}
	deadline := time.Now().Add(cfg.RunTimeout)
	var (
		t0     time.Time
		c0     int64
		warmAt = int64(cfg.Events) / 20
	)
	for {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("%d members did not drain %d events within %s", members, cfg.Events, cfg.RunTimeout)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		done, err := committed(ctx, b.adm, group, tp.Sessions)
		if err != nil {
			continue
		}
		if t0.IsZero() && done >= warmAt {
			t0, c0 = time.Now(), done
		}
		if done >= int64(cfg.Events) {
			r.EventsPerSec = float64(done-c0) / time.Since(t0).Seconds()
			break
		}
	}
	r.CallsPerEvent = float64(b.sim.Stats().APIRequests-apiBefore) / float64(cfg.Events)
	r.Limit = float64(members*cfg.Concurrency) / (r.CallsPerEvent * cfg.Latency.Seconds())
	ends, err := b.adm.ListEndOffsets(ctx, tp.DLQ)
	if err != nil {
		return r, fmt.Errorf("read DLQ end offsets: %w", err)
	}
	for _, ps := range ends {
		for _, o := range ps {
			r.DLQ += o.Offset
		}
	}
	log.Info("scale-out drain done", "members", members, "events_per_sec", int(r.EventsPerSec), "limit", int(r.Limit))
	return r, nil
}

// Write renders the report as markdown.
func (r *ScaleReport) Write(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\n## Enricher scale-out (broker: %s; C=%d per member, %s, L=%s, %d events, 6 partitions, state store on)\n\n", r.Broker, c.Concurrency, c.Delivery, c.Latency, c.Events)
	fmt.Fprintln(w, "| members | events/s | API calls/event | limit members×C/(calls×L) | ratio to limit | vs 1 member | DLQ |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|")
	var one float64
	for _, x := range r.Runs {
		if x.Members == 1 {
			one = x.EventsPerSec
		}
	}
	for _, x := range r.Runs {
		vs := "-"
		if one > 0 {
			vs = fmt.Sprintf("**%.2fx**", x.EventsPerSec/one)
		}
		fmt.Fprintf(w, "| %d | %.0f | %.2f | %.0f | %.2f | %s | %d |\n", x.Members, x.EventsPerSec, x.CallsPerEvent, x.Limit, x.EventsPerSec/x.Limit, vs, x.DLQ)
	}
}
