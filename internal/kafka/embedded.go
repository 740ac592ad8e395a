package kafka

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is the in-process Kafka-protocol broker (franz-go's kfake) used for development when
// no brokers are configured. It persists to a data directory so `make run` survives restarts.
// It is not Kafka: no replication, a simplified transaction model; never use it in production.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts the development broker described by cfg.
func StartEmbedded(cfg EmbeddedConfig, log *slog.Logger) (*Embedded, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler) // the project's nil-logger rule (README, Contributing)
	}
	_, portText, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("kafka.embedded.listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, fmt.Errorf("kafka.embedded.listen %q: bad port: %w", cfg.Listen, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ClusterID("idnow-connector-embedded"),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded Kafka broker on %s (data dir %q): %w", cfg.Listen, cfg.DataDir, err)
	}
	log.Warn("started the EMBEDDED development Kafka broker: not for production, set kafka.brokers for a real cluster",
		"listen", c.ListenAddrs(), "data_dir", cfg.DataDir)
	return &Embedded{cluster: c}, nil
}

// Addrs returns the broker's listen addresses, for clients and for `tail --brokers`.
func (e *Embedded) Addrs() []string { return e.cluster.ListenAddrs() }

// Cluster exposes the fake cluster to tests that inject faults.
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the broker and flushes its data directory.
func (e *Embedded) Close() { e.cluster.Close() }
