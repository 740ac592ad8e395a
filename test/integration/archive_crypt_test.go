//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/archive"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TestArchiveEncrypted runs ingress, enricher and archiver with privacy.mode encrypt against the
// simulator, the real broker and SeaweedFS: at least 10 completed sessions, one with a large
// video (50 MiB; ARCHIVE_ENCRYPTED_VIDEO_MIB=200 for the BENCHMARKS.md measurement), the
// archiver SIGKILLed during the video's multipart upload and restarted. Then every session has
// exactly one ArchivedSession and an encrypted (version 2) manifest; every object decrypts, with
// the data key the enricher made, to what the simulator served; no object name or manifest holds
// a plaintext digest; the session folders hold no duplicate or stray object. Finally the video
// session's subject is erased and `archive verify --decrypt` reports its files ERASED (and exits
// 0), while `archive get` still fetches another session's file, decrypted and checked.
func TestArchiveEncrypted(t *testing.T) {
	bucketURL := s3Bucket(t)
	seeds := brokers(t)
	videoSize := int64(50 << 20)
	if v := os.Getenv("ARCHIVE_ENCRYPTED_VIDEO_MIB"); v != "" {
		mib, err := strconv.Atoi(v)
		if err != nil || mib < 1 {
			t.Fatalf("ARCHIVE_ENCRYPTED_VIDEO_MIB=%q is not a positive number of MiB", v)
		}
		videoSize = int64(mib) << 20
	}
	p := newPipeline(t, seeds)
	archivedTopic, keysTopic, auditTopic := uniqueName(t, "archived"), uniqueName(t, "keys"), uniqueName(t, "audit")
	adm := newAdmin(t, seeds)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, archivedTopic, keysTopic, auditTopic); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	prefix := strings.ReplaceAll(uniqueName(t, "sealed"), ".", "-")
	kekFile, pepperFile, kek, _ := devPrivacyKeys(t)
	priv := settings{
		"privacy.mode":            "encrypt",
		"privacy.kek_keyset_file": kekFile,
		"privacy.pepper_file":     pepperFile,
		"topics.keys":             keysTopic,
		"topics.audit":            auditTopic,
	}
	sim := startSimulator(t, func(c *idnowsim.Config) {
		c.Seed = 41
		c.DeletedBlockRate = 0
		c.Files = idnowsim.Files{ImageSize: 48 << 10, ExtraImages: true, VideoSize: 256 << 10, VideoRate: 0.3,
			LargeVideoSize: videoSize, LargeVideoEvery: 10}
		c.Faults.FileExpiredRate = 0.05
		c.Faults.FileTruncatedRate = 0.05
	})
	ctx := t.Context()
	bucket := openTestBucket(t)

	icfg, webhookURL := p.ingressSettings(sim.JWKSURL(), sim.Issuer())
	ingress := startChild(t, "ingress", "ingress", icfg.with(priv))
	if err := sim.SetWebhookURL(webhookURL); err != nil {
		t.Fatal(err)
	}
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "sealed").with(priv))
	acfg := p.archiverSettings(sim, bucketURL, prefix, archivedTopic, "sealed-1").with(priv)
	archiver := startChild(t, "archiver", "archiver", acfg)

	completed := 0
	for completed < 10 {
		sim.CreateSessions(12 - completed)
		simtest.WaitIdle(t, sim, 3*time.Minute)
		completed = sim.Stats().SessionsByStatus[idnowsim.StatusCompleted]
	}
	snaps := map[string]idnowsim.SessionSnapshot{}
	var video string
	for _, s := range sim.Sessions() {
		if s.Status != idnowsim.StatusCompleted {
			continue
		}
		snaps[s.SessionID] = s
		for _, id := range s.Files {
			if f, _ := sim.File(id); f.Size == videoSize {
				video = s.SessionID
			}
		}
	}
	if video == "" || snaps[video].SubjectID == "" {
		t.Fatalf("no completed session with a subject among %d has the %d-byte video", len(snaps), videoSize)
	}

	peak := killDuringUpload(t, archiver, bucket, prefix+"/", video, 5*time.Minute)
	archiver = startChild(t, "archiver-restarted", "archiver", acfg.with(settings{"admin.listen": freeAddr(t)}))

	archived := archivedCodec(t)
	var recs []schemas.ArchivedSession
	deadline := time.Now().Add(5 * time.Minute)
	for {
		recs = recs[:0]
		for _, r := range p.readCommitted(archivedTopic) {
			var as schemas.ArchivedSession
			if err := archived.Decode(ctx, r.Value, &as); err != nil {
				t.Fatalf("decode ArchivedSession at offset %d: %v", r.Offset, err)
			}
			recs = append(recs, as)
		}
		if len(recs) >= len(snaps) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	peak2 := vmHWM(archiver.cmd.Process.Pid)
	archiver.stop()
	enricher.stop()
	ingress.stop()
	t.Logf("archiver peak RSS (VmHWM) with encryption, %d MiB video: %.1f MiB before the kill (video encrypted into the spool, upload under way), %.1f MiB in the restarted process (the whole video again)",
		videoSize>>20, float64(peak)/(1<<20), float64(peak2)/(1<<20))
	if peak2 >= 128<<20 {
		t.Errorf("archiver peak RSS %.1f MiB, want < 128 MiB", float64(peak2)/(1<<20))
	}

	bySession := map[string]schemas.ArchivedSession{}
	for _, as := range recs {
		if _, dup := bySession[as.SessionID]; dup {
			t.Errorf("session %s archived twice", as.SessionID)
		}
		bySession[as.SessionID] = as
	}
	if len(recs) != len(snaps) {
		t.Fatalf("%d ArchivedSession records, want exactly %d", len(recs), len(snaps))
	}

	ring, err := privacy.NewKeyring(kek, 100)
	if err != nil {
		t.Fatal(err)
	}
	keys := privacy.NewKeyFinder(ring, privacy.NewKeysTopic([]kgo.Opt{kgo.SeedBrokers(seeds...)}, keysTopic, ring, nil), time.Minute)
	files := 0
	for sid := range snaps {
		as := bySession[sid]
		dir := strings.TrimSuffix(as.ManifestKey, "/manifest.json")
		v, err := archive.VerifyDecrypt(ctx, bucket, dir, nil, keys)
		if err != nil {
			t.Errorf("session %s: %v", sid, err)
			continue
		}
		raw, _ := bucket.ReadAll(ctx, as.ManifestKey)
		if v.Manifest.Version != archive.ManifestVersionEncrypted || !v.Decrypted || !v.OK() {
			t.Errorf("session %s: manifest version %d, decrypted %v, ok %v", sid, v.Manifest.Version, v.Decrypted, v.OK())
		}
		named := map[string]bool{as.ManifestKey: true}
		for _, f := range v.Files {
			named[f.Entry.Key] = true
			sf, ok := sim.File(f.Entry.VaultEntryID)
			plain := hex.EncodeToString(sf.SHA256[:])
			switch {
			case !ok || sf.SessionID != sid:
				t.Errorf("session %s: unknown file %s", sid, f.Entry.VaultEntryID)
			case f.Plain == nil || f.Plain.SHA256 != plain || f.Plain.Size != sf.Size:
				t.Errorf("session %s file %s: decrypted %+v, the simulator served %s / %d bytes", sid, f.Entry.VaultEntryID, f.Plain, plain, sf.Size)
			case !strings.HasSuffix(f.Entry.Key, ".tink") || strings.Contains(f.Entry.Key, plain) || strings.Contains(string(raw), plain):
				t.Errorf("session %s: the key %s or the manifest holds the plaintext digest", sid, f.Entry.Key)
			}
			files++
		}
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
	t.Logf("%d sessions, %d encrypted objects decrypted and matching the simulator's digests", len(snaps), files)

	// Erase the video's subject: its evidence reports ERASED, and verify succeeds.
	cmd := exec.Command(connectorBinary(t), "erase", "--subject", snaps[video].SubjectID, "--reason", "itest archive erasure")
	cmd.Dir = t.TempDir()
	cmd.Env = p.base().with(priv).environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	out, err := runArchiveTool(t, acfg, "verify", "--session", video, "--decrypt")
	erasedLines := strings.Count(out, "\nERASED ")
	if err != nil || erasedLines != len(snaps[video].Files)-len(snaps[video].MissingFiles) || strings.Contains(out, "MISMATCH") || strings.Contains(out, "UNREADABLE") {
		t.Errorf("archive verify --decrypt after erasure (%d ERASED lines): %v\n%s", erasedLines, err, out)
	}
	t.Logf("archive verify --session %s --decrypt after erasure:\n%s", video, out)

	// An auditor fetches one file of another session, decrypted.
	for sid, snap := range snaps {
		if sid == video || snap.SubjectID == snaps[video].SubjectID || len(snap.Files) == 0 {
			continue
		}
		id := snap.Files[0]
		sf, _ := sim.File(id)
		dst := filepath.Join(t.TempDir(), "evidence.bin")
		if out, err := runArchiveTool(t, acfg, "get", "--session", sid, "--file", id, "-o", dst); err != nil {
			t.Fatalf("archive get: %v\n%s", err, out)
		}
		b, err := os.ReadFile(dst)
		if sum := sha256.Sum256(b); err != nil || sum != sf.SHA256 {
			t.Fatalf("archive get wrote %d bytes with sha256 %x (%v), the simulator served %x", len(b), sum, err, sf.SHA256)
		}
		break
	}
}

// runArchiveTool runs `idnow-connector archive <args>` with the archiver's settings.
func runArchiveTool(t testing.TB, cfg settings, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, connectorBinary(t), append([]string{"archive"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = cfg.environ()
	b, err := cmd.CombinedOutput()
	return string(b), err
}
