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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
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

// TestArchiveToolsEncrypted: on an encrypted archive `archive verify --decrypt` checks each
// object's plaintext against the sealed digest, `archive get` writes the decrypted file and
// leaves nothing when the digest does not match, and after the data key's tombstone verify
// reports ERASED per file and succeeds while get refuses with ErrErased.
func TestArchiveToolsEncrypted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	kekFile := filepath.Join(dir, "kek.json")
	if err := privacy.NewKEKKeysetFile(kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), privacy.Config{KEKKeysetFile: kekFile})
	if err != nil {
		t.Fatal(err)
	}
	dek, wrapped, err := privacy.NewDataKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	const keyName = "sub-1/k1"
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte(keyName), Value: wrapped}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	url := "file://" + filepath.ToSlash(filepath.Join(dir, "archive")) + "?create_dir=true&no_tmp_dir=true"
	b, err := blob.OpenBucket(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	folder := "idnow/live/2026/11/ses-1"
	m := archive.Manifest{Version: archive.ManifestVersionEncrypted, SessionID: "ses-1", Environment: "live", Status: "COMPLETED",
		Missing: []archive.MissingFile{}, ArchivedAt: time.Now().UTC()}
	var sealed []archive.SealedFile
	// v2's sealed digest is deliberately wrong: get must not leave its file behind.
	for i, vid := range []string{"v1", "v2"} {
		plain := bytes.Repeat([]byte(vid), 700_000) // 1.4 MB: two segments
		var obj bytes.Buffer
		w, err := privacy.NewObjectWriter(&obj, dek, keyName, "ses-1", vid)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(plain); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		key := folder + "/" + strconv.Itoa(i) + ".jpg.tink"
		if err := b.WriteAll(t.Context(), key, obj.Bytes(), nil); err != nil {
			t.Fatal(err)
		}
		osum, psum := sha256.Sum256(obj.Bytes()), sha256.Sum256(plain)
		if vid == "v2" {
			psum[0] ^= 1
		}
		m.Files = append(m.Files, archive.FileEntry{VaultEntryID: vid, DataBlockType: "documentVerification", Key: key,
			SHA256: hex.EncodeToString(osum[:]), Size: int64(obj.Len()), ContentType: "image/jpeg"})
		sealed = append(sealed, archive.SealedFile{Key: key, SHA256: hex.EncodeToString(psum[:]), Size: int64(len(plain))})
	}
	sealedJSON, _ := json.Marshal(sealed)
	ct, err := dek.Encrypt(sealedJSON, privacy.ManifestAssociatedData("ses-1"))
	if err != nil {
		t.Fatal(err)
	}
	m.Encryption = &archive.ManifestEncryption{Scheme: privacy.ObjectScheme, KeyName: keyName, Sealed: ct}
	raw, _ := json.Marshal(m)
	if err := b.WriteAll(t.Context(), archive.ManifestKey(folder), raw, nil); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Archive.BucketURL = url
	cfg.IDnow.Environment = "live"
	cfg.Kafka.Brokers = c.ListenAddrs()
	cfg.Privacy.KEKKeysetFile = kekFile
	var out bytes.Buffer
	err = VerifyArchive(t.Context(), cfg, VerifyOptions{SessionID: "ses-1", Decrypt: true}, &out)
	if !errors.Is(err, ErrVerifyMismatch) || !strings.Contains(out.String(), "OK         "+folder+"/0.jpg.tink") ||
		!strings.Contains(out.String(), "MISMATCH   "+folder+"/1.jpg.tink (v2): plaintext sha256") || !strings.Contains(out.String(), ": decrypted") {
		t.Fatalf("verify --decrypt: %v\n%s", err, out.String())
	}
	// Without --decrypt only the stored objects are checked: they are intact.
	out.Reset()
	if err := VerifyArchive(t.Context(), cfg, VerifyOptions{SessionID: "ses-1"}, &out); err != nil || !strings.Contains(out.String(), "not decrypted") {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}

	dst := filepath.Join(dir, "front.jpg")
	if err := GetArchived(t.Context(), cfg, GetOptions{SessionID: "ses-1", File: "v1", Output: dst}, &out); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, bytes.Repeat([]byte("v1"), 700_000)) {
		t.Fatalf("get wrote %d bytes, %v", len(got), err)
	}
	bad := filepath.Join(dir, "back.jpg")
	if err := GetArchived(t.Context(), cfg, GetOptions{SessionID: "ses-1", File: "v2", Output: bad}, &out); !errors.Is(err, ErrVerifyMismatch) {
		t.Fatalf("get of a file whose digest does not match: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 { // kek.json, archive, front.jpg
		t.Fatalf("get left files behind: %v", ents)
	}

	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte(keyName)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := VerifyArchive(t.Context(), cfg, VerifyOptions{SessionID: "ses-1", Decrypt: true}, &out); err != nil ||
		strings.Count(out.String(), "\nERASED     ") != 2 || !strings.Contains(out.String(), "2 matching (2 erased") {
		t.Fatalf("verify --decrypt after erasure: %v\n%s", err, out.String())
	}
	if err := GetArchived(t.Context(), cfg, GetOptions{SessionID: "ses-1", File: "v1", Output: dst + ".2"}, &out); !errors.Is(err, privacy.ErrErased) {
		t.Fatalf("get after erasure: %v", err)
	}
}

// TestArchiverValidatesPrivacy: the archiver role alone checks privacy.*, since under encrypt it
// needs the key-encryption key and the pepper.
func TestArchiverValidatesPrivacy(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = []string{"127.0.0.1:19199"}
	cfg.Archive.BucketURL = "file:///tmp/archive"
	cfg.IDnow.ClientID, cfg.IDnow.ClientSecret = "id", "secret"
	cfg.IDnow.APIURL, cfg.IDnow.TokenURL = "https://api.example/api/v1", "https://auth.example/token"
	if err := cfg.Validate(ModeArchiver); err != nil {
		t.Fatalf("plain archiver config: %v", err)
	}
	cfg.Privacy.Mode = "encrypt"
	err := cfg.Validate(ModeArchiver)
	if err == nil || !strings.Contains(err.Error(), "privacy.pepper_file") || !strings.Contains(err.Error(), "key-encryption key") {
		t.Fatalf("encrypt without KEK and pepper: %v", err)
	}
}
