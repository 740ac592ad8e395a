package schemas

import (
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/avro"
)

// The released versions of every schema, history/<file>/v<N>.avsc, where <file> is the schema's
// file name without .avsc (session_event, enriched_session). They are embedded so that a decoder
// can read any record a released connector ever wrote: in single-object encoding a record names
// its writer schema only by fingerprint, and the writer schema has to be known to resolve it.
//
//go:embed history
var historyFS embed.FS

// Version is one released version of a record schema.
type Version struct {
	Number int          // N of history/<file>/vN.avsc, from 1
	Path   string       // the file inside this package, e.g. history/enriched_session/v2.avsc
	Text   string       // the schema exactly as released
	Avro   *avro.Schema // parsed Text
	// Fingerprint is the CRC-64-AVRO fingerprint of the parsing canonical form, the 8 bytes
	// (little-endian) a single-object record written with this version carries after 0xC3 0x01.
	Fingerprint [8]byte
}

// Name returns "v<N>", the version's name in errors and logs.
func (v Version) Name() string { return "v" + strconv.Itoa(v.Number) }

// Fingerprint returns the CRC-64-AVRO fingerprint of s's parsing canonical form, little-endian, as
// the Avro specification prescribes for single-object encoding.
func Fingerprint(s *avro.Schema) [8]byte {
	h := avro.NewRabin()
	h.Write(s.Canonical())
	var fp [8]byte
	binary.LittleEndian.PutUint64(fp[:], h.Sum64())
	return fp
}

// history maps a record's full name to its released versions, oldest first.
var history = mustLoadHistory(historyFS)

// mustLoadHistory parses every history file; a malformed history is a build defect that every
// test run catches.
func mustLoadHistory(fsys fs.FS) map[string][]Version {
	h, err := loadHistory(fsys)
	if err != nil {
		panic(fmt.Sprintf("schemas: embedded schema history: %v", err))
	}
	return h
}

func loadHistory(fsys fs.FS) (map[string][]Version, error) {
	dirs, err := fs.ReadDir(fsys, "history")
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	out := map[string][]Version{}
	for _, d := range dirs {
		if !d.IsDir() {
			return nil, fmt.Errorf("history/%s: want only one folder per schema, history/<file>/v<N>.avsc", d.Name())
		}
		dir := path.Join("history", d.Name())
		files, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", dir, err)
		}
		var versions []Version
		fullName := ""
		for _, f := range files {
			p := path.Join(dir, f.Name())
			n, ok := versionNumber(f.Name())
			if !ok {
				return nil, fmt.Errorf("%s: history files are named v<N>.avsc, N from 1", p)
			}
			text, err := fs.ReadFile(fsys, p)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", p, err)
			}
			s, err := avro.Parse(string(text))
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", p, err)
			}
			name, err := recordFullName(string(text))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if fullName != "" && name != fullName {
				// A rename is a new record type, released as a new topic (docs/data-contract.md).
				return nil, fmt.Errorf("%s names record %s, but the other versions in %s name %s", p, name, dir, fullName)
			}
			fullName = name
			versions = append(versions, Version{Number: n, Path: p, Text: string(text), Avro: s, Fingerprint: Fingerprint(s)})
		}
		slices.SortFunc(versions, func(a, b Version) int { return a.Number - b.Number })
		for i, v := range versions {
			if v.Number != i+1 {
				return nil, fmt.Errorf("%s: versions must run v1, v2, ... without gaps; found %s where v%d was expected", dir, v.Name(), i+1)
			}
		}
		if len(versions) == 0 {
			return nil, fmt.Errorf("%s holds no versions", dir)
		}
		if _, dup := out[fullName]; dup {
			return nil, fmt.Errorf("two history folders hold record %s", fullName)
		}
		out[fullName] = versions
	}
	return out, nil
}

// versionNumber parses "v<N>.avsc".
func versionNumber(file string) (int, bool) {
	num, ok := strings.CutSuffix(strings.TrimPrefix(file, "v"), ".avsc")
	if !ok || !strings.HasPrefix(file, "v") {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strconv.Itoa(n) != num {
		return 0, false
	}
	return n, true
}

// recordFullName returns namespace.name of a top-level record schema.
func recordFullName(text string) (string, error) {
	var top struct {
		Type      string `json:"type"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	if top.Type != "record" || top.Name == "" {
		return "", errors.New("the top-level type must be a named record")
	}
	if strings.Contains(top.Name, ".") || top.Namespace == "" {
		return top.Name, nil
	}
	return top.Namespace + "." + top.Name, nil
}

// CheckFull reports whether s is FULL-compatible with every version in its history: records
// written with any released version decode with s (backward), and records written with s decode
// with any released version (forward). That is what lets producers and consumers upgrade in any
// order. The error names the version, the direction and the offending field.
func CheckFull(s Schema) error {
	var errs []error
	for _, v := range s.History {
		if err := avro.CheckCompatibility(v.Avro, s.Avro); err != nil {
			errs = append(errs, fmt.Errorf("%s: backward: the current schema cannot read records written with %s (%s): %w", s.FullName, v.Name(), v.Path, err))
		}
		if err := avro.CheckCompatibility(s.Avro, v.Avro); err != nil {
			errs = append(errs, fmt.Errorf("%s: forward: a %s reader (%s) cannot read records written with the current schema: %w", s.FullName, v.Name(), v.Path, err))
		}
	}
	return errors.Join(errs...)
}

// NewSchema parses a record schema together with its released versions (oldest first, as JSON
// texts). The connector's own schemas come from SessionEventSchema and EnrichedSessionSchema;
// NewSchema exists for tools and tests that read with another version of the contract.
func NewSchema(text string, released ...string) (Schema, error) {
	fullName, err := recordFullName(text)
	if err != nil {
		return Schema{}, err
	}
	s, err := avro.Parse(text)
	if err != nil {
		return Schema{}, fmt.Errorf("parse %s: %w", fullName, err)
	}
	out := Schema{Avro: s, Text: text, FullName: fullName}
	for i, r := range released {
		vs, err := avro.Parse(r)
		if err != nil {
			return Schema{}, fmt.Errorf("parse released version v%d of %s: %w", i+1, fullName, err)
		}
		out.History = append(out.History, Version{
			Number: i + 1, Path: fmt.Sprintf("v%d", i+1), Text: r, Avro: vs, Fingerprint: Fingerprint(vs),
		})
	}
	return out, nil
}
