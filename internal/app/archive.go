package app

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/lifecycle"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
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
	enc, err := a.archiveEncryption(sctx)
	if err != nil {
		return err
	}
	ar, err := archive.New(a.cfg.Archive, archive.Deps{
		KafkaOpts: opts, Topics: a.cfg.Topics, Files: api,
		Enriched: serde.NewDecoder(schemas.EnrichedSessionSchema(), rc), Archived: archived,
		Bucket: bucket, Storage: blobstore.Redact(bucketURL), Environment: a.cfg.IDnow.Environment,
		Encryption: enc, Registry: a.reg, Log: a.log, Version: a.version,
	})
	if err != nil {
		return err
	}
	a.archiver = ar
	a.group.Add(lifecycle.Part{Name: "archiver", Run: ar.Run, StopTimeout: ar.StopTimeout()})
	a.admin.AddCheck("archiver", ar.Ready)
	return nil
}

// archiveKeysMaxAge bounds how long the archiver uses a data key without reading the keys topic
// again: an erasure reaches the archiver within it.
const archiveKeysMaxAge = 30 * time.Second

// archiveEncryption is the archiver's Deps.Encryption under privacy.mode encrypt (nil
// otherwise): its own KEK handle, pepper and keyring, filled from the keys topic on demand.
func (a *App) archiveEncryption(ctx context.Context) (*archive.Encryption, error) {
	pc := a.cfg.Privacy
	if pc.Mode != schemas.PrivacyEncrypt {
		return nil, nil
	}
	if a.mode == ModeRun {
		made, err := PrivacyInit(ctx, pc)
		for _, m := range made {
			a.log.Warn(m)
		}
		if err != nil {
			return nil, err
		}
	}
	kc := a.cfg.Kafka
	kc.Brokers = a.brokers
	keysOpts, err := newKafkaOpts(kc, "archiver-keys")
	if err != nil {
		return nil, err
	}
	if err := ensureKeysTopic(ctx, keysOpts, a.cfg.Topics); err != nil {
		return nil, err
	}
	kek, pepper, err := openPepper(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("archiver: %w", err)
	}
	a.group.Defer("archiver key-encryption key", func(context.Context) error { return kek.Close() })
	ring, err := privacy.NewKeyring(kek, pc.KeyCacheSize)
	if err != nil {
		return nil, err
	}
	keys := privacy.NewKeyFinder(ring, privacy.NewKeysTopic(keysOpts, a.cfg.Topics.Keys, ring, a.log.With(slog.String("component", "archiver-keys"))), archiveKeysMaxAge)
	if err := keys.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("archiver start-up: %w", err)
	}
	a.log.Info("archiver: encrypting evidence under the subjects' data keys", slog.String("kek", kek.Source), slog.String("topic", a.cfg.Topics.Keys))
	return &archive.Encryption{Keys: keys, Pepper: pepper, KeyScope: pc.KeyScope, KeysTopic: a.cfg.Topics.Keys, KEKSource: kek.Source, KeysOpts: keysOpts}, nil
}

// VerifyOptions are the `archive verify` flags.
type VerifyOptions struct {
	SessionID string
	// PublicKeyFile is an Ed25519 public (or private) key in PEM; empty means the public half
	// of archive.signing_key_file when that is set, else the signature is not checked.
	PublicKeyFile string
	// Decrypt decrypts an encrypted archive and checks its plaintext digests too (needs the KEK
	// and read access to topics.keys).
	Decrypt bool
	// Brokers overrides kafka.brokers for reading topics.keys.
	Brokers []string
}

// ErrVerifyMismatch is returned by VerifyArchive when an object or the signature does not match.
var ErrVerifyMismatch = errors.New("archive verification failed")

// openArchive opens the bucket archive.* names and finds a session's folder in it.
func openArchive(ctx context.Context, cfg Config, sessionID string, out io.Writer) (*blob.Bucket, string, string, error) {
	if sessionID == "" {
		return nil, "", "", errors.New("--session is required")
	}
	if err := cfg.Archive.Validate(); err != nil {
		return nil, "", "", err
	}
	if cfg.Archive.BucketURL == "" {
		fmt.Fprintf(out, "archive.bucket_url is empty: reading the `run` default %s\n", runArchiveDir)
	}
	bucketURL, err := archiveBucketURL(cfg.Archive)
	if err != nil {
		return nil, "", "", err
	}
	bucket, err := blobstore.Open(ctx, bucketURL)
	if err != nil {
		return nil, "", "", err
	}
	env := cfg.IDnow.Environment
	if env == "" {
		env = cfg.Simulator.Environment
	}
	dir, err := archive.FindManifest(ctx, bucket, cfg.Archive.Prefix, env, sessionID)
	if err != nil {
		_ = bucket.Close()
		return nil, "", "", err
	}
	return bucket, dir, blobstore.Redact(bucketURL), nil
}

// toolKeys opens the KEK privacy.* names and a reader of topics.keys, for the archive tools.
func toolKeys(ctx context.Context, cfg Config, brokers []string) (*privacy.KeyFinder, func(), error) {
	pc := ToolPrivacy(cfg)
	kek, err := privacy.OpenKEK(ctx, pc)
	if err != nil {
		return nil, nil, err
	}
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(brokers)
	base, err := newKafkaOpts(kc, "archive-tool")
	if err != nil {
		_ = kek.Close()
		return nil, nil, err
	}
	ring, err := privacy.NewKeyring(kek, pc.KeyCacheSize)
	if err != nil {
		_ = kek.Close()
		return nil, nil, err
	}
	keys := privacy.NewKeyFinder(ring, privacy.NewKeysTopic(base, cfg.Topics.Keys, ring, nil), archiveKeysMaxAge)
	if err := keys.Refresh(ctx); err != nil {
		_ = kek.Close()
		return nil, nil, err
	}
	return keys, func() { _ = kek.Close() }, nil
}

// VerifyArchive re-reads one session's manifest and objects and reports every digest; with
// opts.Decrypt, an encrypted archive's plaintext digests too, or ERASED per file when the
// subject's data key was erased (not a failure: the erasure worked).
func VerifyArchive(ctx context.Context, cfg Config, opts VerifyOptions, out io.Writer) error {
	bucket, dir, storage, err := openArchive(ctx, cfg, opts.SessionID, out)
	if err != nil {
		return fmt.Errorf("archive verify: %w", err)
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
	var v *archive.Verification
	if opts.Decrypt {
		keys, closeKeys, err := toolKeys(ctx, cfg, opts.Brokers)
		if err != nil {
			return fmt.Errorf("archive verify --decrypt: %w", err)
		}
		defer closeKeys()
		v, err = archive.VerifyDecrypt(ctx, bucket, dir, pub, keys)
		if err != nil {
			return err
		}
	} else if v, err = archive.Verify(ctx, bucket, dir, pub); err != nil {
		return err
	}
	fmt.Fprintf(out, "storage   %s\nmanifest  %s sha256 %s\nsignature %s\n", storage, v.ManifestKey, v.ManifestSHA256, v.Signature)
	if e := v.Manifest.Encryption; e != nil {
		state := "not decrypted (--decrypt checks the plaintext)"
		switch {
		case v.Erased:
			state = "ERASED: the data key is gone, the evidence can never be read again"
		case v.Decrypted:
			state = "decrypted"
		}
		fmt.Fprintf(out, "encrypted %s under data key %s: %s\n", e.Scheme, e.KeyName, state)
	}
	bad := 0
	for _, f := range v.Files {
		switch {
		case f.Err != nil:
			bad++
			fmt.Fprintf(out, "UNREADABLE %s (%s): %v\n", f.Entry.Key, f.Entry.VaultEntryID, f.Err)
		case f.SHA256 != f.Entry.SHA256 || f.Size != f.Entry.Size:
			bad++
			fmt.Fprintf(out, "MISMATCH   %s (%s): sha256 %s, %d bytes; manifest says %s, %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.SHA256, f.Size, f.Entry.SHA256, f.Entry.Size)
		case v.Erased:
			fmt.Fprintf(out, "ERASED     %s (%s) %d bytes stored, unreadable\n", f.Entry.Key, f.Entry.VaultEntryID, f.Size)
		case f.Plain != nil && f.Plain.Err != nil:
			bad++
			fmt.Fprintf(out, "UNREADABLE %s (%s): decrypting: %v\n", f.Entry.Key, f.Entry.VaultEntryID, f.Plain.Err)
		case f.Plain != nil && !f.OK():
			bad++
			fmt.Fprintf(out, "MISMATCH   %s (%s): plaintext sha256 %s, %d bytes; sealed %s, %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.Plain.SHA256, f.Plain.Size, f.Plain.Want.SHA256, f.Plain.Want.Size)
		case f.Plain != nil:
			fmt.Fprintf(out, "OK         %s (%s) %d bytes, plaintext sha256 %s, %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.Size, f.Plain.SHA256, f.Plain.Size)
		default:
			fmt.Fprintf(out, "OK         %s (%s) %d bytes\n", f.Entry.Key, f.Entry.VaultEntryID, f.Size)
		}
	}
	for _, m := range v.Manifest.Missing {
		fmt.Fprintf(out, "MISSING    %s (%s): %s: %s\n", m.VaultEntryID, m.JSONPath, m.Reason, m.Detail)
	}
	erased := ""
	if v.Erased {
		erased = fmt.Sprintf(" (%d erased: stored intact, unreadable)", len(v.Files)-bad)
	}
	fmt.Fprintf(out, "%d files, %d matching%s, %d not, %d recorded missing at archiving\n", len(v.Files), len(v.Files)-bad, erased, bad, len(v.Manifest.Missing))
	if !v.OK() {
		return fmt.Errorf("%w: session %s: %d object(s) do not match, signature %s", ErrVerifyMismatch, opts.SessionID, bad, v.Signature)
	}
	return nil
}

// GetOptions are the `archive get` flags.
type GetOptions struct {
	SessionID string
	// File is the vault entry id of the file, or its object key (as verify prints it).
	File string
	// Output is the file to write the (decrypted) content to; "-" is stdout.
	Output  string
	Brokers []string
}

// GetArchived writes one archived file of a session to opts.Output: decrypted when the archive
// is encrypted (the data key found in topics.keys), checked against the manifest's (sealed)
// digest either way. The output file is written next to its final name and renamed only when
// the digest matched, so a tampered object never leaves a file an auditor could mistake for
// evidence. An erased subject's file returns an error matching privacy.ErrErased.
func GetArchived(ctx context.Context, cfg Config, opts GetOptions, out io.Writer) error {
	if opts.File == "" || opts.Output == "" {
		return errors.New("archive get: --file and -o are required")
	}
	bucket, dir, _, err := openArchive(ctx, cfg, opts.SessionID, out)
	if err != nil {
		return fmt.Errorf("archive get: %w", err)
	}
	defer bucket.Close()
	raw, err := bucket.ReadAll(ctx, archive.ManifestKey(dir))
	if err != nil {
		return fmt.Errorf("archive get: read manifest: %w", err)
	}
	var m archive.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("archive get: manifest %s does not parse: %w", archive.ManifestKey(dir), err)
	}
	var entry *archive.FileEntry
	for i := range m.Files {
		if f := &m.Files[i]; f.VaultEntryID == opts.File || f.Key == opts.File {
			entry = f
		}
	}
	if entry == nil {
		return fmt.Errorf("archive get: the manifest of session %s lists no file %q (give a vault entry id or an object key, as `archive verify` prints them)", opts.SessionID, opts.File)
	}
	want := archive.SealedFile{Key: entry.Key, SHA256: entry.SHA256, Size: entry.Size}
	var keys *privacy.KeyFinder
	if m.Encryption != nil {
		var closeKeys func()
		if keys, closeKeys, err = toolKeys(ctx, cfg, opts.Brokers); err != nil {
			return fmt.Errorf("archive get: %w", err)
		}
		defer closeKeys()
		dek, err := keys.Find(ctx, m.Encryption.KeyName)
		if err != nil {
			return fmt.Errorf("archive get: session %s: %w", opts.SessionID, err)
		}
		sealed, err := archive.Unseal(&m, dek)
		if err != nil {
			return fmt.Errorf("archive get: %w", err)
		}
		want = archive.SealedFile{}
		for _, f := range sealed {
			if f.Key == entry.Key {
				want = f
			}
		}
		if want.Key == "" {
			return fmt.Errorf("archive get: the sealed digests do not list %s", entry.Key)
		}
	}
	r, err := bucket.NewReader(ctx, entry.Key, nil)
	if err != nil {
		return fmt.Errorf("archive get: %w", err)
	}
	defer r.Close()
	var src io.Reader = r
	if keys != nil {
		if src, _, err = archive.DecryptObject(r, m.SessionID, entry.VaultEntryID, func(name string) (tink.AEAD, error) { return keys.Find(ctx, name) }); err != nil {
			return fmt.Errorf("archive get: %s: %w", entry.Key, err)
		}
	}
	return writeChecked(opts.Output, src, want, out)
}

// writeChecked copies src to path ("-": stdout) and fails when its SHA-256 or size is not want's.
func writeChecked(path string, src io.Reader, want archive.SealedFile, out io.Writer) error {
	h := sha256.New()
	if path == "-" {
		n, err := io.Copy(io.MultiWriter(out, h), src)
		if err != nil {
			return fmt.Errorf("archive get: %w", err)
		}
		return checkSum(h.Sum(nil), n, want)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("archive get: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("archive get: %w", err)
	}
	if err := checkSum(h.Sum(nil), n, want); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("archive get: %w", err)
	}
	return nil
}

func checkSum(sum []byte, n int64, want archive.SealedFile) error {
	if got := hex.EncodeToString(sum); got != want.SHA256 || n != want.Size {
		return fmt.Errorf("%w: %s: sha256 %s, %d bytes; the manifest says %s, %d bytes", ErrVerifyMismatch, want.Key, got, n, want.SHA256, want.Size)
	}
	return nil
}
