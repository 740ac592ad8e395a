package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/tink-crypto/tink-go/v2/tink"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// cryptoFixture is a development KEK, a pepper and a keys topic on the harness's cluster.
type cryptoFixture struct {
	kek    *privacy.KEK
	pepper *privacy.Pepper
	opts   []kgo.Opt
}

func newCryptoFixture(t *testing.T, h *harness) *cryptoFixture {
	t.Helper()
	dir := t.TempDir()
	kekFile, pepperFile := filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	if err := privacy.NewKEKKeysetFile(kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), privacy.Config{KEKKeysetFile: kekFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := privacy.NewPepperFile(pepperFile, kek); err != nil {
		t.Fatal(err)
	}
	pepper, err := privacy.LoadPepper(pepperFile, kek)
	if err != nil {
		t.Fatal(err)
	}
	f := &cryptoFixture{kek: kek, pepper: pepper, opts: []kgo.Opt{kgo.SeedBrokers(h.brokers...)}}
	h.enc = &Encryption{Keys: f.finder(), Pepper: pepper, KeyScope: privacy.ScopeSubject, KeysTopic: testTopics.Keys, KEKSource: kek.Source, KeysOpts: f.opts}
	return f
}

// finder is a fresh reader of the keys topic (what `archive verify --decrypt` builds).
func (f *cryptoFixture) finder() *privacy.KeyFinder {
	ring, err := privacy.NewKeyring(f.kek, 100)
	if err != nil {
		panic(err)
	}
	return privacy.NewKeyFinder(ring, privacy.NewKeysTopic(f.opts, testTopics.Keys, ring, nil), time.Minute)
}

func (f *cryptoFixture) produce(t *testing.T, r *kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(append(f.opts, kgo.DefaultProduceTopic(testTopics.Keys))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// dataKey writes a new data key to the keys topic, as the enricher does, and returns its name.
func (f *cryptoFixture) dataKey(t *testing.T, name string) string {
	t.Helper()
	_, wrapped, err := privacy.NewDataKey(f.kek)
	if err != nil {
		t.Fatal(err)
	}
	f.produce(t, &kgo.Record{Key: []byte(name), Value: wrapped})
	return name
}

func withKey(name string) func(*schemas.EnrichedSession) {
	return func(es *schemas.EnrichedSession) {
		es.Privacy = &schemas.PrivacyEnvelope{Mode: schemas.PrivacyEncrypt, KeyName: &name, Encrypted: map[string][]byte{}, Pseudonyms: map[string]string{}}
	}
}

// TestArchiveEncrypted: under privacy.mode encrypt every object is encrypted under the data key
// the record names, named by the pepper's HMAC, with no plaintext digest in names, metadata or
// the manifest's clear part; VerifyDecrypt checks the plaintext; a tampered object fails;
// erasing the key leaves the objects intact but reported erased; a record whose key was
// already erased is not archived; a record naming no key gets a key the archiver makes and
// commits with its ArchivedSession.
func TestArchiveEncrypted(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	front, video := blobBytes(7000, 5), blobBytes(2<<20+123, 6)
	k1 := f.dataKey(t, "sub-0001/aa")
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"front": front, "video": video}, withKey(k1))
	gone := f.dataKey(t, "sub-0002/bb")
	f.produce(t, &kgo.Record{Key: []byte(gone), Value: nil})
	h.sessionWith(t, "s2", "COMPLETED", "COMPLETED", map[string][]byte{"x": blobBytes(10, 7)}, withKey(gone))
	h.sessionWith(t, "s3", "COMPLETED", "COMPLETED", map[string][]byte{"y": blobBytes(300, 8)}, nil)
	stop := h.start(t, testConfig(t))
	got := h.archivedRecords(t, 2)
	stop()
	if got["s2"] != nil || len(got["s1"]) != 1 || len(got["s3"]) != 1 {
		t.Fatalf("archived: %v", got)
	}
	if n := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_sessions_total", sessionErased)); n != 1 {
		t.Errorf("sessions erased = %v, want 1", n)
	}

	dir := "idnow/live/2026/11/s1"
	raw, err := h.bucket.ReadAll(t.Context(), ManifestKey(dir))
	if err != nil {
		t.Fatal(err)
	}
	plain := map[string][]byte{"front": front, "video": video}
	for vid, b := range plain {
		sum := sha256.Sum256(b)
		if bytes.Contains(raw, []byte(hex.EncodeToString(sum[:]))) {
			t.Errorf("the manifest holds the plaintext digest of %s in clear", vid)
		}
	}
	if attrs, err := h.bucket.Attributes(t.Context(), ManifestKey(dir)); err != nil {
		t.Fatal(err)
	} else if attrs.Metadata["manifest-version"] != "2" {
		t.Errorf("manifest metadata %v, want manifest-version 2", attrs.Metadata)
	}
	v, err := VerifyDecrypt(t.Context(), h.bucket, dir, nil, f.finder())
	if err != nil {
		t.Fatal(err)
	}
	m := v.Manifest
	if !v.OK() || !v.Decrypted || v.Erased || m.Version != ManifestVersionEncrypted || m.Encryption == nil || m.Encryption.KeyName != k1 || len(v.Files) != 2 {
		t.Fatalf("verification %+v, manifest %+v", v, m)
	}
	for _, c := range v.Files {
		b := plain[c.Entry.VaultEntryID]
		sum := sha256.Sum256(b)
		digest := hex.EncodeToString(sum[:])
		if c.Plain == nil || c.Plain.SHA256 != digest || c.Plain.Size != int64(len(b)) {
			t.Errorf("plaintext check of %s: %+v", c.Entry.VaultEntryID, c.Plain)
		}
		if want := dir + "/" + f.pepper.ObjectName("s1", c.Entry.VaultEntryID, digest) + ".jpg.tink"; c.Entry.Key != want {
			t.Errorf("key %s, want %s", c.Entry.Key, want)
		}
		attrs, err := h.bucket.Attributes(t.Context(), c.Entry.Key)
		if err != nil {
			t.Fatal(err)
		}
		for k, val := range attrs.Metadata {
			if strings.Contains(val, digest) {
				t.Errorf("metadata %s holds the plaintext digest", k)
			}
		}
		if attrs.Metadata["key-name"] != k1 || attrs.Metadata["object-sha256"] != c.Entry.SHA256 || attrs.ContentType != "application/octet-stream" {
			t.Errorf("metadata of %s: %v (%s)", c.Entry.Key, attrs.Metadata, attrs.ContentType)
		}
		obj, err := h.bucket.ReadAll(t.Context(), c.Entry.Key)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(obj, b[:64]) {
			t.Errorf("object %s holds plaintext", c.Entry.Key)
		}
	}

	// A changed ciphertext byte fails both the object digest and the decryption.
	vf := v.Files[0].Entry
	obj, _ := h.bucket.ReadAll(t.Context(), vf.Key)
	obj[len(obj)-10] ^= 1
	if err := h.bucket.WriteAll(t.Context(), vf.Key, obj, nil); err != nil {
		t.Fatal(err)
	}
	tv, err := VerifyDecrypt(t.Context(), h.bucket, dir, nil, f.finder())
	if err != nil {
		t.Fatal(err)
	}
	if tv.OK() || tv.Files[0].Plain == nil || tv.Files[0].Plain.Err == nil || tv.Files[1].Plain.Err != nil {
		t.Fatalf("tampered object: %+v / %+v", tv.Files[0].Plain, tv.Files[1].Plain)
	}

	// s3 named no key: the archiver made a session key and committed it with the record.
	m3, err := VerifyDecrypt(t.Context(), h.bucket, "idnow/live/2026/11/s3", nil, f.finder())
	if err != nil || !m3.OK() || !m3.Decrypted || !strings.HasPrefix(m3.Manifest.Encryption.KeyName, "ses-") {
		t.Fatalf("s3: %+v, %v", m3, err)
	}

	// Erasure: the tombstone makes s1 unreadable; its objects still match their own digests.
	f.produce(t, &kgo.Record{Key: []byte(k1), Value: nil})
	ev, err := VerifyDecrypt(t.Context(), h.bucket, dir, nil, f.finder())
	if err != nil {
		t.Fatal(err)
	}
	if !ev.Erased || ev.Decrypted || ev.Files[1].Plain != nil || !ev.Files[1].OK() {
		t.Fatalf("after erasure: %+v", ev)
	}
	r, err := h.bucket.NewReader(t.Context(), ev.Files[1].Entry.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fin := f.finder()
	_, _, err = DecryptObject(r, "s1", ev.Files[1].Entry.VaultEntryID, func(n string) (tink.AEAD, error) { return fin.Find(t.Context(), n) })
	if !errors.Is(err, privacy.ErrErased) {
		t.Fatalf("DecryptObject after erasure: %v", err)
	}
}

// TestEncryptedObjectUnderOtherKeyOverwritten: an object already at a file's name but under
// another data key (an archiver killed before committing the key it made) is overwritten, so the
// manifest's objects all decrypt with its one key; one under the session's key is reused.
func TestEncryptedObjectUnderOtherKeyOverwritten(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	stale, kept := blobBytes(4000, 1), blobBytes(5000, 2)
	k := f.dataKey(t, "sub-0003/cc")
	dir := "idnow/live/2026/11/s1"
	name := func(vid string, b []byte) string {
		sum := sha256.Sum256(b)
		return encryptedFileKey(dir, f.pepper.ObjectName("s1", vid, hex.EncodeToString(sum[:])), "image/jpeg")
	}
	if err := h.bucket.WriteAll(t.Context(), name("stale", stale), []byte("from a key that never committed"), &blob.WriterOptions{
		Metadata: map[string]string{"key-name": "ses-dead/00", "object-sha256": strings.Repeat("0", 64), "size": "31"}}); err != nil {
		t.Fatal(err)
	}
	// An object under the session's key, as an earlier attempt of this record left it.
	var obj bytes.Buffer
	dek, err := f.finder().Find(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	w, _ := privacy.NewObjectWriter(&obj, dek, k, "s1", "kept")
	_, _ = w.Write(kept)
	_ = w.Close()
	osum := sha256.Sum256(obj.Bytes())
	if err := h.bucket.WriteAll(t.Context(), name("kept", kept), obj.Bytes(), &blob.WriterOptions{
		Metadata: map[string]string{"key-name": k, "object-sha256": hex.EncodeToString(osum[:]), "size": strconv.Itoa(obj.Len())}}); err != nil {
		t.Fatal(err)
	}
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"stale": stale, "kept": kept}, withKey(k))
	stop := h.start(t, testConfig(t))
	h.archivedRecords(t, 1)
	stop()
	v, err := VerifyDecrypt(t.Context(), h.bucket, dir, nil, f.finder())
	if err != nil || !v.OK() || !v.Decrypted || len(v.Files) != 2 {
		t.Fatalf("verification %+v, %v", v, err)
	}
	if up, ex := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_files_total", fileUploaded)),
		testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_files_total", fileExisting)); up != 1 || ex != 1 {
		t.Fatalf("files uploaded %v, existing %v; want 1 and 1", up, ex)
	}
}

// TestMadeKeyCommittedBeforeArchiving: the data key the archiver makes for a record that names
// none is in the keys topic (read_committed) while the session's files are still downloading,
// so an erasure run meanwhile finds and tombstones it; it is not held back until the batch's
// transaction commits.
func TestMadeKeyCommittedBeforeArchiving(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h.files.before["y"] = func(ctx context.Context) {
		once.Do(func() { close(started) })
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	h.sessionWith(t, "s3", "COMPLETED", "COMPLETED", map[string][]byte{"y": blobBytes(300, 8)}, func(es *schemas.EnrichedSession) {
		es.Session.SubjectID = ptr("subj-9")
	})
	stop := h.start(t, testConfig(t))
	defer stop()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the archiver never downloaded the file")
	}
	ref := f.pepper.KeyRef(privacy.ScopeSubject, "subj-9")
	fin := f.finder()
	if err := fin.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	names := fin.Ring().Names(ref)
	close(release)
	if len(names) != 1 {
		t.Fatalf("keys of %s in the keys topic while archiving: %v, want the one the archiver made", ref, names)
	}
	h.archivedRecords(t, 1)
	v, err := VerifyDecrypt(t.Context(), h.bucket, "idnow/live/2026/11/s3", nil, f.finder())
	if err != nil || !v.OK() || !v.Decrypted || v.Manifest.Encryption.KeyName != names[0] {
		t.Fatalf("verification %+v, %v; want decrypted under %s", v, err, names[0])
	}
}

// TestErasedSubjectRecordNamingNoKey: after `erase --subject` tombstoned the subject's keys, a
// record of that subject naming no key (written before privacy.mode encrypt, replayed by a
// lagging archiver) is not archived under a fresh key but counted erased.
func TestErasedSubjectRecordNamingNoKey(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	gone := f.dataKey(t, f.pepper.KeyRef(privacy.ScopeSubject, "subj-erased")+"/aa")
	f.produce(t, &kgo.Record{Key: []byte(gone), Value: nil})
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"x": blobBytes(100, 1)}, func(es *schemas.EnrichedSession) {
		es.Session.SubjectID = ptr("subj-erased")
	})
	h.sessionWith(t, "s2", "COMPLETED", "COMPLETED", map[string][]byte{"y": blobBytes(100, 2)}, func(es *schemas.EnrichedSession) {
		es.Session.SubjectID = ptr("subj-other")
	})
	stop := h.start(t, testConfig(t))
	got := h.archivedRecords(t, 1)
	stop()
	if got["s1"] != nil || len(got["s2"]) != 1 {
		t.Fatalf("archived: %v; want only s2", got)
	}
	if n := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_sessions_total", sessionErased)); n != 1 {
		t.Errorf("sessions erased = %v, want 1", n)
	}
	if ok, _ := h.bucket.Exists(t.Context(), ManifestKey("idnow/live/2026/11/s1")); ok {
		t.Error("s1 has a manifest")
	}
}

// TestEqualFilesOfOneSession: two vault entries of one session with the same content are two
// objects, each bound to its own file, so the archive verifies (not "moved").
func TestEqualFilesOfOneSession(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	same := blobBytes(3000, 4)
	k := f.dataKey(t, "sub-0004/dd")
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"front": same, "back": same}, withKey(k))
	stop := h.start(t, testConfig(t))
	h.archivedRecords(t, 1)
	stop()
	v, err := VerifyDecrypt(t.Context(), h.bucket, "idnow/live/2026/11/s1", nil, f.finder())
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || !v.Decrypted || len(v.Files) != 2 || v.Files[0].Entry.Key == v.Files[1].Entry.Key {
		for _, c := range v.Files {
			t.Logf("%s %s: %+v", c.Entry.VaultEntryID, c.Entry.Key, c.Plain)
		}
		t.Fatalf("verification %+v", v)
	}
}

// TestDigestMismatchEncryptedNoDigests: under encryption a file whose digest never matches is
// recorded missing without the plaintext digests in the manifest's clear MissingFile.Detail.
func TestDigestMismatchEncryptedNoDigests(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	bad := blobBytes(100, 1)
	h.files.truncate["bad"] = 1000
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"bad": bad}, withKey(f.dataKey(t, "sub-0005/ee")))
	stop := h.start(t, testConfig(t))
	got := h.archivedRecords(t, 1)
	stop()
	if as := got["s1"][0]; as.FilesMissing != 1 {
		t.Fatalf("ArchivedSession %+v", as)
	}
	raw, err := h.bucket.ReadAll(t.Context(), ManifestKey("idnow/live/2026/11/s1"))
	if err != nil {
		t.Fatal(err)
	}
	full, half := sha256.Sum256(bad), sha256.Sum256(bad[:len(bad)/2])
	if bytes.Contains(raw, []byte(hex.EncodeToString(full[:]))) || bytes.Contains(raw, []byte(hex.EncodeToString(half[:]))) {
		t.Fatalf("the manifest holds a plaintext digest in clear:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte(ReasonDigestMismatch)) {
		t.Fatalf("the manifest does not record the mismatch:\n%s", raw)
	}
}

// TestKeyErasedWhileArchiving: a data key erased while the session's files are archived is seen
// before the manifest is written: no manifest, no ArchivedSession, counted erased.
func TestKeyErasedWhileArchiving(t *testing.T) {
	h := newHarness(t)
	f := newCryptoFixture(t, h)
	// A finder that reads the keys topic at every check, so the test needs no 30 s wait.
	ring, err := privacy.NewKeyring(f.kek, 100)
	if err != nil {
		t.Fatal(err)
	}
	h.enc.Keys = privacy.NewKeyFinder(ring, privacy.NewKeysTopic(f.opts, testTopics.Keys, ring, nil), 0)
	k := f.dataKey(t, "sub-0006/ff")
	var once sync.Once
	h.files.before["x"] = func(ctx context.Context) {
		once.Do(func() {
			// On the archiver's goroutine: errors are reported, not fatal.
			cl, err := kgo.NewClient(append(f.opts, kgo.DefaultProduceTopic(testTopics.Keys))...)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: nil}).FirstErr(); err != nil {
				t.Error(err)
			}
		})
	}
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", map[string][]byte{"x": blobBytes(100, 1)}, withKey(k))
	h.sessionWith(t, "s2", "COMPLETED", "COMPLETED", map[string][]byte{"y": blobBytes(100, 2)}, withKey(f.dataKey(t, "sub-0007/gg")))
	stop := h.start(t, testConfig(t))
	got := h.archivedRecords(t, 1)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_sessions_total", sessionErased)) != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if got["s1"] != nil || len(got["s2"]) != 1 {
		t.Fatalf("archived: %v; want only s2", got)
	}
	if n := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_sessions_total", sessionErased)); n != 1 {
		t.Errorf("sessions erased = %v, want 1", n)
	}
	if ok, _ := h.bucket.Exists(t.Context(), ManifestKey("idnow/live/2026/11/s1")); ok {
		t.Error("s1 has a manifest though its key was erased before it was written")
	}
}
