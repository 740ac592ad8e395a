package kafka

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLZ4CompressorFrames: the producer's lz4 output is a standard LZ4 frame declaring 64 KiB
// blocks, which the reference reader decompresses to the input, for empty, small and
// multi-block batches and for a reused (pooled) writer.
func TestLZ4CompressorFrames(t *testing.T) {
	c := newLZ4Compressor()
	var multi bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&multi, `{"eventId":"%08d","sessionStatus":"COMPLETED"}`, i)
	}
	for _, src := range [][]byte{{}, []byte("one record"), multi.Bytes(), []byte("after a large batch")} {
		var dst bytes.Buffer
		out, codec := c.Compress(&dst, src)
		if codec != kgo.CodecLz4 {
			t.Fatalf("codec %v, want lz4", codec)
		}
		// Frame: magic (4 bytes), FLG, BD; BD bits 4-6 are the block size index, 4 = 64 KiB.
		if len(out) < 6 || out[5]>>4&7 != 4 {
			t.Fatalf("frame descriptor % x does not declare 64 KiB blocks", out[:min(len(out), 6)])
		}
		got, err := io.ReadAll(lz4.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("decompress %d bytes: %v", len(src), err)
		}
		if !bytes.Equal(got, src) {
			t.Fatalf("round trip of %d bytes returned %d different bytes", len(src), len(got))
		}
	}
}

// TestLZ4ProduceConsume: records produced with the connector's options (kafka.compression lz4)
// are read back by a plain franz-go consumer, whose decompressor is the library's own.
func TestLZ4ProduceConsume(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "lz4"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	cfg.Brokers = c.ListenAddrs()
	if cfg.Compression != "lz4" {
		t.Fatalf("default kafka.compression is %q; this test covers lz4", cfg.Compression)
	}
	opts, err := ClientOpts(cfg, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var want []string
	var recs []*kgo.Record
	for i := range 500 {
		v := fmt.Sprintf(`{"n":%d,"pad":"%0200d"}`, i, i)
		want = append(want, v)
		recs = append(recs, &kgo.Record{Topic: "lz4", Value: []byte(v)})
	}
	if err := prod.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("lz4"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var got []string
	for len(got) < len(want) {
		fs := cons.PollFetches(t.Context())
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d read back as %q, want %q", i, got[i], want[i])
		}
	}
}
