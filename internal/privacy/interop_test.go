package privacy

import (
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// The golden vectors of the privacy interop check (make interop): encrypted EnrichedSessions in
// Avro single-object encoding, the wrapped data keys as the keys topic holds them, and the
// development KEK keyset that wraps them (a test key, never used anywhere else). Java
// (internal/privacy/interop/java, Tink for Java) and Python (internal/privacy/interop/python,
// Tink for Python) decrypt them with the official libraries and must fail on the tampered and
// moved cases, as this test does for Go. AES-GCM nonces are random, so the files are written
// once (go test ./internal/privacy -run TestInteropVectors -update) and then only read.
var update = flag.Bool("update", false, "rewrite the privacy interop vectors under testdata/interop")

const vectorDir = "testdata/interop"

// vectorManifest is testdata/interop/manifest.json.
type vectorManifest struct {
	// KEK is the cleartext Tink JSON keyset file of the key-encryption key.
	KEK string `json:"kek"`
	// Schema is the writer schema of the records, relative to the repository root.
	Schema string `json:"schema"`
	// Topic is the topic the records were written to (part of the associated data).
	Topic string `json:"topic"`
	// Keys maps a keys-topic record key to its value, Tink's binary EncryptedKeyset (base64).
	Keys  map[string][]byte `json:"keys"`
	Cases []vectorCase      `json:"cases"`
}

type vectorCase struct {
	Name string `json:"name"`
	// Record is the single-object Avro file of the EnrichedSession.
	Record string `json:"record"`
	// Plaintext maps each encrypted path to its expected clear text (ok paths).
	Plaintext map[string]string `json:"plaintext"`
	// FailPath is the path whose decryption must fail authentication; empty when all succeed.
	FailPath string `json:"failPath,omitempty"`
}

func TestInteropVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	b, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json"))
	if err != nil {
		t.Fatalf("%v (write the vectors with -update)", err)
	}
	var m vectorManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	kek, err := OpenKEK(t.Context(), Config{KEKKeysetFile: filepath.Join(vectorDir, m.KEK)})
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := NewKeyring(kek, 8)
	for name, w := range m.Keys {
		ring.Apply(name, w)
	}
	s := schemas.EnrichedSessionSchema().Avro
	for _, c := range m.Cases {
		t.Run(c.Name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(vectorDir, c.Record))
			if err != nil {
				t.Fatal(err)
			}
			var es schemas.EnrichedSession
			if _, err := s.DecodeSingleObject(raw, &es); err != nil {
				t.Fatalf("decode %s: %v", c.Record, err)
			}
			a, err := ring.ForRead(*es.Privacy.KeyName)
			if err != nil {
				t.Fatal(err)
			}
			for path, ct := range es.Privacy.Encrypted {
				pt, err := a.Decrypt(ct, AssociatedData(m.Topic, es.Session.SessionID, path))
				if path == c.FailPath {
					if err == nil {
						t.Errorf("%s decrypted, want an authentication failure", path)
					}
					continue
				}
				if err != nil || string(pt) != c.Plaintext[path] {
					t.Errorf("%s: %q, %v; want %q", path, pt, err, c.Plaintext[path])
				}
			}
			err = Open(ring, m.Topic, &es)
			if (c.FailPath == "") != (err == nil) || errors.Is(err, ErrErased) {
				t.Fatalf("Open: %v (fail path %q)", err, c.FailPath)
			}
		})
	}
}

func writeVectors(t *testing.T) {
	t.Helper()
	if err := os.RemoveAll(vectorDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	kekPath := filepath.Join(vectorDir, "kek.json")
	if err := NewKEKKeysetFile(kekPath); err != nil {
		t.Fatal(err)
	}
	kek, err := OpenKEK(t.Context(), Config{KEKKeysetFile: kekPath})
	if err != nil {
		t.Fatal(err)
	}
	pepper := testPepper(t, kek, t.TempDir())
	ring, _ := NewKeyring(kek, 8)
	ring.MarkReady()
	cfg := DefaultConfig()
	cfg.Mode, cfg.KEKKeysetFile, cfg.PepperFile = schemas.PrivacyEncrypt, kekPath, "p"
	prot, err := NewProtector(cfg, ProtectorDeps{Ring: ring, Pepper: pepper, KeysTopic: "idnow.keys"})
	if err != nil {
		t.Fatal(err)
	}
	m := vectorManifest{KEK: "kek.json", Schema: "schemas/enriched_session.avsc", Topic: testTopic, Keys: map[string][]byte{}}
	s := schemas.EnrichedSessionSchema().Avro
	write := func(name string, es *schemas.EnrichedSession, plain map[string]string, fail string) {
		b, err := s.AppendSingleObject(nil, es)
		if err != nil {
			t.Fatal(err)
		}
		file := name + ".single.bin"
		if err := os.WriteFile(filepath.Join(vectorDir, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if fail != "" {
			delete(plain, fail)
		}
		m.Cases = append(m.Cases, vectorCase{Name: name, Record: file, Plaintext: plain, FailPath: fail})
	}
	protect := func(es *schemas.EnrichedSession) map[string]string {
		plain := personalValues(es)
		recs, err := prot.Protect(t.Context(), testTopic, es)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			m.Keys[string(r.Key)] = r.Value
		}
		return plain
	}
	const field = "dataBlocks[0].basicIdentity.familyName"
	a := sample("9b2e8c4e-interop-0001", "subject-interop")
	pa := protect(a)
	write("encrypted", a, maps.Clone(pa), "")

	tampered := sample("9b2e8c4e-interop-0002", "subject-interop")
	pt := protect(tampered)
	ct := slices.Clone(tampered.Privacy.Encrypted[field])
	ct[len(ct)-1] ^= 0x01
	tampered.Privacy.Encrypted[field] = ct
	write("tampered", tampered, pt, field)

	// The ciphertext of session 0001's family name under the same subject key, put into the
	// record of session 0003: same key, same field, another record.
	moved := sample("9b2e8c4e-interop-0003", "subject-interop")
	pm := protect(moved)
	moved.Privacy.Encrypted[field] = a.Privacy.Encrypted[field]
	write("moved", moved, pm, field)

	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
