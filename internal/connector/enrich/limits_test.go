package enrich

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// bigSessionAPI answers one COMPLETED session with n basicIdentity blocks of about 300 bytes
// of content each, plus one vault file reference per block. The content is random, so that it
// stays large after the producer's compression (brokers measure compressed batches).
func bigSessionAPI(id string, n int) *fakeAPI {
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func() string {
		b := make([]byte, 200)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[rng.IntN(36)]
		}
		return string(b)
	}
	blocks := make([]idnow.DataBlock, n)
	for i := range blocks {
		blocks[i] = idnow.DataBlock{ID: fmt.Sprintf("b%d", i), Type: "basicIdentity", Status: "STORED",
			Content: json.RawMessage(fmt.Sprintf(`{"givenName":"Erika","familyName":"Mustermann","note":%q,"file":{"$ref":"vault","$id":"v%d"}}`,
				noise(), i)),
			FileRefs: []idnow.FileRef{{VaultEntryID: fmt.Sprintf("v%d", i), JSONPath: "$.file"}}}
	}
	return &fakeAPI{
		sessions: map[string]*idnow.Session{id: {SessionID: id, Status: idnow.StatusCompleted, Outcome: "ACCEPTED"}},
		blocks:   map[string][]idnow.DataBlock{id: blocks},
	}
}

// TestFitDegrades: an EnrichedSession over the limit loses its data-block contents first (typed
// fields and file references stay), then its blocks and references, and is marked each time;
// when even metadata does not fit the error classifies as record_too_large, which the DLQ
// middleware turns into a dead-letter record.
func TestFitDegrades(t *testing.T) {
	events, enriched := newCodecs(t)
	value, err := events.Encode(testEvent("ses-big", "COMPLETED"))
	if err != nil {
		t.Fatal(err)
	}
	api := bigSessionAPI("ses-big", 50)
	run := func(limit int) (Result, error) {
		h := NewHandler(HandlerDeps{API: api, Events: events, Enriched: enriched, Topic: "out",
			Policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}, Version: "v",
			MaxRecordBytes: func() int { return limit }})
		return h(t.Context(), &Message{Record: &kgo.Record{Topic: "in", Value: value}})
	}
	full, err := run(0)
	if err != nil {
		t.Fatal(err)
	}
	fullSize := recordSize(full.Records[0])
	// Sizes at each level, measured with limits just below the previous level.
	content, err := run(fullSize - 1)
	if err != nil || content.Truncated != TruncatedContent {
		t.Fatalf("limit %d: truncated %q, err %v; want content", fullSize-1, content.Truncated, err)
	}
	contentSize := recordSize(content.Records[0])
	meta, err := run(contentSize - 1)
	if err != nil || meta.Truncated != TruncatedMetadata {
		t.Fatalf("limit %d: truncated %q, err %v; want metadata", contentSize-1, meta.Truncated, err)
	}
	metaSize := recordSize(meta.Records[0])
	if metaSize >= contentSize || contentSize >= fullSize {
		t.Fatalf("sizes full %d, content dropped %d, metadata only %d: each level must be smaller", fullSize, contentSize, metaSize)
	}

	decode := func(r Result) *schemas.EnrichedSession {
		var es schemas.EnrichedSession
		if err := enriched.Decode(t.Context(), r.Records[0].Value, &es); err != nil {
			t.Fatal(err)
		}
		return &es
	}
	if es := decode(full); es.Enrichment.Truncation != nil || full.Truncated != "" || len(es.DataBlocks) != 50 {
		t.Errorf("unlimited: truncation %v, %d blocks", es.Enrichment.Truncation, len(es.DataBlocks))
	}
	es := decode(content)
	if deref(es.Enrichment.Truncation) != schemas.TruncationContentDropped || len(es.DataBlocks) != 50 || len(es.FileRefs) != 50 {
		t.Errorf("content level: truncation %v, %d blocks, %d file refs", deref(es.Enrichment.Truncation), len(es.DataBlocks), len(es.FileRefs))
	}
	for _, b := range es.DataBlocks {
		if b.Content != nil || b.BasicIdentity == nil || deref(b.BasicIdentity.FamilyName) != "Mustermann" {
			t.Fatalf("content level block %+v: content must be gone, typed fields kept", b)
		}
	}
	es = decode(meta)
	if deref(es.Enrichment.Truncation) != schemas.TruncationMetadataOnly || len(es.DataBlocks) != 0 || len(es.FileRefs) != 0 ||
		!es.DataBlocksFetched || es.Session.SessionID != "ses-big" || deref(es.Session.Outcome) != "accepted" {
		t.Errorf("metadata level: %+v", es)
	}

	_, err = run(metaSize - 1)
	if c := Classify(err); err == nil || c.Class != ClassRecordTooLarge || c.Retryable || !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("limit below metadata only: err %v, class %+v; want permanent record_too_large", err, c)
	}
	// Through the DLQ middleware: a dead-letter record with the class header, no error.
	h := DLQ("dlq", discardLog())(NewHandler(HandlerDeps{API: api, Events: events, Enriched: enriched, Topic: "out",
		Policy: DataBlocksConfig{OnStatus: []string{"COMPLETED"}, Content: ContentFull}, Version: "v", MaxRecordBytes: func() int { return metaSize - 1 }}))
	res, err := h(t.Context(), &Message{Record: &kgo.Record{Topic: "in", Value: value}})
	if err != nil || res.DLQClass != ClassRecordTooLarge || res.Records[0].Topic != "dlq" || kafka.Header(res.Records[0], HeaderDLQErrorClass) != ClassRecordTooLarge {
		t.Fatalf("DLQ result %+v, err %v", res, err)
	}
}

// TestRecordSizeIsAnUpperBound: a record whose recordSize equals the topic's max.message.bytes is
// accepted by the broker (the estimate never admits a record the broker refuses), and one byte
// over a tight limit is refused with MESSAGE_TOO_LARGE, which produceRejection dead-letters.
func TestRecordSizeIsAnUpperBound(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl := newProducer(t, c.ListenAddrs(), kgo.ProducerBatchCompression(kgo.NoCompression()))
	rec := func(n int) *kgo.Record {
		return &kgo.Record{Topic: "t", Key: []byte("session-1"), Value: []byte(strings.Repeat("v", n)),
			Headers: []kgo.RecordHeader{{Key: "idnow.schema", Value: []byte(schemas.EnrichedSessionName)}, {Key: "idnow.event_id", Value: []byte("e-1")}}}
	}
	limit := recordSize(rec(4000))
	adm := kadm.NewClient(cl)
	v := fmt.Sprint(limit)
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &v}}, "t"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(t.Context(), rec(4000)).FirstErr(); err != nil {
		t.Fatalf("a record of exactly the estimated limit was refused: %v", err)
	}
	// The estimate is conservative: find a value the broker refuses and check the class.
	err = cl.ProduceSync(t.Context(), rec(4200)).FirstErr()
	if !errors.Is(err, kerr.MessageTooLarge) || produceRejection(err) != ClassRecordTooLarge {
		t.Fatalf("oversized produce: %v (class %q), want MESSAGE_TOO_LARGE / record_too_large", err, produceRejection(err))
	}
}

func TestProduceRejection(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{kerr.MessageTooLarge, ClassRecordTooLarge},
		{fmt.Errorf("wrapped: %w", kerr.RecordListTooLarge), ClassRecordTooLarge},
		{kerr.InvalidRecord, ClassOutputRejected},
		{kerr.TopicAuthorizationFailed, ""}, // the whole client: retried and blocked, never dead-lettered
		{kerr.CorruptMessage, ClassOutputRejected},
		{kerr.PolicyViolation, ClassOutputRejected},
		{kerr.NotLeaderForPartition, ""},
		{kerr.RequestTimedOut, ""},
		{kerr.ProducerFenced, ""},
		{context.DeadlineExceeded, ""},
		{errors.New("connection reset"), ""},
	}
	for _, tc := range tests {
		if got := produceRejection(tc.err); got != tc.want {
			t.Errorf("produceRejection(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestResolveLimits(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out", "dlq"),
		kfake.BrokerConfigs(map[string]string{"message.max.bytes": "500000"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl := newProducer(t, c.ListenAddrs())
	adm := kadm.NewClient(cl)
	v := "70000"
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &v}}, "out"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		configured       int
		wantOut, wantDLQ int
	}{
		{0, 70000, 500000},       // the topic's override; the broker default the other topic inherits
		{20000, 20000, 20000},    // enrich.max_record_bytes below both
		{100000, 70000, 100000},  // above the topic's: capped
		{1 << 30, 70000, 500000}, // far above: capped to each
	} {
		e := &Enricher{cfg: Config{MaxRecordBytes: tc.configured}, log: discardLog()}
		e.resolveLimits(t.Context(), adm, "out", "dlq")
		if got, gotDLQ := e.limits.get("out"), e.limits.get("dlq"); got != tc.wantOut || gotDLQ != tc.wantDLQ {
			t.Errorf("max_record_bytes %d: limits out %d dlq %d, want %d and %d", tc.configured, got, gotDLQ, tc.wantOut, tc.wantDLQ)
		}
	}
}
