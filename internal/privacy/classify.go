package privacy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Class is a field's personal-data classification, the Avro field property "idnow.pii" that
// every field of every schema in schemas/*.avsc carries. The classification drives what
// privacy.mode does with a field: Personal classes are encrypted (encrypt) or removed (drop).
type Class string

// The classification vocabulary. A new value is a change of this list, of docs/privacy.md and
// of the code that applies the modes, never a free-form string in a schema.
const (
	// ClassNone marks a field that holds no personal data (ids of IDnow objects, statuses,
	// timestamps, policy markers). A field holding a record is classified by its own fields.
	ClassNone Class = "none"
	// ClassIdentity marks data that names or describes the person: names, birth date, the
	// session metadata and results, data-block content.
	ClassIdentity Class = "identity"
	// ClassDocument marks identity-document data: number, dates, issuing authority.
	ClassDocument Class = "document"
	// ClassContact marks contact data: e-mail, phone, address.
	ClassContact Class = "contact"
	// ClassBiometric marks biometric data: face images, liveness results, templates.
	ClassBiometric Class = "biometric"
	// ClassPseudonym marks an identifier of the person that is not a name: the subjectId set by
	// the customer, HMAC pseudonyms.
	ClassPseudonym Class = "pseudonym"
	// ClassCredential marks signed tokens and secrets.
	ClassCredential Class = "credential"
)

// PIIProperty is the Avro field property holding the classification.
const PIIProperty = "idnow.pii"

// Classes lists every valid classification.
var Classes = []Class{ClassNone, ClassIdentity, ClassDocument, ClassContact, ClassBiometric, ClassPseudonym, ClassCredential}

// Valid reports whether c is one of Classes.
func (c Class) Valid() bool { return slices.Contains(Classes, c) }

// Personal reports whether privacy.mode encrypt or drop applies to fields of class c: every
// class but none and credential (credentials are handled by their own rule, see
// docs/privacy.md: the signed token is dropped).
func (c Class) Personal() bool {
	switch c {
	case ClassIdentity, ClassDocument, ClassContact, ClassBiometric, ClassPseudonym:
		return true
	}
	return false
}

// Field is one classified field of a schema.
type Field struct {
	// Path is the field's place from the top-level record, e.g.
	// dataBlocks.basicIdentity.givenName (arrays, maps and unions are looked through).
	Path string
	// Record is the full or short name of the record declaring the field.
	Record string
	// Class is the field's classification; empty when the property is missing.
	Class Class
}

// Classification parses an Avro schema's JSON text and returns every field of every record in
// it (nested ones too), in declaration order. The error lists every field whose "idnow.pii" is
// missing or not in Classes, so one run shows everything to fix.
func Classification(schemaText string) ([]Field, error) {
	var root any
	if err := json.Unmarshal([]byte(schemaText), &root); err != nil {
		return nil, fmt.Errorf("schema is not JSON: %w", err)
	}
	var (
		fields []Field
		bad    []string
	)
	var walk func(node any, prefix string)
	walk = func(node any, prefix string) {
		switch n := node.(type) {
		case []any:
			for _, e := range n {
				walk(e, prefix)
			}
		case map[string]any:
			switch n["type"] {
			case "record", "error":
				rec, _ := n["name"].(string)
				fs, _ := n["fields"].([]any)
				for _, f := range fs {
					fm, _ := f.(map[string]any)
					name, _ := fm["name"].(string)
					path := name
					if prefix != "" {
						path = prefix + "." + name
					}
					raw, present := fm[PIIProperty]
					s, isString := raw.(string)
					c := Class(s)
					switch {
					case !present:
						bad = append(bad, fmt.Sprintf("%s (record %s): no %q property; add one of %s", path, rec, PIIProperty, classList()))
					case !isString || !c.Valid():
						bad = append(bad, fmt.Sprintf("%s (record %s): %q is %v, not one of %s", path, rec, PIIProperty, raw, classList()))
					}
					fields = append(fields, Field{Path: path, Record: rec, Class: c})
					walk(fm["type"], path)
				}
			case "array":
				walk(n["items"], prefix)
			case "map":
				walk(n["values"], prefix)
			default:
				// A {"type": {...}} wrapper or a logical type: look inside.
				if t, ok := n["type"].(map[string]any); ok {
					walk(t, prefix)
				}
			}
		}
	}
	walk(root, "")
	if len(bad) > 0 {
		return fields, fmt.Errorf("%d field(s) without a valid classification (docs/privacy.md):\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return fields, nil
}

func classList() string {
	s := make([]string, len(Classes))
	for i, c := range Classes {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}
