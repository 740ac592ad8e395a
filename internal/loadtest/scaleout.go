package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

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
	brokers, broker, stopBroker, err := startBroker(cfg.Brokers, log)
	if err != nil {
		return nil, err
	}
	defer stopBroker()
	signer, err := NewSigner()
	if err != nil {
		return nil, err
	}
	defer signer.Close()
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
		if cpu0[i], err = procCPU(c.Pid()); err != nil {
			return w, err
		}
	}
	self0, err := procCPU(os.Getpid())
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
		cpu1, err := procCPU(c.Pid())
		if err != nil {
			return w, err
		}
		w.IngressCPU += cpu1 - cpu0[i]
		w.Requests += results[i].Requests - results[i].Errors
		w.Errors += results[i].Errors
		w.Elapsed = max(w.Elapsed, results[i].Elapsed)
	}
	self1, err := procCPU(os.Getpid())
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
