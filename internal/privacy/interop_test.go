package privacy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
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

// objectVectors is testdata/interop/objects.json: encrypted archive objects (what the archiver
// writes under privacy.mode encrypt) for Tink's streaming AEAD in Java and Python.
type objectVectors struct {
	// KEK is the key-encryption keyset file (the same as manifest.json's).
	KEK string `json:"kek"`
	// Keys maps a data key's name to its wrapped keyset (base64), as in the keys topic.
	Keys map[string][]byte `json:"keys"`
	// Format describes the object layout for a reader writing its own parser.
	Format  string       `json:"format"`
	Objects []objectCase `json:"objects"`
}

type objectCase struct {
	Name string `json:"name"`
	File string `json:"file"`
	// SessionID and VaultEntryID are what the reader expects (from the archive manifest): the
	// associated data is computed from them, not from the object's header.
	SessionID    string `json:"sessionId"`
	VaultEntryID string `json:"vaultEntryId"`
	// FlipByte, when set, is the offset of a byte the reader flips before decrypting.
	FlipByte        int64  `json:"flipByte,omitempty"`
	PlaintextSHA256 string `json:"plaintextSha256"`
	PlaintextSize   int64  `json:"plaintextSize"`
	// Fail says decryption must fail (unwrapping the keyset or reading the stream).
	Fail bool `json:"fail,omitempty"`
}

// TestInteropObjectVectors decrypts the archive object vectors the way a reader of another
// language does: the header's key name finds the data key, the associated data comes from the
// expected session and file.
func TestInteropObjectVectors(t *testing.T) {
	if *update {
		writeObjectVectors(t)
	}
	b, err := os.ReadFile(filepath.Join(vectorDir, "objects.json"))
	if err != nil {
		t.Fatalf("%v (write the vectors with -update)", err)
	}
	var v objectVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	kek, err := OpenKEK(t.Context(), Config{KEKKeysetFile: filepath.Join(vectorDir, v.KEK)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v.Objects {
		t.Run(c.Name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(vectorDir, c.File))
			if err != nil {
				t.Fatal(err)
			}
			if c.FlipByte > 0 {
				raw[c.FlipByte] ^= 1
			}
			r := bytes.NewReader(raw)
			h, err := ReadObjectHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			dek, err := UnwrapDataKey(v.Keys[h.KeyName], kek)
			if err != nil {
				t.Fatal(err)
			}
			h.SessionID, h.VaultEntryID = c.SessionID, c.VaultEntryID
			sum, n, err := func() (string, int64, error) {
				pr, err := h.Decrypt(r, dek)
				if err != nil {
					return "", 0, err
				}
				hs := sha256.New()
				n, err := io.Copy(hs, pr)
				return hex.EncodeToString(hs.Sum(nil)), n, err
			}()
			if c.Fail {
				if err == nil {
					t.Fatal("decrypted, want a failure")
				}
				return
			}
			if err != nil || sum != c.PlaintextSHA256 || n != c.PlaintextSize {
				t.Fatalf("plaintext sha256 %s, %d bytes, %v; want %s, %d", sum, n, err, c.PlaintextSHA256, c.PlaintextSize)
			}
		})
	}
}

// writeObjectVectors writes objects.json and object.tink, under the kek.json writeVectors made.
func writeObjectVectors(t *testing.T) {
	t.Helper()
	kek, err := OpenKEK(t.Context(), Config{KEKKeysetFile: filepath.Join(vectorDir, "kek.json")})
	if err != nil {
		t.Fatal(err)
	}
	dek, wrapped, err := NewDataKey(kek)
	if err != nil {
		t.Fatal(err)
	}
	const keyName, sid, vid = "sub-0f1e2d3c4b5a69788796a5b4c3d2e1f0/5e1ec7ed0b1ec75a", "9b2e8c4e-interop-0001", "vault-selfie-0001"
	// 1.1 MB: two 1 MiB segments, so a reader proves it chains segments.
	plain := make([]byte, 1_100_000)
	for i := range plain {
		plain[i] = byte(i*31) ^ byte(i>>11)
	}
	var obj bytes.Buffer
	w, err := NewObjectWriter(&obj, dek, keyName, sid, vid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "object.tink"), obj.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(plain)
	base := objectCase{File: "object.tink", SessionID: sid, VaultEntryID: vid, PlaintextSHA256: hex.EncodeToString(sum[:]), PlaintextSize: int64(len(plain))}
	ok, tampered, moved := base, base, base
	ok.Name = "object"
	tampered.Name, tampered.FlipByte, tampered.Fail = "object-tampered", int64(obj.Len()-100), true
	moved.Name, moved.VaultEntryID, moved.Fail = "object-moved", "vault-document-0002", true
	v := objectVectors{KEK: "kek.json", Keys: map[string][]byte{keyName: wrapped}, Objects: []objectCase{ok, tampered, moved},
		Format: `"IDNWARC1" | uint32 big-endian n | n bytes of JSON header {v, keyName, sessionId, vaultEntryId, keyset: base64 Tink EncryptedKeyset wrapped by the data key} | Tink streaming AEAD ciphertext; associated data of both: "idnow.archive.v1" NUL sessionId NUL vaultEntryId`}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "objects.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
