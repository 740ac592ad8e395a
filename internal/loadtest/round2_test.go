package loadtest

import (
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

// TestRound2ConfigsValidate: the defaults (with an executable) pass, each broken field fails.
func TestRound2ConfigsValidate(t *testing.T) {
	lc := DefaultLatencyConfig()
	lc.Exes = []Exe{{Label: "after", Path: "/bin/true"}}
	if err := lc.Validate(); err != nil {
		t.Fatalf("default latency config: %v", err)
	}
	for i, mod := range []func(*LatencyConfig){
		func(c *LatencyConfig) { c.Exes = nil },
		func(c *LatencyConfig) { c.Fractions = []float64{0.5, 1.5} },
		func(c *LatencyConfig) { c.Fractions = nil },
		func(c *LatencyConfig) { c.PeakEvents = 0 },
		func(c *LatencyConfig) { c.Duration = 0 },
		func(c *LatencyConfig) { c.Delivery = "twice" },
	} {
		c := lc
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("latency case %d: invalid config accepted", i)
		}
	}
	sc := DefaultScaleConfig()
	sc.Exe = "/bin/true"
	if err := sc.Validate(); err != nil {
		t.Fatalf("default scale-out config: %v", err)
	}
	for i, mod := range []func(*ScaleConfig){
		func(c *ScaleConfig) { c.Exe = "" },
		func(c *ScaleConfig) { c.Members = []int{1, 7} },
		func(c *ScaleConfig) { c.Members = nil },
		func(c *ScaleConfig) { c.Events = 0 },
		func(c *ScaleConfig) { c.Latency = 0 },
	} {
		c := sc
		mod(&c)
		if c.Validate() == nil {
			t.Errorf("scale-out case %d: invalid config accepted", i)
		}
	}
}

// TestEventIndex reads the position back from the event-id header the enricher copies.
func TestEventIndex(t *testing.T) {
	rec := func(v string) *kgo.Record {
		return &kgo.Record{Headers: []kgo.RecordHeader{{Key: "other", Value: []byte("x")}, {Key: serde.HeaderEventID, Value: []byte(v)}}}
	}
	if got := eventIndex(rec("r1-lat-0-1-4711"), "r1-lat-0-1"); got != 4711 {
		t.Errorf("eventIndex = %d, want 4711", got)
	}
	if got := eventIndex(rec("r1-lat-0-2-5"), "r1-lat-0-1"); got != -1 {
		t.Errorf("another level's event: %d, want -1", got)
	}
	if got := eventIndex(&kgo.Record{}, "r1"); got != -1 {
		t.Errorf("no header: %d, want -1", got)
	}
}

// TestProcessCPU: this process's CPU time grows while it works (checked against a wall-clock
// bound, generous for a loaded machine).
func TestProcessCPU(t *testing.T) {
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for x := 0; ; x++ {
		if x%1_000_000 == 0 {
			now, err := ProcessCPU(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			if now-before >= 50*time.Millisecond {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CPU time grew by %s in 10 s of busy loop", now-before)
			}
		}
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("no error for a process that does not exist")
	}
}
