//go:build integration

package integration

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/blob/s3blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// archiveLargeVideo is the size of the one large video of TestArchiveEvidence.
const archiveLargeVideo = 200 << 20

// s3Bucket returns the bucket URL of the SeaweedFS of `make s3-up` (S3_ENDPOINT, S3_BUCKET),
// or skips the test with instructions.
func s3Bucket(t testing.TB) string {
	t.Helper()
	endpoint := os.Getenv("S3_ENDPOINT")
	if endpoint == "" {
		t.Skip("S3_ENDPOINT is not set: start SeaweedFS with `make s3-up` and run with S3_ENDPOINT=http://127.0.0.1:18333 (S3_BUCKET defaults to idnow-evidence)")
	}
	bucket := os.Getenv("S3_BUCKET")
	if bucket == "" {
		bucket = "idnow-evidence"
	}
	q := url.Values{"endpoint": {endpoint}, "use_path_style": {"true"}, "region": {"us-east-1"}, "anonymous": {"true"},
		// Multipart objects carry composite checksums the SDK cannot validate on read; the
		// archive checks SHA-256 itself.
		"response_checksum_validation": {"when_required"}}
	return "s3://" + bucket + "?" + q.Encode()
}

// archiverSettings configures an archiver child against the simulator and the bucket.
func (p *pipeline) archiverSettings(sim *idnowsim.Simulator, bucketURL, prefix, archived, instance string) settings {
	sc := sim.Config()
	return p.base().with(settings{
		"topics.archived":               archived,
		"idnow.api_url":                 sim.APIURL(),
		"idnow.token_url":               sim.TokenURL(),
		"idnow.client_id":               sc.ClientID,
		"idnow.client_secret":           sc.ClientSecret,
		"idnow.environment":             sc.Environment,
		"idnow.allow_insecure_http":     "true", // the simulator serves plain http on 127.0.0.1
		"idnow.rate_limit":              "0",
		"idnow.max_file_size":           strconv.Itoa(256 << 20),
		"idnow.retry.initial_backoff":   "20ms",
		"idnow.retry.max_backoff":       "500ms",
		"archive.bucket_url":            bucketURL,
		"archive.prefix":                prefix,
		"archive.group":                 p.group + ".archiver",
		"archive.transactional_id":      p.txnID + ".archiver",
		"archive.instance_id":           instance,
		"archive.concurrency":           "4",
		"archive.max_poll_records":      "10",
		"archive.session_timeout":       "6s",
		"archive.shutdown_timeout":      "10s",
		"archive.retry.initial_backoff": "50ms",
		"archive.retry.max_backoff":     "1s",
		"archive.spool_dir":             p.t.TempDir(),
	})
}

// TestArchiveEvidence archives the evidence of at least 100 completed sessions (3-5 files each,
// one of them a 200 MiB video) from the simulator into SeaweedFS, through the whole pipeline
// (ingress, enricher, archiver processes), with expired presigned URLs, truncated and slow
// bodies and missing files injected. The archiver is SIGKILLed once the video has been
// downloaded (its upload under way) and started again. Then: every object's SHA-256 is what
// the simulator served, every session has a manifest naming every file or recording it missing
// (exactly the simulator's 404s), no object exists that a manifest does not name, and
// topics.archived holds exactly one ArchivedSession per completed session. The archiver's peak
// RSS (VmHWM) is logged for BENCHMARKS.md.
func TestArchiveEvidence(t *testing.T) {
	bucketURL := s3Bucket(t)
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	archivedTopic := uniqueName(t, "archived")
	prefix := strings.ReplaceAll(uniqueName(t, "evidence"), ".", "-")
	sim := startSimulator(t, func(c *idnowsim.Config) {
		c.Seed = 14
		c.DeletedBlockRate = 0 // a deleted verification block has no file references
		c.Files = idnowsim.Files{ImageSize: 64 << 10, ExtraImages: true, VideoSize: 512 << 10, VideoRate: 0.3,
			LargeVideoSize: archiveLargeVideo, LargeVideoEvery: 100}
		c.Faults.FileExpiredRate = 0.05
		c.Faults.FileTruncatedRate = 0.05
		c.Faults.FileSlowBodyRate = 0.02
		c.Faults.FileMissingRate = 0.02
		c.Faults.SlowDelay = 300 * time.Millisecond
	})
	ctx := t.Context()
	bucket := openTestBucket(t)

	icfg, webhookURL := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	ingress := startChild(t, "ingress", "ingress", icfg)
	if err := sim.SetWebhookURL(webhookURL); err != nil {
		t.Fatal(err)
	}
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "archive"))
	acfg := p.archiverSettings(sim, bucketURL, prefix, archivedTopic, "archive-1")
	archiver := startChild(t, "archiver", "archiver", acfg)

	// Sessions until at least 100 completed and one of them has the large video (every 100th
	// completing session has one) served: the missing-file fault can hit the video too, and
	// then there is no upload to kill the archiver in; more sessions bring the next one.
	began := time.Now()
	completed := 0
	var snaps map[string]idnowsim.SessionSnapshot
	var video string
	for completed < 100 || video == "" {
		if completed >= 400 {
			t.Fatalf("no completed session among %d has the %d-byte video served (not missing)", completed, archiveLargeVideo)
		}
		sim.CreateSessions(max(5, min(20, 100-completed+5)))
		simtest.WaitIdle(t, sim, 3*time.Minute)
		completed = sim.Stats().SessionsByStatus[idnowsim.StatusCompleted]
		snaps, video = completedWithVideo(sim)
	}
	for id, s := range snaps {
		if len(s.Files) < 3 || len(s.Files) > 5 {
			t.Errorf("completed session %s has %d files, want 3-5", id, len(s.Files))
		}
	}
	t.Logf("%d completed sessions (large video in %s) after %s; simulator %+v", len(snaps), video, time.Since(began).Round(time.Millisecond), sim.Stats())

	// Kill the archiver while the video's multipart upload is open in SeaweedFS.
	peak := killDuringUpload(t, archiver, bucket, prefix+"/", video, 5*time.Minute)
	archiver = startChild(t, "archiver-restarted", "archiver", acfg.with(settings{"admin.listen": freeAddr(t)}))

	archived := archivedCodec(t)
	want := len(snaps)
	var recs []schemas.ArchivedSession
	deadline := time.Now().Add(10 * time.Minute)
	for {
		recs = recs[:0]
		for _, r := range p.readCommitted(archivedTopic) {
			var as schemas.ArchivedSession
			if err := archived.Decode(ctx, r.Value, &as); err != nil {
				t.Fatalf("decode ArchivedSession at offset %d: %v", r.Offset, err)
			}
			recs = append(recs, as)
		}
		if len(recs) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	peak2 := vmHWM(archiver.cmd.Process.Pid)
	bytesDone := seriesValue(archiver.admin, "idnow_connector_archive_bytes_total")
	digestRetries := seriesValue(archiver.admin, `idnow_connector_archive_retries_total{stage="digest"}`)
	refreshes := seriesValue(archiver.admin, "idnow_connector_idnow_presign_refreshes_total")
	archiver.stop()
	enricher.stop()
	ingress.stop()
	t.Logf("archiver peak RSS (VmHWM): %.1f MiB before the kill (video downloaded), %.1f MiB in the restarted process; restarted process: %.0f bytes verified, %.0f digest retries, %.0f presign refreshes",
		float64(peak)/(1<<20), float64(peak2)/(1<<20), bytesDone, digestRetries, refreshes)

	// Exactly one ArchivedSession per completed session.
	bySession := map[string]schemas.ArchivedSession{}
	for _, as := range recs {
		if _, dup := bySession[as.SessionID]; dup {
			t.Errorf("session %s archived twice on %s", as.SessionID, archivedTopic)
		}
		bySession[as.SessionID] = as
		if _, ok := snaps[as.SessionID]; !ok {
			t.Errorf("ArchivedSession for %s, which is not a completed session", as.SessionID)
		}
	}
	if len(recs) != want {
		t.Fatalf("%d ArchivedSession records, want exactly %d (one per completed session)", len(recs), want)
	}

	// Every manifest, every object, every digest.
	files, missing := 0, 0
	for sid, snap := range snaps {
		as := bySession[sid]
		dir := strings.TrimSuffix(as.ManifestKey, "/manifest.json")
		v, err := archive.Verify(ctx, bucket, dir, nil)
		if err != nil {
			t.Errorf("session %s: %v", sid, err)
			continue
		}
		if v.ManifestSHA256 != as.ManifestSHA256 {
			t.Errorf("session %s: manifest sha256 %s, the record says %s", sid, v.ManifestSHA256, as.ManifestSHA256)
		}
		named := map[string]bool{as.ManifestKey: true}
		seen := map[string]bool{}
		for _, f := range v.Files {
			named[f.Entry.Key] = true
			seen[f.Entry.VaultEntryID] = true
			sf, ok := sim.File(f.Entry.VaultEntryID)
			if !ok || sf.SessionID != sid {
				t.Errorf("session %s: manifest names file %s the simulator does not know for it", sid, f.Entry.VaultEntryID)
				continue
			}
			if !f.OK() || f.SHA256 != hex.EncodeToString(sf.SHA256[:]) || f.Size != sf.Size {
				t.Errorf("session %s file %s: object sha256 %s / %d bytes (%v), the simulator served %x / %d bytes",
					sid, f.Entry.VaultEntryID, f.SHA256, f.Size, f.Err, sf.SHA256, sf.Size)
			}
			files++
		}
		wantMissing := map[string]bool{}
		for _, id := range snap.MissingFiles {
			wantMissing[id] = true
		}
		for _, m := range v.Manifest.Missing {
			seen[m.VaultEntryID] = true
			missing++
			if !wantMissing[m.VaultEntryID] || m.Reason != archive.ReasonNotFound {
				t.Errorf("session %s: file %s recorded missing (%s: %s), the simulator has it", sid, m.VaultEntryID, m.Reason, m.Detail)
			}
		}
		for _, id := range snap.Files {
			if !seen[id] {
				t.Errorf("session %s: file %s neither archived nor recorded missing", sid, id)
			}
		}
		// No duplicates, no strays: the session folder holds exactly what the manifest names.
		it := bucket.List(&blob.ListOptions{Prefix: dir + "/"})
		for {
			o, err := it.Next(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("list %s: %v", dir, err)
			}
			if !named[o.Key] {
				t.Errorf("session %s: object %s is not named by the manifest", sid, o.Key)
			}
		}
	}
	st := sim.Stats()
	t.Logf("%d objects verified, %d files recorded missing; simulator issued %d expired URLs, %d truncated and %d slow bodies, %d 404s",
		files, missing, st.ExpiredURLsIssued, st.TruncatedBodies, st.SlowBodies, st.FilesMissing)
	if st.ExpiredURLsIssued == 0 || st.TruncatedBodies == 0 || st.FilesMissing == 0 {
		t.Errorf("the faults were not all exercised: %+v", st)
	}

	// The command an auditor runs.
	out, err := runVerify(t, acfg, video)
	if err != nil || !strings.Contains(out, "OK ") || strings.Contains(out, "MISMATCH") {
		t.Errorf("archive verify --session %s: %v\n%s", video, err, out)
	}
	t.Logf("archive verify --session %s:\n%s", video, out)
}

// openTestBucket opens the S3_ENDPOINT bucket with a client whose connections the test closes
// at the end (the SDK's default client keeps them, and their goroutines, past Close).
func openTestBucket(t testing.TB) *blob.Bucket {
	t.Helper()
	tr := &http.Transport{}
	cl := s3.New(s3.Options{
		BaseEndpoint: aws.String(os.Getenv("S3_ENDPOINT")), Region: "us-east-1", UsePathStyle: true,
		Credentials: aws.AnonymousCredentials{}, HTTPClient: &http.Client{Transport: tr},
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	b, err := s3blob.OpenBucket(t.Context(), cl, bucketName(os.Getenv("S3_BUCKET")), nil)
	if err != nil {
		t.Fatalf("open bucket: %v", err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		tr.CloseIdleConnections()
	})
	return b
}

func archivedCodec(t testing.TB) *serde.Codec {
	t.Helper()
	return serde.NewDecoder(schemas.ArchivedSessionSchema(), nil)
}

// killDuringUpload polls the bucket's open multipart uploads until one for a key of session
// sid appears (the video's upload is under way), records the archiver's peak RSS and SIGKILLs it.
func killDuringUpload(t testing.TB, c *child, bucket *blob.Bucket, prefix, sid string, timeout time.Duration) (peak int64) {
	t.Helper()
	var cl *s3.Client
	if !bucket.As(&cl) {
		t.Fatal("the bucket is not an S3 bucket")
	}
	name := bucketName(os.Getenv("S3_BUCKET"))
	deadline := time.Now().Add(timeout)
	for {
		out, err := cl.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &name, Prefix: &prefix})
		if err != nil {
			t.Fatalf("list multipart uploads: %v", err)
		}
		for _, u := range out.Uploads {
			if u.Key != nil && strings.Contains(*u.Key, "/"+sid+"/") {
				peak = vmHWM(c.cmd.Process.Pid)
				c.kill()
				t.Logf("archiver killed during the multipart upload of %s", *u.Key)
				return peak
			}
		}
		if time.Now().After(deadline) || !c.running() {
			t.Fatalf("no multipart upload for session %s seen within %s (archiver running: %v)", sid, timeout, c.running())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bucketName(env string) string {
	if env == "" {
		return "idnow-evidence"
	}
	return env
}

// seriesValue reads one series (labels included, as exposed) from a child's /metrics; 0 when
// it is absent or the child does not answer.
func seriesValue(admin, series string) float64 {
	v, _ := metricValue(admin, series)
	return v
}

// vmHWM is a process's peak resident set size in bytes (Linux /proc), 0 when unknown.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runVerify runs `idnow-connector archive verify --session id` with the archiver's settings.
func runVerify(t testing.TB, cfg settings, id string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, connectorBinary(t), "archive", "verify", "--session", id)
	cmd.Dir = t.TempDir()
	cmd.Env = cfg.environ()
	b, err := cmd.CombinedOutput()
	return string(b), err
}

// completedWithVideo returns the simulator's completed sessions and the id of one whose files
// include the large video, served (not missing); "" when none does yet.
func completedWithVideo(sim *idnowsim.Simulator) (map[string]idnowsim.SessionSnapshot, string) {
	snaps := map[string]idnowsim.SessionSnapshot{}
	video := ""
	for _, s := range sim.Sessions() {
		if s.Status != idnowsim.StatusCompleted {
			continue
		}
		snaps[s.SessionID] = s
		for _, id := range s.Files {
			if f, _ := sim.File(id); f.Size == archiveLargeVideo && !f.Missing {
				video = s.SessionID
			}
		}
	}
	return snaps, video
}
