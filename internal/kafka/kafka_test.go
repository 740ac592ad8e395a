package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConfigValidate(t *testing.T) {
	mod := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", DefaultConfig(), ""},
		{"brokers", mod(func(c *Config) { c.Brokers = []string{"a:9092", "b:9092"} }), ""},
		{"broker without port", mod(func(c *Config) { c.Brokers = []string{"a"} }), "kafka.brokers"},
		{"compression", mod(func(c *Config) { c.Compression = "brotli" }), "kafka.compression"},
		{"sasl without user", mod(func(c *Config) { c.SASL.Mechanism = "PLAIN" }), "kafka.sasl.username"},
		{"sasl unknown", mod(func(c *Config) { c.SASL.Mechanism = "GSSAPI" }), "kafka.sasl.mechanism"},
		{"embedded public", mod(func(c *Config) { c.Embedded.Listen = "0.0.0.0:9092" }), "kafka.embedded.listen"},
		{"no delivery timeout", mod(func(c *Config) { c.DeliveryTimeout = 0 }), "kafka.delivery_timeout"},
		{"embedded asked for", mod(func(c *Config) { c.Embedded.Enabled = true }), ""},
		{"embedded and brokers", mod(func(c *Config) { c.Embedded.Enabled = true; c.Brokers = []string{"a:9092"} }), "kafka.embedded.enabled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !contains(err.Error(), tc.wantErr) {
				t.Fatalf("want error naming %q, got %v", tc.wantErr, err)
			}
		})
	}
}

// TestRequireBrokers covers issue 9 problem 4 at the section level: the production modes need
// brokers or an explicit request for the embedded one, and the error says which setting.
func TestRequireBrokers(t *testing.T) {
	c := DefaultConfig()
	err := c.RequireBrokers("ingress")
	for _, want := range []string{"kafka.brokers", "IDNOW_CONNECTOR_KAFKA__BROKERS", "kafka.embedded.enabled", "ingress"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty brokers: error should contain %q, got %v", want, err)
		}
	}
	c.Embedded.Enabled = true
	if err := c.RequireBrokers("ingress"); err != nil {
		t.Errorf("embedded.enabled: %v", err)
	}
	c = DefaultConfig()
	c.Brokers = []string{"kafka-1:9092"}
	if err := c.RequireBrokers("enricher"); err != nil {
		t.Errorf("brokers set: %v", err)
	}
}

func TestTopicsValidate(t *testing.T) {
	good := DefaultTopicsConfig()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.DLQ = "has space"
	if err := bad.Validate(); err == nil || !contains(err.Error(), "topics.dlq") {
		t.Fatalf("want topics.dlq error, got %v", err)
	}
	same := good
	same.Enriched = same.Sessions
	if err := same.Validate(); err == nil {
		t.Fatal("same topic twice accepted")
	}
	archived := good
	archived.Archived = archived.Enriched
	if err := archived.Validate(); err == nil || !contains(err.Error(), "topics.archived") {
		t.Fatalf("topics.archived = topics.enriched: got %v", err)
	}
	archived.Archived = "bad name"
	if err := archived.Validate(); err == nil || !contains(err.Error(), "topics.archived") {
		t.Fatalf("illegal topics.archived: got %v", err)
	}
	// Components that do not archive leave it empty.
	archived.Archived = ""
	if err := archived.Validate(); err != nil {
		t.Fatalf("empty topics.archived: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestEnsureTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "exists"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	noCreate := DefaultTopicsConfig()
	noCreate.Create = false
	if err := EnsureTopics(ctx, adm, noCreate, "exists"); err != nil {
		t.Fatalf("existing topic: %v", err)
	}
	err = EnsureTopics(ctx, adm, noCreate, "exists", "missing")
	if !errors.Is(err, ErrTopicMissing) || !contains(err.Error(), "missing") {
		t.Fatalf("want ErrTopicMissing naming the topic, got %v", err)
	}

	create := DefaultTopicsConfig()
	create.Partitions = 3
	if err := EnsureTopics(ctx, adm, create, "exists", "missing"); err != nil {
		t.Fatalf("create: %v", err)
	}
	// Metadata is eventually consistent (on Kafka as on kfake): poll until the topic shows up.
	var n int
	for ctx.Err() == nil {
		td, err := adm.ListTopics(ctx, "missing")
		if err != nil {
			t.Fatal(err)
		}
		if n = len(td["missing"].Partitions); n != 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n != 3 {
		t.Fatalf("created topic has %d partitions, want 3", n)
	}
	// Idempotent: a second call with everything present is fine.
	if err := EnsureTopics(ctx, adm, create, "exists", "missing"); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
}

// TestEnsureTopicsCreatedMeanwhile: a topic another process creates between the listing and the
// create (TOPIC_ALREADY_EXISTS) is there, not an error: the enricher and the archiver of `make
// run` create topics.enriched at the same moment, and the loser used to fail its start.
func TestEnsureTopicsCreatedMeanwhile(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "raced"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// The listing does not see the topic yet (it is created right after it).
	c.ControlKey(kmsg.Metadata.Int16(), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.MetadataRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic == nil || *req.Topics[0].Topic != "raced" {
			return nil, nil, false
		}
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.MetadataResponse)
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic = kmsg.StringPtr("raced")
		rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if err := EnsureTopics(t.Context(), kadm.NewClient(cl), DefaultTopicsConfig(), "raced"); err != nil {
		t.Fatalf("a topic created by someone else meanwhile: %v", err)
	}
}

func TestEmbeddedPersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	cfg := EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", Partitions: 1}
	var log *slog.Logger // nil: StartEmbedded discards its lines (the nil-logger rule)
	produce := func(e *Embedded) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := EnsureTopics(t.Context(), kadm.NewClient(cl), DefaultTopicsConfig(), "t"); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	e, err := StartEmbedded(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	produce(e)
	e.Close()

	e, err = StartEmbedded(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Addrs()...), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	if n := fs.NumRecords(); n != 1 {
		t.Fatalf("after restart found %d records, want 1", n)
	}
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{kgo.ErrRecordTimeout, true},
		{fmt.Errorf("produce: %w", kgo.ErrMaxBuffered), true},
		{kerr.NotLeaderForPartition, true},
		{kerr.NotEnoughReplicas, true},
		{context.DeadlineExceeded, true},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, true},
		{kerr.TopicAuthorizationFailed, false},
		{kerr.InvalidRecord, false},
		{kerr.ProducerFenced, false},
		{errors.New("boom"), false},
	}
	for _, tc := range tests {
		if got := IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
