package privacy

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func TestKeyringMetrics(t *testing.T) {
	f := newFixture(t, schemas.PrivacyEncrypt)
	if err := f.ring.Instrument(prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
	es := sample("s-1", "subject-1")
	recs, err := f.prot.Protect(t.Context(), testTopic, es)
	if err != nil {
		t.Fatal(err)
	}
	reader, _ := NewKeyring(f.kek, 4)
	reg := prometheus.NewRegistry()
	if err := reader.Instrument(reg); err != nil {
		t.Fatal(err)
	}
	reader.Apply(string(recs[0].Key), recs[0].Value)
	if got := testutil.ToFloat64(reader.metrics.unwrapped); got != 0 {
		t.Fatalf("unwrapped before use: %v", got)
	}
	if err := Open(reader, testTopic, clone(t, es)); err != nil {
		t.Fatal(err)
	}
	if err := Open(reader, testTopic, clone(t, es)); err != nil { // cached: no second unwrap
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "idnow_connector_privacy_data_keys"); err != nil || n != 1 {
		t.Fatalf("live keys gauge: %d series, %v", n, err)
	}
	live := func() float64 { return float64(reader.Len()) }
	if live() != 1 {
		t.Fatalf("live keys %v", live())
	}
	reader.Apply(string(recs[0].Key), nil)
	reader.Apply(string(recs[0].Key), nil) // a tombstone read twice counts once
	for name, c := range map[string]struct {
		got  prometheus.Counter
		want float64
	}{
		"created (writer)":  {f.ring.metrics.created, 1},
		"created (reader)":  {reader.metrics.created, 0},
		"unwrapped":         {reader.metrics.unwrapped, 1},
		"erased":            {reader.metrics.erasedSeen, 1},
		"refresh failures":  {reader.metrics.refreshFailures, 0},
		"unwrapped (maker)": {f.ring.metrics.unwrapped, 0},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v, want %v", name, got, c.want)
		}
	}
	if live() != 0 {
		t.Fatalf("live keys after the tombstone: %v", live())
	}
}
