package kafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// gather returns the registry's families by name.
func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// counterSum adds up a counter family's samples whose client_id is clientID.
func counterSum(mf *dto.MetricFamily, clientID string) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "client_id" && lp.GetValue() == clientID {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestClientMetrics runs a producer and a consumer built from ClientOpts against an in-process
// broker and checks what the dashboard's Kafka panels query: per-record produce and fetch
// counters that count (kprom leaves them at zero unless asked), and the buffered-records gauges
// under names without the _total suffix Prometheus reserves for counters.
func TestClientMetrics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "metrics-topic"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	reg := prometheus.NewPedanticRegistry()

	popts, err := ClientOpts(cfg, "producer", reg)
	if err != nil {
		t.Fatal(err)
	}
	producer, err := kgo.NewClient(popts...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const n = 7
	for i := range n {
		r := &kgo.Record{Topic: "metrics-topic", Value: []byte(strings.Repeat("x", 100+i))}
		if err := producer.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	copts, err := ClientOpts(cfg, "consumer", reg)
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(append(copts,
		kgo.ConsumeTopics("metrics-topic"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		fs := consumer.PollRecords(t.Context(), n)
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		got += fs.NumRecords()
	}
	if got != n {
		t.Fatalf("consumed %d records, want %d", got, n)
	}

	producerID, consumerID := cfg.ClientID+"-producer", cfg.ClientID+"-consumer"
	checks := []struct {
		family, client string
		want           func(float64) bool
		desc           string
	}{
		{"idnow_connector_kafka_produce_records_total", producerID, func(v float64) bool { return v == n }, "== 7"},
		{"idnow_connector_kafka_fetch_records_total", consumerID, func(v float64) bool { return v == n }, "== 7"},
		{"idnow_connector_kafka_produce_batches_total", producerID, func(v float64) bool { return v >= 1 && v <= n }, "in [1, 7]"},
		{"idnow_connector_kafka_produce_uncompressed_bytes_total", producerID, func(v float64) bool { return v >= n*100 }, ">= 700"},
		{"idnow_connector_kafka_produce_compressed_bytes_total", producerID, func(v float64) bool { return v > 0 }, "> 0"},
		{"idnow_connector_kafka_fetch_uncompressed_bytes_total", consumerID, func(v float64) bool { return v >= n*100 }, ">= 700"},
	}
	// franz-go calls the produce-batch hooks from a goroutine of their own after the batch's
	// promises, so a ProduceSync can return before kprom counted it: wait for the counters to
	// settle (they must, within seconds) before judging them.
	var fams map[string]*dto.MetricFamily
	var problems []string
	for settle := time.Now().Add(10 * time.Second); ; {
		fams = gather(t, reg)
		problems = problems[:0]
		for _, tt := range checks {
			mf := fams[tt.family]
			if mf == nil {
				problems = append(problems, tt.family+": not exposed")
				continue
			}
			if v := counterSum(mf, tt.client); !tt.want(v) {
				problems = append(problems, fmt.Sprintf("%s{client_id=%q} = %v, want %s", tt.family, tt.client, v, tt.desc))
			}
		}
		if len(problems) == 0 || time.Now().After(settle) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for name, mf := range fams {
		if mf.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %s named like a counter", name, mf.GetType())
		}
	}
	for _, name := range []string{"idnow_connector_kafka_buffered_produce_records", "idnow_connector_kafka_buffered_fetch_records"} {
		mf := fams[name]
		if mf == nil || mf.GetType() != dto.MetricType_GAUGE || len(mf.GetMetric()) != 2 {
			t.Errorf("%s: want a gauge with one series per client, got %v", name, mf)
		}
	}

	// Closing a client removes its series, renamed ones included, and a client re-created with
	// the same id (the enricher does so after a fatal error) registers them again.
	producer.Close()
	if mf := gather(t, reg)["idnow_connector_kafka_buffered_produce_records"]; len(mf.GetMetric()) != 1 {
		t.Fatalf("after closing the producer: want only the consumer's buffered_produce_records series, got %v", mf)
	}
	again, err := kgo.NewClient(popts...)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if mf := gather(t, reg)["idnow_connector_kafka_buffered_produce_records"]; len(mf.GetMetric()) != 2 {
		t.Fatalf("after re-creating the producer: want 2 buffered_produce_records series, got %v", mf)
	}
}
