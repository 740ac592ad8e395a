package idnow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/jsonscan"
)

// olderEnvelope lists the keys of the older flat shape that describe the block rather than
// belong to its content; everything else is content.
var olderEnvelope = map[string]bool{
	"type":          true,
	"createdByStep": true,
	"createdAt":     true,
	"datablockId":   true,
	"id":            true,
	"status":        true,
}

// parseDataBlocks normalises both documented response shapes (and a bare array) into
// DataBlocks. The shape is decided per element, so a mixed answer still parses.
func parseDataBlocks(body []byte) ([]DataBlock, error) {
	body = bytes.TrimSpace(body)
	if out, ok := parseNewerFast(body); ok {
		return out, nil
	}
	if out, ok := parseNewerBlocks(body); ok {
		return out, nil
	}
	return parseDataBlocksAnyShape(body)
}

// parseNewerBlocks decodes an answer whose every block has the newer shape in one pass over
// the body (encoding/json validates and then decodes each input it is given, so the general
// path, which takes the blocks apart as raw messages first, reads every byte several times).
// ok is false for anything else: an older-shape block, a missing or null list, invalid JSON;
// parseDataBlocksAnyShape then decides, and words the error.
func parseNewerBlocks(body []byte) ([]DataBlock, bool) {
	var blocks []newerBlock
	switch {
	case len(body) == 0:
		return nil, false
	case body[0] == '[':
		if json.Unmarshal(body, &blocks) != nil {
			return nil, false
		}
	default:
		// encoding/json matches keys case-insensitively: "dataBlocks" (newer) and
		// "datablocks" (older) both land here.
		var top struct {
			DataBlocks []newerBlock `json:"dataBlocks"`
		}
		if json.Unmarshal(body, &top) != nil || top.DataBlocks == nil {
			return nil, false
		}
		blocks = top.DataBlocks
	}
	out := make([]DataBlock, 0, len(blocks))
	for i := range blocks {
		if blocks[i].Content == nil && blocks[i].CreatedBy == nil {
			return nil, false
		}
		db, err := blocks[i].dataBlock()
		if err != nil {
			return nil, false
		}
		out = append(out, db)
	}
	return out, true
}

// parseDataBlocksAnyShape is parseDataBlocks for every shape, block by block.
func parseDataBlocksAnyShape(body []byte) ([]DataBlock, error) {
	var items []json.RawMessage
	switch {
	case len(body) == 0:
		return nil, fmt.Errorf("%w: empty body", ErrDecode)
	case body[0] == '[':
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, fmt.Errorf("%w: data blocks array: %w", ErrDecode, err)
		}
	default:
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			return nil, fmt.Errorf("%w: data blocks object: %w", ErrDecode, err)
		}
		// "dataBlocks" (newer) and "datablocks" (older) differ only in case.
		found := false
		for k, v := range top {
			if strings.EqualFold(k, "datablocks") {
				found = true
				if string(bytes.TrimSpace(v)) == "null" {
					break
				}
				if err := json.Unmarshal(v, &items); err != nil {
					return nil, fmt.Errorf("%w: %s: %w", ErrDecode, k, err)
				}
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: no dataBlocks or datablocks key", ErrDecode)
		}
	}
	out := make([]DataBlock, 0, len(items))
	for i, raw := range items {
		db, err := parseDataBlock(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: data block %d: %w", ErrDecode, i, err)
		}
		out = append(out, db)
	}
	return out, nil
}

// newerBlock is the newer, enveloped data-block shape. It is decoded in one pass; a block that
// has neither content nor createdBy is the older flat shape and takes the slower path.
type newerBlock struct {
	DatablockID flexString      `json:"datablockId"`
	ID          flexString      `json:"id"`
	Type        flexString      `json:"type"`
	CreatedBy   json.RawMessage `json:"createdBy"`
	CreatedAt   json.RawMessage `json:"createdAt"`
	Status      flexString      `json:"status"`
	Content     json.RawMessage `json:"content"`
}

func parseDataBlock(raw json.RawMessage) (DataBlock, error) {
	var nb newerBlock
	if err := json.Unmarshal(raw, &nb); err != nil {
		return DataBlock{}, err
	}
	if nb.Content == nil && nb.CreatedBy == nil {
		return parseOlderBlock(raw)
	}
	return nb.dataBlock()
}

// dataBlock converts a decoded newer-shape block.
func (nb *newerBlock) dataBlock() (DataBlock, error) {
	db := DataBlock{
		ID:        firstNonEmpty(string(nb.DatablockID), string(nb.ID)),
		Type:      camelType(string(nb.Type)),
		CreatedAt: parseFlexTime(nb.CreatedAt),
		Status:    strings.ToUpper(strings.TrimSpace(string(nb.Status))),
	}
	if cb := bytes.TrimSpace(nb.CreatedBy); len(cb) > 0 && string(cb) != "null" {
		by, err := decodeCreatedBy(cb)
		if err != nil {
			return DataBlock{}, fmt.Errorf("createdBy: %w", err)
		}
		db.StepID = string(by.StepID)
		db.Clock = parseClock(string(by.Clock))
	}
	if c := bytes.TrimSpace(nb.Content); len(c) > 0 && string(c) != "null" {
		db.Content = c // json.Unmarshal copies RawMessage values, so c does not alias the body
	}
	if db.Status == "" {
		db.Status = DataBlockStored
		if db.Content == nil {
			db.Status = DataBlockDeleted
		}
	}
	return withFileRefs(db)
}

// parseOlderBlock reads the older flat shape: envelope keys plus the content's own fields at
// the same level.
func parseOlderBlock(raw json.RawMessage) (DataBlock, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return DataBlock{}, err
	}
	str := func(k string) string {
		var s flexString
		if v, ok := fields[k]; ok {
			_ = json.Unmarshal(v, &s)
		}
		return string(s)
	}
	db := DataBlock{
		ID:        firstNonEmpty(str("datablockId"), str("id")),
		Type:      camelType(str("type")),
		CreatedAt: parseFlexTime(fields["createdAt"]),
		Status:    strings.ToUpper(strings.TrimSpace(str("status"))),
		StepID:    str("createdByStep"),
	}
	content := make(map[string]json.RawMessage, len(fields))
	for k, v := range fields {
		if !olderEnvelope[k] {
			content[k] = v
		}
	}
	// An encoder without HTML escaping keeps "&", "<" and ">" in values byte-identical.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(content); err != nil {
		return DataBlock{}, fmt.Errorf("content: %w", err)
	}
	db.Content = bytes.TrimRight(buf.Bytes(), "\n")
	if db.Status == "" {
		db.Status = DataBlockStored
	}
	return withFileRefs(db)
}

// withFileRefs fills in the vault file references found in the block's content.
func withFileRefs(db DataBlock) (DataBlock, error) {
	if db.Content != nil {
		refs, err := findFileRefs(db.Content)
		if err != nil {
			return DataBlock{}, fmt.Errorf("content: %w", err)
		}
		db.FileRefs = refs
	}
	return db, nil
}

func parseClock(s string) int64 {
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
		return n
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return int64(f)
	}
	return 0
}

// findFileRefs walks content and returns every {"$ref":"vault","$id":...} with its JSON path.
// Object keys are visited in sorted order so the result is deterministic; a key given twice
// counts with its last value, as when decoding into a map. content must be valid JSON (a block
// cut from a decoded answer, or parseOlderBlock's encoding): it is walked in place rather than
// decoded, which would validate it again and build a map per object.
func findFileRefs(content json.RawMessage) ([]FileRef, error) {
	// Most blocks hold no reference: a "$ref" key needs the bytes "ref", or an escape sequence
	// spelling them, so without either the walk below cannot find one.
	if !bytes.Contains(content, []byte("ref")) && !bytes.Contains(content, []byte(`\u`)) {
		return nil, nil
	}
	var refs []FileRef
	if err := walkRefs(bytes.TrimSpace(content), "$", &refs); err != nil {
		return nil, err
	}
	return refs, nil
}

// walkRefs appends the references inside the JSON value v, found at path, to refs.
func walkRefs(v []byte, path string, refs *[]FileRef) error {
	switch {
	case len(v) == 0:
		return jsonscan.ErrMalformed
	case v[0] == '[':
		i := 0
		return jsonscan.Elements(v, func(e []byte) error {
			err := walkRefs(e, path+"["+strconv.Itoa(i)+"]", refs)
			i++
			return err
		})
	case v[0] != '{':
		return nil
	}
	members, err := objectMembers(v)
	if err != nil {
		return err
	}
	if ref, ok := members.text("$ref"); ok && strings.EqualFold(ref, "vault") {
		if id, _ := members.text("$id"); id != "" {
			*refs = append(*refs, FileRef{VaultEntryID: id, JSONPath: path})
			return nil
		}
	}
	for _, m := range members {
		// Only objects and arrays can hold a reference: a scalar needs no path built.
		if m.Value[0] != '{' && m.Value[0] != '[' {
			continue
		}
		if err := walkRefs(m.Value, childPath(path, string(m.Key)), refs); err != nil {
			return err
		}
	}
	return nil
}

// member is one object member: its decoded key and raw value.
// members are an object's members sorted by key, each key once with its last value.
type members []jsonscan.Member

// objectMembers takes the object obj apart as decoding it into a map and sorting the keys
// would.
func objectMembers(obj []byte) (members, error) {
	ms, err := jsonscan.ObjectMembers(make(members, 0, 8), obj) // most content objects have a handful of keys
	if err != nil {
		return nil, err
	}
	// Stable, so of equal keys the last in the document stays last and wins. Byte order is
	// the decoded strings' order.
	slices.SortStableFunc(ms, func(a, b jsonscan.Member) int { return bytes.Compare(a.Key, b.Key) })
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(ms[i+1].Key, m.Key) {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// text returns the value of key when it is a JSON string.
func (ms members) text(key string) (string, bool) {
	i := sort.Search(len(ms), func(i int) bool { return string(ms[i].Key) >= key })
	if i == len(ms) || string(ms[i].Key) != key || len(ms[i].Value) == 0 || ms[i].Value[0] != '"' {
		return "", false
	}
	s, err := jsonscan.Unquote(ms[i].Value)
	return s, err == nil
}

func childPath(parent, key string) string {
	if isIdent(key) {
		return parent + "." + key
	}
	return parent + "['" + strings.ReplaceAll(strings.ReplaceAll(key, `\`, `\\`), `'`, `\'`) + "']"
}

// isIdent reports whether key matches [A-Za-z_][A-Za-z0-9_]*, so the dot notation can name it.
func isIdent(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return key != ""
}
