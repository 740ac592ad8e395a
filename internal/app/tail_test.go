package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// tailCluster starts a kfake cluster with a two-partition topic and returns a config pointing
// at it.
func tailCluster(t *testing.T) (Config, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = c.ListenAddrs()
	return cfg, c
}

// produceTx writes records in one committed transaction, as the enricher does, so the topic
// holds commit markers the tail must step over.
func produceTx(t *testing.T, ctx context.Context, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("tail-test"), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
}

func tailKeys(t *testing.T, out *bytes.Buffer) []string {
	t.Helper()
	var keys []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l tailLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		keys = append(keys, l.Key)
	}
	return keys
}

func TestTailUntilEndOnEmptyTopicEndsAtOnce(t *testing.T) {
	cfg, _ := tailCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, opts := range []TailOptions{{Topic: "t", UntilEnd: true}, {Topic: "t", UntilEnd: true, FromBeginning: true}} {
		var out bytes.Buffer
		if err := Tail(ctx, cfg, opts, &out); err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%+v: tail waited for the deadline instead of ending at the (empty) end", opts)
		}
		if out.Len() != 0 {
			t.Fatalf("printed %q from an empty topic", out.String())
		}
	}
}

// TestTailUntilEndStopsAtTheEndAtStart: records written in transactions (with commit markers)
// are all printed, in each partition, and the tail then ends by itself; --key filters.
func TestTailUntilEndAndKey(t *testing.T) {
	cfg, c := tailCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	produceTx(t, ctx, c.ListenAddrs(),
		&kgo.Record{Key: []byte("s-1"), Value: []byte("a"), Partition: 0},
		&kgo.Record{Key: []byte("s-2"), Value: []byte("b"), Partition: 1},
		&kgo.Record{Key: []byte("s-1"), Value: []byte("c"), Partition: 0},
	)
	var out bytes.Buffer
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", FromBeginning: true, UntilEnd: true}, &out); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("tail did not end at the end offsets")
	}
	if got := tailKeys(t, &out); len(got) != 3 {
		t.Fatalf("want the 3 records, got keys %v", got)
	}
	out.Reset()
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", FromBeginning: true, UntilEnd: true, Key: "s-1"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tailKeys(t, &out), ","); got != "s-1,s-1" {
		t.Fatalf("--key s-1: got keys %q", got)
	}
	// Without --from-beginning or --since, --until-end starts at the end: nothing to print.
	out.Reset()
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", UntilEnd: true}, &out); err != nil || out.Len() != 0 {
		t.Fatalf("from the end: err %v, printed %q", err, out.String())
	}
}

func TestTailSince(t *testing.T) {
	cfg, c := tailCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	old := time.Now().Add(-time.Hour)
	produceTx(t, ctx, c.ListenAddrs(),
		&kgo.Record{Key: []byte("old"), Timestamp: old, Partition: 0},
		&kgo.Record{Key: []byte("new"), Timestamp: time.Now(), Partition: 0},
	)
	since, err := ParseSince("10m", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", Since: since, UntilEnd: true}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tailKeys(t, &out), ","); got != "new" {
		t.Fatalf("--since 10m: got keys %q, want new", got)
	}
}

func TestTailFollowsNewRecords(t *testing.T) {
	cfg, c := tailCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	out := &syncBuffer{}
	go func() { done <- Tail(ctx, cfg, TailOptions{Topic: "t", Max: 1}, out) }()
	// The follower starts at the end; keep writing until it has printed one (it may have
	// started after the first write).
	for i := 0; ; i++ {
		produceTx(t, ctx, c.ListenAddrs(), &kgo.Record{Key: []byte("live"), Partition: int32(i % 2)})
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.lines()[0], `"key":"live"`) {
				t.Fatalf("got %q", out.lines())
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("follow printed nothing")
		}
	}
}

func TestTailPrettyAndBadFormat(t *testing.T) {
	cfg, c := tailCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	produceTx(t, ctx, c.ListenAddrs(), &kgo.Record{Key: []byte("k"), Value: []byte("v"), Partition: 0})
	var out bytes.Buffer
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", FromBeginning: true, UntilEnd: true, Format: TailFormatPretty}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "{\n  \"topic\": \"t\",") {
		t.Fatalf("want indented JSON, got %q", out.String())
	}
	if err := Tail(ctx, cfg, TailOptions{Topic: "t", Format: "yaml"}, &out); err == nil || !strings.Contains(err.Error(), `--format "yaml" must be json or pretty`) {
		t.Fatalf("got %v", err)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if got, err := ParseSince("15m", now); err != nil || !got.Equal(now.Add(-15*time.Minute)) {
		t.Errorf("15m: %v %v", got, err)
	}
	if got, err := ParseSince("2026-11-30T10:00:00Z", now); err != nil || !got.Equal(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-5m", "2026-11-30"} {
		if _, err := ParseSince(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
