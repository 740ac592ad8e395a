package privacy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/streamingaead"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// An encrypted archive object (privacy.mode encrypt, internal/connector/archive) is
//
//	"IDNWARC1" | uint32 big-endian n | n bytes of JSON ObjectHeader | Tink streaming AEAD ciphertext
//
// The streaming keyset (AES256_GCM_HKDF_1MB) is fresh for every object and stored in the
// header, wrapped by the subject's data key (the AES-256-GCM keyset privacy.keyName names) in
// Tink's binary EncryptedKeyset format. Both the wrap and the stream use ObjectAssociatedData
// (session id and vault entry id), so an object copied into another session or passed off as
// another file fails authentication. Erasing the data key makes the keyset, and so the object,
// unreadable: crypto-shredding reaches the archive without touching the bucket. A fresh keyset
// per object keeps the data key's AES-GCM nonce budget untouched by gigabytes of video and
// lets Java and Python read objects with Tink's standard streaming API.
const (
	objectMagic = "IDNWARC1"
	// ObjectHeaderVersion is the header format written by NewObjectWriter.
	ObjectHeaderVersion = 1
	// maxObjectHeader bounds the header a reader allocates (a real one is about 400 bytes).
	maxObjectHeader = 64 << 10
	objectDomain    = "idnow.archive.v1\x00"
	// ObjectScheme names the object encryption in manifests and object metadata.
	ObjectScheme = "tink-streaming-aead/AES256_GCM_HKDF_1MB"
)

// ObjectHeader is the clear-text header of an encrypted archive object. It holds ids classified
// none or pseudonym and a wrapped keyset, never personal data.
type ObjectHeader struct {
	Version int `json:"v"`
	// KeyName is the data key (keys topic record key, <keyRef>/<key id>) wrapping Keyset.
	KeyName      string `json:"keyName"`
	SessionID    string `json:"sessionId"`
	VaultEntryID string `json:"vaultEntryId"`
	// Keyset is the object's streaming AEAD keyset, wrapped by the data key (Tink binary
	// EncryptedKeyset, associated data ObjectAssociatedData); base64 in JSON.
	Keyset []byte `json:"keyset"`
}

// ErrNotEncryptedObject means an object does not start with the encrypted-object magic.
var ErrNotEncryptedObject = errors.New("not an encrypted archive object")

// ObjectAssociatedData binds an archive object's keyset and stream to its session and file:
// "idnow.archive.v1" NUL sessionId NUL vaultEntryId (UTF-8).
func ObjectAssociatedData(sessionID, vaultEntryID string) []byte {
	b := make([]byte, 0, len(objectDomain)+len(sessionID)+1+len(vaultEntryID))
	b = append(b, objectDomain...)
	b = append(b, sessionID...)
	b = append(b, 0)
	return append(b, vaultEntryID...)
}

// NewObjectWriter writes the header of a new encrypted object to w and returns the writer of
// its plaintext; Close writes the last segment (without it the object does not authenticate).
// Memory: one 1 MiB ciphertext segment, whatever the object's size.
func NewObjectWriter(w io.Writer, dek tink.AEAD, keyName, sessionID, vaultEntryID string) (io.WriteCloser, error) {
	h, err := keyset.NewHandle(streamingaead.AES256GCMHKDF1MBKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("new object keyset: %w", err)
	}
	ad := ObjectAssociatedData(sessionID, vaultEntryID)
	var wrapped bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&wrapped), dek, ad); err != nil {
		return nil, fmt.Errorf("wrap the object keyset with data key %s: %w", keyName, err)
	}
	s, err := streamingaead.New(h)
	if err != nil {
		return nil, fmt.Errorf("object streaming AEAD: %w", err)
	}
	hdr, err := json.Marshal(ObjectHeader{Version: ObjectHeaderVersion, KeyName: keyName, SessionID: sessionID, VaultEntryID: vaultEntryID, Keyset: wrapped.Bytes()})
	if err != nil {
		return nil, fmt.Errorf("encode object header: %w", err)
	}
	pre := make([]byte, 0, len(objectMagic)+4+len(hdr))
	pre = append(pre, objectMagic...)
	pre = binary.BigEndian.AppendUint32(pre, uint32(len(hdr)))
	pre = append(pre, hdr...)
	if _, err := w.Write(pre); err != nil {
		return nil, fmt.Errorf("write object header: %w", err)
	}
	ew, err := s.NewEncryptingWriter(w, ad)
	if err != nil {
		return nil, fmt.Errorf("object encrypting writer: %w", err)
	}
	return ew, nil
}

// ReadObjectHeader reads an encrypted object's header from r, leaving r at the ciphertext.
func ReadObjectHeader(r io.Reader) (*ObjectHeader, error) {
	var pre [len(objectMagic) + 4]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: shorter than its header", ErrNotEncryptedObject)
		}
		return nil, fmt.Errorf("read object header: %w", err)
	}
	if string(pre[:len(objectMagic)]) != objectMagic {
		return nil, ErrNotEncryptedObject
	}
	n := binary.BigEndian.Uint32(pre[len(objectMagic):])
	if n > maxObjectHeader {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrNotEncryptedObject, n)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("read object header: %w", err)
	}
	var h ObjectHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("object header does not parse: %w", err)
	}
	if h.Version != ObjectHeaderVersion {
		return nil, fmt.Errorf("object header version %d is not %d (written by a newer connector?)", h.Version, ObjectHeaderVersion)
	}
	if h.KeyName == "" || h.SessionID == "" || len(h.Keyset) == 0 {
		return nil, errors.New("object header lacks its key name, session id or keyset")
	}
	return &h, nil
}

// Decrypt unwraps the object's keyset with dek (the data key h.KeyName) and returns the reader
// of the plaintext of r, the ciphertext after the header. Every segment is authenticated as it
// is read: a changed byte, a truncated object, or an object moved to another session or file
// makes Read fail.
func (h *ObjectHeader) Decrypt(r io.Reader, dek tink.AEAD) (io.Reader, error) {
	ad := ObjectAssociatedData(h.SessionID, h.VaultEntryID)
	kh, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(h.Keyset)), dek, ad)
	if err != nil {
		return nil, fmt.Errorf("unwrap the object keyset with data key %s (wrong key, or the object was moved): %w", h.KeyName, err)
	}
	s, err := streamingaead.New(kh)
	if err != nil {
		return nil, fmt.Errorf("object streaming AEAD: %w", err)
	}
	dr, err := s.NewDecryptingReader(r, ad)
	if err != nil {
		return nil, fmt.Errorf("object decrypting reader: %w", err)
	}
	return dr, nil
}

// objectNameDomain separates object names from key references and pseudonyms.
const objectNameDomain = "idnow.archive.object.v2\x00"

// ObjectName is the name of an encrypted archive object: 64 hex digits of an HMAC, under the
// pepper, of the session id, the vault entry id and the plaintext's SHA-256 (hex). It is stable
// (a retry writes the same name) but tells nobody without the pepper which content it holds, so
// a bucket listing cannot be matched against a known image. The vault entry id is part of it
// because the object's header and associated data bind it: two files of a session with equal
// content are two objects, each readable as its own file.
func (p *Pepper) ObjectName(sessionID, vaultEntryID, sha256Hex string) string {
	return hex.EncodeToString(p.mac(objectNameDomain, sessionID+"\x00"+vaultEntryID+"\x00"+sha256Hex))
}

// ManifestAssociatedData is the associated data of an archive manifest's sealed section (the
// plaintext digests of a session's files): "idnow.archive.manifest.v1" NUL sessionId.
func ManifestAssociatedData(sessionID string) []byte {
	return append([]byte("idnow.archive.manifest.v1\x00"), sessionID...)
}
