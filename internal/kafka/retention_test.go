package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCreatedTopicsGetRetention: every topic the connector creates gets an explicit retention.ms
// from topics.retention.* (0 = forever, -1), and the keys topic cleanup.policy=compact.
func TestCreatedTopicsGetRetention(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cfg := DefaultTopicsConfig()
	cfg.Partitions = 1
	cfg.Retention.Enriched = 48 * time.Hour
	if err := EnsureTopics(t.Context(), adm, cfg, cfg.Sessions, cfg.Enriched, cfg.DLQ, cfg.Audit, cfg.Keys, cfg.Commands, cfg.Replies); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		cfg.Sessions: {"retention.ms", "604800000"},
		cfg.Enriched: {"retention.ms", "172800000"},
		cfg.DLQ:      {"retention.ms", "2592000000"},
		cfg.Audit:    {"retention.ms", "-1"},
		cfg.Commands: {"retention.ms", "604800000"},
		cfg.Replies:  {"retention.ms", "604800000"},
		cfg.Keys:     {"cleanup.policy", "compact"},
	}
	rcs, err := adm.DescribeTopicConfigs(t.Context(), cfg.Sessions, cfg.Enriched, cfg.DLQ, cfg.Audit, cfg.Keys, cfg.Commands, cfg.Replies)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		w := want[rc.Name]
		found := false
		for _, c := range rc.Configs {
			if c.Key == w[0] && c.Value != nil {
				found = true
				if *c.Value != w[1] {
					t.Errorf("%s: %s = %s, want %s", rc.Name, w[0], *c.Value, w[1])
				}
			}
		}
		if !found {
			t.Errorf("%s: no %s", rc.Name, w[0])
		}
	}
}

func TestRetentionValidate(t *testing.T) {
	cfg := DefaultTopicsConfig()
	cfg.Retention.DLQ = time.Second
	if err := cfg.Validate(); err == nil {
		t.Fatal("a retention under a minute was accepted")
	}
	cfg = DefaultTopicsConfig()
	cfg.Keys = cfg.Enriched
	if err := cfg.Validate(); err == nil {
		t.Fatal("topics.keys equal to topics.enriched was accepted")
	}
}
