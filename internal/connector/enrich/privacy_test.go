package enrich

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

const testKeysTopic = "idnow.keys"

// newPrivacy builds a development KEK, pepper, keyring (read from the keys topic) and Protector.
func newPrivacy(t *testing.T, brokers []string, mode string) (*privacy.Protector, *privacy.KEK) {
	t.Helper()
	dir := t.TempDir()
	cfg := privacy.DefaultConfig()
	cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile = mode, filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	cfg.Pseudonymize = []string{"session.subjectId", "dataBlocks.basicIdentity.familyName"}
	if err := privacy.NewKEKKeysetFile(cfg.KEKKeysetFile); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := privacy.NewPepperFile(cfg.PepperFile, kek); err != nil {
		t.Fatal(err)
	}
	pepper, err := privacy.LoadPepper(cfg.PepperFile, kek)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := privacy.NewKeyring(kek, 1000)
	if err != nil {
		t.Fatal(err)
	}
	cl := newProducer(t, brokers)
	if _, err := kadm.NewClient(cl).CreateTopic(t.Context(), testPartitions, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, testKeysTopic); err != nil {
		t.Fatal(err)
	}
	if _, err := privacy.NewKeysTopic([]kgo.Opt{kgo.SeedBrokers(brokers...)}, testKeysTopic, ring, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, err := privacy.NewProtector(cfg, privacy.ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: testKeysTopic})
	if err != nil {
		t.Fatal(err)
	}
	return p, kek
}

// TestEnrichEncrypted runs the enricher with privacy.mode encrypt: no personal value reaches the
// enriched topic in clear text, every data key used is committed to the keys topic in the same
// transactions, and a reader with the KEK decrypts every record back to what the API returned.
func TestEnrichEncrypted(t *testing.T) {
	brokers := newCluster(t)
	sim := startSim(t, 12)
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	prot, kek := newPrivacy(t, brokers, schemas.PrivacyEncrypt)
	cfg := testConfig("a")
	runEnricher(t, brokers, cfg, Deps{API: newSimAPI(t, sim.APIURL(), sim.TokenURL(), 3), Log: testLog(t), Privacy: prot})
	waitConsumed(t, brokers, cfg.Group, 30*time.Second)

	raw := readCommitted(t, brokers, testTopics.Enriched)
	got := decodeEnriched(t, raw)
	if len(got) != len(sent) {
		t.Fatalf("%d enriched records for %d events", len(got), len(sent))
	}
	reader, err := privacy.NewKeyring(kek, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := privacy.NewKeysTopic([]kgo.Opt{kgo.SeedBrokers(brokers...)}, testKeysTopic, reader, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	encrypted := 0
	for _, es := range got {
		if es.Privacy == nil || es.Privacy.Mode != schemas.PrivacyEncrypt {
			t.Fatalf("record of %s has no encrypt envelope: %+v", es.Event.EventID, es.Privacy)
		}
		for _, b := range es.DataBlocks {
			if b.Content != nil || (b.BasicIdentity != nil && (b.BasicIdentity.GivenName != nil || b.BasicIdentity.FamilyName != nil || b.BasicIdentity.BirthDate != nil)) ||
				(b.DocumentData != nil && b.DocumentData.DocumentNumber != nil) {
				t.Fatalf("record of %s carries a personal field in clear text: %+v", es.Event.EventID, b)
			}
		}
		if es.Session.SubjectID != nil {
			t.Fatalf("record of %s carries subjectId in clear text", es.Event.EventID)
		}
		if len(es.Privacy.Encrypted) > 0 {
			encrypted++
		}
		if err := privacy.Open(reader, testTopics.Enriched, es); err != nil {
			t.Fatalf("record of %s does not decrypt: %v", es.Event.EventID, err)
		}
		for _, b := range es.DataBlocks {
			if b.BasicIdentity != nil && b.BasicIdentity.FamilyName != nil {
				secrets = append(secrets, *b.BasicIdentity.FamilyName, *b.BasicIdentity.BirthDate)
			}
			if b.DocumentData != nil && b.DocumentData.DocumentNumber != nil {
				secrets = append(secrets, *b.DocumentData.DocumentNumber)
			}
		}
	}
	if encrypted == 0 || len(secrets) == 0 {
		t.Fatalf("nothing was encrypted (%d records with ciphertext, %d personal values decrypted)", encrypted, len(secrets))
	}
	for _, topic := range []string{testTopics.Enriched, testTopics.DLQ, testKeysTopic} {
		for _, r := range readCommitted(t, brokers, topic) {
			for _, s := range secrets {
				if bytes.Contains(r.Value, []byte(s)) || bytes.Contains(r.Key, []byte(s)) {
					t.Fatalf("%s record at %d/%d holds %q in clear text", topic, r.Partition, r.Offset, s)
				}
			}
		}
	}
	// Tombstoning the keys makes the records unreadable, typed as erased.
	keys := readCommitted(t, brokers, testKeysTopic)
	var tomb []*kgo.Record
	for _, k := range keys {
		if k.Value != nil {
			tomb = append(tomb, &kgo.Record{Topic: testKeysTopic, Key: k.Key})
		}
	}
	if err := newProducer(t, brokers).ProduceSync(t.Context(), tomb...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	after, _ := privacy.NewKeyring(kek, 10)
	if _, err := privacy.NewKeysTopic([]kgo.Opt{kgo.SeedBrokers(brokers...)}, testKeysTopic, after, nil).CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, es := range decodeEnriched(t, raw) {
		if len(es.Privacy.Encrypted) == 0 {
			continue
		}
		if err := privacy.Open(after, testTopics.Enriched, es); !errors.Is(err, privacy.ErrErased) {
			t.Fatalf("after erasure: want ErrErased, got %v", err)
		}
	}
}

// failingKEK is a key-encryption key whose key manager is down.
type failingKEK struct{}

func (failingKEK) Encrypt([]byte, []byte) ([]byte, error) {
	return nil, errors.New("key manager encrypt: connection refused")
}
func (failingKEK) Decrypt([]byte, []byte) ([]byte, error) {
	return nil, errors.New("key manager decrypt: connection refused")
}

// TestHandlerKeyManagerDown: with the key manager down the handler returns a retryable
// key_manager error and no record, so the event waits instead of being written in clear text
// or dead-lettered.
func TestHandlerKeyManagerDown(t *testing.T) {
	events, enriched := newCodecs(t)
	dir := t.TempDir()
	cfg := privacy.DefaultConfig()
	cfg.Mode, cfg.KEKURL, cfg.PepperFile = schemas.PrivacyEncrypt, "test://down", filepath.Join(dir, "pepper.json")
	good, _ := newPrivacyKEK(t, dir)
	if err := privacy.NewPepperFile(cfg.PepperFile, good); err != nil {
		t.Fatal(err)
	}
	pepper, err := privacy.LoadPepper(cfg.PepperFile, good)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := privacy.NewKeyring(&privacy.KEK{AEAD: failingKEK{}, Source: "test"}, 4)
	if err != nil {
		t.Fatal(err)
	}
	ring.MarkReady()
	prot, err := privacy.NewProtector(cfg, privacy.ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: testKeysTopic})
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{sessions: map[string]*idnow.Session{"ses-1": {SessionID: "ses-1", Status: idnow.StatusRunning, SubjectID: "subject-1"}}}
	h := NewHandler(HandlerDeps{API: api, Events: events, Enriched: enriched, Topic: testTopics.Enriched, Policy: DefaultConfig().DataBlocks, Privacy: prot})
	value, err := events.Encode(&schemas.SessionEvent{EventID: "ev-1", EventName: "session.started", SessionID: "ses-1", ReceivedAt: time.Now(), DeliveryVariant: schemas.DeliveryJWTBody, Origin: schemas.OriginWebhook})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h(t.Context(), &Message{Record: &kgo.Record{Topic: testTopics.Sessions, Key: []byte("ses-1"), Value: value}})
	if err == nil || len(res.Records) != 0 {
		t.Fatalf("want an error and no record, got %d records, %v", len(res.Records), err)
	}
	if c := Classify(err); c != (Classification{ClassKeyManager, true}) {
		t.Fatalf("Classify = %+v, want key_manager, retryable", c)
	}
}

// newPrivacyKEK makes a working development KEK in dir.
func newPrivacyKEK(t *testing.T, dir string) (*privacy.KEK, string) {
	t.Helper()
	path := filepath.Join(dir, "kek.json")
	if err := privacy.NewKEKKeysetFile(path); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), privacy.Config{KEKKeysetFile: path})
	if err != nil {
		t.Fatal(err)
	}
	return kek, path
}
