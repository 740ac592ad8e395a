package archive

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/retry"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// fakeFiles serves files from memory with scripted failures per vault entry id.
type fakeFiles struct {
	mu       sync.Mutex
	files    map[string][]byte
	notFound map[string]bool
	// truncate and transient count down: the next N downloads of the id are cut short (with
	// the full digest declared) or fail with a 503.
	truncate  map[string]int
	transient map[string]int
	calls     map[string]int
	// before runs, outside the lock, at the start of each download of the id (it may block).
	before map[string]func(ctx context.Context)
}

func newFakeFiles() *fakeFiles {
	return &fakeFiles{files: map[string][]byte{}, notFound: map[string]bool{}, truncate: map[string]int{}, transient: map[string]int{}, calls: map[string]int{}, before: map[string]func(context.Context){}}
}

func (f *fakeFiles) GetFile(ctx context.Context, id string) (*idnow.File, error) {
	f.mu.Lock()
	hook := f.before[id]
	f.mu.Unlock()
	if hook != nil {
		hook(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[id]++
	if f.notFound[id] {
		return nil, &idnow.APIError{Op: idnow.EndpointGetFile, VaultEntryID: id, StatusCode: http.StatusNotFound}
	}
	if f.transient[id] > 0 {
		f.transient[id]--
		return nil, &idnow.APIError{Op: idnow.EndpointGetFileDownload, VaultEntryID: id, StatusCode: http.StatusServiceUnavailable}
	}
	b := f.files[id]
	sum := sha256.Sum256(b)
	body := b
	size := int64(len(b))
	if f.truncate[id] > 0 {
		f.truncate[id]--
		body, size = b[:len(b)/2], -1
	}
	return &idnow.File{ContentType: "image/jpeg", Size: size, SHA256: sum[:], Body: io.NopCloser(bytes.NewReader(body))}, nil
}

var testTopics = kafka.TopicsConfig{Sessions: "s", Enriched: "e", DLQ: "d", Archived: "a", Keys: "k", Create: true, Partitions: 2, ReplicationFactor: 1}

type harness struct {
	brokers  []string
	bucket   *blob.Bucket
	enriched *serde.Codec
	archived *serde.Codec
	files    *fakeFiles
	reg      *prometheus.Registry
	// enc is Deps.Encryption of the archivers start makes.
	enc *Encryption
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second),
		kfake.SeedTopics(2, testTopics.Enriched, testTopics.Archived, testTopics.Keys))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := blob.OpenBucket(t.Context(), "file://"+t.TempDir()+"?no_tmp_dir=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := &harness{brokers: c.ListenAddrs(), bucket: b, files: newFakeFiles(), reg: prometheus.NewRegistry()}
	if h.enriched, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	if h.archived, err = serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.ArchivedSessionSchema()}, nil); err != nil {
		t.Fatal(err)
	}
	return h
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.InstanceID = "test"
	cfg.SpoolDir = t.TempDir()
	cfg.SessionTimeout = 6 * time.Second
	cfg.Retry = retry.Config{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	cfg.MaxDigestMismatches = 3
	return cfg
}

func (h *harness) start(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	return h.startWith(t, cfg, h.reg)
}

// startWith starts an archiver registering its metrics in reg (a second member of the group
// needs its own).
func (h *harness) startWith(t *testing.T, cfg Config, reg *prometheus.Registry) (stop func()) {
	t.Helper()
	a, err := New(cfg, Deps{
		KafkaOpts: []kgo.Opt{kgo.SeedBrokers(h.brokers...)}, Topics: testTopics, Files: h.files,
		Enriched: h.enriched, Archived: h.archived, Bucket: h.bucket, Storage: "file:///test",
		Environment: "live", Registry: reg, Log: slog.New(slog.DiscardHandler), Version: "test", Encryption: h.enc,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// session produces an EnrichedSession with the given files (vault id -> bytes).
func (h *harness) session(t *testing.T, id, status string, files map[string][]byte) {
	t.Helper()
	h.sessionFrom(t, id, status, status, files)
}

// sessionFrom produces the EnrichedSession of an event that announced eventStatus for a
// session the API reported in status.
func (h *harness) sessionFrom(t *testing.T, id, eventStatus, status string, files map[string][]byte) {
	t.Helper()
	h.sessionWith(t, id, eventStatus, status, files, nil)
}

// sessionWith is sessionFrom with the record changed by mod (nil: unchanged) before it is
// encoded.
func (h *harness) sessionWith(t *testing.T, id, eventStatus, status string, files map[string][]byte, mod func(*schemas.EnrichedSession)) {
	t.Helper()
	created := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	es := schemas.EnrichedSession{
		Event:      schemas.TriggeringEvent{EventID: "ev-" + id, EventName: "session.completed", SessionStatus: &eventStatus, ReceivedAt: created},
		Session:    schemas.SessionDetails{SessionID: id, Status: status, CreatedAt: &created, Metadata: map[string]string{}},
		DataBlocks: []schemas.DataBlock{{ID: ptr("b1"), Type: "documentVerification", Status: "STORED", CreatedAt: &created}},
		FileRefs:   []schemas.FileRef{},
		Enrichment: schemas.EnrichmentInfo{EnrichedAt: created, ConnectorVersion: "test", DataBlocksContent: "full"},
	}
	for vid, b := range files {
		h.files.mu.Lock()
		h.files.files[vid] = b
		h.files.mu.Unlock()
		es.FileRefs = append(es.FileRefs, schemas.FileRef{VaultEntryID: vid, DataBlockID: ptr("b1"), DataBlockType: "documentVerification", JSONPath: "$.images." + vid})
	}
	if mod != nil {
		mod(&es)
	}
	v, err := h.enriched.Encode(&es)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.DefaultProduceTopic(testTopics.Enriched))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte(id), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// archivedRecords reads topics.archived (read_committed) until want records arrived.
func (h *harness) archivedRecords(t *testing.T, want int) map[string][]schemas.ArchivedSession {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(testTopics.Archived),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string][]schemas.ArchivedSession{}
	n := 0
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d archived records, want %d", n, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var as schemas.ArchivedSession
			if err := h.archived.Decode(ctx, r.Value, &as); err != nil {
				t.Errorf("decode: %v", err)
				return
			}
			out[as.SessionID] = append(out[as.SessionID], as)
			n++
		})
	}
	// Anything beyond want would be a duplicate: give it a moment to show up.
	short, cancel2 := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel2()
	cl.PollFetches(short).EachRecord(func(r *kgo.Record) { n++ })
	if n != want {
		t.Fatalf("got %d archived records, want exactly %d", n, want)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func blobBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// TestArchiveSessions: files land under content-addressed keys with metadata, the manifest
// lists them (and the 404 as missing), a truncated body is detected and downloaded again, a
// transient failure is retried, other statuses are skipped, and exactly one ArchivedSession
// per archived session is committed.
func TestArchiveSessions(t *testing.T) {
	h := newHarness(t)
	front, video := blobBytes(5000, 1), blobBytes(3<<20, 2)
	h.files.notFound["gone"] = true
	h.files.truncate["video"] = 2
	h.files.transient["front"] = 1
	h.session(t, "s1", "COMPLETED", map[string][]byte{"front": front, "video": video, "gone": nil})
	h.session(t, "s2", "RUNNING", map[string][]byte{"other": blobBytes(10, 3)})
	h.session(t, "s3", "COMPLETED", nil)
	// session.started enriched after the session completed: not the record to archive.
	h.sessionFrom(t, "s4", "RUNNING", "COMPLETED", map[string][]byte{"late": blobBytes(10, 4)})
	cfg := testConfig(t)
	for _, name := range []string{"idnow-archive-idnow-connector-archiver-test-123", "idnow-archive-other-1"} {
		if err := os.WriteFile(filepath.Join(cfg.SpoolDir, name), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stop := h.start(t, cfg)
	got := h.archivedRecords(t, 2)
	stop()

	as := got["s1"][0]
	if as.FilesArchived != 2 || as.FilesMissing != 1 || as.BytesArchived != int64(len(front)+len(video)) || as.SessionStatus != "COMPLETED" {
		t.Fatalf("ArchivedSession s1 = %+v", as)
	}
	if len(got["s3"]) != 1 || got["s2"] != nil || got["s4"] != nil {
		t.Fatalf("archived sessions: %v", got)
	}
	dir := "idnow/live/2026/11/s1"
	if as.ManifestKey != dir+"/manifest.json" {
		t.Fatalf("manifest key %s", as.ManifestKey)
	}
	if attrs, err := h.bucket.Attributes(t.Context(), as.ManifestKey); err != nil {
		t.Fatal(err)
	} else if attrs.Metadata["manifest-version"] != "1" {
		t.Errorf("manifest metadata %v, want manifest-version 1", attrs.Metadata)
	}
	v, err := Verify(t.Context(), h.bucket, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.ManifestSHA256 != as.ManifestSHA256 || len(v.Files) != 2 || v.Signature != "unsigned" {
		t.Fatalf("verification %+v", v)
	}
	for _, f := range v.Files {
		want := map[string][]byte{"front": front, "video": video}[f.Entry.VaultEntryID]
		sum := sha256.Sum256(want)
		if f.Entry.SHA256 != hex.EncodeToString(sum[:]) || f.Entry.Key != dir+"/"+f.Entry.SHA256+".jpg" {
			t.Errorf("file %+v", f.Entry)
		}
		attrs, err := h.bucket.Attributes(t.Context(), f.Entry.Key)
		if err != nil || attrs.Metadata["sha256"] != f.Entry.SHA256 || attrs.Metadata["session-id"] != "s1" || attrs.Metadata["block-type"] != "documentVerification" || attrs.Metadata["idnow-created-at"] == "" {
			t.Errorf("attributes of %s: %+v, %v", f.Entry.Key, attrs, err)
		}
	}
	if m := v.Manifest.Missing; len(m) != 1 || m[0].VaultEntryID != "gone" || m[0].Reason != ReasonNotFound {
		t.Fatalf("missing = %+v", m)
	}
	if c := h.files.calls["video"]; c != 3 {
		t.Errorf("video downloads = %d, want 3 (two truncated)", c)
	}
	if got := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_retries_total", "digest")); got != 2 {
		t.Errorf("digest retries = %v, want 2", got)
	}
	if got := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_missing_files_total", "not_found")); got != 1 {
		t.Errorf("missing not_found = %v, want 1", got)
	}
	// Spool files are removed, and the one a killed run of this instance left too; another
	// instance's stays.
	if ents, err := os.ReadDir(cfg.SpoolDir); err != nil || len(ents) != 1 || ents[0].Name() != "idnow-archive-other-1" {
		t.Errorf("spool dir holds %v (%v), want only idnow-archive-other-1", ents, err)
	}
}

// mustVec reads one labelled counter from the registry.
func mustVec(reg *prometheus.Registry, name, label string) prometheus.Collector {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
}

// TestDigestNeverMatches: a file that always arrives truncated is recorded as missing after
// archive.max_digest_mismatches downloads; the group goes on.
func TestDigestNeverMatches(t *testing.T) {
	h := newHarness(t)
	h.files.truncate["bad"] = 1000
	h.session(t, "s1", "COMPLETED", map[string][]byte{"bad": blobBytes(100, 1)})
	stop := h.start(t, testConfig(t))
	got := h.archivedRecords(t, 1)
	stop()
	if as := got["s1"][0]; as.FilesMissing != 1 || as.FilesArchived != 0 {
		t.Fatalf("ArchivedSession %+v", as)
	}
	if c := h.files.calls["bad"]; c != 3 {
		t.Fatalf("downloads = %d, want 3", c)
	}
}

// TestSignedManifestAndRerun: a signed manifest verifies with the public key and fails with
// another; a second archiver run over the same records (a lost transaction) reuses the
// manifest and uploads nothing again.
func TestSignedManifestAndRerun(t *testing.T) {
	h := newHarness(t)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.SigningKeyFile = keyFile
	h.session(t, "s1", "COMPLETED", map[string][]byte{"f": blobBytes(1000, 9)})
	stop := h.start(t, cfg)
	first := h.archivedRecords(t, 1)["s1"][0]
	stop()
	if !first.ManifestSigned || first.SigningKeyID == nil || *first.SigningKeyID != KeyID(pub) {
		t.Fatalf("ArchivedSession %+v", first)
	}
	dir := "idnow/live/2026/11/s1"
	v, err := Verify(t.Context(), h.bucket, dir, pub)
	if err != nil || !v.OK() || v.Signature != "valid" {
		t.Fatalf("verify: %+v, %v", v, err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if v, _ := Verify(t.Context(), h.bucket, dir, other); v.OK() || v.Signature != "invalid" {
		t.Fatalf("verify with another key: %+v", v)
	}
	// A tampered object is reported.
	f := v.Files[0].Entry
	if err := h.bucket.WriteAll(t.Context(), f.Key, []byte("tampered"), nil); err != nil {
		t.Fatal(err)
	}
	if v, _ := Verify(t.Context(), h.bucket, dir, pub); v.OK() || v.Files[0].OK() {
		t.Fatalf("tampered object verified: %+v", v.Files[0])
	}
	found, err := FindManifest(t.Context(), h.bucket, "idnow", "live", "s1")
	if err != nil || found != dir {
		t.Fatalf("FindManifest = %q, %v", found, err)
	}
	if _, err := FindManifest(t.Context(), h.bucket, "idnow", "live", "nope"); !errors.Is(err, ErrNoManifest) {
		t.Fatalf("FindManifest(nope) = %v", err)
	}
}

// TestRecordsOfOneSessionInOrder: two records announcing one session's status in one batch are
// archived one after the other, not in parallel: the second finds the first's manifest and is a
// duplicate, so the session is archived once, with one ArchivedSession.
func TestRecordsOfOneSessionInOrder(t *testing.T) {
	h := newHarness(t)
	// Slow downloads: in parallel, both records would find no manifest and archive the session.
	h.files.before["x"] = func(ctx context.Context) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	files := map[string][]byte{"x": blobBytes(100, 1)}
	h.session(t, "s1", "COMPLETED", files)
	h.sessionWith(t, "s1", "COMPLETED", "COMPLETED", files, func(es *schemas.EnrichedSession) { es.Event.EventID = "ev-replayed" })
	cfg := testConfig(t)
	cfg.Concurrency = 4
	stop := h.start(t, cfg)
	got := h.archivedRecords(t, 1)
	stop()
	if len(got["s1"]) != 1 || got["s1"][0].EnrichedEventID != "ev-s1" {
		t.Fatalf("archived: %+v; want one ArchivedSession of the first record", got)
	}
	if n := testutil.ToFloat64(mustVec(h.reg, "idnow_connector_archive_sessions_total", sessionDuplicate)); n != 1 {
		t.Errorf("sessions duplicate = %v, want 1", n)
	}
}

// TestRevokedBatchCancelled: when a second member joins and partitions are revoked from the
// first while it archives, the first cancels its in-flight downloads at once instead of
// finishing (and writing) a session another member now owns; the session is still archived
// exactly once.
func TestRevokedBatchCancelled(t *testing.T) {
	h := newHarness(t)
	started, cancelled := make(chan struct{}), make(chan struct{})
	var once, onceCancel sync.Once
	var first sync.Mutex
	blocked := true
	h.files.before["v"] = func(ctx context.Context) {
		first.Lock()
		block := blocked
		blocked = false
		first.Unlock()
		if !block {
			return
		}
		once.Do(func() { close(started) })
		<-ctx.Done()
		onceCancel.Do(func() { close(cancelled) })
	}
	h.session(t, "s1", "COMPLETED", map[string][]byte{"v": blobBytes(1000, 3)})
	stop1 := h.start(t, testConfig(t))
	defer stop1()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the first archiver never started the download")
	}
	cfg2 := testConfig(t)
	cfg2.InstanceID = "test-2"
	stop2 := h.startWith(t, cfg2, prometheus.NewRegistry())
	defer stop2()
	select {
	case <-cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the download of a batch whose partitions were revoked was not cancelled")
	}
	h.archivedRecords(t, 1)
}
