package app

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
)

// TestBackfillProgressLines: a backfill whose progress output is not a terminal writes plain
// progress lines ending with every flow listed and what was written, apart from the summary on
// its standard output.
func TestBackfillProgressLines(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sim := simtest.Start(t, func(sc *idnowsim.Config) { sc.Sessions = 0 })
	sim.CreateSessions(4)
	simtest.WaitIdle(t, sim, 30*time.Second)

	cfg := DefaultConfig()
	cfg.Topics.State = cfg.Topics.StateTopic()
	sc := sim.Config()
	cfg.IDnow.APIURL, cfg.IDnow.TokenURL = sim.APIURL(), sim.TokenURL()
	cfg.IDnow.ClientID, cfg.IDnow.ClientSecret, cfg.IDnow.Environment = sc.ClientID, sc.ClientSecret, sc.Environment
	cfg.IDnow.AllowInsecureHTTP = true
	cfg.Reconcile.Grace = 0
	var out, progressOut bytes.Buffer
	sum, err := Backfill(t.Context(), cfg, BackfillOptions{Since: time.Now().Add(-time.Hour), Brokers: c.ListenAddrs(), Progress: &progressOut}, &out, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Flows == 0 || sum.WrittenTotal() == 0 {
		t.Fatalf("summary %+v: the backfill found nothing to do", sum)
	}
	lines := strings.Split(strings.TrimSpace(progressOut.String()), "\n")
	want := fmt.Sprintf("backfill: %d/%d flows (100%%), sessions seen %d, already complete %d, events written %d, ", sum.Flows, sum.Flows, sum.Seen, sum.Complete, sum.WrittenTotal())
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, want) {
		t.Fatalf("last progress line %q, want it to start with %q (all: %q)", last, want, progressOut.String())
	}
	if strings.Contains(out.String(), "backfill: ") || !strings.Contains(out.String(), fmt.Sprintf("sessions seen %d", sum.Seen)) {
		t.Fatalf("standard output %q: want the summary and no progress lines", out.String())
	}
}
