package app

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// runArchiveDir is where `run` keeps the archive when archive.bucket_url is empty.
const runArchiveDir = "data/archive"

// archiveBucketURL is archive.bucket_url, or under `run` the embedded default file://<data/archive>.
func archiveBucketURL(cfg archive.Config) (string, error) {
	if cfg.BucketURL != "" {
		return cfg.BucketURL, nil
	}
	abs, err := filepath.Abs(runArchiveDir)
	if err != nil {
		return "", fmt.Errorf("archive: resolve %s: %w", runArchiveDir, err)
	}
	return "file://" + filepath.ToSlash(abs) + "?create_dir=true&no_tmp_dir=true", nil
}

func (a *App) startArchiver(ctx context.Context) error {
	api, err := a.idnowClient(ctx)
	if err != nil {
		return err
	}
	opts, err := a.kafkaOpts("archiver")
	if err != nil {
		return err
	}
	bucketURL, err := archiveBucketURL(a.cfg.Archive)
	if err != nil {
		return err
	}
	bucket, err := blobstore.Open(ctx, bucketURL)
	if err != nil {
		return fmt.Errorf("archiver: %w", err)
	}
	a.group.Defer("archive bucket", func(context.Context) error { return bucket.Close() })
	rc, err := serde.NewRegistryClient(a.cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	archived, err := a.codec(sctx, schemas.ArchivedSessionSchema(), a.cfg.Topics.Archived)
	if err != nil {
		return err
	}
	ar, err := archive.New(a.cfg.Archive, archive.Deps{
		KafkaOpts: opts, Topics: a.cfg.Topics, Files: api,
		Enriched: serde.NewDecoder(schemas.EnrichedSessionSchema(), rc), Archived: archived,
		Bucket: bucket, Storage: blobstore.Redact(bucketURL), Environment: a.cfg.IDnow.Environment,
		Registry: a.reg, Log: a.log, Version: a.version,
	})
	if err != nil {
		return err
	}
	a.archiver = ar
	a.group.Add(lifecycle.Part{Name: "archiver", Run: ar.Run, StopTimeout: ar.StopTimeout()})
	a.admin.AddCheck("archiver", ar.Ready)
	return nil
}

// VerifyOptions are the `archive verify` flags.
type VerifyOptions struct {
	SessionID string
	// PublicKeyFile is an Ed25519 public (or private) key in PEM; empty means the public half
	// of archive.signing_key_file when that is set, else the signature is not checked.
	PublicKeyFile string
}

// ErrVerifyMismatch is returned by VerifyArchive when an object or the signature does not match.
var ErrVerifyMismatch = errors.New("archive verification failed")

// VerifyArchive re-reads one session's manifest and objects and reports every digest.
func VerifyArchive(ctx context.Context, cfg Config, opts VerifyOptions, out io.Writer) error {
	if opts.SessionID == "" {
		return errors.New("archive verify: --session is required")
	}
	if err := cfg.Archive.Validate(); err != nil {
		return err
	}
	if cfg.Archive.BucketURL == "" {
		fmt.Fprintf(out, "archive.bucket_url is empty: verifying the `run` default %s\n", runArchiveDir)
	}
	bucketURL, err := archiveBucketURL(cfg.Archive)
	if err != nil {
		return err
	}
	bucket, err := blobstore.Open(ctx, bucketURL)
	if err != nil {
		return err
	}
	defer bucket.Close()
	var pub ed25519.PublicKey
	switch {
	case opts.PublicKeyFile != "":
		if pub, err = archive.LoadPublicKey(opts.PublicKeyFile); err != nil {
			return err
		}
	case cfg.Archive.SigningKeyFile != "":
		if pub, err = archive.LoadPublicKey(cfg.Archive.SigningKeyFile); err != nil {
			return err
		}
	}
	env := cfg.IDnow.Environment
	if env == "" {
		env = cfg.Simulator.Environment
	}
	dir, err := archive.FindManifest(ctx, bucket, cfg.Archive.Prefix, env, opts.SessionID)
	if err != nil {
		return err
	}
	v, err := archive.Verify(ctx, bucket, dir, pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "storage   %s\nmanifest  %s sha256 %s\nsignature %s\n", blobstore.Redact(bucketURL), v.ManifestKey, v.ManifestSHA256, v.Signature)
	bad := 0
	for _, f := range v.Files {
		switch {
		case f.Err != nil:
			bad++
			fmt.Fprintf(out, "UNREADABLE %s (%s): %v\n", f.Entry.Key, f.Entry.VaultEntryID, f.Err)
		case f.OK():
			fmt.Fprintf(out, "OK         %s (%s) %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.Size)
		default:
			bad++
			fmt.Fprintf(out, "MISMATCH   %s (%s): sha256 %s, %d bytes; manifest says %s, %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.SHA256, f.Size, f.Entry.SHA256, f.Entry.Size)
		}
	}
	for _, m := range v.Manifest.Missing {
		fmt.Fprintf(out, "MISSING    %s (%s): %s: %s\n", m.VaultEntryID, m.JSONPath, m.Reason, m.Detail)
	}
	fmt.Fprintf(out, "%d files, %d matching, %d not, %d recorded missing at archiving\n", len(v.Files), len(v.Files)-bad, bad, len(v.Manifest.Missing))
	if !v.OK() {
		return fmt.Errorf("%w: session %s: %d object(s) do not match, signature %s", ErrVerifyMismatch, opts.SessionID, bad, v.Signature)
	}
	return nil
}
