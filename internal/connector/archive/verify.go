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

	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/blobstore"
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
}

// FileCheck is one file's re-read digest.
type FileCheck struct {
	Entry  FileEntry
	SHA256 string
	Size   int64
	// Err is set when the object could not be read.
	Err error
}

// OK reports whether the file's bytes match the manifest.
func (c FileCheck) OK() bool {
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
