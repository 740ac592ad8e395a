package idnowsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"sync"
)

// Content types of the simulated vault files.
const (
	contentJPEG = "image/jpeg"
	contentPDF  = "application/pdf"
	contentMP4  = "video/mp4"
)

// vaultFile is a file in the simulated vault. Its bytes are generated on demand from seed, as
// a stream, so thousands of sessions and videos of hundreds of MiB cost no memory.
type vaultFile struct {
	id          string
	env         string
	sessionID   string
	contentType string
	filename    string
	size        int64
	seed        uint64
	// missing files answer 404 at the files endpoint, as a file IDnow's retention purged
	// (simulator.faults.file_missing_rate, drawn when the file is created).
	missing bool

	digestOnce sync.Once
	digest     [32]byte
}

// envelope returns the bytes a file starts and ends with, so content sniffers and viewers see
// the declared type.
func (f *vaultFile) envelope() (head, tail []byte) {
	switch f.contentType {
	case contentJPEG:
		return []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}, []byte{0xFF, 0xD9}
	case contentMP4:
		// An ISO BMFF ftyp box, then an mdat box header; the filler is the "media".
		head = []byte{0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'm', 'p', '4', '2', 0, 0, 0, 0, 'm', 'p', '4', '2', 'i', 's', 'o', 'm', 0, 0, 0, 0, 'm', 'd', 'a', 't'}
		binary.BigEndian.PutUint32(head[24:28], uint32(min(f.size-24, 1<<32-1)))
		return head, nil
	default:
		return []byte("%PDF-1.4\n% IDnow simulator verification report (synthetic)\n"), []byte("\n%%EOF\n")
	}
}

// open returns a reader of the file's bytes: the same bytes on every call.
func (f *vaultFile) open() io.Reader {
	head, tail := f.envelope()
	size := max(f.size, int64(len(head)+len(tail)))
	fill := size - int64(len(head)) - int64(len(tail))
	return io.MultiReader(
		bytes.NewReader(head),
		io.LimitReader(filler(f.seed), fill),
		bytes.NewReader(tail),
	)
}

// length is the number of bytes open yields.
func (f *vaultFile) length() int64 {
	head, tail := f.envelope()
	return max(f.size, int64(len(head)+len(tail)))
}

// sha256 is the digest of the file's bytes, computed once (a pass over the generated stream).
func (f *vaultFile) sha256() [32]byte {
	f.digestOnce.Do(func() {
		h := sha256.New()
		_, _ = io.Copy(h, f.open())
		copy(f.digest[:], h.Sum(nil))
	})
	return f.digest
}

// filler returns the deterministic pseudo-random bytes of a file with seed: ChaCha8's Read
// fills whole buffers at memory speed (a byte loop would make a 200 MiB video cost seconds of
// CPU per download, more under the race detector).
func filler(seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], seed^0x5851f42d4c957f2d)
	return rand.NewChaCha8(key)
}

// fileRNG is the source of a session's extra files (back side, selfie, video). It is derived
// from the session id rather than drawn from the session's own source, so enabling or sizing
// them leaves every other random choice of the session unchanged.
func fileRNG(sessionID string) *rng {
	h := fnv.New64a()
	_, _ = h.Write([]byte(sessionID))
	_, _ = h.Write([]byte("/files"))
	return newRNG(int64(h.Sum64() >> 1))
}
