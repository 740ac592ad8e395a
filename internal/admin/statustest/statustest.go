// Package statustest holds what tests of the status page share: checking a number shown on the
// HTML page against the same value in the /status JSON document.
package statustest

import (
	"fmt"
	"strconv"
	"strings"
)

// Match reports whether text, shown on the status page under data-key path (dot-separated,
// numeric parts index lists), is the value at path in doc, the decoded /status document. Numbers
// match to three decimals, booleans as yes/no, ready/not ready or true/false, lists as their
// elements joined by ", ".
func Match(doc any, path, text string) error {
	v := doc
	for _, part := range strings.Split(path, ".") {
		switch c := v.(type) {
		case map[string]any:
			v = c[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i >= len(c) {
				return fmt.Errorf("no element %q in the JSON", part)
			}
			v = c[i]
		default:
			return fmt.Errorf("the JSON has no %s", path)
		}
	}
	switch want := v.(type) {
	case float64:
		got, err := strconv.ParseFloat(text, 64)
		if err != nil || got-want > 0.0005 || want-got > 0.0005 {
			return fmt.Errorf("page shows %q, JSON has %v", text, want)
		}
	case bool:
		got := text == "yes" || text == "ready" || text == "true"
		if got != want || (!got && text != "no" && text != "not ready" && text != "false") {
			return fmt.Errorf("page shows %q, JSON has %v", text, want)
		}
	case string:
		if text != want {
			return fmt.Errorf("page shows %q, JSON has %q", text, want)
		}
	case []any:
		parts := make([]string, len(want))
		for i, p := range want {
			parts[i] = fmt.Sprint(p)
		}
		if j := strings.Join(parts, ", "); text != j {
			return fmt.Errorf("page shows %q, JSON has %q", text, j)
		}
	default:
		return fmt.Errorf("the JSON has no value at %s (page shows %q)", path, text)
	}
	return nil
}
