package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestBackfillFlags: the window is required and must be RFC 3339; the errors say how to write it.
func TestBackfillFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backfill"}, "--since is required, e.g. --since 2026-11-01T00:00:00Z"},
		{[]string{"backfill", "--since", "2026-11-01"}, "is not RFC 3339"},
		{[]string{"backfill", "--since", "2999-01-01T00:00:00Z"}, "is in the future"},
	} {
		var out, errOut bytes.Buffer
		err := run(t.Context(), tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to contain %q", tc.args, err, tc.want)
		}
	}
}
