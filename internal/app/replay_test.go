package app

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
)

// TestReplayDLQ puts dead-letter records on the DLQ the way the enricher does (in a transaction,
// with idnow.dlq.* headers) and replays them: the originals go back to the sessions topic without
// the DLQ headers, filtered by error class when asked, and the replay ends by itself.
func TestReplayDLQ(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "idnow.sessions", "idnow.sessions.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = c.ListenAddrs()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	dead := []struct{ key, class string }{{"s-1", enrich.ClassSessionNotFound}, {"s-2", enrich.ClassUndecodable}, {"s-3", enrich.ClassSessionNotFound}}
	pr, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("test-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	if err := pr.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dead {
		pr.Produce(ctx, &kgo.Record{Topic: cfg.Topics.DLQ, Key: []byte(d.key), Value: []byte("original-" + d.key), Headers: []kgo.RecordHeader{
			{Key: "idnow.event_id", Value: []byte("e-" + d.key)},
			{Key: enrich.HeaderDLQErrorClass, Value: []byte(d.class)},
			{Key: enrich.HeaderDLQError, Value: []byte("GET session: 404")},
		}}, nil)
	}
	if err := pr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pr.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	res, err := ReplayDLQ(ctx, cfg, ReplayOptions{Class: enrich.ClassSessionNotFound, DryRun: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Read != 3 || res.Replayed != 2 || res.Skipped != 1 {
		t.Fatalf("dry run: %+v, want 3 read, 2 replayed, 1 skipped", res)
	}
	if got := readTopicValues(t, c.ListenAddrs(), cfg.Topics.Sessions, 0); len(got) != 0 {
		t.Fatalf("a dry run produced %v", got)
	}

	var progressOut bytes.Buffer
	res, err = ReplayDLQ(ctx, cfg, ReplayOptions{Class: enrich.ClassSessionNotFound, Progress: &progressOut}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed != 2 {
		t.Fatalf("replay: %+v, want 2 replayed", res)
	}
	// Not a terminal: plain progress lines, the last one with the whole topic read (the
	// transaction markers count as offsets read too) and what was done.
	plines := strings.Split(strings.TrimSpace(progressOut.String()), "\n")
	last := plines[len(plines)-1]
	var done, total int
	var rest string
	if _, err := fmt.Sscanf(last, "dlq-replay: %d/%d offsets (100%%), %s", &done, &total, &rest); err != nil || done != total || total < 3 ||
		!strings.Contains(last, "replayed 2, skipped 1") {
		t.Fatalf("last progress line %q (parse: %v), want the whole topic read with replayed 2, skipped 1", last, err)
	}
	if strings.Contains(progressOut.String(), "\r") {
		t.Fatalf("a bar written into a non-terminal: %q", progressOut.String())
	}
	got := readTopicValues(t, c.ListenAddrs(), cfg.Topics.Sessions, 2)
	if strings.Join(got, ",") != "original-s-1|idnow.event_id,original-s-3|idnow.event_id" && strings.Join(got, ",") != "original-s-3|idnow.event_id,original-s-1|idnow.event_id" {
		t.Fatalf("sessions topic after replay: %v", got)
	}
	if !strings.Contains(out.String(), "class="+enrich.ClassSessionNotFound) {
		t.Fatalf("replay did not report what it replayed:\n%s", out.String())
	}
}

// readTopicValues returns "value|header keys" of want records of topic (0: expects none).
func readTopicValues(t *testing.T, brokers []string, topic string, want int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	wait := 10 * time.Second
	if want == 0 {
		wait = time.Second
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for len(out) < want || want == 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachRecord(func(r *kgo.Record) {
			var keys []string
			for _, h := range r.Headers {
				keys = append(keys, h.Key)
			}
			out = append(out, string(r.Value)+"|"+strings.Join(keys, ";"))
		})
	}
	return out
}

func TestTailMissingTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "idnow.sessions"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := DefaultConfig()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = Tail(ctx, cfg, TailOptions{Topic: "idnow.sesions", Brokers: c.ListenAddrs()}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `"idnow.sesions" does not exist`) || !strings.Contains(err.Error(), "idnow.sessions") {
		t.Fatalf("want an error naming the missing topic and the existing ones, got %v", err)
	}
}
