package privacy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEverySchemaFieldClassified fails when a field of any schema in schemas/*.avsc (nested
// records included, and schemas added later, since the files are globbed) has no "idnow.pii"
// or one outside the vocabulary: a new field is protected by a decision, not by remembering.
func TestEverySchemaFieldClassified(t *testing.T) {
	files, err := filepath.Glob("../../schemas/*.avsc")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas found under ../../schemas: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fields, err := Classification(string(text))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(fields) == 0 {
				t.Fatalf("%s: no fields found", f)
			}
		})
	}
}

// TestClassificationDetects checks the check itself: a missing property and an unknown value
// are reported with their path, nested records and arrays of records included.
func TestClassificationDetects(t *testing.T) {
	text := `{"type":"record","name":"R","fields":[
		{"name":"ok","type":"string","idnow.pii":"none"},
		{"name":"missing","type":"string"},
		{"name":"typo","type":"string","idnow.pii":"identiy"},
		{"name":"notString","type":"string","idnow.pii":true},
		{"name":"items","idnow.pii":"none","type":{"type":"array","items":{"type":"record","name":"In","fields":[
			{"name":"deep","type":"string"},
			{"name":"name","type":"string","idnow.pii":"identity"}]}}},
		{"name":"opt","idnow.pii":"none","type":["null",{"type":"record","name":"Opt","fields":[
			{"name":"inner","type":"long"}]}]}]}`
	fields, err := Classification(text)
	if err == nil {
		t.Fatal("want an error listing the unclassified fields, got none")
	}
	for _, want := range []string{"missing (record R): no", "typo (record R)", "notString (record R)", "items.deep (record In): no", "opt.inner (record Opt): no"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "items.name") || strings.Contains(err.Error(), "ok (") {
		t.Errorf("error names a correctly classified field:\n%v", err)
	}
	got := map[string]Class{}
	for _, f := range fields {
		got[f.Path] = f.Class
	}
	if got["items.name"] != ClassIdentity || got["ok"] != ClassNone {
		t.Fatalf("classes = %v", got)
	}
	if n := strings.Count(err.Error(), "\n  "); n != 5 {
		t.Fatalf("want 5 problems, got %d:\n%v", n, err)
	}
}

// TestPersonalClasses pins which classes the modes act on.
func TestPersonalClasses(t *testing.T) {
	for _, c := range Classes {
		want := c != ClassNone && c != ClassCredential
		if c.Personal() != want {
			t.Errorf("%s.Personal() = %v, want %v", c, c.Personal(), want)
		}
	}
	if Class("secret").Valid() {
		t.Fatal("an unknown class is valid")
	}
}

// TestPrivacyDocListsPersonalFields keeps docs/privacy.md's table honest: every field of
// EnrichedSession classified personal is named there with its class.
func TestPrivacyDocListsPersonalFields(t *testing.T) {
	doc, err := os.ReadFile("../../docs/privacy.md")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile("../../schemas/enriched_session.avsc")
	if err != nil {
		t.Fatal(err)
	}
	fields, err := Classification(string(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if !f.Class.Personal() {
			continue
		}
		leaf := f.Path[strings.LastIndex(f.Path, ".")+1:]
		found := false
		for _, line := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(line, "| `") && strings.Contains(line, leaf) && strings.Contains(line, "| "+string(f.Class)+" |") {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("docs/privacy.md's table has no row naming %s with class %s", f.Path, f.Class)
		}
	}
}
