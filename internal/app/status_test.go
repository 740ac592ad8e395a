package app

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin/statustest"
	"html"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/admin"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

// chromiumPath finds a Chromium binary: $CHROMIUM, else chromium or chromium-browser on PATH.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs headless Chromium with args against url and returns its stdout.
func chromium(ctx context.Context, t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=2000"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, stderr.String())
	}
	return out
}

func getStatus(t *testing.T, adminAddr string) (admin.Status, []byte) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/status = %d %s %v", resp.StatusCode, b, err)
	}
	var st admin.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st, b
}

// figures are the numbers of a Status that stay put once the pipeline is idle (not the rates,
// the uptime or the time of generation).
func figures(st admin.Status) string {
	st.GeneratedAt, st.Uptime = time.Time{}, ""
	if st.Webhooks != nil {
		st.Webhooks.Rates = nil
	}
	if st.Enricher != nil {
		st.Enricher.Rates = nil
	}
	b, _ := json.Marshal(st)
	return string(b)
}

// TestStatusPageInChromium loads the status page of a running `run` in headless Chromium (from
// Debian's packages: scripts/chromium.sh) and checks that every number the browser shows is
// the one /status reports: webhooks accepted and rejected, records enriched, DLQ by reason, the
// newest DLQ entries, lag, readiness. With STATUS_PAGE_SCREENSHOT=path it also saves a
// screenshot (`make status-screenshot` makes docs/status-page.png that way).
func TestStatusPageInChromium(t *testing.T) {
	bin := chromiumPath()
	if bin == "" && os.Getenv("REQUIRE_CHROMIUM") != "" {
		t.Fatal("REQUIRE_CHROMIUM is set (.ci/run) but no chromium is on PATH nor in $CHROMIUM: scripts/chromium.sh installs it")
	}
	if bin == "" {
		t.Skip("no chromium on PATH (nor $CHROMIUM): run scripts/chromium.sh to install it from Debian's packages; CI does")
	}
	a, err := New(testConfig(), ModeRun, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	}()
	if err := a.Simulator().WaitIdle(ctx); err != nil {
		t.Fatalf("simulator did not finish its sessions: %v", err)
	}
	// Something for every section: a rejected webhook, and two records the enricher cannot
	// decode, which go to the DLQ with their metadata.
	resp, err := http.Post(a.IngressURL(), "application/json", strings.NewReader(`{"not":"a signed webhook"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(a.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 2 {
		rec := &kgo.Record{Topic: testConfig().Topics.Sessions, Key: fmt.Appendf(nil, "ses-garbled-%d", i), Value: []byte("not avro"),
			Headers: []kgo.RecordHeader{{Key: serde.HeaderEventID, Value: fmt.Appendf(nil, "evt-garbled-%d", i)}}}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until everything is enriched or dead-lettered and the figures stop moving.
	var last string
	for deadline := time.Now().Add(60 * time.Second); ; {
		st, _ := getStatus(t, a.AdminAddr())
		f := figures(st)
		if st.Enricher != nil && st.Enricher.Enriched >= 9 && st.Enricher.DLQ == 2 && st.Enricher.ConsumerLag == 0 && st.Ready && f == last &&
			(st.Reconciler == nil || st.Reconciler.PassesSucceeded >= 1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pipeline did not settle; last status: %s", f)
		}
		last = f
		time.Sleep(300 * time.Millisecond)
	}

	// The page is compared with /status read just before and just after the browser loaded
	// it; a background change in between (a reconciliation pass, a lag refresh) makes the
	// comparison meaningless, so that load is retried.
	var dom string
	var after admin.Status
	var body []byte
	for attempt := 1; ; attempt++ {
		before, _ := getStatus(t, a.AdminAddr())
		dom = string(chromium(ctx, t, bin, "--dump-dom", "http://"+a.AdminAddr()+"/"))
		after, body = getStatus(t, a.AdminAddr())
		if figures(before) == figures(after) {
			break
		}
		if attempt == 5 {
			t.Fatalf("the figures kept moving while the browser loaded the page:\n%s\n%s", figures(before), figures(after))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(dom, "idnow-connector") || !strings.Contains(dom, `data-key="webhooks.accepted"`) {
		t.Fatalf("Chromium's DOM is not the status page:\n%s", dom)
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	shown := map[string]string{}
	for _, m := range regexp.MustCompile(`data-key="([^"]+)"[^>]*>([^<]*)<`).FindAllStringSubmatch(dom, -1) {
		shown[m[1]] = strings.TrimSpace(html.UnescapeString(m[2]))
		if err := statustest.Match(doc, m[1], shown[m[1]]); err != nil {
			t.Errorf("page %s: %v", m[1], err)
		}
	}
	// The numbers the issue names are on the page, with the values /status has.
	for key, want := range map[string]string{
		"webhooks.accepted":                  count(after.Webhooks.Accepted),
		"webhooks.rejected":                  count(after.Webhooks.Rejected),
		"enricher.enriched":                  count(after.Enricher.Enriched),
		"enricher.dlq":                       "2",
		"enricher.dlq_by_reason.undecodable": "2",
		"enricher.consumer_lag":              "0",
		"recent_dlq.0.reason":                "undecodable",
		"config.topics.sessions":             testConfig().Topics.Sessions,
		"roles.1.health":                     "healthy",
		"reconciler.passes_failed":           "0",
		"enricher.end_to_end_p99_seconds":    strconv.FormatFloat(*after.Enricher.EndToEndP99, 'f', 3, 64),
	} {
		if shown[key] != want {
			t.Errorf("the page shows %s = %q, want %q (from /status)", key, shown[key], want)
		}
	}
	// The two DLQ'd records sit on different partitions, so either may have committed first.
	got := map[string]bool{}
	for i := range 2 {
		got[shown[fmt.Sprintf("recent_dlq.%d.event_id", i)]+" "+shown[fmt.Sprintf("recent_dlq.%d.session_id", i)]] = true
	}
	if !got["evt-garbled-0 ses-garbled-0"] || !got["evt-garbled-1 ses-garbled-1"] {
		t.Errorf("the page's newest dead letters are %v, want the two garbled records", got)
	}
	if after.Webhooks.Rejected < 1 || after.Webhooks.Accepted < 9 {
		t.Errorf("webhooks %+v: want the simulator's 9+ accepted and the forged one rejected", after.Webhooks)
	}
	if path := os.Getenv("STATUS_PAGE_SCREENSHOT"); path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			t.Fatal(err)
		}
		chromium(ctx, t, bin, "--hide-scrollbars", "--window-size=1100,1250", "--screenshot="+abs, "http://"+a.AdminAddr()+"/")
		if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
			t.Fatalf("Chromium wrote no screenshot to %s: %v", abs, err)
		}
		t.Logf("screenshot saved to %s", abs)
	}
}

func count(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// TestStatusSummary: the configuration summary names the roles of the mode with the checks
// they register, and shows a registry URL without its credentials.
func TestStatusSummary(t *testing.T) {
	cfg := testConfig()
	cfg.SchemaRegistry.URL = "https://user:s3cret@registry.example:8081/apis/ccompat/v7?token=abc"
	a := &App{cfg: cfg, mode: ModeEnricher, version: "v9", brokers: []string{"k1:9092"}}
	s := statusProvider{a}.Summary()
	want := []admin.Role{{Name: "enricher", Checks: []string{"enricher"}}}
	if !reflect.DeepEqual(s.Roles, want) || s.Delivery != cfg.Enrich.Delivery || s.Mode != "enricher" {
		t.Errorf("summary %+v", s)
	}
	b, _ := json.Marshal(s)
	for _, secret := range []string{"s3cret", "user", "token=abc"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("summary leaks %q: %s", secret, b)
		}
	}
	if !strings.Contains(s.Encoding, "https://registry.example:8081/apis/ccompat/v7") {
		t.Errorf("encoding %q does not name the registry", s.Encoding)
	}
	if (statusProvider{a}).RecentDLQ() != nil {
		t.Error("RecentDLQ without an enricher is not nil")
	}
}
