package privacy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/secrets/localsecrets"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

const testTopic = "idnow.sessions.enriched"

func str(s string) *string { return &s }

// testKEK makes a development KEK keyset file in a temp folder and opens it.
func testKEK(t *testing.T) (*KEK, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "kek.json")
	if err := NewKEKKeysetFile(path); err != nil {
		t.Fatal(err)
	}
	kek, err := OpenKEK(t.Context(), Config{KEKKeysetFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return kek, dir
}

func testPepper(t *testing.T, kek *KEK, dir string) *Pepper {
	t.Helper()
	path := filepath.Join(dir, "pepper.json")
	if err := NewPepperFile(path, kek); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPepper(path, kek)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type fixture struct {
	kek    *KEK
	pepper *Pepper
	ring   *Keyring
	prot   *Protector
}

func newFixture(t *testing.T, mode string, pseudo ...string) fixture {
	t.Helper()
	kek, dir := testKEK(t)
	pepper := testPepper(t, kek, dir)
	ring, err := NewKeyring(kek, 16)
	if err != nil {
		t.Fatal(err)
	}
	ring.MarkReady()
	cfg := DefaultConfig()
	cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile, cfg.Pseudonymize = mode, "kek.json", "pepper.json", pseudo
	prot, err := NewProtector(cfg, ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{kek, pepper, ring, prot}
}

// sample is an EnrichedSession with every personal field set.
func sample(sessionID, subject string) *schemas.EnrichedSession {
	return &schemas.EnrichedSession{
		Event: schemas.TriggeringEvent{EventID: "ev-" + sessionID, EventName: "session.completed", Origin: "webhook"},
		Session: schemas.SessionDetails{SessionID: sessionID, Status: "COMPLETED", Terminal: true, SubjectID: str(subject),
			Metadata: map[string]string{"email": "erika@example.com"}, Results: str(`{"score":0.98}`)},
		DataBlocks: []schemas.DataBlock{
			{Type: "basicIdentity", Status: "STORED", Content: str(`{"givenName":"Erika","familyName":"Mustermann"}`),
				BasicIdentity: &schemas.BasicIdentity{GivenName: str("Erika"), FamilyName: str("Mustermann"), BirthDate: str("1964-08-12")}},
			{Type: "documentData", Status: "STORED", Content: str(`{"documentNumber":"T22000129"}`),
				DocumentData: &schemas.DocumentData{DocumentType: str("ID_CARD"), DocumentNumber: str("T22000129"), IssuingCountry: str("DEU"), IssuingAuthority: str("Stadt Köln"), ExpiryDate: str("2031-01-01")}},
		},
		Enrichment: schemas.EnrichmentInfo{ConnectorVersion: "test", DataBlocksContent: "full"},
	}
}

// personalValues returns the text of every personal field of es that is set.
func personalValues(es *schemas.EnrichedSession) map[string]string {
	out := map[string]string{}
	for _, s := range slots(es) {
		if v, ok := s.get(); ok {
			out[s.path] = v
		}
	}
	return out
}

func TestEncryptRoundTrip(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	es := sample("s-1", "subject-1")
	want := personalValues(es)
	recs, err := f.prot.Protect(t.Context(), testTopic, es)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Topic != "idnow.keys" || string(recs[0].Key) != *es.Privacy.KeyName {
		t.Fatalf("want one key record named like privacy.keyName, got %+v", recs)
	}
	if got := personalValues(es); len(got) != 0 {
		t.Fatalf("personal fields left in clear text: %v", got)
	}
	if es.DataBlocks[1].DocumentData.DocumentType == nil || *es.DataBlocks[1].DocumentData.IssuingCountry != "DEU" {
		t.Fatal("a field classified none was removed")
	}
	if got := slices.Sorted(maps.Keys(es.Privacy.Encrypted)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("encrypted paths %v, want %v", got, slices.Sorted(maps.Keys(want)))
	}
	if !strings.HasPrefix(*es.Privacy.KeyName, "sub-") || strings.Contains(*es.Privacy.KeyName, "subject-1") {
		t.Fatalf("key name %q must be an HMAC reference of the subject, never the subject id", *es.Privacy.KeyName)
	}
	if err := Open(f.ring, testTopic, es); err != nil {
		t.Fatal(err)
	}
	if got := personalValues(es); !maps.Equal(got, want) {
		t.Fatalf("decrypted %v, want %v", got, want)
	}
}

func TestSubjectKeyReusedAndPublishedUntilCommitted(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	a, b := sample("s-1", "subject-1"), sample("s-2", "subject-1")
	ra, _ := f.prot.Protect(t.Context(), testTopic, a)
	rb, _ := f.prot.Protect(t.Context(), testTopic, b)
	if *a.Privacy.KeyName != *b.Privacy.KeyName {
		t.Fatal("two sessions of one subject got different keys in one process")
	}
	// Not yet seen committed: every record using the key carries it, so whichever transaction
	// commits first publishes it.
	if len(ra) != 1 || len(rb) != 1 {
		t.Fatalf("key record not repeated while pending: %d, %d", len(ra), len(rb))
	}
	f.ring.Apply(string(ra[0].Key), ra[0].Value)
	c := sample("s-3", "subject-1")
	rc, _ := f.prot.Protect(t.Context(), testTopic, c)
	if len(rc) != 0 || *c.Privacy.KeyName != *a.Privacy.KeyName {
		t.Fatalf("committed key: want no key record and the same key, got %d records, %s", len(rc), *c.Privacy.KeyName)
	}
	other := sample("s-4", "subject-2")
	_, _ = f.prot.Protect(t.Context(), testTopic, other)
	if RefOf(*other.Privacy.KeyName) == RefOf(*a.Privacy.KeyName) {
		t.Fatal("two subjects share a key reference")
	}
}

func TestSessionScopeWithoutSubject(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	es := sample("s-9", "")
	es.Session.SubjectID = nil
	if _, err := f.prot.Protect(t.Context(), testTopic, es); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(*es.Privacy.KeyName, "ses-") {
		t.Fatalf("a session without subject must be keyed per session, got %s", *es.Privacy.KeyName)
	}
}

// TestTamperAndMoveFail: a flipped byte, a ciphertext moved to another session, another field
// or another topic all fail authentication.
func TestTamperAndMoveFail(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	protect := func(id string) *schemas.EnrichedSession {
		es := sample(id, "subject-1")
		if _, err := f.prot.Protect(t.Context(), testTopic, es); err != nil {
			t.Fatal(err)
		}
		return es
	}
	tampered := protect("s-1")
	ct := tampered.Privacy.Encrypted["dataBlocks[0].basicIdentity.familyName"]
	ct[len(ct)-1] ^= 1
	if err := Open(f.ring, testTopic, tampered); err == nil || errors.Is(err, ErrErased) {
		t.Fatalf("tampered ciphertext: want an authentication error, got %v", err)
	}
	src, dst := protect("s-1"), protect("s-2") // same subject, same key
	dst.Privacy.Encrypted["dataBlocks[0].basicIdentity.familyName"] = src.Privacy.Encrypted["dataBlocks[0].basicIdentity.familyName"]
	if err := Open(f.ring, testTopic, dst); err == nil || !strings.Contains(err.Error(), "familyName") {
		t.Fatalf("ciphertext moved to another session: want an error naming the field, got %v", err)
	}
	swapped := protect("s-3")
	swapped.Privacy.Encrypted["dataBlocks[0].basicIdentity.givenName"] = swapped.Privacy.Encrypted["dataBlocks[0].basicIdentity.familyName"]
	if err := Open(f.ring, testTopic, swapped); err == nil {
		t.Fatal("ciphertext moved to another field decrypted")
	}
	if err := Open(f.ring, "other.topic", protect("s-4")); err == nil {
		t.Fatal("record read as another topic decrypted")
	}
}

func TestErasedKey(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	es := sample("s-1", "subject-1")
	recs, _ := f.prot.Protect(t.Context(), testTopic, es)
	f.ring.Apply(string(recs[0].Key), recs[0].Value)
	ref := RefOf(string(recs[0].Key))
	if f.ring.RefErased(ref) {
		t.Fatal("RefErased before the tombstone")
	}
	f.ring.Apply(string(recs[0].Key), nil) // tombstone
	err := Open(f.ring, testTopic, es)
	var ee *ErasedError
	if !errors.As(err, &ee) || !errors.Is(err, ErrErased) || ee.KeyName != *es.Privacy.KeyName {
		t.Fatalf("want an *ErasedError for %s, got %v", *es.Privacy.KeyName, err)
	}
	// A new event of the erased subject gets a new key.
	again := sample("s-2", "subject-1")
	if _, err := f.prot.Protect(t.Context(), testTopic, again); err != nil {
		t.Fatal(err)
	}
	if *again.Privacy.KeyName == *es.Privacy.KeyName {
		t.Fatal("an erased key was used again")
	}
	// The reference stays erased though it has a live key again (the archiver's test for a
	// record naming no key); other references are not.
	if !f.ring.RefErased(ref) || RefOf(*again.Privacy.KeyName) != ref || f.ring.RefErased("sub-other") {
		t.Fatal("RefErased does not follow the tombstones")
	}
}

func TestDropMode(t *testing.T) {
	f := newFixture(t, schemas.PrivacyDrop)
	es := sample("s-1", "subject-1")
	recs, err := f.prot.Protect(t.Context(), testTopic, es)
	if err != nil || len(recs) != 0 {
		t.Fatalf("drop: %v, %d key records", err, len(recs))
	}
	if got := personalValues(es); len(got) != 0 || len(es.Privacy.Encrypted) != 0 || es.Privacy.KeyName != nil || es.Privacy.Mode != "drop" {
		t.Fatalf("drop left %v / envelope %+v", got, es.Privacy)
	}
}

func TestPlainModeLeavesRecord(t *testing.T) {
	f := newFixture(t, schemas.PrivacyPlain)
	es := sample("s-1", "subject-1")
	want := personalValues(es)
	if _, err := f.prot.Protect(t.Context(), testTopic, es); err != nil {
		t.Fatal(err)
	}
	if es.Privacy != nil || !maps.Equal(personalValues(es), want) {
		t.Fatalf("plain changed the record: %+v", es.Privacy)
	}
}

// TestPseudonyms: stable across sessions of one person, different per field and per deployment
// (another pepper), and normalised for case and spaces.
func TestPseudonyms(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt, "session.subjectId", "dataBlocks.basicIdentity.familyName")
	a, b := sample("s-1", "subject-1"), sample("s-2", "subject-1")
	b.DataBlocks[0].BasicIdentity.FamilyName = str(" MUSTERMANN ")
	_, _ = f.prot.Protect(t.Context(), testTopic, a)
	_, _ = f.prot.Protect(t.Context(), testTopic, b)
	pa, pb := a.Privacy.Pseudonyms, b.Privacy.Pseudonyms
	if len(pa) != 2 || pa["session.subjectId"] != pb["session.subjectId"] || pa["dataBlocks[0].basicIdentity.familyName"] != pb["dataBlocks[0].basicIdentity.familyName"] {
		t.Fatalf("pseudonyms not stable across sessions: %v vs %v", pa, pb)
	}
	if len(pa["session.subjectId"]) != 64 || pa["session.subjectId"] == pa["dataBlocks[0].basicIdentity.familyName"] {
		t.Fatalf("pseudonyms: %v", pa)
	}
	other := newFixture(t, schemas.PrivacyEncrypt, "session.subjectId")
	c := sample("s-1", "subject-1")
	_, _ = other.prot.Protect(t.Context(), testTopic, c)
	if c.Privacy.Pseudonyms["session.subjectId"] == pa["session.subjectId"] {
		t.Fatal("two deployments (peppers) give the same pseudonym")
	}
}

// TestProtectedPathsMatchClassification: the fields the code protects are exactly the personal
// leaf fields of EnrichedSession by its "idnow.pii" (the privacy envelope itself excepted).
func TestProtectedPathsMatchClassification(t *testing.T) {
	fields, err := Classification(schemas.EnrichedSessionSchema().Text)
	if err != nil {
		t.Fatal(err)
	}
	var personal []string
	for _, f := range fields {
		if f.Class.Personal() && !strings.HasPrefix(f.Path, "privacy.") {
			personal = append(personal, f.Path)
		}
	}
	slices.Sort(personal)
	if got := slices.Sorted(slices.Values(ProtectedPaths)); !slices.Equal(got, personal) {
		t.Fatalf("ProtectedPaths %v\nschema classifies as personal %v\nhandle a new personal field in envelope.go (slots) and ProtectedPaths", got, personal)
	}
	// Every slot kind of a full record appears in ProtectedPaths.
	for _, s := range slots(sample("s", "x")) {
		if !slices.Contains(ProtectedPaths, s.schemaPath) {
			t.Fatalf("slot %s is not in ProtectedPaths", s.schemaPath)
		}
	}
}

// TestKMSKEK wraps and unwraps data keys and the pepper through a gocloud.dev/secrets URL
// (base64key://, the local driver standing in for awskms/gcpkms/azurekeyvault/hashivault).
func TestKMSKEK(t *testing.T) {
	key, err := localsecrets.NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	kek, err := OpenKEK(t.Context(), Config{KEKURL: "base64key://" + b64url(key[:]), KMSTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer kek.Close()
	if kek.Source != "kms:base64key" {
		t.Fatalf("source %q", kek.Source)
	}
	a, wrapped, err := NewDataKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	b, err := UnwrapDataKey(wrapped, kek)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := a.Encrypt([]byte("x"), []byte("ad"))
	if pt, err := b.Decrypt(ct, []byte("ad")); err != nil || string(pt) != "x" {
		t.Fatalf("unwrapped key does not decrypt: %v", err)
	}
	dir := t.TempDir()
	if err := NewPepperFile(filepath.Join(dir, "p.json"), kek); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPepper(filepath.Join(dir, "p.json"), kek); err != nil {
		t.Fatal(err)
	}
	if err := NewPepperFile(filepath.Join(dir, "p.json"), kek); err == nil {
		t.Fatal("an existing pepper file was overwritten")
	}
}

// TestKEKRotationKeepsOldKeys: data keys wrapped before a rotation of the development KEK still
// unwrap after it, and new ones are wrapped under the new primary.
func TestKEKRotationKeepsOldKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek.json")
	if err := NewKEKKeysetFile(path); err != nil {
		t.Fatal(err)
	}
	before, _ := OpenKEK(t.Context(), Config{KEKKeysetFile: path})
	_, wrapped, err := NewDataKey(before)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateKEKKeysetFile(path); err != nil {
		t.Fatal(err)
	}
	after, err := OpenKEK(t.Context(), Config{KEKKeysetFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapDataKey(wrapped, after); err != nil {
		t.Fatalf("a data key wrapped before the rotation does not unwrap after it: %v", err)
	}
	_, newer, _ := NewDataKey(after)
	if _, err := UnwrapDataKey(newer, before); err == nil {
		t.Fatal("a key wrapped under the new primary unwrapped with the old keyset alone")
	}
}

// TestConcurrentMembersSameSubject: two enricher members (two keyrings on one keys topic) make a
// key for the same subject at once. Both keys are kept under their own record keys, records of
// both decrypt, and an erasure of the subject tombstones both.
func TestConcurrentMembersSameSubject(t *testing.T) {
	kek, dir := testKEK(t)
	pepper := testPepper(t, kek, dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	member := func() (*Protector, *KeysTopic) {
		ring, _ := NewKeyring(kek, 16)
		kt := NewKeysTopic(opts, "idnow.keys", ring, nil)
		if _, err := kt.CatchUp(t.Context()); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile = schemas.PrivacyEncrypt, "k", "p"
		p, err := NewProtector(cfg, ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
		if err != nil {
			t.Fatal(err)
		}
		return p, kt
	}
	m1, kt1 := member()
	m2, _ := member()
	var wg sync.WaitGroup
	recs := make([]*schemas.EnrichedSession, 2)
	for i, m := range []*Protector{m1, m2} {
		wg.Go(func() {
			es := sample("s-"+string(rune('a'+i)), "subject-1")
			keyRecs, err := m.Protect(context.Background(), testTopic, es)
			if err != nil {
				t.Error(err)
				return
			}
			if err := prod.ProduceSync(context.Background(), keyRecs...).FirstErr(); err != nil {
				t.Error(err)
			}
			recs[i] = es
		})
	}
	wg.Wait()
	if *recs[0].Privacy.KeyName == *recs[1].Privacy.KeyName {
		t.Fatal("the two members were expected to race to two keys")
	}
	reader, _ := NewKeyring(kek, 16)
	if _, err := NewKeysTopic(opts, "idnow.keys", reader, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	ref := RefOf(*recs[0].Privacy.KeyName)
	if n := len(reader.Names(ref)); n != 2 {
		t.Fatalf("keys topic holds %d keys for the subject, want 2", n)
	}
	for _, es := range recs {
		cp := clone(t, es)
		if err := Open(reader, testTopic, cp); err != nil {
			t.Fatalf("record under %s: %v", *es.Privacy.KeyName, err)
		}
	}
	// Member 1 catches up and converges on a committed key.
	if _, err := kt1.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	later := sample("s-z", "subject-1")
	if kr, _ := m1.Protect(t.Context(), testTopic, later); len(kr) != 0 {
		t.Fatal("a committed key was published again")
	}

	// Erasing the subject tombstones both keys and writes an audit record without the id.
	topics := kafka.DefaultTopicsConfig()
	topics.Partitions = 3
	audit, err := Erase(t.Context(), EraseDeps{Opts: opts, Topics: topics, Pepper: pepper, Version: "test"},
		EraseRequest{Subject: "subject-1", Reason: "ticket 42", Actor: "dpo@example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit.KeysErased) != 2 || audit.Tombstones["idnow.keys"] != 2 || audit.KeyRef != ref {
		t.Fatalf("audit %+v", audit)
	}
	erased, _ := NewKeyring(kek, 16)
	if _, err := NewKeysTopic(opts, "idnow.keys", erased, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, es := range recs {
		cp := clone(t, es)
		if err := Open(erased, testTopic, cp); !errors.Is(err, ErrErased) {
			t.Fatalf("after erase: want ErrErased, got %v", err)
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("idnow.audit"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	fs := cons.PollFetches(t.Context())
	if len(fs.Records()) != 1 {
		t.Fatalf("audit topic holds %d records", len(fs.Records()))
	}
	v := string(fs.Records()[0].Value)
	if strings.Contains(v, "subject-1") || !strings.Contains(v, `"actor":"dpo@example"`) || !strings.Contains(v, `"reason":"ticket 42"`) || !strings.Contains(v, ref) {
		t.Fatalf("audit record %s", v)
	}
	// Erasing a session without a session-scoped key still records the request.
	a2, err := Erase(t.Context(), EraseDeps{Opts: opts, Topics: topics, Pepper: pepper}, EraseRequest{Session: "s-a", Actor: "x"})
	if err != nil || len(a2.KeysErased) != 0 || a2.SessionID != "s-a" {
		t.Fatalf("session erase: %+v, %v", a2, err)
	}
}

func b64url(b []byte) string { return base64.URLEncoding.EncodeToString(b) }

// clone deep-copies an EnrichedSession (Open decrypts in place).
func clone(t *testing.T, es *schemas.EnrichedSession) *schemas.EnrichedSession {
	t.Helper()
	b, err := json.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	var out schemas.EnrichedSession
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestKeysTopicFollows: a running follower sees a key committed after it started, and its
// tombstone, without another CatchUp.
func TestKeysTopicFollows(t *testing.T) {
	kek, _ := testKEK(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	ring, _ := NewKeyring(kek, 4)
	kt := NewKeysTopic(opts, "idnow.keys", ring, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- kt.Run(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	_, wrapped, err := NewDataKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	prod, _ := kgo.NewClient(opts...)
	defer prod.Close()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("the follower did not see %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the end of the empty topic", func() bool {
		select {
		case <-ring.ready:
			return true
		default:
			return false
		}
	})
	if err := prod.ProduceSync(t.Context(), &kgo.Record{Topic: "idnow.keys", Key: []byte("sub-x/1"), Value: wrapped}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor("the new key", func() bool { return ring.Known("sub-x/1") })
	if err := prod.ProduceSync(t.Context(), &kgo.Record{Topic: "idnow.keys", Key: []byte("sub-x/1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor("the tombstone", func() bool { return !ring.Known("sub-x/1") })
}

// TestEraseSecondPassCatchesOpenTransaction: an enricher's transaction that holds a fresh data
// key for the subject is open while erase reads the keys topic (read_committed, so the key is
// invisible) and commits right after; the second pass must find and tombstone that key.
func TestEraseSecondPassCatchesOpenTransaction(t *testing.T) {
	kek, dir := testKEK(t)
	pepper := testPepper(t, kek, dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "idnow.keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	txn, err := kgo.NewClient(append(opts, kgo.TransactionalID("enricher-test"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ring, _ := NewKeyring(kek, 16)
	if _, err := NewKeysTopic(opts, "idnow.keys", ring, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile = schemas.PrivacyEncrypt, "k", "p"
	p, err := NewProtector(cfg, ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
	if err != nil {
		t.Fatal(err)
	}
	es := sample("s-open", "subject-open")
	keyRecs, err := p.Protect(t.Context(), testTopic, es)
	if err != nil || len(keyRecs) != 1 {
		t.Fatalf("protect: %d key records, %v", len(keyRecs), err)
	}
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(t.Context(), keyRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	topics := kafka.DefaultTopicsConfig()
	topics.Partitions = 3
	deps := EraseDeps{Opts: opts, Topics: topics, Pepper: pepper, Settle: 50 * time.Millisecond, MaxTransaction: 10 * time.Second,
		afterFirstPass: func() {
			if err := txn.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
				t.Error(err)
			}
		}}
	audit, err := Erase(t.Context(), deps, EraseRequest{Subject: "subject-open", Actor: "dpo"})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit.SecondPassKeys) != 1 || len(audit.KeysErased) != 1 || audit.SecondPassKeys[0] != *es.Privacy.KeyName {
		t.Fatalf("audit %+v: want the committed-late key %s found by the second pass", audit, *es.Privacy.KeyName)
	}
	reader, _ := NewKeyring(kek, 16)
	if _, err := NewKeysTopic(opts, "idnow.keys", reader, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := Open(reader, testTopic, clone(t, es)); !errors.Is(err, ErrErased) {
		t.Fatalf("after erase: want ErrErased, got %v", err)
	}

	// Without the second pass the same race leaves the key readable: the test above can fail.
	es2 := sample("s-open-2", "subject-open-2")
	keyRecs, _ = p.Protect(t.Context(), testTopic, es2)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(t.Context(), keyRecs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deps.Settle = 0
	audit, err = Erase(t.Context(), deps, EraseRequest{Subject: "subject-open-2", Actor: "dpo"})
	if err != nil || len(audit.KeysErased) != 0 {
		t.Fatalf("one-pass erase: %+v, %v", audit, err)
	}
}
