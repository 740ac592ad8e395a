// Command idnow-bench runs the connector's load benchmarks (BENCHMARKS.md): the ingress against
// a minimal reference receiver, and the enricher against the API-bound limit. `make bench` runs
// it after the micro-benchmarks. It starts itself again as child processes (serve-target) so
// that each target's memory can be read from /proc. Everything binds to 127.0.0.1; a real
// broker is used only when KAFKA_BROKERS (or -brokers) names one.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "idnow-bench:", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New(`usage:
  idnow-bench ingress  [flags]   ingress vs reference receiver at fixed concurrency levels
  idnow-bench enricher [flags]   enricher throughput vs the API-bound limit, and its memory
  idnow-bench all      [flags]   both (what make bench runs)
  idnow-bench restore  [flags]   state restore time of -sessions session states (not part of all)
  idnow-bench ingress-cpu      [flags]   CPU per webhook, ingress vs reference (and -before-exe)
  idnow-bench ingress-scaleout [flags]   one vs two ingress replicas behind a round-robin
  idnow-bench compare|latency|scaleout [flags]   the enricher benchmarks of issue 16 (not part of all)
run "idnow-bench <mode> -h" for the flags`)
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usage()
	}
	if args[0] == loadtest.ServeArg {
		return serveTarget(ctx, args[1:])
	}
	if _, ok := round2Modes[args[0]]; ok {
		return runRound2(ctx, args[0], args[1:])
	}
	mode := args[0]
	if mode == "ingress-cpu" || mode == "ingress-scaleout" {
		return runIngressCPU(ctx, mode, args[1:])
	}
	if mode != "ingress" && mode != "enricher" && mode != "all" && mode != "restore" {
		return usage()
	}
	ic := loadtest.DefaultIngressConfig()
	ec := loadtest.DefaultEnrichConfig()
	rc := loadtest.DefaultRestoreConfig()
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers of a real cluster (default $KAFKA_BROKERS); empty = embedded broker")
	levels := fs.String("levels", joinInts(ic.Levels), "ingress: concurrency levels")
	fs.DurationVar(&ic.Duration, "duration", ic.Duration, "ingress: timed window per level and target")
	fs.IntVar(&ic.MaxRequests, "max-requests", ic.MaxRequests, "ingress: request bound per level and target")
	fs.IntVar(&ec.Events, "events", ec.Events, "enricher: backlog size for the throughput runs")
	fs.DurationVar(&ec.Latency, "latency", ec.Latency, "enricher: fixed simulator API latency L")
	conc := fs.String("concurrency", joinInts(ec.Concurrency), "enricher: concurrency levels C")
	modes := fs.String("delivery", strings.Join(ec.Deliveries, ","), "enricher: delivery modes")
	stateModes := fs.String("state", "on", "enricher: state store settings each drain runs with, in order (on, off, or e.g. on,off to compare: off leaves Deps.State nil)")
	privacyModes := fs.String("privacy", "plain", "enricher: privacy.mode settings each drain runs with, in order (plain, encrypt, or e.g. plain,encrypt,plain,encrypt to compare interleaved)")
	fs.IntVar(&ec.MemoryEvents, "memory-events", ec.MemoryEvents, "enricher: backlog drained for the memory measurement (0 skips it)")
	fs.DurationVar(&ec.MemoryLatency, "memory-latency", ec.MemoryLatency, "enricher: API latency during the memory drain")
	fs.IntVar(&ec.MaxPollRecords, "max-poll-records", 0, "enricher: what-if override of enrich.max_poll_records (0 = product default)")
	fs.DurationVar(&ec.RunTimeout, "run-timeout", ec.RunTimeout, "enricher: bound on each drain")
	fs.BoolVar(&ic.WhatIfLinger0, "what-if-linger0", ic.WhatIfLinger0, "ingress: also measure the ingress with kgo.ProducerLinger(0)")
	fs.IntVar(&rc.Sessions, "sessions", rc.Sessions, "restore: session states in the state topic")
	fs.IntVar(&rc.Versions, "versions", rc.Versions, "restore: records per session in the state topic (1 = compacted; the enricher writes one per enriched event)")
	fs.IntVar(&rc.Partitions, "partitions", rc.Partitions, "restore: partitions of the state topic (all restored by one child)")
	fs.IntVar(&rc.EventIDs, "event-ids", rc.EventIDs, "restore: enriched event ids per session state")
	fs.DurationVar(&rc.RunTimeout, "restore-timeout", rc.RunTimeout, "restore: bound on the restore")
	profDir := fs.String("cpuprofile-dir", "", "write CPU profiles of the ingress targets and of the enricher's memory drain into this directory")
	fs.IntVar(&ec.MemoryLimitMiB, "memory-limit-mib", 0, "enricher: Go soft memory limit of the memory drain's enricher in MiB, as GOMEMLIMIT=<n>MiB sets it (0 = none)")
	heapDir := fs.String("heapprofile-dir", "", "enricher: write the memory drain's enricher heap profile (in use near the end of the drain) into this directory as enricher-heap.pprof")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var err error
	if ic.Levels, err = parseInts(*levels); err != nil {
		return fmt.Errorf("-levels: %w", err)
	}
	if ec.Concurrency, err = parseInts(*conc); err != nil {
		return fmt.Errorf("-concurrency: %w", err)
	}
	ec.Deliveries = strings.Split(*modes, ",")
	ec.StateStore = nil
	for m := range strings.SplitSeq(*stateModes, ",") {
		switch strings.TrimSpace(m) {
		case "on":
			ec.StateStore = append(ec.StateStore, true)
		case "off":
			ec.StateStore = append(ec.StateStore, false)
		default:
			return fmt.Errorf("-state %q: list on and/or off, e.g. on,off", *stateModes)
		}
	}
	ec.Privacy = nil
	for m := range strings.SplitSeq(*privacyModes, ",") {
		ec.Privacy = append(ec.Privacy, strings.TrimSpace(m))
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	ic.Exe, ec.Exe, rc.Exe = exe, exe, exe
	ic.ProfileDir, ec.ProfileDir = *profDir, *profDir
	ec.HeapProfileDir = *heapDir
	if *brokers != "" {
		ic.Brokers = strings.Split(*brokers, ",")
		ec.Brokers, rc.Brokers = ic.Brokers, ic.Brokers
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("# idnow-bench %s — %s, GOMAXPROCS=%d, %s\n", mode, time.Now().UTC().Format(time.RFC3339), loadtest.Procs(), loadtest.Machine())
	if mode == "ingress" || mode == "all" {
		rep, err := loadtest.RunIngress(ctx, ic, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
	}
	if mode == "enricher" || mode == "all" {
		rep, err := loadtest.RunEnrich(ctx, ec, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
	}
	if mode == "restore" {
		rep, err := loadtest.RunRestore(ctx, rc, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
	}
	return nil
}

// serveTarget is the child-process side: it serves one target until SIGTERM.
func serveTarget(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New(loadtest.ServeArg + " takes one JSON target spec")
	}
	var spec loadtest.TargetSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil {
		return fmt.Errorf("decode target spec: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return loadtest.Serve(ctx, spec, os.Stdout, log)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
