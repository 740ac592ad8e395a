//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/enrich"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

const (
	// normalSessions is how many ordinary sessions run beside the oversized one.
	normalSessions = 1000

	// oversizedEvery makes the simulator pad the data-block answer of the 501st session created,
	// and no other one among normalSessions+1: the oversized session sits in the middle of the
	// stream, with healthy events of its batch and of later batches behind it.
	oversizedEvery = normalSessions/2 + 1

	// paddingBlocks is how many padding blocks the oversized session's data-block answer
	// carries: about 1.9 MB of JSON, well under idnow.max_response_size, and an EnrichedSession
	// several times enrichedMaxMessageBytes even with the blocks' content dropped.
	paddingBlocks = 20000

	// enrichedMaxMessageBytes is max.message.bytes of the enriched topic. An ordinary session's
	// EnrichedSession takes a few KiB; the oversized one does not fit.
	enrichedMaxMessageBytes = 128 * 1024

	// oversizedStallAfter is enrich.stall_after in the oversized-session test: short enough
	// that the stall of problem 1 (the batch with the oversized record aborted and consumed
	// again forever) sets idnow_connector_enrich_stalled well within the test, long enough
	// that a healthy enricher on a loaded 2-core machine never goes that long without a commit
	// while input waits.
	oversizedStallAfter = 10 * time.Second

	// stalledMetric is the enricher's watchdog gauge.
	stalledMetric = "idnow_connector_enrich_stalled"
)

// allStatuses is enrich.datablocks.on_status in the oversized-session test: every session status,
// so the oversized session's data blocks (padded in every status) are fetched for every one of its
// events whatever fate the simulator drew for it, and each of its events yields an oversized
// EnrichedSession.
var allStatuses = []string{
	idnowsim.StatusCreated, idnowsim.StatusRunning, idnowsim.StatusCompleted,
	idnowsim.StatusAborted, idnowsim.StatusExpired, idnowsim.StatusError,
}

// TestOversizedSession is the done-when check of problem 1 of issue 9 on a real broker: one
// session whose data-block answer makes its EnrichedSession larger than the enriched topic's
// max.message.bytes runs among 1 000 ordinary sessions. The enricher reads the topic's limit at
// start-up; every event of the 1 000 ordinary sessions is enriched exactly once (read_committed),
// complete and unmarked, with nothing of theirs on the DLQ; every event of the oversized session
// is either enriched once with enrichment.truncation set (content_dropped or metadata_only) or
// dead-lettered once with class record_too_large, and the truncation and DLQ counters say so;
// idnow_connector_enrich_stalled, sampled on the enricher's /metrics all through the run with
// enrich.stall_after at 10 s, never leaves 0. Before the fix the oversized record aborted its
// transaction on every attempt: its batch never committed, so the ordinary events behind it
// were never enriched.
func TestOversizedSession(t *testing.T) {
	began := time.Now()
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	sim := startSimulator(t, func(c *idnowsim.Config) {
		c.HugeDataBlocks = idnowsim.HugeDataBlocks{Every: oversizedEvery, Blocks: paddingBlocks}
		// 4 000 webhooks: more delivery workers than the default 4, so the stream arrives in
		// seconds.
		c.WebhookConcurrency = 16
	})

	// The enriched topic is the operator's, with a lower limit than the broker's default; the
	// connector creates the other two.
	adm := newAdmin(t, seeds)
	limit := strconv.Itoa(enrichedMaxMessageBytes)
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	defer cancel()
	created, err := adm.CreateTopic(ctx, pipelinePartitions, -1, map[string]*string{"max.message.bytes": &limit}, p.enriched)
	if err == nil {
		err = created.Err
	}
	if err != nil {
		t.Fatalf("create %s with max.message.bytes %s: %v", p.enriched, limit, err)
	}
	waitTopicReady(t, adm, p.enriched, pipelinePartitions)

	ingress := p.startSimIngress(t, sim, nil)
	ecfg := p.enricherSettings(sim, "oversized").with(settings{
		"enrich.datablocks.on_status": strings.Join(allStatuses, ","),
		"enrich.concurrency":          "16",
		"enrich.max_poll_records":     "200",
		"enrich.stall_after":          oversizedStallAfter.String(),
		// The watchdog evaluates every min(lag_interval, stall_after/4): a stall shows within
		// about a second of stall_after.
		"enrich.lag_interval": "1s",
	})
	enricher := startChild(t, "enricher", "enricher", ecfg)
	t.Logf("pipeline up after %s", time.Since(began).Round(time.Millisecond))

	stalls := watchGauge(t, enricher.admin, stalledMetric, 250*time.Millisecond)

	began = time.Now()
	ids := sim.CreateSessions(normalSessions + 1)
	if len(ids) != normalSessions+1 {
		t.Fatalf("the simulator created %d sessions, want %d", len(ids), normalSessions+1)
	}
	simtest.WaitIdle(t, sim, 2*time.Minute)
	t.Logf("simulator idle after %s: %+v", time.Since(began).Round(time.Millisecond), sim.Stats())
	p.waitConsumed(1, 2*time.Minute)
	t.Logf("%d sessions through the pipeline in %s", len(ids), time.Since(began).Round(time.Millisecond))

	samples, maxStalled, stallErr := stalls()
	if stallErr != nil {
		t.Errorf("read %s from the enricher's /metrics: %v", stalledMetric, stallErr)
	}
	if samples == 0 || maxStalled != 0 {
		t.Errorf("%s: %d samples during the run, highest value %v; want samples, all 0", stalledMetric, samples, maxStalled)
	}
	// Logged when the client starts, which may come after the first readiness answer; by now
	// it has been.
	if line := logLine(t, enricher, "output record size limit", p.enriched); !strings.Contains(line, `"bytes":`+limit) ||
		!strings.Contains(line, "topic max.message.bytes") {
		t.Errorf("the enricher did not take %s's max.message.bytes %s as its record limit; its log says: %q", p.enriched, limit, line)
	}
	if line := logLine(t, enricher, "enricher stalled"); line != "" {
		t.Errorf("the enricher logged a stall: %s", line)
	}
	truncatedMetric, err := metricSeries(enricher.admin, "idnow_connector_enrich_records_truncated_total")
	if err != nil {
		t.Errorf("read the truncation counter: %v", err)
	}
	dlqMetric, err := metricSeries(enricher.admin, "idnow_connector_enrich_dlq_records_total")
	if err != nil {
		t.Errorf("read the DLQ counter: %v", err)
	}
	enricher.stop()
	ingress.stop()
	began = time.Now()

	// Which session is the oversized one, and which events belong to it.
	var oversized string
	normalEvents, oversizedEvents := map[string]bool{}, map[string]bool{}
	for _, s := range sim.Sessions() {
		for _, e := range s.Events {
			if !e.Delivered {
				t.Errorf("webhook %s (%s) was never acknowledged by the ingress (given up: %v)", e.EventID, e.EventName, e.GivenUp)
			}
		}
		if s.PaddingBlocks == 0 {
			for _, e := range s.Events {
				normalEvents[e.EventID] = true
			}
			continue
		}
		if oversized != "" || s.PaddingBlocks != paddingBlocks {
			t.Fatalf("session %s has %d padding blocks (the oversized one so far: %q); want exactly one session with %d",
				s.SessionID, s.PaddingBlocks, oversized, paddingBlocks)
		}
		oversized = s.SessionID
		for _, e := range s.Events {
			oversizedEvents[e.EventID] = true
		}
	}
	if oversized == "" || len(oversizedEvents) == 0 || len(normalEvents) < 2*normalSessions {
		t.Fatalf("oversized session %q with %d events, %d events of ordinary sessions; want one oversized session and at least %d ordinary events",
			oversized, len(oversizedEvents), len(normalEvents), 2*normalSessions)
	}

	_, inputByID := decodeEvents(t, p.readAll(p.sessions))
	t.Logf("sessions topic read after %s", time.Since(began).Round(time.Millisecond))
	normalInput, oversizedInput := map[string]int{}, map[string]int{}
	for id, n := range inputByID {
		switch {
		case normalEvents[id]:
			normalInput[id] = n
		case oversizedEvents[id]:
			oversizedInput[id] = n
		default:
			t.Errorf("event %s on %s is not one the simulator sent", id, p.sessions)
		}
	}
	for id := range normalEvents {
		if normalInput[id] == 0 {
			t.Errorf("acknowledged webhook %s is not on %s", id, p.sessions)
		}
	}

	// The ordinary sessions: one complete, unmarked enriched record per event.
	got, _ := decodeEnriched(t, p.readCommitted(p.enriched))
	t.Logf("enriched topic read after %s", time.Since(began).Round(time.Millisecond))
	normalEnriched, oversizedEnriched := map[string]int{}, map[string]int{}
	truncations := map[string]int{}
	for _, es := range got {
		id := es.Event.EventID
		if es.Session.SessionID != oversized {
			normalEnriched[id]++
			if es.Enrichment.Truncation != nil {
				t.Errorf("ordinary session %s, event %s: enrichment.truncation = %q, want none", es.Session.SessionID, id, *es.Enrichment.Truncation)
			}
			if !es.DataBlocksFetched {
				t.Errorf("ordinary session %s, event %s: data blocks not fetched with on_status %v", es.Session.SessionID, id, allStatuses)
			}
			continue
		}
		oversizedEnriched[id]++
		switch tr := deref(es.Enrichment.Truncation); tr {
		case schemas.TruncationContentDropped:
			truncations[tr]++
			for _, b := range es.DataBlocks {
				if b.Content != nil {
					t.Errorf("event %s marked %s still carries content in data block %s", id, tr, b.Type)
					break
				}
			}
		case schemas.TruncationMetadataOnly:
			truncations[tr]++
			if len(es.DataBlocks) != 0 || len(es.FileRefs) != 0 {
				t.Errorf("event %s marked %s carries %d data blocks and %d file references", id, tr, len(es.DataBlocks), len(es.FileRefs))
			}
		default:
			t.Errorf("oversized session %s, event %s: enriched without a truncation mark (%s), in a topic limited to %d bytes",
				oversized, id, tr, enrichedMaxMessageBytes)
		}
	}
	checkOnePerEvent(t, normalInput, normalEnriched)

	// The oversized session: each event either truncated-and-marked or dead-lettered with
	// record_too_large, once.
	dlq := p.readCommitted(p.dlq)
	_, dlqByID := decodeEvents(t, dlq)
	for _, r := range dlq {
		id := kafka.Header(r, serde.HeaderEventID)
		if !oversizedEvents[id] {
			t.Errorf("event %s of an ordinary session on the DLQ (class %q: %s)", id, kafka.Header(r, enrich.HeaderDLQErrorClass), kafka.Header(r, enrich.HeaderDLQError))
		} else if class := kafka.Header(r, enrich.HeaderDLQErrorClass); class != enrich.ClassRecordTooLarge {
			t.Errorf("event %s of the oversized session on the DLQ with class %q, want %s: %s", id, class, enrich.ClassRecordTooLarge, kafka.Header(r, enrich.HeaderDLQError))
		}
	}
	handled := map[string]int{}
	for id, n := range oversizedEnriched {
		handled[id] += n
	}
	for id, n := range dlqByID {
		if oversizedEvents[id] {
			handled[id] += n
		}
	}
	checkOnePerEvent(t, oversizedInput, handled)

	// The counters agree with what is on the topics (a batch consumed again after an abort may
	// count again, so at least).
	if want := truncations[schemas.TruncationContentDropped]; truncatedMetric[`level="content"`] < float64(want) {
		t.Errorf("records_truncated_total{level=\"content\"} = %v, want at least %d: %v", truncatedMetric[`level="content"`], want, truncatedMetric)
	}
	if want := truncations[schemas.TruncationMetadataOnly]; truncatedMetric[`level="metadata"`] < float64(want) {
		t.Errorf("records_truncated_total{level=\"metadata\"} = %v, want at least %d: %v", truncatedMetric[`level="metadata"`], want, truncatedMetric)
	}
	if want := len(dlq); dlqMetric[`reason="record_too_large"`] < float64(want) {
		t.Errorf("dlq_records_total{reason=\"record_too_large\"} = %v, want at least %d: %v", dlqMetric[`reason="record_too_large"`], want, dlqMetric)
	}
	t.Logf("topics read and checked in %s", time.Since(began).Round(time.Millisecond))
	t.Logf("%d ordinary events enriched once each; oversized session %s: %d events, %v truncated, %d dead-lettered; "+
		"%s sampled %d times, highest %v; truncation counter %v, DLQ counter %v",
		len(normalInput), oversized, len(oversizedInput), truncations, len(dlq), stalledMetric, samples, maxStalled, truncatedMetric, dlqMetric)
}

// watchGauge samples an unlabelled gauge on the child's /metrics every interval until the
// returned function is called (or the test ends); that function stops the sampling and reports
// how many samples were read, the highest value seen, and the last read error, if reads kept
// failing.
func watchGauge(t testing.TB, admin, name string, interval time.Duration) func() (samples int, highest float64, err error) {
	t.Helper()
	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		n       int
		high    float64
		lastErr error
	)
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			v, err := metricValue(admin, name)
			mu.Lock()
			if err != nil {
				lastErr = err
			} else {
				n++
				high = max(high, v)
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	finish := func() (int, float64, error) {
		once.Do(func() {
			close(stop)
			wg.Wait()
		})
		mu.Lock()
		defer mu.Unlock()
		if n > 0 {
			return n, high, nil
		}
		return n, high, lastErr
	}
	t.Cleanup(func() { finish() })
	return finish
}

// metricSeries returns every series of a labelled metric on the child's /metrics, keyed by its
// label set as exposed (e.g. `level="content"`).
func metricSeries(admin, name string) (map[string]float64, error) {
	status, body, err := get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d", status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return nil, fmt.Errorf("malformed series line %q", sc.Text())
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("series %s{%s}: %w", name, labels, err)
		}
		out[labels] = v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no series %s on /metrics", name)
	}
	return out, sc.Err()
}
