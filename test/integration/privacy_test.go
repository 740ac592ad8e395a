//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/decrypt"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim/simtest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
)

// TestPrivacyEncryptErase runs ingress and enricher with privacy.mode encrypt against the
// simulator on a real broker, erases one subject with `idnow-connector erase`, then checks with a
// read_committed reader and the public decrypt package: every other subject's records decrypt
// to the simulator's data, the erased subject's give ErrErased, the keys topic holds the
// tombstone, the audit topic the erasure without the subject id, and no log line of either
// process holds a name, birth date or document number the simulator made up.
func TestPrivacyEncryptErase(t *testing.T) {
	const sessions = 24
	seeds := brokers(t)
	p := newPipeline(t, seeds)
	keysTopic, auditTopic := uniqueName(t, "keys"), uniqueName(t, "audit")
	adm := newAdmin(t, seeds)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, keysTopic, auditTopic); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	kekFile, pepperFile, _, pepper := devPrivacyKeys(t)
	priv := settings{
		"privacy.mode":            "encrypt",
		"privacy.kek_keyset_file": kekFile,
		"privacy.pepper_file":     pepperFile,
		"privacy.pseudonymize":    "session.subjectId,dataBlocks.basicIdentity.familyName",
		"topics.keys":             keysTopic,
		"topics.audit":            auditTopic,
		// Every log line there is, for the check that none names a person.
		"log.level": "debug",
	}

	sim := startSimulator(t)
	ingress := p.startSimIngress(t, sim, priv)
	enricher := startChild(t, "enricher", "enricher", p.enricherSettings(sim, "privacy").with(priv))
	sim.CreateSessions(sessions)
	simtest.WaitIdle(t, sim, 2*time.Minute)
	p.waitConsumed(1, 2*time.Minute)

	// One completed session's subject is erased.
	var victim string
	subjectOf := map[string]string{}
	for _, s := range sim.Sessions() {
		subjectOf[s.SessionID] = s.SubjectID
		if victim == "" && s.Status == "COMPLETED" && s.SubjectID != "" {
			victim = s.SubjectID
		}
	}
	if victim == "" {
		t.Fatal("no completed session with a subjectId to erase")
	}
	cmd := exec.Command(connectorBinary(t), "erase", "--subject", victim, "--reason", "itest erasure", "--settle", "2s")
	cmd.Dir = t.TempDir()
	cmd.Env = p.base().with(priv).environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("erase: %v\n%s", err, out)
	}
	t.Logf("erase printed:\n%s", out)
	if bytes.Contains(out, []byte(victim)) {
		t.Errorf("erase's audit output names the subject id %s", victim)
	}
	// The metrics of both processes, for the check that none names a person.
	var metrics []byte
	for _, c := range []*child{ingress, enricher} {
		resp, err := http.Get("http://" + c.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /metrics: %d %v", c.name, resp.StatusCode, err)
		}
		metrics = append(metrics, b...)
	}
	enricher.stop()
	ingress.stop()

	reader, err := decrypt.NewReader(t.Context(), decrypt.Config{KEKKeysetFile: kekFile, KeysTopic: keysTopic}, kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	got, _ := decodeEnriched(t, p.readCommitted(p.enriched))
	var personal []string
	decrypted, erased := 0, 0
	for _, es := range got {
		err := reader.Decrypt(t.Context(), p.enriched, es)
		switch subject := subjectOf[es.Session.SessionID]; {
		case subject == victim:
			if !errors.Is(err, decrypt.ErrErased) {
				t.Errorf("record of erased subject (session %s): want ErrErased, got %v", es.Session.SessionID, err)
			}
			erased++
		case err != nil:
			t.Errorf("record of session %s does not decrypt: %v", es.Session.SessionID, err)
		default:
			decrypted++
			if subject != "" && deref(es.Session.SubjectID) != subject {
				t.Errorf("session %s: decrypted subjectId %q, the simulator set %q", es.Session.SessionID, deref(es.Session.SubjectID), subject)
			}
			for _, b := range es.DataBlocks {
				if bi := b.BasicIdentity; bi != nil {
					personal = append(personal, deref(bi.GivenName), deref(bi.FamilyName), deref(bi.BirthDate))
				}
				if dd := b.DocumentData; dd != nil {
					personal = append(personal, deref(dd.DocumentNumber))
				}
			}
		}
	}
	if erased == 0 || decrypted == 0 || len(personal) == 0 {
		t.Fatalf("%d records decrypted, %d erased, %d personal values: the test did not exercise both", decrypted, erased, len(personal))
	}
	t.Logf("%d records decrypted, %d of the erased subject refused as erased, %d personal values checked", decrypted, erased, len(personal))

	ref := pepper.KeyRef(privacy.ScopeSubject, victim)
	tomb := false
	for _, r := range p.readCommitted(keysTopic) {
		if strings.HasPrefix(string(r.Key), ref+"/") && r.Value == nil {
			tomb = true
		}
		if bytes.Contains(r.Key, []byte(victim)) {
			t.Errorf("keys topic record key %q holds the subject id", r.Key)
		}
	}
	if !tomb {
		t.Errorf("the keys topic holds no tombstone for %s", ref)
	}
	audit := p.readCommitted(auditTopic)
	if len(audit) != 1 || !bytes.Contains(audit[0].Value, []byte(ref)) || bytes.Contains(audit[0].Value, []byte(victim)) {
		t.Errorf("audit topic: want one record naming %s and not the subject id, got %d", ref, len(audit))
	}

	for _, v := range personal {
		if v != "" && bytes.Contains(metrics, []byte(v)) {
			t.Errorf("/metrics holds the personal value %q", v)
		}
	}
	t.Logf("/metrics of both processes (%d bytes) hold none of the personal values", len(metrics))
	// No log line of the run names a person.
	for _, c := range []*child{ingress, enricher} {
		logText, err := os.ReadFile(c.logPath)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(string(logText), "\n")
		for _, v := range personal {
			if v != "" && bytes.Contains(logText, []byte(v)) {
				t.Errorf("%s's log holds the personal value %q", c.name, v)
			}
		}
		t.Logf("%s: %d log lines, none with any of %d personal values", c.name, lines, len(personal))
	}
}

// devPrivacyKeys creates a development KEK keyset file and a pepper file wrapped by it, as
// `idnow-connector privacy init` does, and returns them opened.
func devPrivacyKeys(t *testing.T) (kekFile, pepperFile string, kek *privacy.KEK, pepper *privacy.Pepper) {
	t.Helper()
	dir := t.TempDir()
	kekFile, pepperFile = filepath.Join(dir, "kek.json"), filepath.Join(dir, "pepper.json")
	if err := privacy.NewKEKKeysetFile(kekFile); err != nil {
		t.Fatal(err)
	}
	kek, err := privacy.OpenKEK(t.Context(), privacy.Config{KEKKeysetFile: kekFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kek.Close() })
	if err := privacy.NewPepperFile(pepperFile, kek); err != nil {
		t.Fatal(err)
	}
	if pepper, err = privacy.LoadPepper(pepperFile, kek); err != nil {
		t.Fatal(err)
	}
	return kekFile, pepperFile, kek, pepper
}
