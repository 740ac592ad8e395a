package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
)

// TestVerifyArchive: `archive verify` finds a session's manifest without knowing its month,
// reports every object OK, and fails with ErrVerifyMismatch naming the object once its bytes
// change.
func TestVerifyArchive(t *testing.T) {
	dir := t.TempDir()
	url := "file://" + filepath.ToSlash(dir) + "?no_tmp_dir=true"
	ctx := context.Background()
	b, err := blob.OpenBucket(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	content := []byte("document front")
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	folder := "idnow/live/2026/11/ses-1"
	key := folder + "/" + digest + ".jpg"
	if err := b.WriteAll(ctx, key, content, nil); err != nil {
		t.Fatal(err)
	}
	m := archive.Manifest{Version: archive.ManifestVersion, SessionID: "ses-1", Environment: "live", Status: "COMPLETED",
		Files:   []archive.FileEntry{{VaultEntryID: "v1", DataBlockType: "documentVerification", JSONPath: "$.images.front", Key: key, SHA256: digest, Size: int64(len(content)), ContentType: "image/jpeg"}},
		Missing: []archive.MissingFile{{VaultEntryID: "v2", Reason: archive.ReasonNotFound, Detail: "HTTP 404"}}, ArchivedAt: time.Now().UTC()}
	raw, _ := json.Marshal(m)
	if err := b.WriteAll(ctx, archive.ManifestKey(folder), raw, nil); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Archive.BucketURL = url
	cfg.IDnow.Environment = "live"
	var out bytes.Buffer
	if err := VerifyArchive(ctx, cfg, VerifyOptions{SessionID: "ses-1"}, &out); err != nil {
		t.Fatalf("VerifyArchive: %v\n%s", err, out.String())
	}
	for _, want := range []string{"OK         " + key, "MISSING    v2", "signature unsigned", "1 files, 1 matching, 0 not, 1 recorded missing"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(key)), []byte("document fronT"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = VerifyArchive(ctx, cfg, VerifyOptions{SessionID: "ses-1"}, &out)
	if !errors.Is(err, ErrVerifyMismatch) || !strings.Contains(out.String(), "MISMATCH   "+key) {
		t.Fatalf("tampered object: err %v\n%s", err, out.String())
	}
	if err := VerifyArchive(ctx, cfg, VerifyOptions{SessionID: "ses-unknown"}, &out); !errors.Is(err, archive.ErrNoManifest) {
		t.Fatalf("unknown session: %v", err)
	}
}
