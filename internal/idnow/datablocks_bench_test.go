package idnow

import (
	"os"
	"testing"
)

// BenchmarkParseDataBlocks measures decoding a completed session's data blocks in the newer
// shape, the enricher's most expensive JSON work per completed session.
func BenchmarkParseDataBlocks(b *testing.B) {
	body, err := os.ReadFile("../connector/enrich/testdata/api/new/datablocks.json")
	if err != nil {
		b.Skip("fixture not found:", err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parseDataBlocks(body); err != nil {
			b.Fatal(err)
		}
	}
}
