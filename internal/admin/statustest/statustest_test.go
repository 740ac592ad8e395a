package statustest

import "testing"

func TestMatch(t *testing.T) {
	doc := map[string]any{
		"ready": true,
		"lag":   float64(12),
		"roles": []any{map[string]any{"name": "ingress", "checks": []any{"kafka", "jwks"}}},
	}
	for _, tc := range []struct {
		path, text string
		ok         bool
	}{
		{"ready", "yes", true},
		{"ready", "no", false},
		{"lag", "12", true},
		{"lag", "13", false},
		{"roles.0.name", "ingress", true},
		{"roles.0.checks", "kafka, jwks", true},
		{"roles.1.name", "ingress", false},
		{"missing", "x", false},
	} {
		if err := Match(doc, tc.path, tc.text); (err == nil) != tc.ok {
			t.Errorf("Match(%s, %q) = %v, want ok %v", tc.path, tc.text, err, tc.ok)
		}
	}
}
