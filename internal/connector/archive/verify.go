package archive

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tink-crypto/tink-go/v2/tink"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
)

// Verification is the result of re-reading one session's archive.
type Verification struct {
	ManifestKey    string
	ManifestSHA256 string
	Manifest       *Manifest
	// Signature is "valid", "invalid", "missing" (the manifest names a key but no signature
	// object exists), "unsigned", or "not checked" (signed, but no public key was given).
	Signature string
	Files     []FileCheck
	// Decrypted is set by VerifyDecrypt on an encrypted archive: the data key was found and
	// every file's plaintext was checked (FileCheck.Plain). Erased is set instead when the data
	// key was erased: the objects are intact (their own digests still match) but unreadable.
	Decrypted bool
	Erased    bool
}

// FileCheck is one file's re-read digest.
type FileCheck struct {
	Entry  FileEntry
	SHA256 string
	Size   int64
	// Err is set when the object could not be read.
	Err error
	// Plain is the decrypted content's check (VerifyDecrypt of an encrypted archive whose key
	// lives); nil otherwise.
	Plain *PlainCheck
}

// PlainCheck is one encrypted file's plaintext, decrypted and hashed.
type PlainCheck struct {
	// Want is the digest sealed in the manifest (what IDnow served).
	Want   SealedFile
	SHA256 string
	Size   int64
	// Err is set when the object could not be decrypted (tampered, truncated, moved).
	Err error
}

// OK reports whether the file's bytes match the manifest, and its plaintext when decrypted.
func (c FileCheck) OK() bool {
	if c.Plain != nil && (c.Plain.Err != nil || c.Plain.SHA256 != c.Plain.Want.SHA256 || c.Plain.Size != c.Plain.Want.Size) {
		return false
	}
	return c.Err == nil && c.SHA256 == c.Entry.SHA256 && c.Size == c.Entry.Size
}

// OK reports whether every file matches and the signature is not invalid or missing.
func (v *Verification) OK() bool {
	for _, f := range v.Files {
		if !f.OK() {
			return false
		}
	}
	return v.Signature != "invalid" && v.Signature != "missing"
}

// ErrNoManifest means no manifest exists for the session.
var ErrNoManifest = errors.New("no manifest for the session")

// FindManifest finds a session's folder under <prefix>/<environment>/: keys carry the session's
// creation year and month, which the caller need not know, so the year and month folders are
// listed (a few dozen keys) and each probed for <sessionId>/manifest.json.
func FindManifest(ctx context.Context, b *blob.Bucket, prefix, env, sessionID string) (string, error) {
	if !validSessionID(sessionID) {
		return "", fmt.Errorf("session id %q cannot be an object key segment", sessionID)
	}
	years, err := listDirs(ctx, b, prefix+"/"+env+"/")
	if err != nil {
		return "", err
	}
	for _, y := range years {
		months, err := listDirs(ctx, b, y)
		if err != nil {
			return "", err
		}
		for _, m := range months {
			dir := m + sessionID
			if _, ok, err := blobstore.Exists(ctx, b, ManifestKey(dir)); err != nil {
				return "", fmt.Errorf("probe %s: %w", ManifestKey(dir), err)
			} else if ok {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("%w %s under %s/%s/ (check archive.prefix and idnow.environment)", ErrNoManifest, sessionID, prefix, env)
}

func listDirs(ctx context.Context, b *blob.Bucket, prefix string) ([]string, error) {
	it := b.List(&blob.ListOptions{Prefix: prefix, Delimiter: "/"})
	var out []string
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		if o.IsDir {
			out = append(out, o.Key)
		}
	}
}

// Verify re-reads the manifest in dir and every object it lists, recomputing each SHA-256,
// and checks the manifest's signature with pub when given.
func Verify(ctx context.Context, b *blob.Bucket, dir string, pub ed25519.PublicKey) (*Verification, error) {
	raw, err := b.ReadAll(ctx, ManifestKey(dir))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", ManifestKey(dir), err)
	}
	sum := sha256.Sum256(raw)
	v := &Verification{ManifestKey: ManifestKey(dir), ManifestSHA256: hex.EncodeToString(sum[:])}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest %s does not parse: %w", ManifestKey(dir), err)
	}
	v.Manifest = &m
	if m.SigningKeyID == "" {
		v.Signature = "unsigned"
	} else {
		sig, err := b.ReadAll(ctx, SignatureKey(dir))
		switch {
		case blobstore.IsNotFound(err):
			v.Signature = "missing"
		case err != nil:
			return nil, fmt.Errorf("read signature %s: %w", SignatureKey(dir), err)
		case pub == nil:
			v.Signature = "not checked"
		case KeyID(pub) != m.SigningKeyID:
			v.Signature = "invalid"
		case ed25519.Verify(pub, raw, sig):
			v.Signature = "valid"
		default:
			v.Signature = "invalid"
		}
	}
	for _, f := range m.Files {
		c := FileCheck{Entry: f}
		if !strings.HasPrefix(f.Key, dir+"/") {
			c.Err = fmt.Errorf("key %s lies outside the session folder %s", f.Key, dir)
		} else {
			c.SHA256, c.Size, c.Err = digestObject(ctx, b, f.Key)
		}
		v.Files = append(v.Files, c)
	}
	return v, nil
}

func digestObject(ctx context.Context, b *blob.Bucket, key string) (string, int64, error) {
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// DataKeys finds data keys by name: *privacy.KeyFinder. An erased key returns an error matching
// privacy.ErrErased.
type DataKeys interface {
	Find(ctx context.Context, name string) (tink.AEAD, error)
}

// VerifyDecrypt is Verify, and for an encrypted archive also decrypts every object with the
// subject's data key and checks its plaintext against the digests sealed in the manifest. An
// erased key sets v.Erased (the session was erased: its evidence is unreadable, which is the
// erasure working, not a failure); a key-manager or keys-topic failure is an error.
func VerifyDecrypt(ctx context.Context, b *blob.Bucket, dir string, pub ed25519.PublicKey, keys DataKeys) (*Verification, error) {
	v, err := Verify(ctx, b, dir, pub)
	if err != nil || v.Manifest.Encryption == nil {
		return v, err
	}
	dek, err := keys.Find(ctx, v.Manifest.Encryption.KeyName)
	if errors.Is(err, privacy.ErrErased) {
		v.Erased = true
		return v, nil
	}
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", v.Manifest.Encryption.KeyName, err)
	}
	sealed, err := Unseal(v.Manifest, dek)
	if err != nil {
		return nil, err
	}
	want := map[string]SealedFile{}
	for _, f := range sealed {
		want[f.Key] = f
	}
	for i := range v.Files {
		c := &v.Files[i]
		pc := &PlainCheck{Want: want[c.Entry.Key]}
		c.Plain = pc
		if pc.Want.Key == "" {
			pc.Err = fmt.Errorf("the sealed digests do not list %s", c.Entry.Key)
			continue
		}
		pc.SHA256, pc.Size, pc.Err = digestPlain(ctx, b, c.Entry, v.Manifest.SessionID, dek)
	}
	v.Decrypted = true
	return v, nil
}

// digestPlain decrypts one object with dek and hashes its plaintext.
func digestPlain(ctx context.Context, b *blob.Bucket, e FileEntry, sessionID string, dek tink.AEAD) (string, int64, error) {
	r, err := b.NewReader(ctx, e.Key, nil)
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	pr, _, err := DecryptObject(r, sessionID, e.VaultEntryID, func(string) (tink.AEAD, error) { return dek, nil })
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(h, pr)
	if err != nil {
		return "", n, fmt.Errorf("decrypt %s: %w", e.Key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// DecryptObject reads an encrypted object's header from r, checks that it belongs to sessionID
// and vaultEntryID (the manifest's entry; the associated data would refuse another anyway, this
// names the problem), finds its data key with find, and returns the plaintext reader.
func DecryptObject(r io.Reader, sessionID, vaultEntryID string, find func(keyName string) (tink.AEAD, error)) (io.Reader, *privacy.ObjectHeader, error) {
	h, err := privacy.ReadObjectHeader(r)
	if err != nil {
		return nil, nil, err
	}
	if h.SessionID != sessionID || h.VaultEntryID != vaultEntryID {
		return nil, h, fmt.Errorf("the object belongs to session %s file %s, not session %s file %s (moved?)", h.SessionID, h.VaultEntryID, sessionID, vaultEntryID)
	}
	dek, err := find(h.KeyName)
	if err != nil {
		return nil, h, err
	}
	pr, err := h.Decrypt(r, dek)
	if err != nil {
		return nil, h, err
	}
	return pr, h, nil
}
