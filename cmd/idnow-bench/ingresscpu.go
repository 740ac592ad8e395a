package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/loadtest"
)

// runIngressCPU runs the issue-16 ingress modes: ingress-cpu (CPU per webhook, ingress vs
// reference, optionally vs an older build and what-if variants) and ingress-scaleout (one vs two
// ingress replicas).
func runIngressCPU(ctx context.Context, mode string, args []string) error {
	cfg := loadtest.DefaultIngressCPUConfig()
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers of a real cluster (default $KAFKA_BROKERS); empty = embedded broker")
	levels := fs.String("levels", joinInts(cfg.Levels), "concurrency levels (connections)")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "interleaved rounds per level, each with new tokens")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "timed window per round and target")
	fs.IntVar(&cfg.MaxRequests, "max-requests", cfg.MaxRequests, "request bound per round and target (tokens signed per round)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "untimed load per target before the first level")
	fs.StringVar(&cfg.BeforeExe, "before-exe", "", "ingress-cpu: an idnow-bench binary of an older build (e.g. main: git worktree add /tmp/before main && cd /tmp/before && go build -o /tmp/idnow-bench-before ./cmd/idnow-bench) whose ingress runs as one more target")
	variants := fs.String("variants", "", "ingress-cpu: what-if ingress targets with another kafka.compression, comma-separated: snappy, none, zstd, gzip")
	fs.StringVar(&cfg.ProfileDir, "cpuprofile-dir", "", "ingress-cpu: write a CPU profile of each target into this directory")
	verbose := fs.Bool("v", false, "log progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var err error
	if cfg.Levels, err = parseInts(*levels); err != nil {
		return fmt.Errorf("-levels: %w", err)
	}
	if *variants != "" {
		cfg.Variants = strings.Split(*variants, ",")
	}
	if *brokers != "" {
		cfg.Brokers = strings.Split(*brokers, ",")
	}
	if cfg.Exe, err = os.Executable(); err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	fmt.Printf("# idnow-bench %s — %s, GOMAXPROCS=%d, %s\n", mode, time.Now().UTC().Format(time.RFC3339), loadtest.Procs(), loadtest.Machine())
	if mode == "ingress-scaleout" {
		rep, err := loadtest.RunIngressScaleOut(ctx, cfg, log)
		if err != nil {
			return err
		}
		rep.Write(os.Stdout)
		return nil
	}
	rep, err := loadtest.RunIngressCPU(ctx, cfg, log)
	if err != nil {
		return err
	}
	rep.Write(os.Stdout)
	return nil
}
