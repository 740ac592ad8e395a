package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// IngressConfig bounds the ingress load benchmark.
type IngressConfig struct {
	Exe         string        // the benchmark binary, started again as the child targets
	Brokers     []string      // a real cluster; empty starts an embedded broker in this process
	Levels      []int         // concurrency levels, e.g. 16, 64, 256
	Duration    time.Duration // timed window per level and target
	MaxRequests int           // request bound per level and target (tokens signed per level)
	Warmup      time.Duration // untimed load per target before the first level
	// WhatIfLinger0 also measures the ingress with kgo.ProducerLinger(0) appended to its client
	// options. Since issue 16 the product's ingress does not linger (ingress.ProducerOpts), so
	// this what-if measures the same ingress again and is off by default.
	WhatIfLinger0 bool
	// ProfileDir, when set, receives a CPU profile of each target (ingress.pprof, ...).
	ProfileDir string
}

// DefaultIngressConfig is what `make bench` runs: about 40 s of load plus signing.
func DefaultIngressConfig() IngressConfig {
	return IngressConfig{Levels: []int{16, 64, 256}, Duration: 4 * time.Second, MaxRequests: 20000, Warmup: time.Second}
}

// Validate reports a config the runner cannot honour.
func (c IngressConfig) Validate() error {
	switch {
	case c.Exe == "":
		return errors.New("ingress bench: no executable to start the targets from")
	case len(c.Levels) == 0 || slices.ContainsFunc(c.Levels, func(l int) bool { return l <= 0 }):
		return errors.New("ingress bench: -levels must list positive concurrency levels, e.g. 16,64,256")
	case c.Duration <= 0 || c.Duration > 2*time.Minute:
		return errors.New("ingress bench: -duration must be between 0 and 2m, e.g. 4s")
	case c.MaxRequests <= 0 || c.MaxRequests > 1_000_000:
		return errors.New("ingress bench: -max-requests must be between 1 and 1000000, e.g. 20000")
	}
	return nil
}

// IngressLevel is one concurrency level: the reference and the ingress under the same load.
type IngressLevel struct {
	Concurrency int
	Reference   LoadResult
	Ingress     LoadResult
	Linger0     *LoadResult // the what-if ingress with ProducerLinger(0), when measured
	IngressRSS  int64       // ingress VmRSS after the level, bytes
}

// Ratio is ingress requests/s over reference requests/s.
func (l IngressLevel) Ratio() float64 {
	if l.Reference.RPS == 0 {
		return 0
	}
	return l.Ingress.RPS / l.Reference.RPS
}

// IngressReport is the outcome of the ingress benchmark.
type IngressReport struct {
	Broker           string // "embedded (kfake)" or the seed brokers
	Levels           []IngressLevel
	IngressPeakRSS   int64 // VmHWM of the ingress process over all levels, bytes
	ReferencePeakRSS int64
	IngressPid       int
}

// RunIngress runs the ingress load benchmark: both targets as child processes against one
// broker, the same pre-signed tokens, each level measured on the reference and on the ingress
// back to back (alternating which goes first, so drift on the shared machine spreads evenly).
func RunIngress(ctx context.Context, cfg IngressConfig, log *slog.Logger) (*IngressReport, error) {
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

	// Tokens live long enough for the whole run; each level gets its own distinct set (the
	// ingress deduplicates by event id), shared by both targets.
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	ttl := 30 * time.Minute
	log.Info("signing webhook tokens before the timed windows", "per_level", cfg.MaxRequests, "levels", len(cfg.Levels))
	tokens := make([][]string, len(cfg.Levels))
	for i := range cfg.Levels {
		if tokens[i], err = signer.SignMany(fmt.Sprintf("%s-l%d", run, i), cfg.MaxRequests, ttl); err != nil {
			return nil, err
		}
	}
	warm, err := signer.SignMany(run+"-warm", 2000, ttl)
	if err != nil {
		return nil, err
	}

	topics := kafka.DefaultTopicsConfig()
	topics.Sessions = "bench.ingress." + run
	topics.Partitions = 6
	start := func(kind, name string, linger *time.Duration) (*Child, func() error, error) {
		spec := TargetSpec{Kind: kind, Brokers: brokers, Topics: topics, JWKSURL: signer.JWKSURL(), ProducerLinger: linger}
		if cfg.ProfileDir != "" {
			spec.CPUProfile = filepath.Join(cfg.ProfileDir, name+".pprof")
		}
		c, err := StartChild(cfg.Exe, spec, 30*time.Second)
		if err != nil {
			return nil, nil, err
		}
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			return c.Stop(15 * time.Second)
		}
		return c, stop, nil
	}
	ing, stopIng, err := start(TargetIngress, "ingress", nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stopIng() }()
	ref, stopRef, err := start(TargetReference, "reference", nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = stopRef() }()
	targets := []*Child{ref, ing}
	var l0 *Child
	if cfg.WhatIfLinger0 {
		zero := time.Duration(0)
		var stopL0 func() error
		if l0, stopL0, err = start(TargetIngress, "ingress-linger0", &zero); err != nil {
			return nil, err
		}
		defer func() { _ = stopL0() }()
		targets = append(targets, l0)
	}

	for _, c := range targets {
		if _, err := Load(ctx, LoadConfig{URL: c.URL, Tokens: warm, Concurrency: 16, Duration: cfg.Warmup}); err != nil {
			return nil, err
		}
	}
	rep := &IngressReport{Broker: broker, IngressPid: ing.Pid()}
	for i, level := range cfg.Levels {
		lv := IngressLevel{Concurrency: level}
		order := []*Child{ref, ing}
		if i%2 == 1 {
			order = []*Child{ing, ref}
		}
		if l0 != nil {
			order = append(order, l0)
		}
		for _, c := range order {
			res, err := Load(ctx, LoadConfig{URL: c.URL, Tokens: tokens[i], Concurrency: level, Duration: cfg.Duration})
			if err != nil {
				return nil, err
			}
			name := "ingress"
			switch c {
			case ref:
				lv.Reference, name = res, "reference"
			case ing:
				lv.Ingress = res
			case l0:
				lv.Linger0, name = &res, "ingress-linger0"
			}
			log.Info("load level done", "target", name,
				"concurrency", level, "rps", int(res.RPS), "p99", res.P99, "failed_requests", res.Errors)
		}
		lv.IngressRSS, _ = ing.RSS()
		rep.Levels = append(rep.Levels, lv)
	}
	if rep.IngressPeakRSS, err = ing.PeakRSS(); err != nil {
		return nil, err
	}
	if rep.ReferencePeakRSS, err = ref.PeakRSS(); err != nil {
		return nil, err
	}
	// Stop the targets now so that their CPU profiles are complete when RunIngress returns.
	return rep, errors.Join(stopIng(), stopRef())
}

// startSigning starts the broker (startBroker) and a webhook signer for an ingress benchmark;
// stop ends both.
func startSigning(given []string, log *slog.Logger) (brokers []string, name string, signer *Signer, stop func(), err error) {
	brokers, name, stopBroker, err := startBroker(given, log)
	if err != nil {
		return nil, "", nil, nil, err
	}
	signer, err = NewSigner()
	if err != nil {
		stopBroker()
		return nil, "", nil, nil, err
	}
	return brokers, name, signer, func() { signer.Close(); stopBroker() }, nil
}

// startBroker returns the seed brokers to use: the given ones, or an embedded broker started
// in this process (so its CPU is not counted in either target's memory).
func startBroker(given []string, log *slog.Logger) (brokers []string, name string, stop func(), err error) {
	if len(given) > 0 {
		return given, strings.Join(given, ","), func() {}, nil
	}
	e, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Listen: "127.0.0.1:0", Partitions: 6}, log)
	if err != nil {
		return nil, "", nil, err
	}
	return e.Addrs(), "embedded (kfake, in the runner process)", e.Close, nil
}

// Write renders the report as the markdown table BENCHMARKS.md quotes.
func (r *IngressReport) Write(w io.Writer) {
	fmt.Fprintf(w, "\n## Ingress load (broker: %s)\n\n", r.Broker)
	fmt.Fprintln(w, "| conc | target | req/s | p50 | p99 | p99.9 | max | requests | errors | ratio ingress/reference |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, l := range r.Levels {
		for _, t := range []struct {
			name string
			res  LoadResult
		}{{"reference", l.Reference}, {"ingress", l.Ingress}, {"ingress, linger 0 (what-if)", deref(l.Linger0)}} {
			if t.res.Requests == 0 && t.name != "ingress" {
				continue
			}
			ratio := ""
			if t.name != "reference" && l.Reference.RPS > 0 {
				ratio = fmt.Sprintf("%.2f", t.res.RPS/l.Reference.RPS)
				if t.name == "ingress" {
					ratio = "**" + ratio + "**"
				}
			}
			fmt.Fprintf(w, "| %d | %s | %.0f | %s | %s | %s | %s | %d | %d | %s |\n", l.Concurrency, t.name, t.res.RPS,
				ms(t.res.P50), ms(t.res.P99), ms(t.res.P999), ms(t.res.Max), t.res.Requests, t.res.Errors, ratio)
		}
	}
	for _, l := range r.Levels {
		for name, res := range map[string]LoadResult{"reference": l.Reference, "ingress": l.Ingress} {
			if len(res.ErrorKinds) > 0 {
				kinds := make([]string, 0, len(res.ErrorKinds))
				for k, n := range res.ErrorKinds {
					kinds = append(kinds, fmt.Sprintf("%s ×%d", k, n))
				}
				sort.Strings(kinds)
				fmt.Fprintf(w, "\nerrors at %d (%s): %s\n", l.Concurrency, name, strings.Join(kinds, "; "))
			}
		}
	}
	fmt.Fprintf(w, "\nPeak RSS (VmHWM): ingress %s, reference %s. Ingress RSS after each level:", mib(r.IngressPeakRSS), mib(r.ReferencePeakRSS))
	for _, l := range r.Levels {
		fmt.Fprintf(w, " %d→%s", l.Concurrency, mib(l.IngressRSS))
	}
	fmt.Fprintln(w)
}

func deref(r *LoadResult) LoadResult {
	if r == nil {
		return LoadResult{}
	}
	return *r
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
