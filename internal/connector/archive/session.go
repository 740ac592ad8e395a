package archive

import (
	"bytes"
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
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// archiveRecord archives one EnrichedSession record. It returns an error only when ctx ended.
func (a *Archiver) archiveRecord(ctx context.Context, r *kgo.Record) (output, error) {
	var es schemas.EnrichedSession
	if err := a.deps.Enriched.Decode(ctx, r.Value, &es); err != nil {
		if ctx.Err() != nil {
			return output{}, ctx.Err()
		}
		// The enricher wrote it, so this is a schema the archiver does not know yet or a
		// foreign record: logged and counted, never blocking the partition.
		a.m.sessions.WithLabelValues(sessionUndecodable).Inc()
		a.log.Error("EnrichedSession record cannot be decoded; it is not archived", slog.String("topic", r.Topic),
			slog.Int("partition", int(r.Partition)), slog.Int64("offset", r.Offset), slog.Any("err", err))
		return output{}, nil
	}
	// Only the record of the event that announced the status counts: an earlier event
	// (session.created, session.started) enriched after the session completed carries the
	// completed session too, and archiving it would archive the session once per event.
	if !a.cfg.archives(es.Session.Status) || es.Event.SessionStatus == nil || *es.Event.SessionStatus != es.Session.Status {
		a.m.sessions.WithLabelValues(sessionSkipped).Inc()
		return output{}, nil
	}
	sid := es.Session.SessionID
	if !validSessionID(sid) {
		a.m.sessions.WithLabelValues(sessionInvalid).Inc()
		a.log.Error("EnrichedSession has a session id that cannot be an object key segment; it is not archived",
			slog.String("session_id", sid), slog.Int64("offset", r.Offset))
		return output{}, nil
	}
	env := a.deps.Environment
	if es.Session.Environment != nil && *es.Session.Environment != "" && validSessionID(*es.Session.Environment) {
		env = *es.Session.Environment
	}
	created := r.Timestamp
	if es.Session.CreatedAt != nil {
		created = *es.Session.CreatedAt
	}
	dir := sessionDir(a.cfg.Prefix, env, created, sid)
	recSum := sha256.Sum256(r.Value)
	recDigest := hex.EncodeToString(recSum[:])

	var key *dataKey
	if a.deps.Encryption != nil {
		k, err := a.sessionKey(ctx, &es)
		if errors.Is(err, errErasedSession) {
			// Erased before it was archived (or replayed after): archiving the evidence now
			// would undo the erasure.
			a.m.sessions.WithLabelValues(sessionErased).Inc()
			a.log.Info("the session's data key was erased; its evidence is not archived", slog.String("session_id", sid),
				slog.Int64("offset", r.Offset), slog.Any("err", err))
			return output{}, nil
		}
		if err != nil {
			return output{}, err
		}
		key = k
	}

	// A manifest of this very record means an earlier attempt archived it and then lost its
	// transaction (a crash, a rebalance): its record is produced again, nothing uploaded again.
	// An encrypted one only while its data key lives: a key the archiver made and never
	// committed (killed before its transaction) would leave every object unreadable.
	if m, raw, ok, err := a.readManifest(ctx, dir); err != nil {
		return output{}, err
	} else if ok && m.EnrichedRecord.SHA256 == recDigest && a.usable(ctx, m, key) {
		a.m.sessions.WithLabelValues(sessionReused).Inc()
		return a.result(&es, m, raw, dir)
	} else if ok && m.EnrichedRecord.SHA256 != recDigest && m.Status == es.Session.Status {
		// Another record announcing the same status (a replayed event) was archived already;
		// that record's own transaction produces (or produced) the session's ArchivedSession.
		a.m.sessions.WithLabelValues(sessionDuplicate).Inc()
		a.log.Info("session already archived for this status from another record; not archived again",
			slog.String("session_id", sid), slog.String("status", m.Status), slog.Int64("offset", r.Offset))
		return output{}, nil
	}

	m := &Manifest{
		Version: ManifestVersion, SessionID: sid, Environment: env, Status: es.Session.Status,
		EnrichedRecord: RecordRef{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, EventID: es.Event.EventID, SHA256: recDigest},
		Files:          []FileEntry{}, Missing: []MissingFile{}, ConnectorVersion: a.deps.Version, SigningKeyID: a.keyID,
	}
	blockCreated := blockTimes(&es)
	seen := map[string]bool{}
	sealed := []SealedFile{}
	for _, ref := range es.FileRefs {
		if seen[ref.VaultEntryID] {
			continue
		}
		seen[ref.VaultEntryID] = true
		fe, miss, err := a.archiveFile(ctx, sid, dir, ref, blockCreated[deref(ref.DataBlockID)], key)
		if err != nil {
			return output{}, err
		}
		if miss != nil {
			m.Missing = append(m.Missing, *miss)
			continue
		}
		m.Files = append(m.Files, fe.FileEntry)
		sealed = append(sealed, fe.plain)
	}
	if key != nil {
		// The key was live when the session began; an erasure while its files were archived
		// (minutes for a large video) must not be followed by a manifest and an ArchivedSession
		// that index the erased person's evidence. The objects already written stay, unreadable.
		if live, err := a.keyLive(ctx, key.name); err != nil {
			return output{}, err
		} else if !live {
			a.m.sessions.WithLabelValues(sessionErased).Inc()
			a.log.Info("the session's data key was erased while its files were archived; no manifest is written",
				slog.String("session_id", sid), slog.Int64("offset", r.Offset), slog.String("key_name", key.name))
			return output{}, nil
		}
		enc, err := seal(key, sid, sealed)
		if err != nil {
			return output{}, err
		}
		m.Version, m.Encryption = ManifestVersionEncrypted, enc
	}
	m.ArchivedAt = time.Now().UTC().Truncate(time.Millisecond)
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return output{}, fmt.Errorf("encode manifest: %w", err)
	}
	raw = append(raw, '\n')
	if err := a.writeManifest(ctx, dir, m.Version, raw); err != nil {
		return output{}, err
	}
	a.m.sessions.WithLabelValues(sessionArchived).Inc()
	return a.result(&es, m, raw, dir)
}

// usable reports whether an existing manifest of this record can be reused: a plain one always
// (it was archived before encryption was turned on), an encrypted one when its data key is live.
// A failing keys topic counts as not usable: archiving again is idempotent, only slower.
func (a *Archiver) usable(ctx context.Context, m *Manifest, key *dataKey) bool {
	if m.Encryption == nil || a.deps.Encryption == nil {
		return true
	}
	if key != nil && m.Encryption.KeyName == key.name {
		return true
	}
	live, err := a.deps.Encryption.Keys.Live(ctx, m.Encryption.KeyName)
	return err == nil && live
}

// result builds the ArchivedSession record for a written manifest.
func (a *Archiver) result(es *schemas.EnrichedSession, m *Manifest, raw []byte, dir string) (output, error) {
	sum := sha256.Sum256(raw)
	var bytesArchived int64
	for _, f := range m.Files {
		bytesArchived += f.Size
	}
	out := schemas.ArchivedSession{
		SessionID: m.SessionID, Environment: m.Environment, SessionStatus: m.Status, SubjectID: es.Session.SubjectID,
		Storage: a.deps.Storage, ManifestKey: ManifestKey(dir), ManifestSHA256: hex.EncodeToString(sum[:]),
		ManifestSigned: m.SigningKeyID != "", FilesArchived: int32(len(m.Files)), FilesMissing: int32(len(m.Missing)),
		BytesArchived: bytesArchived, EnrichedEventID: m.EnrichedRecord.EventID, EnrichedRecordSHA256: m.EnrichedRecord.SHA256,
		ArchivedAt: m.ArchivedAt, ConnectorVersion: a.deps.Version,
	}
	if m.SigningKeyID != "" {
		out.SigningKeyID = &m.SigningKeyID
	}
	v, err := a.deps.Archived.Encode(&out)
	if err != nil {
		// The struct matches the embedded schema (tested): a failure is a defect, not data.
		return output{}, fmt.Errorf("encode ArchivedSession %s: %w", m.SessionID, err)
	}
	rec := serde.NewRecord(a.deps.Topics.Archived, m.SessionID, m.EnrichedRecord.EventID, a.deps.Archived.Schema(), v)
	return output{record: rec, missing: len(m.Missing)}, nil
}

// blockTimes maps data block ids to their creation times: the time IDnow created the file.
func blockTimes(es *schemas.EnrichedSession) map[string]*time.Time {
	out := map[string]*time.Time{}
	for _, b := range es.DataBlocks {
		if b.ID != nil {
			out[*b.ID] = b.CreatedAt
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// errDigest marks a download whose bytes do not match what the storage declared.
var errDigest = errors.New("downloaded bytes do not match the declared digest or length")

// archiveFile downloads one file and stores it under its content address. Transient failures
// are retried for as long as they last (each retry asks the files endpoint for a fresh
// presigned URL); permanent ones return a MissingFile. The error is non-nil only when ctx ended.
func (a *Archiver) archiveFile(ctx context.Context, sid, dir string, ref schemas.FileRef, created *time.Time, key *dataKey) (*archivedFile, *MissingFile, error) {
	start := time.Now()
	a.inFlight.Add(1)
	a.m.inFlight.Inc()
	defer func() {
		a.inFlight.Add(-1)
		a.m.inFlight.Dec()
		a.m.fileDuration.Observe(time.Since(start).Seconds())
	}()
	b := a.cfg.Retry.NewBackOff()
	mismatches := 0
	for {
		fe, stage, err := a.storeFile(ctx, sid, dir, ref, created, key)
		if err == nil {
			return fe, nil, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		reason := ""
		switch {
		case errors.Is(err, errDigest):
			mismatches++
			if mismatches >= a.cfg.MaxDigestMismatches {
				reason = ReasonDigestMismatch
			}
		case stage == stageDownload && idnow.IsPermanent(err):
			reason = permanentReason(err)
		}
		if reason != "" {
			a.m.files.WithLabelValues(fileMissing).Inc()
			a.m.missing.WithLabelValues(reason).Inc()
			a.log.Warn("file recorded as missing in the manifest", slog.String("session_id", sid),
				slog.String("vault_entry_id", ref.VaultEntryID), slog.String("reason", reason), slog.Any("err", err))
			return nil, &MissingFile{VaultEntryID: ref.VaultEntryID, DataBlockType: ref.DataBlockType, JSONPath: ref.JSONPath, Reason: reason, Detail: err.Error()}, nil
		}
		a.m.retries.WithLabelValues(stage).Inc()
		wait := b.NextBackOff()
		a.log.Warn("archiving a file failed; retrying", slog.String("session_id", sid), slog.String("vault_entry_id", ref.VaultEntryID),
			slog.String("stage", stage), slog.Duration("wait", wait), slog.Any("err", err))
		if err := retry.Wait(ctx, wait); err != nil {
			return nil, nil, err
		}
	}
}

func permanentReason(err error) string {
	switch {
	case errors.Is(err, idnow.ErrNotFound):
		return ReasonNotFound
	case errors.Is(err, idnow.ErrFileTooLarge):
		return ReasonTooLarge
	case errors.Is(err, idnow.ErrInsecureURL), errors.Is(err, idnow.ErrForbidden), errors.Is(err, idnow.ErrInvalidID):
		return ReasonRefused
	}
	var ae *idnow.APIError
	if errors.As(err, &ae) && ae.StatusCode == 404 {
		return ReasonNotFound
	}
	return ReasonPermanent
}

// archivedFile is a stored file: its manifest entry, and what the plaintext was (for the
// sealed part of an encrypted manifest; equal to the entry's digest and size when plain).
type archivedFile struct {
	FileEntry
	plain SealedFile
}

// storeFile is one attempt: download into a spool file while hashing, check the bytes against
// what the storage declared, then upload the spool file under its content address unless that
// object already exists. The object store therefore only ever receives bytes whose name
// promises them, and a killed upload leaves nothing: S3 multipart uploads and fileblob's
// temporary files become visible only when completed.
//
// With a data key (privacy.mode encrypt) the download is encrypted on its way into the spool
// file, so no plaintext evidence ever touches the disk; the object is named by the pepper's
// HMAC of the session, vault entry id and plaintext digest (<dir>/<hmac>.<ext>.tink), its
// metadata names the data key and the object's own SHA-256, never the plaintext's.
func (a *Archiver) storeFile(ctx context.Context, sid, dir string, ref schemas.FileRef, created *time.Time, key *dataKey) (*archivedFile, string, error) {
	f, err := a.deps.Files.GetFile(ctx, ref.VaultEntryID)
	if err != nil {
		return nil, stageDownload, err
	}
	defer f.Body.Close()
	spool, err := os.CreateTemp(a.cfg.SpoolDir, a.spoolPrefix+"*")
	if err != nil {
		return nil, stageDownload, fmt.Errorf("create spool file in %q (archive.spool_dir): %w", a.cfg.SpoolDir, err)
	}
	defer func() {
		_ = spool.Close()
		_ = os.Remove(spool.Name())
	}()
	h := sha256.New()
	objHash := sha256.New()
	var dst io.Writer = spool
	var enc io.WriteCloser
	if key != nil {
		if enc, err = privacy.NewObjectWriter(io.MultiWriter(spool, objHash), key.aead, key.name, sid, ref.VaultEntryID); err != nil {
			return nil, stageUpload, fmt.Errorf("encrypt %s: %w", ref.VaultEntryID, err)
		}
		dst = enc
	}
	n, err := io.Copy(io.MultiWriter(dst, h), f.Body)
	if err != nil {
		return nil, stageDownload, fmt.Errorf("download %s: %w", ref.VaultEntryID, err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return nil, stageUpload, fmt.Errorf("encrypt %s: %w", ref.VaultEntryID, err)
		}
	}
	sum := h.Sum(nil)
	if f.Size >= 0 && n != f.Size {
		return nil, stageDigest, fmt.Errorf("%w: %s: got %d bytes, Content-Length said %d", errDigest, ref.VaultEntryID, n, f.Size)
	}
	if f.SHA256 != nil && !bytes.Equal(sum, f.SHA256) {
		if key != nil {
			// The plaintext digests would end in the logs and, once the file is given up, in
			// the manifest's clear MissingFile.Detail: under encryption they stay out of both.
			return nil, stageDigest, fmt.Errorf("%w: %s: %d bytes whose SHA-256 is not the one the storage declared (truncated body?)", errDigest, ref.VaultEntryID, n)
		}
		return nil, stageDigest, fmt.Errorf("%w: %s: %d bytes with SHA-256 %x, the storage declared %x (truncated body?)", errDigest, ref.VaultEntryID, n, sum, f.SHA256)
	}
	a.m.bytes.Add(float64(n))
	digest := hex.EncodeToString(sum)
	contentType := f.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	fe := &archivedFile{FileEntry: FileEntry{
		VaultEntryID: ref.VaultEntryID, DataBlockID: deref(ref.DataBlockID), DataBlockType: ref.DataBlockType, JSONPath: ref.JSONPath,
		SHA256: digest, Size: n, ContentType: contentType, CreatedAt: created,
	}}
	md := map[string]string{
		"session-id": sid, "vault-entry-id": ref.VaultEntryID, "block-type": ref.DataBlockType, "content-type": contentType,
	}
	if created != nil {
		md["idnow-created-at"] = created.UTC().Format(time.RFC3339Nano)
	}
	storedType := contentType
	if key == nil {
		fe.Key = fileKey(dir, digest, contentType)
		md["size"], md["sha256"] = strconv.FormatInt(n, 10), digest
	} else {
		size, err := spool.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, stageUpload, fmt.Errorf("spool file size: %w", err)
		}
		fe.Key = encryptedFileKey(dir, a.deps.Encryption.Pepper.ObjectName(sid, ref.VaultEntryID, digest), contentType)
		fe.SHA256, fe.Size = hex.EncodeToString(objHash.Sum(nil)), size
		md["size"], md["object-sha256"], md["encryption"], md["key-name"] = strconv.FormatInt(size, 10), fe.SHA256, privacy.ObjectScheme, key.name
		storedType = "application/octet-stream"
	}
	fe.plain = SealedFile{Key: fe.Key, SHA256: digest, Size: n}
	if attrs, ok, err := blobstore.Exists(ctx, a.deps.Bucket, fe.Key); err != nil {
		return nil, stageUpload, fmt.Errorf("check object %s: %w", fe.Key, err)
	} else if ok && reusable(attrs, fe, key) {
		a.m.files.WithLabelValues(fileExisting).Inc()
		return fe, "", nil
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, stageUpload, fmt.Errorf("rewind spool file: %w", err)
	}
	if err := a.upload(ctx, fe.Key, storedType, md, spool); err != nil {
		return nil, stageUpload, err
	}
	a.m.files.WithLabelValues(fileUploaded).Inc()
	return fe, "", nil
}

// reusable reports whether an existing object at fe.Key holds fe's content. A plain object is
// named by its digest, so its size is enough. An encrypted one was written by an earlier
// attempt with another object keyset (so other bytes): it is reused, and fe takes its digest
// and size from its metadata, when it is under the same data key as the rest of the session;
// one under another key (say, a key an archiver made and was killed before committing) is
// overwritten, so a manifest's objects always share its one key.
func reusable(attrs *blob.Attributes, fe *archivedFile, key *dataKey) bool {
	if key == nil {
		return attrs.Size == fe.Size
	}
	sum := attrs.Metadata["object-sha256"]
	if attrs.Metadata["key-name"] != key.name || len(sum) != sha256.Size*2 || attrs.Metadata["size"] != strconv.FormatInt(attrs.Size, 10) {
		return false
	}
	fe.SHA256, fe.Size = sum, attrs.Size
	return true
}

// upload writes r to key. Bucket.Upload hands r to the driver as it is (for S3, the transfer
// manager reads parts of upload_part_size into a pool of upload_concurrency+1 buffers); a
// failed upload is aborted (its context cancelled), so no partial object appears.
func (a *Archiver) upload(ctx context.Context, key, contentType string, md map[string]string, r io.Reader) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := a.deps.Bucket.Upload(wctx, key, r, &blob.WriterOptions{
		ContentType: contentType, Metadata: md, BufferSize: a.cfg.UploadPartSize, MaxConcurrency: a.cfg.UploadConcurrency,
		BeforeWrite: a.cfg.ObjectLock.lock().BeforeWrite(time.Now()),
	})
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// readManifest reads a session's manifest when it exists.
func (a *Archiver) readManifest(ctx context.Context, dir string) (*Manifest, []byte, bool, error) {
	b := a.cfg.Retry.NewBackOff()
	for {
		raw, err := a.deps.Bucket.ReadAll(ctx, ManifestKey(dir))
		if err == nil {
			var m Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				// Not ours or damaged: archived again and overwritten.
				a.log.Warn("existing manifest does not parse; the session is archived again", slog.String("key", ManifestKey(dir)), slog.Any("err", err))
				return nil, nil, false, nil
			}
			return &m, raw, true, nil
		}
		if blobstore.IsNotFound(err) {
			return nil, nil, false, nil
		}
		if ctx.Err() != nil {
			return nil, nil, false, ctx.Err()
		}
		a.m.retries.WithLabelValues(stageManifest).Inc()
		a.log.Warn("reading a manifest failed; retrying", slog.String("key", ManifestKey(dir)), slog.Any("err", err))
		if err := retry.Wait(ctx, b.NextBackOff()); err != nil {
			return nil, nil, false, err
		}
	}
}

// writeManifest writes the signature (when signing) and then the manifest, retrying
// transient storage failures.
func (a *Archiver) writeManifest(ctx context.Context, dir string, version int, raw []byte) error {
	b := a.cfg.Retry.NewBackOff()
	for {
		err := a.writeManifestOnce(ctx, dir, version, raw)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.m.retries.WithLabelValues(stageManifest).Inc()
		a.log.Warn("writing a manifest failed; retrying", slog.String("key", ManifestKey(dir)), slog.Any("err", err))
		if err := retry.Wait(ctx, b.NextBackOff()); err != nil {
			return err
		}
	}
}

// writeManifestOnce writes raw, a manifest of the given version (1 plain, 2 encrypted), which
// its object metadata names.
func (a *Archiver) writeManifestOnce(ctx context.Context, dir string, version int, raw []byte) error {
	if a.signer != nil {
		sig := ed25519.Sign(a.signer, raw)
		if err := a.upload(ctx, SignatureKey(dir), "application/octet-stream", map[string]string{"signing-key-id": a.keyID}, bytes.NewReader(sig)); err != nil {
			return err
		}
	}
	return a.upload(ctx, ManifestKey(dir), "application/json", map[string]string{"manifest-version": strconv.Itoa(version)}, bytes.NewReader(raw))
}
