package app

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/config"
)

// TestDeployUsesRegistryMode checks the shipped production configurations (Kubernetes and
// compose) write the Confluent wire format through a registry with FULL compatibility, what
// Kafka Connect sinks, ksqlDB, Flink and lakehouse ingestion expect, while `make run` keeps
// single-object encoding and needs no registry.
func TestDeployUsesRegistryMode(t *testing.T) {
	for _, path := range []string{
		repoPath("deploy", "kubernetes", "base", "config.yaml"),
		repoPath("deploy", "compose", "config.yaml"),
	} {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			cfg := DefaultConfig()
			if err := config.Load(config.Source{Path: path, Required: true}, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.SchemaRegistry.URL == "" {
				t.Fatal("schema_registry.url is empty: the production default is registry mode")
			}
			if !strings.EqualFold(cfg.SchemaRegistry.Compatibility, "FULL") || !cfg.SchemaRegistry.Register {
				t.Errorf("schema_registry.compatibility %q, register %v: want FULL set by the connector when it registers", cfg.SchemaRegistry.Compatibility, cfg.SchemaRegistry.Register)
			}
		})
	}
	cfg := DefaultConfig()
	if err := config.Load(config.Source{Path: repoPath("deploy", "local", "config.yaml"), Required: true}, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.SchemaRegistry.URL != "" {
		t.Errorf("deploy/local (make run) sets schema_registry.url %q; it keeps single-object encoding", cfg.SchemaRegistry.URL)
	}
}
