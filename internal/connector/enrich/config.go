package enrich

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

// Delivery modes accepted by enrich.delivery.
const (
	// DeliveryExactlyOnce commits output and input offsets in one Kafka transaction.
	DeliveryExactlyOnce = "exactly_once"
	// DeliveryAtLeastOnce commits input offsets only after the output was acknowledged.
	DeliveryAtLeastOnce = "at_least_once"
)

// Data-block content policies accepted by enrich.datablocks.content.
const (
	// ContentFull ships each block's content as JSON text plus its typed fields.
	ContentFull = "full"
	// ContentNone ships block metadata and the typed fields that carry no personal data only.
	ContentNone = "none"
)

// Config is the `enrich.*` config section.
type Config struct {
	// Group is the consumer group id; every enricher replica uses the same one.
	Group string `koanf:"group"`
	// Delivery is exactly_once (default) or at_least_once.
	Delivery string `koanf:"delivery"`
	// TransactionalID is the prefix of the transactional id; the full id is
	// TransactionalID + "-" + InstanceID (see the package documentation on fencing).
	TransactionalID string `koanf:"transactional_id"`
	// InstanceID names this member; empty means the host name (the pod name in Kubernetes). It
	// must be unique among live replicas and stable across restarts of the same replica.
	InstanceID string `koanf:"instance_id"`
	// Concurrency is how many sessions are enriched in parallel.
	Concurrency int `koanf:"concurrency"`
	// MaxPollRecords bounds the records taken from the consumer in one poll.
	MaxPollRecords int `koanf:"max_poll_records"`
	// CommitInterval is how long an enriched event may wait for its transaction (offset commit
	// under at_least_once): the enricher commits what is finished when the oldest finished
	// event has waited this long, or sooner when MaxBatchRecords are finished.
	CommitInterval time.Duration `koanf:"commit_interval"`
	// MaxBatchRecords bounds the events one transaction commits.
	MaxBatchRecords int `koanf:"max_batch_records"`
	// MaxInFlight bounds the events polled and not yet committed (being enriched, waiting for an
	// earlier event of their partition, or finished and waiting for the commit): the enricher's
	// memory. Polling pauses while it is reached.
	MaxInFlight int `koanf:"max_in_flight"`
	// FetchMaxBytes bounds one fetch response from a broker and FetchMaxPartitionBytes the part
	// of it from one partition. A record batch larger than the latter still comes, alone, once
	// its partition is the first with data in a fetch response (the broker rotates partitions
	// through that place), so it is delayed, not stuck; at most 100 MiB. The client
	// fetches ahead of the enricher and keeps the decompressed records until they are polled, so
	// these bound much of its memory beside the state: with franz-go's defaults (50 MiB and
	// 1 MiB) a draining enricher peaked at 248 MiB, with 4 MiB and 256 KiB at 176 MiB, at the
	// same rate (BENCHMARKS.md).
	FetchMaxBytes          int `koanf:"fetch_max_bytes"`
	FetchMaxPartitionBytes int `koanf:"fetch_max_partition_bytes"`
	// TransactionTimeout is the broker-side transaction timeout (exactly_once only).
	TransactionTimeout time.Duration `koanf:"transaction_timeout"`
	// SessionTimeout is the consumer group session timeout: how long a crashed member keeps its
	// partitions before the group hands them to the others.
	SessionTimeout time.Duration `koanf:"session_timeout"`
	// Retry is the backoff for retryable failures, which are retried for as long as they last.
	Retry RetryConfig `koanf:"retry"`
	// ShutdownTimeout bounds finishing or aborting the open transaction and leaving the group.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// DataBlocks is the data-block policy.
	DataBlocks DataBlocksConfig `koanf:"datablocks"`
	// MaxRecordBytes bounds one output record (value, key, headers and the record and batch
	// framing, estimated as recordSize does); 0, the default, means the output topic's
	// max.message.bytes read at start-up. A larger value than the topic's is capped to it. An
	// EnrichedSession over the bound is shortened (see the package documentation) or, when even
	// its metadata does not fit, dead-lettered with class record_too_large.
	MaxRecordBytes int `koanf:"max_record_bytes"`
	// StallAfter is how long input may wait without a commit before the enricher reports itself
	// stalled (gauge idnow_connector_enrich_stalled, readiness); default 2m.
	StallAfter time.Duration `koanf:"stall_after"`
	// LagInterval is how often the consumer lag (the group's committed offsets against the
	// partitions' end offsets) and the hanging-transaction check are refreshed; default 15s.
	LagInterval time.Duration `koanf:"lag_interval"`
}

// RetryConfig is the `enrich.retry.*` section: capped exponential backoff with jitter. There is no
// attempt limit on purpose: a retryable failure is never turned into a skip.
type RetryConfig struct {
	// InitialBackoff is the first wait; default 500ms.
	InitialBackoff time.Duration `koanf:"initial_backoff"`
	// MaxBackoff caps one wait; default 30s.
	MaxBackoff time.Duration `koanf:"max_backoff"`
}

// backoff is the shape of the waits: doubling, ±20% jitter so replicas blocked by the same
// outage do not retry in step.
func (c RetryConfig) backoff() retry.Config {
	return retry.Config{InitialBackoff: c.InitialBackoff, MaxBackoff: c.MaxBackoff, Multiplier: 2, Jitter: 0.2}
}

// DataBlocksConfig is the `enrich.datablocks.*` section.
type DataBlocksConfig struct {
	// OnStatus lists the session statuses for which data blocks are fetched; default [COMPLETED].
	// Empty means never.
	OnStatus []string `koanf:"on_status"`
	// Include lists the block types to keep (camelCase, e.g. basicIdentity); empty keeps all.
	Include []string `koanf:"include"`
	// Content is full (default) or none.
	Content string `koanf:"content"`
}

// StopTimeout is how long the enricher may take to stop: enrich.shutdown_timeout to end the
// open transaction and leave the group, plus a margin for closing the client.
func (c Config) StopTimeout() time.Duration { return c.ShutdownTimeout + 5*time.Second }

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Group:                  "idnow-enricher",
		Delivery:               DeliveryExactlyOnce,
		TransactionalID:        "idnow-enricher",
		Concurrency:            64,
		MaxPollRecords:         2000,
		CommitInterval:         50 * time.Millisecond,
		MaxBatchRecords:        2000,
		MaxInFlight:            4000,
		FetchMaxBytes:          4 << 20,
		FetchMaxPartitionBytes: 256 << 10,
		TransactionTimeout:     60 * time.Second,
		SessionTimeout:         45 * time.Second,
		Retry:                  RetryConfig{InitialBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second},
		ShutdownTimeout:        30 * time.Second,
		DataBlocks:             DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull},
		StallAfter:             2 * time.Minute,
		LagInterval:            15 * time.Second,
	}
}

// maxFetchBytes is franz-go's BrokerMaxReadBytes default: it refuses a larger fetch maximum.
const maxFetchBytes = 100 << 20

// idPart is what Kafka accepts in group and transactional ids without surprises in tooling.
var idPart = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports every configuration problem at once; each message names the full key.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !idPart.MatchString(c.Group) {
		add("enrich.group %q must be non-empty letters, digits, '.', '_' or '-', e.g. idnow-enricher", c.Group)
	}
	switch c.Delivery {
	case DeliveryExactlyOnce, DeliveryAtLeastOnce:
	default:
		add("enrich.delivery %q must be %s or %s", c.Delivery, DeliveryExactlyOnce, DeliveryAtLeastOnce)
	}
	if c.Delivery == DeliveryExactlyOnce && !idPart.MatchString(c.TransactionalID) {
		add("enrich.transactional_id %q must be non-empty letters, digits, '.', '_' or '-', e.g. idnow-enricher", c.TransactionalID)
	}
	if c.InstanceID != "" && !idPart.MatchString(c.InstanceID) {
		add("enrich.instance_id %q may hold only letters, digits, '.', '_' or '-' (or be empty for the host name)", c.InstanceID)
	}
	if c.Concurrency <= 0 {
		add("enrich.concurrency must be positive, e.g. 64")
	}
	if c.MaxPollRecords <= 0 {
		add("enrich.max_poll_records must be positive, e.g. 2000")
	}
	if c.CommitInterval < time.Millisecond || c.CommitInterval > time.Minute {
		add("enrich.commit_interval %s must be between 1ms and 1m, e.g. 50ms", c.CommitInterval)
	}
	if c.MaxBatchRecords <= 0 {
		add("enrich.max_batch_records must be positive, e.g. 2000")
	}
	if c.MaxInFlight < c.Concurrency {
		add("enrich.max_in_flight %d must be at least enrich.concurrency %d (else workers idle), e.g. 4000", c.MaxInFlight, c.Concurrency)
	}
	if c.FetchMaxPartitionBytes < 1<<10 || c.FetchMaxBytes < c.FetchMaxPartitionBytes || c.FetchMaxBytes > maxFetchBytes {
		add("enrich.fetch_max_partition_bytes %d must be at least 1024 and enrich.fetch_max_bytes %d at least that and at most %d (100 MiB, what the Kafka client reads from a broker at once), e.g. 262144 and 4194304", c.FetchMaxPartitionBytes, c.FetchMaxBytes, maxFetchBytes)
	}
	if c.Delivery == DeliveryExactlyOnce && (c.TransactionTimeout < time.Second || c.TransactionTimeout > 15*time.Minute) {
		add("enrich.transaction_timeout %s must be between 1s and 15m (the broker's transaction.max.timeout.ms default), e.g. 60s", c.TransactionTimeout)
	}
	if c.SessionTimeout < time.Second {
		add("enrich.session_timeout %s must be at least 1s (brokers require 6s by default), e.g. 45s", c.SessionTimeout)
	}
	if c.Retry.InitialBackoff <= 0 {
		add("enrich.retry.initial_backoff must be positive, e.g. 500ms")
	}
	if c.Retry.MaxBackoff < c.Retry.InitialBackoff {
		add("enrich.retry.max_backoff %s must be at least enrich.retry.initial_backoff %s, e.g. 30s", c.Retry.MaxBackoff, c.Retry.InitialBackoff)
	}
	if c.ShutdownTimeout <= 0 {
		add("enrich.shutdown_timeout must be positive, e.g. 30s")
	}
	if c.MaxRecordBytes != 0 && c.MaxRecordBytes < minRecordBytes {
		add("enrich.max_record_bytes %d must be 0 (use the output topic's max.message.bytes) or at least %d", c.MaxRecordBytes, minRecordBytes)
	}
	if c.StallAfter < time.Second {
		add("enrich.stall_after %s must be at least 1s, e.g. 2m", c.StallAfter)
	}
	if c.LagInterval <= 0 || c.LagInterval > 5*time.Minute {
		add("enrich.lag_interval %s must be positive and at most 5m, e.g. 15s", c.LagInterval)
	}
	switch c.DataBlocks.Content {
	case ContentFull, ContentNone:
	default:
		add("enrich.datablocks.content %q must be %s or %s", c.DataBlocks.Content, ContentFull, ContentNone)
	}
	for i, s := range c.DataBlocks.OnStatus {
		if strings.TrimSpace(s) == "" {
			add("enrich.datablocks.on_status[%d] is empty: list session statuses such as COMPLETED", i)
		}
	}
	for i, s := range c.DataBlocks.Include {
		if strings.TrimSpace(s) == "" {
			add("enrich.datablocks.include[%d] is empty: list block types such as basicIdentity, or leave the list empty for all", i)
		}
	}
	return errors.Join(errs...)
}

// instanceID returns enrich.instance_id or, when empty, a Kafka-safe form of the host name.
func (c Config) instanceID() (string, error) {
	if c.InstanceID != "" {
		return c.InstanceID, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("enrich.instance_id is empty and the host name is unavailable (%w): set enrich.instance_id", err)
	}
	h = strings.Map(func(r rune) rune {
		if r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '-'
	}, h)
	if h == "" {
		return "", errors.New("enrich.instance_id is empty and the host name is empty: set enrich.instance_id")
	}
	return h, nil
}

// fetchesBlocks reports whether data blocks are fetched for a session in status.
func (p DataBlocksConfig) fetchesBlocks(status string) bool {
	for _, s := range p.OnStatus {
		if strings.EqualFold(strings.TrimSpace(s), status) {
			return true
		}
	}
	return false
}

// includes reports whether blocks of type typ are kept.
func (p DataBlocksConfig) includes(typ string) bool {
	if len(p.Include) == 0 {
		return true
	}
	for _, t := range p.Include {
		if strings.EqualFold(strings.TrimSpace(t), typ) {
			return true
		}
	}
	return false
}
