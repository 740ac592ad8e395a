package simtest

import (
	"net/http"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStart(t *testing.T) {
	sim := Start(t, func(c *idnowsim.Config) { c.ClientID = "contract" })
	if sim.Config().ClientID != "contract" || sim.Config().Seed != 1 {
		t.Fatalf("options not applied: %+v", sim.Config())
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(sim.DiscoveryURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery: %d", resp.StatusCode)
	}
	ids := sim.CreateSessions(5)
	WaitIdle(t, sim, 10*time.Second)
	for _, id := range ids {
		if s, ok := sim.Session(id); !ok || !idnowsim.IsTerminal(s.Status) {
			t.Fatalf("session %s not terminal: %+v", id, s)
		}
	}
}
