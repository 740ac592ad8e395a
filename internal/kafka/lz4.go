package kafka

import (
	"bytes"
	"sync"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lz4BlockSize is the block size of the LZ4 frames the connector produces: 64 KiB, the block
// size of Kafka's Java producer. franz-go's own lz4 compressor keeps pierrec/lz4's default of
// 4 MiB, so every pooled writer holds a 4 MiB block buffer although a record batch is at most
// ~1 MB, and so does every reader that decompresses such a batch: ~12 MB of a busy enricher's
// live heap were those buffers (BENCHMARKS.md, "Memory draining 1 000 000 events").
const lz4BlockSize = lz4.Block64Kb

// lz4Compressor is the producer's compressor for kafka.compression lz4: standard LZ4 frames
// (any Kafka client reads them) with 64 KiB blocks and the fastest level, franz-go's choice.
type lz4Compressor struct{ writers sync.Pool }

func newLZ4Compressor() *lz4Compressor {
	c := &lz4Compressor{}
	c.writers.New = func() any {
		w := lz4.NewWriter(nil)
		// Both options are valid constants: Apply cannot fail on a new writer.
		_ = w.Apply(lz4.BlockSizeOption(lz4BlockSize), lz4.CompressionLevelOption(lz4.Fast))
		return w
	}
	return c
}

// Compress implements kgo.Compressor. The flags (zstd and similar opt-outs) do not concern lz4.
func (c *lz4Compressor) Compress(dst *bytes.Buffer, src []byte, _ ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	w := c.writers.Get().(*lz4.Writer)
	defer c.writers.Put(w)
	// Reset keeps the options and returns the previous block buffer to lz4's pool.
	w.Reset(dst)
	if _, err := w.Write(src); err != nil {
		return nil, kgo.CodecError
	}
	if err := w.Close(); err != nil {
		return nil, kgo.CodecError
	}
	return dst.Bytes(), kgo.CodecLz4
}
