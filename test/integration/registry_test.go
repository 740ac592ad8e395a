//go:build integration

package integration

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// registryURL returns SCHEMA_REGISTRY_URL (a Confluent-compatible API, e.g. the Apicurio Registry
// of `make registry-up` at http://127.0.0.1:18081/apis/ccompat/v7) or skips the test.
func registryURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("SCHEMA_REGISTRY_URL")
	if u == "" {
		t.Skip("SCHEMA_REGISTRY_URL is not set: `make registry-up` starts Apicurio Registry 3.3.3; then SCHEMA_REGISTRY_URL=http://127.0.0.1:18081/apis/ccompat/v7")
	}
	return u
}

// registryClient returns a client whose idle connections are closed when the test ends, so the
// suite's goroutine-leak check stays meaningful.
func registryClient(t testing.TB, url string) *sr.Client {
	t.Helper()
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(httpc.CloseIdleConnections)
	cl, err := sr.NewClient(sr.URLs(url), sr.HTTPClient(httpc))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestPipelineRegistryMode runs the pipeline in registry mode against a real registry: the
// ingress and the enricher register their schemas under TopicNameStrategy subjects with FULL
// compatibility set by the connector, every record is in the Confluent wire format, and a
// reader that knows only the schema ids reads them back.
func TestPipelineRegistryMode(t *testing.T) {
	const sessions = 8
	url := registryURL(t)
	seeds := brokers(t)
	rc := registryClient(t, url)
	p := newPipeline(t, seeds)
	sim := startSimulator(t)
	reg := settings{"schema_registry.url": url}

	icfg, hook := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	ingress := startChild(t, "ingress", "ingress", icfg.with(reg))
	if err := sim.SetWebhookURL(hook); err != nil {
		t.Fatal(err)
	}
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "registry").with(reg))
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)
	enricher.stop()
	ingress.stop()

	ctx := t.Context()
	subjects, err := rc.Subjects(ctx)
	if err != nil {
		t.Fatalf("list subjects: %v", err)
	}
	for _, c := range []struct {
		topic  string
		schema schemas.Schema
	}{{p.sessions, schemas.SessionEventSchema()}, {p.enriched, schemas.EnrichedSessionSchema()}} {
		subject := c.topic + "-value"
		if !slices.Contains(subjects, subject) {
			t.Fatalf("subject %s not registered (TopicNameStrategy); the registry has %v", subject, subjects)
		}
		cr := rc.Compatibility(ctx, subject)
		if len(cr) != 1 || cr[0].Err != nil || cr[0].Level != sr.CompatFull {
			t.Errorf("subject %s compatibility = %+v, want FULL set by the connector", subject, cr)
		}
		latest, err := rc.SchemaByVersion(ctx, subject, -1)
		if err != nil {
			t.Fatalf("latest schema of %s: %v", subject, err)
		}
		ws, err := avro.Parse(latest.Schema.Schema)
		if err != nil {
			t.Fatalf("registered schema of %s does not parse: %v", subject, err)
		}
		if schemas.Fingerprint(ws) != schemas.Fingerprint(c.schema.Avro) {
			t.Errorf("subject %s holds a schema other than %s", subject, c.schema.FullName)
		}
	}

	// Read back by id: a decoder with no registered schema of its own fetches each writer
	// schema by the id in the record.
	var recs []*kgo.Record
	recs = append(recs, p.readAll(p.sessions)...)
	events := serde.NewDecoder(schemas.SessionEventSchema(), rc)
	inputByID := map[string]int{}
	for _, r := range recs {
		var ev schemas.SessionEvent
		checkConfluent(t, r)
		if err := events.Decode(ctx, r.Value, &ev); err != nil {
			t.Fatalf("SessionEvent at %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		inputByID[ev.EventID]++
	}
	enriched := serde.NewDecoder(schemas.EnrichedSessionSchema(), rc)
	enrichedByID := map[string]int{}
	for _, r := range p.readCommitted(p.enriched) {
		var es schemas.EnrichedSession
		checkConfluent(t, r)
		if err := enriched.Decode(ctx, r.Value, &es); err != nil {
			t.Fatalf("EnrichedSession at %s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		enrichedByID[es.Event.EventID]++
	}
	if len(inputByID) < 2*sessions {
		t.Fatalf("%d SessionEvents for %d sessions, want at least 2 each", len(inputByID), sessions)
	}
	checkOnePerEvent(t, inputByID, enrichedByID)
	t.Logf("%d SessionEvents, %d enriched records, all in the Confluent wire format and read back by schema id", len(inputByID), len(enrichedByID))
}

// checkConfluent fails unless r's value is in the Confluent wire format.
func checkConfluent(t testing.TB, r *kgo.Record) {
	t.Helper()
	if len(r.Value) < 5 || r.Value[0] != 0 || binary.BigEndian.Uint32(r.Value[1:5]) == 0 {
		t.Fatalf("record %s[%d]@%d is not in the Confluent wire format: starts %x", r.Topic, r.Partition, r.Offset, r.Value[:min(len(r.Value), 5)])
	}
}

// TestRegistryRefusesIncompatibleSchema puts a schema on a subject that the connector's current
// SessionEvent is not FULL-compatible with (a required field it does not have): the ingress must
// refuse to start, and its error must carry the registry's own message.
func TestRegistryRefusesIncompatibleSchema(t *testing.T) {
	url := registryURL(t)
	seeds := brokers(t)
	rc := registryClient(t, url)
	p := newPipeline(t, seeds)
	subject := p.sessions + "-value"
	ctx := t.Context()

	// An earlier, incompatible SessionEvent: its readers require legacyChannel, which the
	// current schema does not write.
	old := strings.Replace(schemas.SessionEventSchema().Text, `"fields": [`,
		`"fields": [{"name": "legacyChannel", "type": "string", "doc": "A field without a default that the current schema dropped."},`, 1)
	if old == schemas.SessionEventSchema().Text {
		t.Fatal("could not build the incompatible schema")
	}
	for _, r := range rc.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, subject) {
		if r.Err != nil {
			t.Fatalf("set FULL on %s: %v", subject, r.Err)
		}
	}
	if _, err := rc.RegisterSchema(ctx, subject, sr.Schema{Schema: old, Type: sr.TypeAvro}, -1, -1); err != nil {
		t.Fatalf("register the old schema: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = rc.DeleteSubject(cctx, subject, sr.SoftDelete)
		_, _ = rc.DeleteSubject(cctx, subject, sr.HardDelete)
	})

	sim := startSimulator(t)
	icfg, _ := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	c := launchChild(t, "ingress", "ingress", icfg.with(settings{"schema_registry.url": url}))
	select {
	case <-c.exited:
	case <-time.After(readyTimeout):
		t.Fatalf("the ingress kept running for %s although its schema is incompatible with %s", readyTimeout, subject)
	}
	var exit interface{ ExitCode() int }
	if !errors.As(c.waitErr, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("the ingress exited with %v, want a non-zero status", c.waitErr)
	}
	out, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(out)
	for _, want := range []string{subject, "legacyChannel", "register schema " + schemas.SessionEventName} {
		if !strings.Contains(log, want) {
			t.Errorf("start-up error does not name %q; output:\n%s", want, log)
		}
	}
	// Apicurio says "Incompatible artifact ..."; Confluent "Schema being registered is incompatible ...".
	if !strings.Contains(strings.ToLower(log), "incompatible") {
		t.Errorf("start-up error does not carry the registry's incompatibility message; output:\n%s", log)
	}
	t.Logf("refused as expected: %s", lastLine(log))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
