package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/loadtest"
)

// round2Modes are the enricher benchmarks of issue 16 (BENCHMARKS.md, "Round 2").
var round2Modes = map[string]string{
	"compare":  "enricher throughput, ratio to C/(calls×L) and CPU per event: -before-exe against this build, interleaved by C",
	"latency":  "end-to-end latency at shares of the measured peak rate, for -before-exe and this build",
	"scaleout": "1, 2, 3 enricher members in one group draining a backlog while the API latency is the bound",
}

// runRound2 runs one of round2Modes with its own flags.
func runRound2(ctx context.Context, mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers of a real cluster (default $KAFKA_BROKERS); empty = embedded broker")
	before := fs.String("before-exe", "", "compare, latency: an idnow-bench built from the code to compare against (e.g. main); empty = this build only")
	conc := fs.String("concurrency", "", "enrich.concurrency: levels for compare (default 64,256), one value for latency (64) and scaleout (32 per member)")
	latency := fs.Duration("latency", 50*time.Millisecond, "fixed simulator API latency L")
	deliveries := fs.String("delivery", "", "enrich.delivery: compare lists modes (default exactly_once,at_least_once); latency and scaleout take one (exactly_once)")
	events := fs.Int("events", 0, "backlog per drain (compare 20000, latency's peak drain 20000, scaleout 12000)")
	fractions := fs.String("fractions", "0.25,0.5,0.9", "latency: shares of the measured peak rate")
	duration := fs.Duration("duration", 15*time.Second, "latency: paced sending per level")
	members := fs.String("members", "1,2,3", "scaleout: member counts")
	runTimeout := fs.Duration("run-timeout", 3*time.Minute, "bound on each drain or level")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	exes := []loadtest.Exe{{Label: "after (this build)", Path: self}}
	if *before != "" {
		exes = append([]loadtest.Exe{{Label: "before", Path: *before}}, exes...)
	}
	var bs []string
	if *brokers != "" {
		bs = strings.Split(*brokers, ",")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("# idnow-bench %s — %s, GOMAXPROCS=%d, %s\n", mode, time.Now().UTC().Format(time.RFC3339), loadtest.Procs(), loadtest.Machine())
	one := func(def int) (int, error) {
		if *conc == "" {
			return def, nil
		}
		return strconv.Atoi(*conc)
	}
	orDefault := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	switch mode {
	case "compare":
		levels := []int{64, 256}
		if *conc != "" {
			if levels, err = parseInts(*conc); err != nil {
				return fmt.Errorf("-concurrency: %w", err)
			}
		}
		ds := []string{"exactly_once", "at_least_once"}
		if *deliveries != "" {
			ds = strings.Split(*deliveries, ",")
		}
		for _, c := range levels {
			for _, exe := range exes {
				ec := loadtest.DefaultEnrichConfig()
				ec.Exe, ec.Brokers, ec.Events, ec.Latency = exe.Path, bs, orDefault(*events, ec.Events), *latency
				ec.Concurrency, ec.Deliveries, ec.MemoryEvents, ec.RunTimeout = []int{c}, ds, 0, *runTimeout
				rep, err := loadtest.RunEnrich(ctx, ec, log)
				if err != nil {
					return fmt.Errorf("%s, C=%d: %w", exe.Label, c, err)
				}
				fmt.Printf("\n### %s\n", exe.Label)
				rep.Write(os.Stdout)
			}
		}
	case "latency":
		lc := loadtest.DefaultLatencyConfig()
		if lc.Concurrency, err = one(lc.Concurrency); err != nil {
			return fmt.Errorf("-concurrency: %w", err)
		}
		lc.Exes, lc.Brokers, lc.Latency, lc.Duration, lc.RunTimeout = exes, bs, *latency, *duration, *runTimeout
		lc.PeakEvents = orDefault(*events, lc.PeakEvents)
		if *deliveries != "" {
			lc.Delivery = *deliveries
		}
		lc.Fractions = nil
		for f := range strings.SplitSeq(*fractions, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil {
				return fmt.Errorf("-fractions: %w", err)
			}
			lc.Fractions = append(lc.Fractions, v)
		}
		rep, err := loadtest.RunLatency(ctx, lc, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
	case "scaleout":
		sc := loadtest.DefaultScaleConfig()
		if sc.Concurrency, err = one(sc.Concurrency); err != nil {
			return fmt.Errorf("-concurrency: %w", err)
		}
		if sc.Members, err = parseInts(*members); err != nil {
			return fmt.Errorf("-members: %w", err)
		}
		sc.Exe, sc.Brokers, sc.Latency, sc.RunTimeout = self, bs, *latency, *runTimeout
		sc.Events = orDefault(*events, sc.Events)
		if *deliveries != "" {
			sc.Delivery = *deliveries
		}
		rep, err := loadtest.RunScale(ctx, sc, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
	}
	return nil
}
