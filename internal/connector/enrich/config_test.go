package enrich

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring naming the key; empty = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"at least once needs no transactional id", func(c *Config) { c.Delivery = DeliveryAtLeastOnce; c.TransactionalID = "" }, ""},
		{"empty group", func(c *Config) { c.Group = "" }, "enrich.group"},
		{"bad delivery", func(c *Config) { c.Delivery = "maybe" }, "enrich.delivery"},
		{"empty transactional id", func(c *Config) { c.TransactionalID = "" }, "enrich.transactional_id"},
		{"bad instance id", func(c *Config) { c.InstanceID = "a b" }, "enrich.instance_id"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "enrich.concurrency"},
		{"zero max poll", func(c *Config) { c.MaxPollRecords = 0 }, "enrich.max_poll_records"},
		{"zero commit interval", func(c *Config) { c.CommitInterval = 0 }, "enrich.commit_interval"},
		{"zero max batch", func(c *Config) { c.MaxBatchRecords = 0 }, "enrich.max_batch_records"},
		{"in flight below concurrency", func(c *Config) { c.MaxInFlight = c.Concurrency - 1 }, "enrich.max_in_flight"},
		{"tiny partition fetch", func(c *Config) { c.FetchMaxPartitionBytes = 100 }, "enrich.fetch_max_partition_bytes"},
		{"fetch above 100 MiB", func(c *Config) { c.FetchMaxBytes = 100<<20 + 1 }, "enrich.fetch_max_bytes"},
		{"fetch below partition fetch", func(c *Config) { c.FetchMaxBytes = c.FetchMaxPartitionBytes - 1 }, "enrich.fetch_max_bytes"},
		{"short transaction timeout", func(c *Config) { c.TransactionTimeout = time.Millisecond }, "enrich.transaction_timeout"},
		{"short session timeout", func(c *Config) { c.SessionTimeout = 0 }, "enrich.session_timeout"},
		{"zero backoff", func(c *Config) { c.Retry.InitialBackoff = 0 }, "enrich.retry.initial_backoff"},
		{"max below initial", func(c *Config) { c.Retry.MaxBackoff = time.Millisecond }, "enrich.retry.max_backoff"},
		{"zero shutdown", func(c *Config) { c.ShutdownTimeout = 0 }, "enrich.shutdown_timeout"},
		{"bad content", func(c *Config) { c.DataBlocks.Content = "some" }, "enrich.datablocks.content"},
		{"empty on_status entry", func(c *Config) { c.DataBlocks.OnStatus = []string{" "} }, "enrich.datablocks.on_status[0]"},
		{"empty include entry", func(c *Config) { c.DataBlocks.Include = []string{"basicIdentity", ""} }, "enrich.datablocks.include[1]"},
		{"max record bytes from the topic", func(c *Config) { c.MaxRecordBytes = 0 }, ""},
		{"max record bytes set", func(c *Config) { c.MaxRecordBytes = 512 * 1024 }, ""},
		{"max record bytes too small", func(c *Config) { c.MaxRecordBytes = 100 }, "enrich.max_record_bytes"},
		{"negative max record bytes", func(c *Config) { c.MaxRecordBytes = -1 }, "enrich.max_record_bytes"},
		{"short stall_after", func(c *Config) { c.StallAfter = time.Millisecond }, "enrich.stall_after"},
		{"zero lag interval", func(c *Config) { c.LagInterval = 0 }, "enrich.lag_interval"},
		{"long lag interval", func(c *Config) { c.LagInterval = time.Hour }, "enrich.lag_interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v does not name %s", err, tc.wantErr)
			}
		})
	}
}

func TestDataBlocksPolicy(t *testing.T) {
	p := DataBlocksConfig{OnStatus: []string{"COMPLETED", "aborted"}, Include: []string{"basicIdentity"}}
	for status, want := range map[string]bool{"COMPLETED": true, "completed": true, "ABORTED": true, "RUNNING": false, "": false} {
		if got := p.fetchesBlocks(status); got != want {
			t.Errorf("fetchesBlocks(%q) = %v, want %v", status, got, want)
		}
	}
	for typ, want := range map[string]bool{"basicIdentity": true, "BasicIdentity": true, "documentData": false} {
		if got := p.includes(typ); got != want {
			t.Errorf("includes(%q) = %v, want %v", typ, got, want)
		}
	}
	if !(DataBlocksConfig{}).includes("anything") {
		t.Error("an empty include list must keep every type")
	}
}

func TestInstanceID(t *testing.T) {
	c := DefaultConfig()
	c.InstanceID = "pod-0"
	if id, err := c.instanceID(); err != nil || id != "pod-0" {
		t.Fatalf("instanceID = %q, %v", id, err)
	}
	c.InstanceID = ""
	id, err := c.instanceID()
	if err != nil || id == "" || !idPart.MatchString(id) {
		t.Fatalf("host-name instance id %q (%v) is not Kafka-safe", id, err)
	}
}
