// Package archive is the archiver role (`idnow-connector archiver`, also part of `run`): a
// consumer group on topics.enriched (read_committed) that, for every session whose
// EnrichedSession reaches one of archive.on_status, downloads every referenced vault file
// through the IDnow client's files call and writes it to object storage (gocloud.dev/blob),
// then indexes the archive in topics.archived.
//
// Keys are content-addressed: <prefix>/<environment>/<yyyy>/<mm>/<sessionId>/<sha256>.<ext>,
// the month being the session's creation month. A download is streamed into a spool file
// (archive.spool_dir) while its SHA-256 is computed; its length and the digest the storage
// declares (x-amz-checksum-sha256) are checked; only then is the spool file uploaded under the
// digest's key, unless that object already exists. So no video is ever held in memory, and no
// object ever holds bytes other than those its name promises: a truncated download never
// reaches the store, and an upload killed half-way leaves nothing (S3 completes a multipart
// upload, fileblob renames its temporary file, only on a successful Close). A retry or a
// second archiver writes the same keys, never a duplicate.
//
// Per session a manifest (manifest.json: every file with digest, size, type and key, every
// missing file with its reason, and the EnrichedSession record's own digest) is written last,
// optionally after a detached Ed25519 signature (manifest.json.sig, archive.signing_key_file),
// so a session is archived when its manifest exists and an auditor can check it without
// trusting the storage (`idnow-connector archive verify --session ID`).
//
// Exactly once towards Kafka: a batch's files and manifests are written before its
// transaction begins; then one ArchivedSession per archived session is produced to
// topics.archived and committed together with the input offsets. A batch whose transaction
// is lost (crash, rebalance) is consumed again: its objects already exist, a manifest made from
// the same record (same digest) is reused, and the record is produced again in the new
// transaction. Transient failures (IDnow, storage, an expired presigned URL, a digest that does
// not match) are retried with archive.retry's backoff; permanent ones (404, a file over
// idnow.max_file_size, a refused URL, a digest that never matches) are recorded in the manifest
// as missing with the reason and counted; the group never halts on one session.
//
// Encryption (Deps.Encryption, privacy.mode encrypt): the download is encrypted on its way into
// the spool file under a fresh Tink streaming AEAD keyset per object, wrapped by the subject's
// data key (the key the record names in privacy.keyName) in the object's header
// (privacy.NewObjectWriter); the object is named <dir>/<hmac>.<ext>.tink, an HMAC under the
// pepper of the session, the vault entry id and the plaintext digest, so names stay
// content-addressed without revealing digests; the manifest (version 2) keeps the stored
// objects' digests in clear and seals the plaintext digests under the data key. Erasing the
// subject's key makes the archived evidence unreadable (VerifyDecrypt reports Erased); a record
// whose key is already erased (or, naming no key, whose subject had a key erased) is not archived
// at all, nor one whose key is erased before its manifest is written. A key the archiver makes
// for a record naming none is committed to the keys topic before anything is encrypted under it.
package archive
