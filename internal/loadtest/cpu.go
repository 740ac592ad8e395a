package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// IngressCPUConfig bounds the ingress CPU benchmark: the ingress and the reference receiver (and
// optionally the ingress of an older build and what-if variants) side by side against one broker,
// measuring the CPU each target process spends per webhook as well as its throughput.
type IngressCPUConfig struct {
	Exe string // the benchmark binary, started again as the child targets
	// BeforeExe, when set, is an idnow-bench binary of an older build (e.g. main): its ingress
	// runs as one more target, "ingress (before)", to measure a change against it.
	BeforeExe   string
	Brokers     []string      // a real cluster; empty starts an embedded broker in this process
	Levels      []int         // concurrency levels, e.g. 16, 64, 256
	Rounds      int           // rounds per level; every round signs new tokens and rotates the order
	Duration    time.Duration // timed window per round and target
	MaxRequests int           // request bound per round and target (tokens signed per round)
	Warmup      time.Duration // untimed load per target before the first level
	// Variants are what-if ingress targets: "snappy", "none", "zstd" or "gzip" (kafka.compression
	// instead of the default lz4).
	Variants []string
	// ProfileDir, when set, receives a CPU profile of each target (ingress-cpu-<target>.pprof).
	ProfileDir string
}

// DefaultIngressCPUConfig measures 16, 64 and 256 connections in two rounds of 3 s each.
func DefaultIngressCPUConfig() IngressCPUConfig {
	return IngressCPUConfig{Levels: []int{16, 64, 256}, Rounds: 2, Duration: 3 * time.Second, MaxRequests: 12000, Warmup: time.Second}
}

// Validate reports a config the runner cannot honour.
func (c IngressCPUConfig) Validate() error {
	switch {
	case c.Exe == "":
		return errors.New("ingress cpu bench: no executable to start the targets from")
	case len(c.Levels) == 0 || slices.ContainsFunc(c.Levels, func(l int) bool { return l <= 0 }):
		return errors.New("ingress cpu bench: -levels must list positive concurrency levels, e.g. 16,64,256")
	case c.Rounds <= 0 || c.Rounds > 10:
		return errors.New("ingress cpu bench: -rounds must be between 1 and 10")
	case c.Duration <= 0 || c.Duration > time.Minute:
		return errors.New("ingress cpu bench: -duration must be between 0 and 1m, e.g. 3s")
	case c.MaxRequests <= 0 || c.MaxRequests > 200_000:
		return errors.New("ingress cpu bench: -max-requests must be between 1 and 200000")
	}
	for _, v := range c.Variants {
		if _, err := variantSpec(v); err != nil {
			return err
		}
	}
	return nil
}

// variantSpec is what a what-if variant changes in the ingress target.
func variantSpec(v string) (compression string, err error) {
	switch v {
	case "snappy", "none", "zstd", "gzip", "lz4":
		return v, nil
	}
	return "", fmt.Errorf("ingress cpu bench: unknown variant %q (want snappy, none, zstd, gzip or lz4)", v)
}

// CPUResult is one target at one level, summed over the rounds.
type CPUResult struct {
	Target    string
	Requests  int // successful requests
	Errors    int
	Elapsed   time.Duration // sum of the rounds' windows
	CPU       time.Duration // the target process's user+system CPU over the windows
	Machine   time.Duration // busy CPU of the whole machine over the windows
	WorstP99  time.Duration
	MedianP50 time.Duration
	RSS       int64 // VmRSS after the level, bytes
}

// RPS is successful requests per second over the windows.
func (r CPUResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// PerWebhook is the target's CPU per successful webhook.
func (r CPUResult) PerWebhook() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Requests)
}

// IngressCPULevel is every target at one concurrency level; Results[0] is the reference.
type IngressCPULevel struct {
	Concurrency int
	Results     []CPUResult
}

// IngressCPUReport is the outcome of the ingress CPU benchmark.
type IngressCPUReport struct {
	Broker string
	Rounds int
	Levels []IngressCPULevel
	Peak   map[string]int64 // VmHWM per target, bytes
	Order  []string         // target names, reference first
}

type cpuTarget struct {
	name  string
	child *Child
	stop  func() error
}

// RunIngressCPU runs the benchmark: every target is a child process; per level and round one new
// set of distinct tokens is signed (a replayed token would be a dedupe hit, not work) and posted to
// each target in turn, the order rotating every round so drift on the shared machine spreads
// evenly. Each target's CPU is read from /proc/<pid>/stat around its window.
func RunIngressCPU(ctx context.Context, cfg IngressCPUConfig, log *slog.Logger) (rep *IngressCPUReport, err error) {
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

	run := fmt.Sprintf("c%d", time.Now().UnixNano())
	topics := kafka.DefaultTopicsConfig()
	topics.Sessions = "bench.ingress-cpu." + run
	topics.Partitions = 6
	var targets []*cpuTarget
	defer func() {
		for _, t := range targets {
			err = errors.Join(err, t.stop())
		}
	}()
	start := func(exe, name string, spec TargetSpec) error {
		spec.Brokers, spec.Topics, spec.JWKSURL = brokers, topics, signer.JWKSURL()
		if cfg.ProfileDir != "" {
			spec.CPUProfile = filepath.Join(cfg.ProfileDir, "ingress-cpu-"+strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name)+".pprof")
		}
		c, err := StartChild(exe, spec, 30*time.Second)
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		stopped := false
		targets = append(targets, &cpuTarget{name: name, child: c, stop: func() error {
			if stopped {
				return nil
			}
			stopped = true
			return c.Stop(15 * time.Second)
		}})
		return nil
	}
	if err := start(cfg.Exe, "reference", TargetSpec{Kind: TargetReference}); err != nil {
		return nil, err
	}
	if err := start(cfg.Exe, "ingress", TargetSpec{Kind: TargetIngress}); err != nil {
		return nil, err
	}
	if cfg.BeforeExe != "" {
		if err := start(cfg.BeforeExe, "ingress (before)", TargetSpec{Kind: TargetIngress}); err != nil {
			return nil, err
		}
	}
	for _, v := range cfg.Variants {
		compression, _ := variantSpec(v)
		if err := start(cfg.Exe, "ingress, "+v, TargetSpec{Kind: TargetIngress, Compression: compression}); err != nil {
			return nil, err
		}
	}

	warm, err := signer.SignMany(run+"-warm", 2000, 30*time.Minute)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if _, err := Load(ctx, LoadConfig{URL: t.child.URL, Tokens: warm, Concurrency: 16, Duration: cfg.Warmup}); err != nil {
			return nil, err
		}
	}
	rep = &IngressCPUReport{Broker: broker, Rounds: cfg.Rounds, Peak: map[string]int64{}}
	for _, t := range targets {
		rep.Order = append(rep.Order, t.name)
	}
	for li, level := range cfg.Levels {
		lv := IngressCPULevel{Concurrency: level, Results: make([]CPUResult, len(targets))}
		p50s := make([][]time.Duration, len(targets))
		for round := range cfg.Rounds {
			// Signed before the timed windows: RSA signing costs ~20x verifying.
			tokens, err := signer.SignMany(fmt.Sprintf("%s-l%d-r%d", run, li, round), cfg.MaxRequests, 30*time.Minute)
			if err != nil {
				return nil, err
			}
			for k := range targets {
				i := (k + round + li) % len(targets)
				t := targets[i]
				cpu0, err := ProcessCPU(t.child.Pid())
				if err != nil {
					return nil, err
				}
				busy0, err := machineBusy()
				if err != nil {
					return nil, err
				}
				res, err := Load(ctx, LoadConfig{URL: t.child.URL, Tokens: tokens, Concurrency: level, Duration: cfg.Duration})
				if err != nil {
					return nil, err
				}
				cpu1, err := ProcessCPU(t.child.Pid())
				if err != nil {
					return nil, err
				}
				busy1, err := machineBusy()
				if err != nil {
					return nil, err
				}
				r := &lv.Results[i]
				r.Target = t.name
				r.Requests += res.Requests - res.Errors
				r.Errors += res.Errors
				r.Elapsed += res.Elapsed
				r.CPU += cpu1 - cpu0
				r.Machine += busy1 - busy0
				r.WorstP99 = max(r.WorstP99, res.P99)
				p50s[i] = append(p50s[i], res.P50)
				log.Info("ingress cpu window done", "target", t.name, "concurrency", level, "round", round+1,
					"rps", int(res.RPS), "cpu_per_webhook", (cpu1-cpu0)/time.Duration(max(1, res.Requests-res.Errors)), "failed_requests", res.Errors)
			}
		}
		for i, t := range targets {
			slices.Sort(p50s[i])
			lv.Results[i].MedianP50 = p50s[i][len(p50s[i])/2]
			lv.Results[i].RSS, _ = t.child.RSS()
		}
		rep.Levels = append(rep.Levels, lv)
	}
	for _, t := range targets {
		if rep.Peak[t.name], err = t.child.PeakRSS(); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture Go supports.
const clockTick = 10 * time.Millisecond

// machineBusy returns the CPU time all cores of the machine spent not idle since boot.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine CPU time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat")
	}
	var busy int64
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice: idle and iowait are
		// not busy, and guest time is already counted in user.
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * clockTick, nil
}

// Write renders the report as the markdown table BENCHMARKS.md quotes.
func (r *IngressCPUReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\n## Ingress CPU per webhook (broker: %s; %d interleaved rounds per level, new tokens every round)\n\n", r.Broker, r.Rounds)
	fmt.Fprintln(w, "| conc | target | req/s | ratio req/s | CPU/webhook | ratio CPU | target cores | machine busy cores | p50 (median) | p99 (worst) | requests | errors | RSS after |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, l := range r.Levels {
		ref := l.Results[0]
		for i, res := range l.Results {
			ratio, cpuRatio := "", ""
			if i > 0 && ref.RPS() > 0 && ref.PerWebhook() > 0 {
				ratio = fmt.Sprintf("**%.2f**", res.RPS()/ref.RPS())
				cpuRatio = fmt.Sprintf("**%.2fx**", float64(res.PerWebhook())/float64(ref.PerWebhook()))
			}
			fmt.Fprintf(w, "| %d | %s | %.0f | %s | %.0f µs | %s | %.2f | %.2f | %s | %s | %d | %d | %s |\n", l.Concurrency, res.Target, res.RPS(), ratio,
				float64(res.PerWebhook())/float64(time.Microsecond), cpuRatio, cores(res.CPU, res.Elapsed), cores(res.Machine, res.Elapsed),
				ms(res.MedianP50), ms(res.WorstP99), res.Requests, res.Errors, mib(res.RSS))
		}
	}
	fmt.Fprint(w, "\nPeak RSS (VmHWM):")
	for _, name := range r.Order {
		fmt.Fprintf(w, " %s %s;", name, mib(r.Peak[name]))
	}
	fmt.Fprintln(w)
}

// cores is CPU time over wall time: how many cores were busy on average.
func cores(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return cpu.Seconds() / wall.Seconds()
}

// ProcessCPU returns the CPU time (user + system) process pid has used so far, from
// /proc/<pid>/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process stat: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// After the name: state is field 3, utime field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, s)
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime in /proc/%d/stat: %w", pid, err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime in /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// micros renders a duration in whole microseconds, "-" when unknown.
func micros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%d µs", d.Microseconds())
}
