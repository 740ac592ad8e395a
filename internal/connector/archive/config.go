package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
)

// Config is the `archive.*` config section.
type Config struct {
	// Enabled runs the archiver under `run` (the `archiver` command runs it regardless).
	Enabled bool `koanf:"enabled"`
	// Group is the consumer group id on topics.enriched; every archiver replica uses the same one.
	Group string `koanf:"group"`
	// TransactionalID is the prefix of the transactional id; the full id is
	// TransactionalID + "-" + InstanceID.
	TransactionalID string `koanf:"transactional_id"`
	// InstanceID names this member; empty means the host name (the pod name in Kubernetes).
	InstanceID string `koanf:"instance_id"`
	// OnStatus lists the session statuses whose EnrichedSession records are archived.
	OnStatus []string `koanf:"on_status"`
	// BucketURL is where the evidence goes: s3://, gs://, azblob:// or file:// (gocloud.dev/blob
	// URL). Empty under `run` means file://<absolute data/archive>.
	BucketURL string `koanf:"bucket_url"`
	// Prefix is the first segment of every object key.
	Prefix string `koanf:"prefix"`
	// SpoolDir holds each download while its SHA-256 is computed, before the upload; empty means
	// the system temporary directory. It needs room for Concurrency files of idnow.max_file_size.
	SpoolDir string `koanf:"spool_dir"`
	// Concurrency is how many sessions of a batch are archived in parallel.
	Concurrency int `koanf:"concurrency"`
	// MaxPollRecords bounds one batch (one transaction).
	MaxPollRecords int `koanf:"max_poll_records"`
	// UploadPartSize is the S3 multipart part size (and the other drivers' write buffer) in bytes:
	// with UploadConcurrency it bounds the memory an upload holds.
	UploadPartSize int `koanf:"upload_part_size"`
	// UploadConcurrency is how many parts of one upload are in flight.
	UploadConcurrency int `koanf:"upload_concurrency"`
	// MaxDigestMismatches is how often a file whose bytes do not match the digest or length the
	// storage declared (a truncated body) is downloaded again before it is recorded as missing.
	MaxDigestMismatches int `koanf:"max_digest_mismatches"`
	// SigningKeyFile names a PEM file with an Ed25519 private key (PKCS #8); when set, every
	// manifest gets a detached signature (manifest.json.sig).
	SigningKeyFile string `koanf:"signing_key_file"`
	// ObjectLock sets S3 Object Lock retention on every object written (S3 only).
	ObjectLock ObjectLockConfig `koanf:"object_lock"`
	// TransactionTimeout is the broker-side transaction timeout. Files are archived before the
	// transaction begins, so it only needs to cover producing and committing.
	TransactionTimeout time.Duration `koanf:"transaction_timeout"`
	// SessionTimeout is the consumer group session timeout.
	SessionTimeout time.Duration `koanf:"session_timeout"`
	// ShutdownTimeout bounds aborting the open transaction and leaving the group.
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// Retry is the backoff for transient failures (IDnow, storage, Kafka), retried for as long
	// as they last.
	Retry retry.Config `koanf:"retry"`
}

// ObjectLockConfig is `archive.object_lock.*`.
type ObjectLockConfig struct {
	// Mode is GOVERNANCE or COMPLIANCE; empty (default) sets no per-object retention.
	Mode string `koanf:"mode"`
	// RetainFor is how long each object is retained from its write.
	RetainFor time.Duration `koanf:"retain_for"`
}

func (c ObjectLockConfig) lock() blobstore.ObjectLock {
	return blobstore.ObjectLock{Mode: c.Mode, RetainFor: c.RetainFor}
}

// DefaultConfig returns the documented defaults (config.yaml).
func DefaultConfig() Config {
	return Config{
		Group:               "idnow-connector-archiver",
		TransactionalID:     "idnow-connector-archiver",
		OnStatus:            []string{"COMPLETED"},
		Prefix:              "idnow",
		Concurrency:         2,
		MaxPollRecords:      20,
		UploadPartSize:      5 << 20,
		UploadConcurrency:   1,
		MaxDigestMismatches: 5,
		TransactionTimeout:  time.Minute,
		SessionTimeout:      45 * time.Second,
		ShutdownTimeout:     15 * time.Second,
		Retry:               retry.Config{InitialBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, Jitter: 0.2},
	}
}

// Validate reports every invalid setting, naming the key and what to do.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(c.Group) == "" {
		bad("archive.group must not be empty; set the consumer group id (default idnow-connector-archiver)")
	}
	if strings.TrimSpace(c.TransactionalID) == "" {
		bad("archive.transactional_id must not be empty; set a prefix such as idnow-connector-archiver")
	}
	if len(c.OnStatus) == 0 {
		bad("archive.on_status must list at least one session status (e.g. [COMPLETED])")
	}
	for _, s := range c.OnStatus {
		if s == "" || strings.ToUpper(s) != s {
			bad("archive.on_status entry %q must be an upper-case IDnow status such as COMPLETED, ABORTED, EXPIRED or ERROR", s)
		}
	}
	if c.BucketURL != "" {
		if err := blobstore.CheckURL(c.BucketURL); err != nil {
			bad("archive.bucket_url: %w", err)
		}
	}
	if c.Prefix == "" || strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") || path.Clean(c.Prefix) != c.Prefix || strings.Contains(c.Prefix, "..") {
		bad("archive.prefix %q must be a relative key prefix without leading or trailing '/' or '..' (e.g. idnow or evidence/idnow)", c.Prefix)
	}
	if c.Concurrency < 1 || c.Concurrency > 64 {
		bad("archive.concurrency %d is out of range; set 1..64", c.Concurrency)
	}
	if c.MaxPollRecords < 1 {
		bad("archive.max_poll_records must be at least 1, got %d", c.MaxPollRecords)
	}
	if c.UploadPartSize < 5<<20 {
		bad("archive.upload_part_size %d is below S3's minimum part size of 5 MiB (5242880)", c.UploadPartSize)
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 16 {
		bad("archive.upload_concurrency %d is out of range; set 1..16", c.UploadConcurrency)
	}
	if c.MaxDigestMismatches < 1 {
		bad("archive.max_digest_mismatches must be at least 1, got %d", c.MaxDigestMismatches)
	}
	if err := c.ObjectLock.lock().Validate("archive.object_lock"); err != nil {
		errs = append(errs, err)
	}
	if c.TransactionTimeout < time.Second {
		bad("archive.transaction_timeout %s is too short; set at least 1s (default 1m)", c.TransactionTimeout)
	}
	if c.SessionTimeout < 6*time.Second {
		bad("archive.session_timeout %s is below the broker minimum of 6s", c.SessionTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		bad("archive.shutdown_timeout must be positive (e.g. 15s)")
	}
	if err := c.Retry.Validate("archive.retry"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkFiles checks the files the configuration names, at start-up (Validate stays free of
// I/O, so a configuration can be checked where they are not mounted).
func (c Config) checkFiles() error {
	var errs []error
	if c.SpoolDir != "" {
		if st, err := os.Stat(c.SpoolDir); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("archive.spool_dir %q is not an existing directory; create it (in Kubernetes an emptyDir volume) or leave it empty for the system temporary directory", c.SpoolDir))
		}
	}
	if c.SigningKeyFile != "" {
		if _, err := LoadSigningKey(c.SigningKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("archive.signing_key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// StopTimeout is how long the archiver may take to stop: the file in progress is abandoned
// (it is archived again by the next owner), the open transaction aborted, the group left.
func (c Config) StopTimeout() time.Duration { return c.ShutdownTimeout + 5*time.Second }

func (c Config) archives(status string) bool {
	for _, s := range c.OnStatus {
		if s == status {
			return true
		}
	}
	return false
}
