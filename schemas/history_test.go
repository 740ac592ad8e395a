package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/avro"
)

// currentSchemas parses every top-level .avsc file with the history embedded for its record, so
// a schema added later is held to the same rules without touching this test.
func currentSchemas(t *testing.T) map[string]Schema {
	t.Helper()
	files, err := filepath.Glob("*.avsc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no .avsc files in schemas/: %v", err)
	}
	out := map[string]Schema{}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSchema(string(text))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		s.History = history[s.FullName]
		out[strings.TrimSuffix(f, ".avsc")] = s
	}
	return out
}

// TestHistoryCoversEverySchema fails when a schema changes without a new history entry: the
// latest released version must have the same wire contract as the current file (everything but
// docs equal), or records written by this code would carry a fingerprint no released reader
// knows, and the FULL check below would not cover the change.
func TestHistoryCoversEverySchema(t *testing.T) {
	for file, s := range currentSchemas(t) {
		t.Run(file, func(t *testing.T) {
			dir := path.Join("history", file)
			if len(s.History) == 0 {
				t.Fatalf("%s.avsc (%s) has no released version: copy it to schemas/%s/v1.avsc (docs/data-contract.md)", file, s.FullName, dir)
			}
			latest := s.History[len(s.History)-1]
			if latest.Path != path.Join(dir, latest.Name()+".avsc") {
				t.Fatalf("the history of %s is in %s, want it in %s (named after the .avsc file)", s.FullName, path.Dir(latest.Path), dir)
			}
			if diff := wireDiff(t, latest.Text, s.Text); diff != "" {
				t.Fatalf("%s.avsc differs from its latest released version %s in more than docs (%s).\n"+
					"If %s was never released, update it; otherwise copy %s.avsc to schemas/%s/v%d.avsc. "+
					"Either way the change must stay FULL-compatible (docs/data-contract.md).",
					file, latest.Path, diff, latest.Path, file, dir, latest.Number+1)
			}
			if Fingerprint(s.Avro) != latest.Fingerprint {
				t.Fatalf("%s.avsc and %s have equal JSON but different fingerprints", file, latest.Path)
			}
		})
	}
}

// TestEmbeddedSchemasCarryHistory checks the schemas the codecs use know their released versions.
func TestEmbeddedSchemasCarryHistory(t *testing.T) {
	for _, s := range []Schema{SessionEventSchema(), EnrichedSessionSchema(), CreateSessionCommandSchema(), CommandReplySchema(), CommandStateSchema()} {
		if len(s.History) == 0 {
			t.Fatalf("%s has no embedded history", s.FullName)
		}
		if got, want := s.History[len(s.History)-1].Fingerprint, Fingerprint(s.Avro); got != want {
			t.Fatalf("%s: latest history fingerprint %x, current %x", s.FullName, got, want)
		}
	}
	// EnrichedSession v1 is the schema of the first release (commit ae819cb); v2 added
	// enrichment.truncation. Both must stay readable.
	if n := len(EnrichedSessionSchema().History); n < 2 {
		t.Fatalf("EnrichedSession history has %d versions, want at least v1 and v2", n)
	}
}

// TestFullCompatible checks each current schema is FULL-compatible with every released version:
// the Go side of the check `make interop` repeats with Apache Avro for Java.
func TestFullCompatible(t *testing.T) {
	for file, s := range currentSchemas(t) {
		t.Run(file, func(t *testing.T) {
			if err := CheckFull(s); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckFull upgrades a schema to a v2 and checks the verdicts: a field added with a default
// and a changed doc pass; a removed field without a default, or a field added without one, fail
// naming the field.
func TestCheckFull(t *testing.T) {
	v1 := `{"type":"record","name":"R","namespace":"io.idnow.test","doc":"one","fields":[
		{"name":"id","type":"string"},
		{"name":"status","type":"string","doc":"old doc"},
		{"name":"note","type":["null","string"],"default":null}]}`
	tests := []struct {
		name    string
		v2      string
		wantErr []string // substrings; nil = compatible
	}{
		{"field added with default, doc changed", `{"type":"record","name":"R","namespace":"io.idnow.test","doc":"two","fields":[
			{"name":"id","type":"string"},
			{"name":"status","type":"string","doc":"new doc"},
			{"name":"note","type":["null","string"],"default":null},
			{"name":"origin","type":"string","default":"webhook"}]}`, nil},
		{"required field removed", `{"type":"record","name":"R","namespace":"io.idnow.test","fields":[
			{"name":"id","type":"string"},
			{"name":"note","type":["null","string"],"default":null}]}`, []string{"forward", "status"}},
		{"field added without default", `{"type":"record","name":"R","namespace":"io.idnow.test","fields":[
			{"name":"id","type":"string"},
			{"name":"status","type":"string"},
			{"name":"note","type":["null","string"],"default":null},
			{"name":"origin","type":"string"}]}`, []string{"backward", "origin"}},
		{"type narrowed", `{"type":"record","name":"R","namespace":"io.idnow.test","fields":[
			{"name":"id","type":"string"},
			{"name":"status","type":"int"},
			{"name":"note","type":["null","string"],"default":null}]}`, []string{"status"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSchema(tc.v2, v1)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckFull(s)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("want compatible, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an incompatibility, got none")
			}
			var ce *avro.CompatibilityError
			if !errors.As(err, &ce) {
				t.Fatalf("want a *avro.CompatibilityError inside, got %T: %v", err, err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error does not name %q: %v", w, err)
				}
			}
		})
	}
}

// TestLoadHistoryRejectsGaps checks a history with a missing version fails to load.
func TestLoadHistoryRejectsGaps(t *testing.T) {
	dir := t.TempDir()
	rec := `{"type":"record","name":"R","namespace":"n","fields":[]}`
	if err := os.MkdirAll(filepath.Join(dir, "history", "r"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"v1.avsc", "v3.avsc"} {
		if err := os.WriteFile(filepath.Join(dir, "history", "r", f), []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := loadHistory(os.DirFS(dir)); err == nil || !strings.Contains(err.Error(), "v2") {
		t.Fatalf("want an error naming the missing v2, got %v", err)
	}
}

// wireDiff returns "" when two schema texts are equal except for "doc" attributes and the
// "idnow.pii" classification (metadata for readers and internal/privacy, outside the Avro
// parsing canonical form, so no new version is needed for either), else the JSON path of the
// first difference.
func wireDiff(t *testing.T, a, b string) string {
	t.Helper()
	var x, y any
	if err := json.Unmarshal([]byte(a), &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(b), &y); err != nil {
		t.Fatal(err)
	}
	return firstDiff("$", stripDocs(x), stripDocs(y))
}

func stripDocs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if k != "doc" && k != "idnow.pii" {
				out[k] = stripDocs(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = stripDocs(e)
		}
		return out
	default:
		return v
	}
}

func firstDiff(at string, x, y any) string {
	switch x := x.(type) {
	case map[string]any:
		ym, ok := y.(map[string]any)
		if !ok {
			return at
		}
		keys := make([]string, 0, len(x)+len(ym))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range ym {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			sub := at + "." + k
			if n, ok := x["name"].(string); ok {
				sub = fmt.Sprintf("%s[%s].%s", at, n, k)
			}
			if d := firstDiff(sub, x[k], ym[k]); d != "" {
				return d
			}
		}
		return ""
	case []any:
		ya, ok := y.([]any)
		if !ok {
			return at
		}
		// Record fields: name the field that was added or removed rather than an index.
		xn, yn := fieldNames(x), fieldNames(ya)
		if xn != nil && yn != nil {
			for _, n := range yn {
				if !slices.Contains(xn, n) {
					return fmt.Sprintf("%s: field %s added", at, n)
				}
			}
			for _, n := range xn {
				if !slices.Contains(yn, n) {
					return fmt.Sprintf("%s: field %s removed", at, n)
				}
			}
		}
		for i := range max(len(x), len(ya)) {
			if i >= len(x) || i >= len(ya) {
				return fmt.Sprintf("%s[%d] added or removed", at, i)
			}
			if d := firstDiff(fmt.Sprintf("%s[%d]", at, i), x[i], ya[i]); d != "" {
				return d
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(x, y) {
			return at
		}
		return ""
	}
}

// fieldNames returns the "name" of each element when every element is an object with one (a
// record's fields), else nil.
func fieldNames(a []any) []string {
	names := make([]string, 0, len(a))
	for _, e := range a {
		m, ok := e.(map[string]any)
		if !ok {
			return nil
		}
		n, ok := m["name"].(string)
		if !ok {
			return nil
		}
		names = append(names, n)
	}
	return names
}
