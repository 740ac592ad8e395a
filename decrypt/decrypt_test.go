package decrypt_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/decrypt"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func str(s string) *string { return &s }

// TestReader: a record encrypted by the connector's Protector decrypts through the public
// Reader, including a key committed after the Reader was made, and an erased key gives
// ErrErased.
func TestReader(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	dir := t.TempDir()
	pc := privacy.DefaultConfig()
	pc.Mode, pc.KEKKeysetFile, pc.PepperFile = schemas.PrivacyEncrypt, filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	if err := privacy.NewKEKKeysetFile(pc.KEKKeysetFile); err != nil {
		t.Fatal(err)
	}
	kek, _ := privacy.OpenKEK(t.Context(), pc)
	if err := privacy.NewPepperFile(pc.PepperFile, kek); err != nil {
		t.Fatal(err)
	}
	pepper, _ := privacy.LoadPepper(pc.PepperFile, kek)
	ring, _ := privacy.NewKeyring(kek, 8)
	ring.MarkReady()
	prot, err := privacy.NewProtector(pc, privacy.ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decrypt.NewReader(t.Context(), decrypt.Config{KEKKeysetFile: pc.KEKKeysetFile}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	es := &schemas.EnrichedSession{Session: schemas.SessionDetails{SessionID: "s-1", SubjectID: str("subject-1"), Metadata: map[string]string{}}}
	keyRecs, err := prot.Protect(t.Context(), "idnow.sessions.enriched", es)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), keyRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	enc := *es.Privacy
	if err := r.Decrypt(t.Context(), "idnow.sessions.enriched", es); err != nil || es.Session.SubjectID == nil || *es.Session.SubjectID != "subject-1" {
		t.Fatalf("Decrypt: %v, subject %v", err, es.Session.SubjectID)
	}
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "idnow.keys", Key: keyRecs[0].Key}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	again := &schemas.EnrichedSession{Session: schemas.SessionDetails{SessionID: "s-1"}, Privacy: &enc}
	if err := r.Decrypt(t.Context(), "idnow.sessions.enriched", again); !errors.Is(err, decrypt.ErrErased) {
		t.Fatalf("after erasure: want ErrErased, got %v", err)
	}
}

// TestDecryptAll: one batch with a key the reader has not seen yet and an erased record decrypts
// after a single read of the keys topic, and reports the erased one as ErrErased.
func TestDecryptAll(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	dir := t.TempDir()
	pc := privacy.DefaultConfig()
	pc.Mode, pc.KEKKeysetFile, pc.PepperFile = schemas.PrivacyEncrypt, filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	if err := privacy.NewKEKKeysetFile(pc.KEKKeysetFile); err != nil {
		t.Fatal(err)
	}
	kek, _ := privacy.OpenKEK(t.Context(), pc)
	if err := privacy.NewPepperFile(pc.PepperFile, kek); err != nil {
		t.Fatal(err)
	}
	pepper, _ := privacy.LoadPepper(pc.PepperFile, kek)
	ring, _ := privacy.NewKeyring(kek, 8)
	ring.MarkReady()
	prot, err := privacy.NewProtector(pc, privacy.ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decrypt.NewReader(t.Context(), decrypt.Config{KEKKeysetFile: pc.KEKKeysetFile}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cl, _ := kgo.NewClient(opts...)
	defer cl.Close()
	var batch []*schemas.EnrichedSession
	for i, subject := range []string{"a", "b", "gone"} {
		es := &schemas.EnrichedSession{Session: schemas.SessionDetails{SessionID: "s-" + subject, SubjectID: str(subject), Metadata: map[string]string{}}}
		keyRecs, err := prot.Protect(t.Context(), "idnow.sessions.enriched", es)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(t.Context(), keyRecs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "idnow.keys", Key: keyRecs[0].Key}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		batch = append(batch, es)
	}
	errs := r.DecryptAll(t.Context(), "idnow.sessions.enriched", batch)
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], decrypt.ErrErased) {
		t.Fatalf("errs = %v", errs)
	}
	if *batch[0].Session.SubjectID != "a" || *batch[1].Session.SubjectID != "b" || batch[2].Session.SubjectID != nil {
		t.Fatal("decrypted values wrong")
	}
}

// TestOpenObject: an archive object encrypted under a data key committed after the Reader was
// made decrypts through OpenObject; a changed byte fails while reading; after erasure
// OpenObject gives ErrErased.
func TestOpenObject(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	kekFile := filepath.Join(t.TempDir(), "kek.json")
	if err := privacy.NewKEKKeysetFile(kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), privacy.Config{KEKKeysetFile: kekFile})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decrypt.NewReader(t.Context(), decrypt.Config{KEKKeysetFile: kekFile}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dek, wrapped, err := privacy.NewDataKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("idnow.keys"))...)
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte("sub-1/k"), Value: wrapped}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("evidence "), 300_000) // 2.7 MB: three segments
	var obj bytes.Buffer
	w, err := privacy.NewObjectWriter(&obj, dek, "sub-1/k", "s-1", "v-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pr, info, err := r.OpenObject(t.Context(), bytes.NewReader(obj.Bytes()))
	if err != nil || info != (decrypt.ObjectInfo{KeyName: "sub-1/k", SessionID: "s-1", VaultEntryID: "v-1"}) {
		t.Fatalf("OpenObject: %+v, %v", info, err)
	}
	if got, err := io.ReadAll(pr); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("plaintext: %d bytes, %v", len(got), err)
	}
	bad := bytes.Clone(obj.Bytes())
	bad[len(bad)/2] ^= 1
	if pr, _, err := r.OpenObject(t.Context(), bytes.NewReader(bad)); err == nil {
		if _, err := io.ReadAll(pr); err == nil {
			t.Fatal("a changed byte decrypted")
		}
	}
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte("sub-1/k")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.OpenObject(t.Context(), bytes.NewReader(obj.Bytes())); !errors.Is(err, decrypt.ErrErased) {
		t.Fatalf("after erasure: want ErrErased, got %v", err)
	}
}
