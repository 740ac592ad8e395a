package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// benchPrivacy wires privacy.mode encrypt for a benchmark enricher as internal/app does: a
// development KEK and pepper (in a temporary folder), spec.Topics.Keys created compacted and
// read, its refresh running until stop is called.
func benchPrivacy(ctx context.Context, spec TargetSpec, opts []kgo.Opt, log *slog.Logger) (*privacy.Protector, func(), error) {
	dir, err := os.MkdirTemp("", "idnow-bench-privacy-")
	if err != nil {
		return nil, nil, fmt.Errorf("bench privacy: %w", err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	cfg := privacy.DefaultConfig()
	cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile = schemas.PrivacyEncrypt, filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	if err := privacy.NewKEKKeysetFile(cfg.KEKKeysetFile); err != nil {
		cleanup()
		return nil, nil, err
	}
	kek, err := privacy.OpenKEK(ctx, cfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	if err := privacy.NewPepperFile(cfg.PepperFile, kek); err != nil {
		cleanup()
		return nil, nil, err
	}
	pepper, err := privacy.LoadPepper(cfg.PepperFile, kek)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	ring, err := privacy.NewKeyring(kek, cfg.KeyCacheSize)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	err = kafka.EnsureTopics(ctx, kadm.NewClient(cl), spec.Topics, spec.Topics.Keys)
	cl.Close()
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("bench privacy: keys topic: %w", err)
	}
	kt := privacy.NewKeysTopic(opts, spec.Topics.Keys, ring, log)
	if _, err := kt.CatchUp(ctx); err != nil {
		cleanup()
		return nil, nil, err
	}
	prot, err := privacy.NewProtector(cfg, privacy.ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: spec.Topics.Keys})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = kt.Run(rctx, 5*time.Second) })
	return prot, func() {
		cancel()
		wg.Wait()
		cleanup()
	}, nil
}
