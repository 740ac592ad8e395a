package state

import "strings"

// The packed form of a session's event ids (Session.ids) is a sequence of entries, one per id in
// order. An entry starts with a uvarint head:
//
//   - headUUIDLower, headUUIDUpper: the id is a canonical UUID (8-4-4-4-12 hex digits, letters
//     of one case, as IDnow's ids are); its 16 bytes follow. 17 bytes instead of 36.
//   - any other head h: the id starts with the first h-headPrefix bytes of the previous id
//     (front coding: ids written by one producer often share a prefix); a uvarint length n and
//     the n bytes that follow that prefix come next.
//
// The encoding of a list is deterministic, so two packers fed the same ids write the same bytes.
const (
	headUUIDLower = 0
	headUUIDUpper = 1
	headPrefix    = 2

	uuidLen = 36
)

// idPacker appends ids to a packed list, remembering the last one for the next entry's prefix.
type idPacker struct {
	strings.Builder
	prev []byte // the last id added
}

func (p *idPacker) add(id string) {
	writeEntry(&p.Builder, p.prev, id)
	p.prev = append(p.prev[:0], id...)
}

// addBytes adds an id read back by an idReader (its buffer is reused by the next read).
func (p *idPacker) addBytes(id []byte) {
	writeEntry(&p.Builder, p.prev, id)
	p.prev = append(p.prev[:0], id...)
}

// writeEntry appends the entry of id after prev. It is generic so that neither ids read back
// from another list nor the strings of a record need a conversion (an allocation) each.
func writeEntry[P, T string | []byte](b *strings.Builder, prev P, id T) {
	if u, head, ok := packUUID(id); ok {
		writeUvarint(b, head)
		b.Write(u[:])
		return
	}
	k := commonPrefix(prev, id)
	writeUvarint(b, uint64(k)+headPrefix)
	writeUvarint(b, uint64(len(id)-k))
	for _, c := range []byte(id[k:]) {
		b.WriteByte(c)
	}
}

func writeUvarint(b *strings.Builder, v uint64) {
	for ; v >= 0x80; v >>= 7 {
		b.WriteByte(byte(v) | 0x80)
	}
	b.WriteByte(byte(v))
}

// entrySize is the size of the entry packID writes for id after prev.
func entrySize[P string | []byte](prev P, id string) int {
	if len(id) == uuidLen {
		if _, _, ok := packUUID(id); ok {
			return 1 + 16
		}
	}
	k := commonPrefix(prev, id)
	return uvarintLen(uint64(k)+headPrefix) + uvarintLen(uint64(len(id)-k)) + len(id) - k
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// idReader reads a packed list back, one id at a time; id is valid until the next call.
type idReader struct {
	rest string
	id   []byte
}

// idBufSize is the initial capacity of the buffers that hold one id: IDnow's UUIDs and the
// reconciliation ids (36 bytes) fit without growing.
const idBufSize = 64

func newIDReader(packed string) idReader {
	return idReader{rest: packed, id: make([]byte, 0, idBufSize)}
}

// next reads the next id into r.id and reports whether there was one.
func (r *idReader) next() bool {
	if r.rest == "" {
		return false
	}
	head := r.uvarint()
	switch head {
	case headUUIDLower, headUUIDUpper:
		r.id = appendUUID(r.id[:0], r.rest[:16], head == headUUIDUpper)
		r.rest = r.rest[16:]
	default:
		k, n := int(head-headPrefix), int(r.uvarint())
		r.id = append(r.id[:k], r.rest[:n]...)
		r.rest = r.rest[n:]
	}
	return true
}

func (r *idReader) uvarint() uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		b := r.rest[0]
		r.rest = r.rest[1:]
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
	}
}

func commonPrefix[A, B string | []byte](a A, b B) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// packUUID returns the 16 bytes of id and its head when id is a canonical UUID whose hex letters
// are all lower-case or all upper-case (ids with digits only count as lower-case); ids of mixed
// case are not packed, so unpacking always gives back the exact text.
func packUUID[T string | []byte](id T) (u [16]byte, head uint64, ok bool) {
	if len(id) != uuidLen || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return u, 0, false
	}
	lower, upper := false, false
	j := 0
	for i := 0; i < uuidLen; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
		}
		hi, lo := hexVal(id[i], &lower, &upper), hexVal(id[i+1], &lower, &upper)
		if hi < 0 || lo < 0 {
			return u, 0, false
		}
		u[j] = byte(hi<<4 | lo)
		j++
	}
	if lower && upper {
		return u, 0, false
	}
	if upper {
		return u, headUUIDUpper, true
	}
	return u, headUUIDLower, true
}

// hexVal returns the value of hex digit c, or -1, and notes the case of a letter.
func hexVal(c byte, lower, upper *bool) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		*lower = true
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		*upper = true
		return int(c-'A') + 10
	}
	return -1
}

// appendUUID appends the canonical text of the 16 bytes in u.
func appendUUID(dst []byte, u string, upper bool) []byte {
	digits := "0123456789abcdef"
	if upper {
		digits = "0123456789ABCDEF"
	}
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, digits[u[i]>>4], digits[u[i]&0x0f])
	}
	return dst
}
