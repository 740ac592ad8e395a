//go:build integration

package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

const (
	// pipelinePartitions is topics.partitions for every pipeline test: more than one, so
	// ordering per key and transactions across partitions are exercised.
	pipelinePartitions = 3

	// sentinelKey marks the records readCommitted writes to know it has read everything.
	sentinelKey = "__itest_sentinel__"
)

// pipeline is one test's set of topics, consumer group and transactional id, all unique, and
// the configuration its children share.
type pipeline struct {
	t        testing.TB
	seeds    []string
	sessions string
	enriched string
	dlq      string
	group    string
	txnID    string
}

// newPipeline picks unique names for a test and deletes the topics and the group when the test
// ends (the make kafka-up broker keeps its data). The connector itself creates the topics: that
// is part of what the suite tests.
func newPipeline(t testing.TB, seeds []string) *pipeline {
	t.Helper()
	p := &pipeline{
		t: t, seeds: seeds,
		sessions: uniqueName(t, "sessions"),
		enriched: uniqueName(t, "enriched"),
		dlq:      uniqueName(t, "dlq"),
		group:    uniqueName(t, "group"),
		txnID:    uniqueName(t, "txn"),
	}
	adm := newAdmin(t, seeds)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Registered before the children (cleanups run last-registered first), so their
		// logs are printed before this and the state is read before the topics go.
		if t.Failed() {
			p.dumpState(ctx, adm)
		}
		if _, err := adm.DeleteGroups(ctx, p.group); err != nil {
			t.Logf("delete group %s: %v", p.group, err)
		}
		if _, err := adm.DeleteTopics(ctx, p.sessions, p.enriched, p.dlq); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	return p
}

// base is the configuration every child of the pipeline gets.
func (p *pipeline) base() settings {
	return settings{
		"kafka.brokers":     strings.Join(p.seeds, ","),
		"topics.sessions":   p.sessions,
		"topics.enriched":   p.enriched,
		"topics.dlq":        p.dlq,
		"topics.partitions": strconv.Itoa(pipelinePartitions),
		"admin.listen":      freeAddr(p.t),
		"log.level":         "info",
	}
}

// ingressSettings configures an ingress that verifies webhooks against jwksURL with issuer and
// the webhook URL (on a fresh port) as audience. It returns the settings and the webhook URL.
func (p *pipeline) ingressSettings(jwksURL, issuer string) (settings, string) {
	addr := freeAddr(p.t)
	url := "http://" + addr + "/webhooks/idnow"
	return p.base().with(settings{
		"ingress.listen":           addr,
		"webhook.jwks_url":         jwksURL,
		"webhook.issuer":           issuer,
		"webhook.audience":         url,
		"ingress.shutdown_timeout": "5s",
		"ingress.produce_timeout":  "3s",
		"ingress.retry_after":      "1s",
	}).with(settings{
		// The test JWKS (simulator or webhooktest) is served over plain http; the app copies this
		// into the verifier's webhook.Config.AllowInsecureHTTP.
		"idnow.allow_insecure_http": "true",
	}), url
}

// startSimIngress starts an ingress that verifies the simulator's webhook tokens, with extra
// settings on top, and points the simulator's webhooks at it.
func (p *pipeline) startSimIngress(t testing.TB, sim *idnowsim.Simulator, extra settings) *child {
	t.Helper()
	icfg, url := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	ingress := startChild(t, "ingress", "ingress", icfg.with(extra))
	if err := sim.SetWebhookURL(url); err != nil {
		t.Fatalf("point the simulator's webhooks at the ingress: %v", err)
	}
	return ingress
}

// enricherSettings configures an enricher against the simulator's API with instance id
// instance. The session timeout is the broker's minimum (6 s), so a killed member's partitions
// move on quickly.
func (p *pipeline) enricherSettings(sim *idnowsim.Simulator, instance string) settings {
	sc := sim.Config()
	return p.base().with(settings{
		"idnow.api_url":                sim.APIURL(),
		"idnow.token_url":              sim.TokenURL(),
		"idnow.client_id":              sc.ClientID,
		"idnow.client_secret":          sc.ClientSecret,
		"idnow.environment":            sc.Environment,
		"idnow.allow_insecure_http":    "true", // the simulator serves plain http
		"idnow.rate_limit":             "0",
		"idnow.retry.initial_backoff":  "20ms",
		"idnow.retry.max_backoff":      "500ms",
		"enrich.group":                 p.group,
		"enrich.transactional_id":      p.txnID,
		"enrich.instance_id":           instance,
		"enrich.concurrency":           "8",
		"enrich.max_poll_records":      "50",
		"enrich.session_timeout":       "6s",
		"enrich.transaction_timeout":   "20s",
		"enrich.shutdown_timeout":      "15s",
		"enrich.retry.initial_backoff": "100ms",
		"enrich.retry.max_backoff":     "2s",
	})
}

// checkTopicsCreated checks the connector created the three topics with topics.partitions. A
// topic the enricher created a moment ago can be missing from a broker's metadata answer until
// the controller's update reaches it, so the check asks again until opTimeout.
func (p *pipeline) checkTopicsCreated() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	adm := newAdmin(p.t, p.seeds)
	for {
		details, err := adm.ListTopics(ctx, p.sessions, p.enriched, p.dlq)
		var problems []string
		if err != nil {
			problems = append(problems, fmt.Sprintf("list topics: %v", err))
		}
		for _, topic := range []string{p.sessions, p.enriched, p.dlq} {
			d, ok := details[topic]
			switch {
			case err != nil:
			case !ok || d.Err != nil:
				problems = append(problems, fmt.Sprintf("topic %s was not created by the connector (err %v)", topic, d.Err))
			case len(d.Partitions) != pipelinePartitions:
				problems = append(problems, fmt.Sprintf("topic %s has %d partitions, want topics.partitions = %d", topic, len(d.Partitions), pipelinePartitions))
			}
		}
		if len(problems) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			for _, pr := range problems {
				p.t.Error(pr)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dumpState logs, per partition, what the broker holds for this pipeline when a test failed:
// the end offset (high watermark) and last stable offset of every topic, the group's committed
// offset on the sessions topic, and the open transactions on them, so a failing run says
// whether the enricher was behind, blocked on an open transaction, or done.
func (p *pipeline) dumpState(ctx context.Context, adm *kadm.Client) {
	var b strings.Builder
	committed, cerr := adm.FetchOffsets(ctx, p.group)
	fmt.Fprintf(&b, "broker state of the failed test (group %s):\n", p.group)
	for _, topic := range []string{p.sessions, p.enriched, p.dlq} {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		stable, serr := adm.ListCommittedOffsets(ctx, topic)
		if err != nil || serr != nil {
			fmt.Fprintf(&b, "  %s: end offsets: %v; last stable offsets: %v\n", topic, err, serr)
			continue
		}
		for part := range int32(pipelinePartitions) {
			e, _ := ends.Lookup(topic, part)
			l, _ := stable.Lookup(topic, part)
			fmt.Fprintf(&b, "  %s[%d]: end %d, last stable %d", topic, part, e.Offset, l.Offset)
			if topic == p.sessions {
				switch c, ok := committed.Lookup(topic, part); {
				case cerr != nil:
					fmt.Fprintf(&b, ", group offset: %v", cerr)
				case !ok:
					b.WriteString(", group offset: none")
				case c.Err != nil:
					fmt.Fprintf(&b, ", group offset: %v", c.Err)
				default:
					fmt.Fprintf(&b, ", group offset %d (lag %d)", c.At, e.Offset-c.At)
				}
			}
			b.WriteByte('\n')
		}
	}
	set := kadm.TopicsSet{}
	for _, topic := range []string{p.sessions, p.enriched, p.dlq} {
		for part := range int32(pipelinePartitions) {
			set.Add(topic, part)
		}
	}
	prods, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		fmt.Fprintf(&b, "  describe producers: %v\n", err)
	}
	prods.EachProducer(func(dp kadm.DescribedProducer) {
		if dp.CurrentTxnStartOffset >= 0 {
			fmt.Fprintf(&b, "  open transaction on %s[%d]: producer %d epoch %d from offset %d, last write %s\n",
				dp.Topic, dp.Partition, dp.ProducerID, dp.ProducerEpoch, dp.CurrentTxnStartOffset,
				time.UnixMilli(dp.LastTimestamp).UTC().Format(time.RFC3339Nano))
		}
	})
	p.t.Log(b.String())
}

// progress returns how many records of the sessions topic the group has committed, and how
// many there are.
func (p *pipeline) progress(ctx context.Context, adm *kadm.Client) (done, total int64, err error) {
	ends, err := adm.ListEndOffsets(ctx, p.sessions)
	if err != nil {
		return 0, 0, fmt.Errorf("list end offsets of %s: %w", p.sessions, err)
	}
	if err := ends.Error(); err != nil {
		return 0, 0, fmt.Errorf("list end offsets of %s: %w", p.sessions, err)
	}
	committed, err := adm.FetchOffsets(ctx, p.group)
	if err != nil {
		return 0, 0, fmt.Errorf("fetch offsets of group %s: %w", p.group, err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil {
			done += min(c.At, o.Offset)
		}
	})
	return done, total, nil
}

// waitConsumed waits until the group has committed at least fraction of the sessions topic
// (and, for fraction 1, that there is something to consume), failing after timeout.
func (p *pipeline) waitConsumed(fraction float64, timeout time.Duration) {
	p.t.Helper()
	adm := newAdmin(p.t, p.seeds)
	began := time.Now()
	last := "nothing read yet"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done, total, err := p.progress(ctx, adm)
		cancel()
		if err == nil {
			last = fmt.Sprintf("%d of %d events committed", done, total)
			if total > 0 && float64(done) >= fraction*float64(total) {
				p.t.Logf("group consumed %.0f%% of %s after %s: %s", fraction*100, p.sessions, time.Since(began).Round(time.Millisecond), last)
				return
			}
		} else {
			last = err.Error()
		}
		if time.Since(began) > timeout {
			p.t.Fatalf("group %s did not consume %.0f%% of %s within %s: %s", p.group, fraction*100, p.sessions, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readAll returns every record of a non-transactional topic present when it is called: it
// takes the end offsets and reads until it has reached them on every partition.
func (p *pipeline) readAll(topic string) []*kgo.Record {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	ends, err := newAdmin(p.t, p.seeds).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		p.t.Fatalf("list end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl := newClient(p.t, p.seeds, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	var out []*kgo.Record
	reached := func() bool {
		for _, end := range want {
			if end > 0 {
				return false
			}
		}
		return true
	}
	for !reached() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			p.t.Fatalf("read %s: %d records after %s, end offsets %v not reached", topic, len(out), opTimeout, want)
		}
		fs.EachError(func(topic string, part int32, err error) { p.t.Errorf("read %s[%d]: %v", topic, part, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || end == 0 {
				return
			}
			out = append(out, r)
			if r.Offset >= end-1 {
				want[r.Partition] = 0
			}
		})
	}
	return out
}

// readCommitted returns every record a read_committed consumer sees on topic: it writes a
// non-transactional sentinel to each partition and reads until it has seen them all, so
// everything committed before is known to be read without waiting on a quiet period.
func (p *pipeline) readCommitted(topic string) []*kgo.Record {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	w := newClient(p.t, p.seeds, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()))
	for i := range int32(pipelinePartitions) {
		if err := w.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: i, Key: []byte(sentinelKey)}).FirstErr(); err != nil {
			p.t.Fatalf("write sentinel to %s[%d]: %v", topic, i, err)
		}
	}
	cl := newClient(p.t, p.seeds, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	seen := map[int32]bool{}
	var out []*kgo.Record
	for len(seen) < pipelinePartitions {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			p.t.Fatalf("read_committed reader of %s saw the sentinels of %d of %d partitions within %s (%d records)",
				topic, len(seen), pipelinePartitions, opTimeout, len(out))
		}
		fs.EachError(func(topic string, part int32, err error) { p.t.Errorf("read %s[%d]: %v", topic, part, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == sentinelKey {
				seen[r.Partition] = true
				return
			}
			out = append(out, r)
		})
	}
	return out
}

// codecs returns decoders for both record types, without a schema registry (single-object
// encoding, what the children use with schema_registry.url empty).
func codecs(t testing.TB) (events, enriched *serde.Codec) {
	t.Helper()
	var err error
	if events, err = serde.NewCodec(context.Background(), serde.CodecConfig{Schema: schemas.SessionEventSchema()}, nil); err != nil {
		t.Fatalf("SessionEvent codec: %v", err)
	}
	if enriched, err = serde.NewCodec(context.Background(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil); err != nil {
		t.Fatalf("EnrichedSession codec: %v", err)
	}
	return events, enriched
}

// decodeEvents decodes SessionEvent records, checking key and headers, and counts them by
// event id.
func decodeEvents(t testing.TB, recs []*kgo.Record) (events []*schemas.SessionEvent, byID map[string]int) {
	t.Helper()
	codec, _ := codecs(t)
	byID = map[string]int{}
	for _, r := range recs {
		var ev schemas.SessionEvent
		if err := codec.Decode(context.Background(), r.Value, &ev); err != nil {
			t.Errorf("SessionEvent at %s[%d]@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err)
			continue
		}
		if string(r.Key) != ev.SessionID {
			t.Errorf("SessionEvent %s: key %q is not its session id %q", ev.EventID, r.Key, ev.SessionID)
		}
		if h := kafka.Header(r, serde.HeaderEventID); h != ev.EventID {
			t.Errorf("SessionEvent %s: header %s = %q", ev.EventID, serde.HeaderEventID, h)
		}
		if h := kafka.Header(r, serde.HeaderSchema); h != schemas.SessionEventName {
			t.Errorf("SessionEvent %s: header %s = %q, want %q", ev.EventID, serde.HeaderSchema, h, schemas.SessionEventName)
		}
		events = append(events, &ev)
		byID[ev.EventID]++
	}
	return events, byID
}

// decodeEnriched decodes EnrichedSession records, checking key and headers, and counts them
// by the triggering event's id.
func decodeEnriched(t testing.TB, recs []*kgo.Record) (out []*schemas.EnrichedSession, byID map[string]int) {
	t.Helper()
	_, codec := codecs(t)
	byID = map[string]int{}
	for _, r := range recs {
		var es schemas.EnrichedSession
		if err := codec.Decode(context.Background(), r.Value, &es); err != nil {
			t.Errorf("EnrichedSession at %s[%d]@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err)
			continue
		}
		if string(r.Key) != es.Session.SessionID {
			t.Errorf("EnrichedSession for event %s: key %q is not its session id %q", es.Event.EventID, r.Key, es.Session.SessionID)
		}
		if h := kafka.Header(r, serde.HeaderEventID); h != es.Event.EventID {
			t.Errorf("EnrichedSession for event %s: header %s = %q", es.Event.EventID, serde.HeaderEventID, h)
		}
		if h := kafka.Header(r, serde.HeaderSchema); h != schemas.EnrichedSessionName {
			t.Errorf("EnrichedSession for event %s: header %s = %q, want %q", es.Event.EventID, serde.HeaderSchema, h, schemas.EnrichedSessionName)
		}
		out = append(out, &es)
		byID[es.Event.EventID]++
	}
	return out, byID
}

// checkOnePerEvent requires exactly as many enriched records per event id as SessionEvents on
// the sessions topic (one each, unless the ingress legitimately wrote an event twice), and no
// enriched record for an event that is not there.
func checkOnePerEvent(t testing.TB, inputByID, enrichedByID map[string]int) {
	t.Helper()
	var missing, dup []string
	for id, n := range inputByID {
		switch got := enrichedByID[id]; {
		case got < n:
			missing = append(missing, fmt.Sprintf("%s (%d of %d)", id, got, n))
		case got > n:
			dup = append(dup, fmt.Sprintf("%s (%d for %d)", id, got, n))
		}
	}
	var unknown []string
	for id := range enrichedByID {
		if inputByID[id] == 0 {
			unknown = append(unknown, id)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d events have fewer enriched records than SessionEvents (lost): %v", len(missing), firstN(missing, 10))
	}
	if len(dup) > 0 {
		t.Errorf("%d events have more enriched records than SessionEvents (duplicated for read_committed): %v", len(dup), firstN(dup, 10))
	}
	if len(unknown) > 0 {
		t.Errorf("%d enriched records for events not on the sessions topic: %v", len(unknown), firstN(unknown, 10))
	}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... %d more", len(s)-n))
	}
	return s
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
