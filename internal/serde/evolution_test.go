package serde

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// The schema of a record as released in v1, and the v2 that followed it: a field added with a
// default and a doc changed, the kind of change docs/data-contract.md allows.
const (
	evoV1 = `{"type":"record","name":"Check","namespace":"io.idnow.test","fields":[
		{"name":"id","type":"string","doc":"The id."},
		{"name":"status","type":"string","doc":"CREATED or DONE."}]}`
	evoV2 = `{"type":"record","name":"Check","namespace":"io.idnow.test","fields":[
		{"name":"id","type":"string","doc":"The id, stable across redeliveries."},
		{"name":"status","type":"string","doc":"CREATED, RUNNING or DONE; unknown values pass through."},
		{"name":"origin","type":"string","default":"webhook","doc":"webhook or reconciler."}]}`
	// evoV2Broken removes status, which has no default: a v1 reader could not read its records.
	evoV2Broken = `{"type":"record","name":"Check","namespace":"io.idnow.test","fields":[
		{"name":"id","type":"string"}]}`
)

type checkV1 struct {
	ID     string `avro:"id"`
	Status string `avro:"status"`
}

type checkV2 struct {
	ID     string `avro:"id"`
	Status string `avro:"status"`
	Origin string `avro:"origin"`
}

func mustSchema(t *testing.T, text string, released ...string) schemas.Schema {
	t.Helper()
	s, err := schemas.NewSchema(text, released...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemaUpgrade writes records with v1, upgrades the code to v2 and shows the contract holds
// both ways, in both wire formats.
func TestSchemaUpgrade(t *testing.T) {
	ctx := t.Context()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	const subject = "idnow.checks-value"

	// Before the upgrade: the connector knows v1 only and writes both encodings.
	v1 := mustSchema(t, evoV1, evoV1)
	soeV1, err := NewCodec(ctx, CodecConfig{Schema: v1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srV1, err := NewCodec(ctx, CodecConfig{Schema: v1, Subject: subject, Register: true}, cl)
	if err != nil {
		t.Fatal(err)
	}
	old := &checkV1{ID: "c1", Status: "DONE"}
	oldSOE, err := soeV1.Encode(old)
	if err != nil {
		t.Fatal(err)
	}
	oldSR, err := srV1.Encode(old)
	if err != nil {
		t.Fatal(err)
	}

	// After the upgrade: the schema is v2 and the history holds v1 and v2.
	v2 := mustSchema(t, evoV2, evoV1, evoV2)
	if err := schemas.CheckFull(v2); err != nil {
		t.Fatalf("the compatibility check refuses an allowed change: %v", err)
	}
	soeV2, err := NewCodec(ctx, CodecConfig{Schema: v2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srV2, err := NewCodec(ctx, CodecConfig{Schema: v2, Subject: subject, Register: true}, cl)
	if err != nil {
		t.Fatal(err)
	}
	if srV2.SchemaID() == srV1.SchemaID() {
		t.Fatal("v2 registered under the same id as v1")
	}

	t.Run("old records decode with the new code", func(t *testing.T) {
		for name, b := range map[string][]byte{"single-object": oldSOE, "confluent": oldSR} {
			for codecName, c := range map[string]*Codec{"single-object codec": soeV2, "registry codec": srV2} {
				if name == "confluent" && codecName == "single-object codec" {
					continue // no registry to fetch the writer from
				}
				var got checkV2
				if err := c.Decode(ctx, b, &got); err != nil {
					t.Fatalf("%s record, %s: %v", name, codecName, err)
				}
				if want := (checkV2{ID: "c1", Status: "DONE", Origin: "webhook"}); got != want {
					t.Fatalf("%s record, %s: decoded %+v, want %+v (origin from its default)", name, codecName, got, want)
				}
			}
		}
	})

	t.Run("new records decode with a v1 reader", func(t *testing.T) {
		nw := &checkV2{ID: "c2", Status: "RUNNING", Origin: "reconciler"}
		b, err := srV2.Encode(nw)
		if err != nil {
			t.Fatal(err)
		}
		// A consumer still on v1 that has never seen v2: it fetches the writer schema by id.
		reader := NewDecoder(v1, cl)
		var got checkV1
		if err := reader.Decode(ctx, b, &got); err != nil {
			t.Fatalf("v1 reader on a v2 record: %v", err)
		}
		if want := (checkV1{ID: "c2", Status: "RUNNING"}); got != want {
			t.Fatalf("v1 reader decoded %+v, want %+v", got, want)
		}
	})

	t.Run("single-object v2 record at a v1 reader names the fingerprint and the known versions", func(t *testing.T) {
		// Single-object records carry only a fingerprint: a reader older than the writer cannot
		// know the writer schema, which is why docs/data-contract.md recommends the registry when
		// consumers may lag producers.
		b, err := soeV2.Encode(&checkV2{ID: "c3", Status: "DONE", Origin: "webhook"})
		if err != nil {
			t.Fatal(err)
		}
		var got checkV1
		err = soeV1.Decode(ctx, b, &got)
		if !errors.Is(err, ErrUndecodable) {
			t.Fatalf("want ErrUndecodable, got %v", err)
		}
		fp2, fp1 := v2.History[1].Fingerprint, v1.History[0].Fingerprint
		for _, want := range []string{fmt.Sprintf("%x", fp2), fmt.Sprintf("v1 %x", fp1), "io.idnow.test.Check"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %q", err, want)
			}
		}
	})

	t.Run("a v2 that removes a field without a default fails the check", func(t *testing.T) {
		err := schemas.CheckFull(mustSchema(t, evoV2Broken, evoV1))
		if err == nil || !strings.Contains(err.Error(), "status") {
			t.Fatalf("want an incompatibility naming status, got %v", err)
		}
	})
}

// TestShippedHistoryDecodes reads a record written with the first released EnrichedSession
// schema (before enrichment.truncation existed) with today's codec.
func TestShippedHistoryDecodes(t *testing.T) {
	cur := schemas.EnrichedSessionSchema()
	v1 := cur.History[0]
	if v1.Number != 1 || strings.Contains(v1.Text, "truncation") {
		t.Fatalf("history[0] is %s, want the release before truncation", v1.Path)
	}
	now := time.UnixMilli(1_700_000_000_123).UTC()
	rec := &schemas.EnrichedSession{
		Event:      schemas.TriggeringEvent{EventID: "e1", EventName: "session.completed", ReceivedAt: now},
		Session:    schemas.SessionDetails{SessionID: "s1", Status: "COMPLETED", Terminal: true, Metadata: map[string]string{}},
		Enrichment: schemas.EnrichmentInfo{EnrichedAt: now, ConnectorVersion: "0.1.0", DataBlocksContent: "full"},
	}
	b, err := v1.Avro.AppendSingleObject(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCodec(t.Context(), CodecConfig{Schema: cur}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if [8]byte(b[2:10]) == c.SingleObjectFingerprint() {
		t.Fatal("v1 and the current schema have the same fingerprint; the test would not exercise resolution")
	}
	var got schemas.EnrichedSession
	if err := c.Decode(t.Context(), b, &got); err != nil {
		t.Fatalf("a v1 record no longer decodes: %v", err)
	}
	if got.Event.EventID != "e1" || got.Session.SessionID != "s1" || got.Enrichment.Truncation != nil {
		t.Fatalf("decoded %+v", got)
	}
}
