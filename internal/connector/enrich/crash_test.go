package enrich

import (
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
)

// Environment of the helper process that TestCrash starts.
const (
	envHelper   = "ENRICH_HELPER_PROCESS"
	envBrokers  = "ENRICH_HELPER_BROKERS"
	envAPIURL   = "ENRICH_HELPER_API_URL"
	envTokenURL = "ENRICH_HELPER_TOKEN_URL"
	envInstance = "ENRICH_HELPER_INSTANCE"
)

// TestHelperEnricherProcess is not a test: it is the enricher process TestCrash starts by
// re-executing the test binary, and it skips unless started that way. It runs until SIGTERM
// (graceful) or SIGKILL (the crash under test).
func TestHelperEnricherProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestCrash")
	}
	ctx, stop := signal.NotifyContext(t.Context(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := testConfig(os.Getenv(envInstance))
	cfg.Concurrency = 2
	cfg.MaxPollRecords = 6
	api := newSimAPI(t, os.Getenv(envAPIURL), os.Getenv(envTokenURL), 3)
	r := startEnricher(t, strings.Split(os.Getenv(envBrokers), ","), api, cfg)
	<-ctx.Done()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// startHelper starts the helper process for instance.
func startHelper(t *testing.T, brokers []string, sim *idnowsim.Simulator, instance string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperEnricherProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"=1", envBrokers+"="+strings.Join(brokers, ","),
		envAPIURL+"="+sim.APIURL(), envTokenURL+"="+sim.TokenURL(), envInstance+"="+instance)
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// TestCrash SIGKILLs an enricher process mid-stream and starts another with the same instance
// id: its transactional id fences the dead one's open transaction, the group hands it the
// partitions, and a read_committed reader still sees exactly one record per event.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	brokers := newCluster(t)
	sim := startSim(t, 40)
	if err := sim.SetFaults(idnowsim.Faults{Latency: 15 * time.Millisecond, RetryAfter: time.Second, SlowDelay: time.Second}); err != nil {
		t.Fatal(err)
	}
	sent := eventsFromSim(sim)
	produceEvents(t, brokers, sent)
	group := testConfig("").Group

	first := startHelper(t, brokers, sim, "crashy")
	if err := pollConsumed(brokers, group, 30*time.Second, 0.25); err != nil {
		t.Fatal(err)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if err := pollConsumed(brokers, group, 10*time.Millisecond, 1); err == nil {
		t.Fatal("the first process finished the stream before it was killed; the test proves nothing")
	}

	second := startHelper(t, brokers, sim, "crashy")
	waitConsumed(t, brokers, group, 40*time.Second)
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second enricher process did not stop cleanly on SIGTERM: %v", err)
	}
	checkExactlyOnce(t, sent, decodeEnriched(t, readCommitted(t, brokers, testTopics.Enriched)), testConfig("").DataBlocks, false)
}
