package archive

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"mime"
	"os"
	"path"
	"strings"
	"time"
)

// Manifest versions: 1 lists files stored as IDnow served them; 2 adds Encryption, set when
// the files are encrypted (privacy.mode encrypt). A plain archive is still written as version 1,
// so readers of existing archives see no change.
const (
	ManifestVersion          = 1
	ManifestVersionEncrypted = 2
)

// Manifest lists one session's archived evidence. It is written after every file, so its
// existence means the session is archived; its SHA-256 is in the ArchivedSession record and,
// when signed, an Ed25519 signature over its exact bytes lies next to it (manifest.json.sig).
type Manifest struct {
	Version     int    `json:"version"`
	SessionID   string `json:"sessionId"`
	Environment string `json:"environment"`
	Status      string `json:"status"`
	// EnrichedRecord identifies the EnrichedSession record the archive was made from.
	EnrichedRecord RecordRef     `json:"enrichedRecord"`
	Files          []FileEntry   `json:"files"`
	Missing        []MissingFile `json:"missing"`
	ArchivedAt     time.Time     `json:"archivedAt"`
	// ConnectorVersion is the connector version that wrote the manifest.
	ConnectorVersion string `json:"connectorVersion"`
	// SigningKeyID names the Ed25519 key that signed the manifest; empty when unsigned.
	SigningKeyID string `json:"signingKeyId,omitempty"`
	// Encryption is set (version 2) when the files are encrypted: then each file's SHA256 and
	// Size are those of the stored object (header and ciphertext), checkable without any key,
	// and the plaintext digests are sealed under the subject's data key.
	Encryption *ManifestEncryption `json:"encryption,omitempty"`
}

// ManifestEncryption describes an encrypted session archive. It names the data key (a
// pseudonymous keys-topic name) and holds no personal data: the plaintext digests of the
// evidence (which would let anyone holding a copy of a document image confirm it is archived)
// are in Sealed, readable only while the subject's data key exists.
type ManifestEncryption struct {
	// Scheme is privacy.ObjectScheme.
	Scheme string `json:"scheme"`
	// KeyName is the data key (keys topic record key) of every object and of Sealed.
	KeyName string `json:"keyName"`
	// Sealed is the Tink AEAD ciphertext, under KeyName with associated data
	// privacy.ManifestAssociatedData(sessionId), of the JSON array of SealedFile (base64).
	Sealed []byte `json:"sealed"`
}

// SealedFile is one file's plaintext digest, what IDnow served: the sealed part of a version 2
// manifest.
type SealedFile struct {
	Key    string `json:"key"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// RecordRef points at the Kafka record behind an archive.
type RecordRef struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	EventID   string `json:"eventId"`
	SHA256    string `json:"sha256"`
}

// FileEntry is one archived file.
type FileEntry struct {
	VaultEntryID  string     `json:"vaultEntryId"`
	DataBlockID   string     `json:"dataBlockId,omitempty"`
	DataBlockType string     `json:"dataBlockType"`
	JSONPath      string     `json:"jsonPath"`
	Key           string     `json:"key"`
	SHA256        string     `json:"sha256"`
	Size          int64      `json:"size"`
	ContentType   string     `json:"contentType"`
	CreatedAt     *time.Time `json:"createdAt,omitempty"`
}

// MissingFile is a referenced file that could not be archived for a permanent reason.
type MissingFile struct {
	VaultEntryID  string `json:"vaultEntryId"`
	DataBlockType string `json:"dataBlockType"`
	JSONPath      string `json:"jsonPath"`
	// Reason is one of the Reason* constants; Detail is the error text.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// Reasons a file is recorded as missing (also the values of the reason label).
const (
	ReasonNotFound       = "not_found"
	ReasonTooLarge       = "too_large"
	ReasonRefused        = "refused"
	ReasonDigestMismatch = "digest_mismatch"
	ReasonPermanent      = "permanent_error"
)

var missingReasons = []string{ReasonNotFound, ReasonTooLarge, ReasonRefused, ReasonDigestMismatch, ReasonPermanent}

// sessionDir is the key folder of a session: <prefix>/<environment>/<yyyy>/<mm>/<sessionId>.
// The month is the session's creation month (UTC), so every archiver computes the same keys.
func sessionDir(prefix, env string, created time.Time, sessionID string) string {
	created = created.UTC()
	return path.Join(prefix, env, fmt.Sprintf("%04d", created.Year()), fmt.Sprintf("%02d", int(created.Month())), sessionID)
}

// ManifestKey is the key of a session's manifest.
func ManifestKey(dir string) string { return dir + "/manifest.json" }

// SignatureKey is the key of a manifest's detached Ed25519 signature.
func SignatureKey(dir string) string { return dir + "/manifest.json.sig" }

// fileKey is the content-addressed key of a file: <dir>/<sha256>.<ext>.
func fileKey(dir, sum, contentType string) string {
	return dir + "/" + sum + "." + extension(contentType)
}

// encryptedSuffix ends the key of every encrypted object.
const encryptedSuffix = ".tink"

// encryptedFileKey is the key of an encrypted file: <dir>/<name>.<ext>.tink, name being the
// pepper's HMAC of the session, the vault entry id and the plaintext digest
// (privacy.Pepper.ObjectName).
func encryptedFileKey(dir, name, contentType string) string {
	return dir + "/" + name + "." + extension(contentType) + encryptedSuffix
}

// extension picks a short file extension for a content type.
func extension(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "bin"
	}
	switch mt {
	case "image/jpeg":
		return "jpg"
	case "image/png":
		return "png"
	case "application/pdf":
		return "pdf"
	case "video/mp4":
		return "mp4"
	case "video/webm":
		return "webm"
	case "application/json":
		return "json"
	}
	if exts, _ := mime.ExtensionsByType(mt); len(exts) > 0 {
		return strings.TrimPrefix(exts[0], ".")
	}
	return "bin"
}

// validSessionID keeps a session id usable as one key segment.
func validSessionID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\\\x00") && len(id) <= 256
}

// LoadSigningKey reads an Ed25519 private key from a PEM file (PKCS #8, "PRIVATE KEY"), as
// `openssl genpkey -algorithm ed25519` writes it.
func LoadSigningKey(file string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block; write an Ed25519 key with `openssl genpkey -algorithm ed25519 -out %s`", file, file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS #8 private key: %w", file, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not an Ed25519 key", file, k)
	}
	return priv, nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM file ("PUBLIC KEY", PKIX), or derives it
// from a private key file.
func LoadPublicKey(file string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", file)
	}
	if blk.Type == "PRIVATE KEY" {
		priv, err := LoadSigningKey(file)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKIX public key: %w", file, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, not an Ed25519 key", file, k)
	}
	return pub, nil
}

// KeyID names a public key: the first 16 hex characters of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}
