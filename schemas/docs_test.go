package schemas

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minDocLen rejects placeholder docs ("id", "TODO"): a doc must say what the field is.
const minDocLen = 12

// undocumented returns one line per field of the schema text (nested records included) that has
// no useful doc: none, too short, or, for a nullable field, not saying when it is null.
func undocumented(text string) ([]string, error) {
	var root any
	if err := json.Unmarshal([]byte(text), &root); err != nil {
		return nil, err
	}
	var out []string
	var walk func(node any, at string)
	walk = func(node any, at string) {
		switch n := node.(type) {
		case []any:
			for _, e := range n {
				walk(e, at)
			}
		case map[string]any:
			if n["type"] == "record" {
				name, _ := n["name"].(string)
				fields, _ := n["fields"].([]any)
				for _, f := range fields {
					fm, _ := f.(map[string]any)
					fname, _ := fm["name"].(string)
					path := name + "." + fname
					doc, _ := fm["doc"].(string)
					switch {
					case strings.TrimSpace(doc) == "":
						out = append(out, path+": no doc")
					case len(doc) < minDocLen:
						out = append(out, fmt.Sprintf("%s: doc %q says too little", path, doc))
					case nullable(fm["type"]) && !mentionsNull(doc):
						out = append(out, fmt.Sprintf("%s: nullable, but the doc does not say when it is null: %q", path, doc))
					}
					walk(fm["type"], path)
				}
				return
			}
			for _, v := range n {
				walk(v, at)
			}
		}
	}
	walk(root, "")
	return out, nil
}

func nullable(t any) bool {
	u, ok := t.([]any)
	if !ok {
		return false
	}
	for _, b := range u {
		if b == "null" {
			return true
		}
	}
	return false
}

// mentionsNull accepts "null" or a condition ("when ..."), e.g. "the original JWT, when
// ingress.keep_signed_token is on".
func mentionsNull(doc string) bool {
	d := strings.ToLower(doc)
	return strings.Contains(d, "null") || strings.Contains(d, "when ")
}

// TestEveryFieldDocumented fails on a field of any schema without a doc: a data engineer reading
// the schema in a registry UI or a catalog must learn what each field is, its unit or format,
// when it is null, and the known values of enum-like strings.
func TestEveryFieldDocumented(t *testing.T) {
	files, err := filepath.Glob("*.avsc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no .avsc files: %v", err)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bad, err := undocumented(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Fatalf("%s: %d field(s) need a doc (what it is, unit or format, when null, known values):\n  %s",
					f, len(bad), strings.Join(bad, "\n  "))
			}
		})
	}
}

// TestUndocumentedDetects checks the doc check itself flags what it should.
func TestUndocumentedDetects(t *testing.T) {
	text := `{"type":"record","name":"R","fields":[
		{"name":"ok","type":"string","doc":"A documented field."},
		{"name":"none","type":"string"},
		{"name":"short","type":"string","doc":"id"},
		{"name":"opt","type":["null","string"],"default":null,"doc":"An optional thing without a condition."},
		{"name":"inner","doc":"A nested record, documented.","type":{"type":"record","name":"In","fields":[
			{"name":"deep","type":"long"}]}}]}`
	bad, err := undocumented(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"R.none: no doc", `R.short: doc "id" says too little`,
		`R.opt: nullable, but the doc does not say when it is null: "An optional thing without a condition."`, "In.deep: no doc"}
	if strings.Join(bad, "|") != strings.Join(want, "|") {
		t.Fatalf("undocumented =\n  %s\nwant\n  %s", strings.Join(bad, "\n  "), strings.Join(want, "\n  "))
	}
}
