package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TestRunEncryptEraseDecrypt runs `run` with privacy.mode encrypt and no key files: it creates
// the development KEK and pepper, writes encrypted records, tail --decrypt decrypts them, and
// after erase --subject the subject's records print as erased and the others still decrypt.
func TestRunEncryptEraseDecrypt(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Privacy.Mode = schemas.PrivacyEncrypt
	cfg.Privacy.KEKKeysetFile = filepath.Join(dir, "kek.json")
	cfg.Privacy.PepperFile = filepath.Join(dir, "pepper.json")
	cfg.Simulator.Sessions = 4
	logs := &lockedWriter{w: &bytes.Buffer{}}
	a, err := New(cfg, ModeRun, slog.New(slog.NewTextHandler(logs, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	if err := a.Simulator().WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cfg.Privacy.KEKKeysetFile, cfg.Privacy.PepperFile} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("run did not create %s: %v", f, err)
		}
	}
	subjects := map[string]string{}
	events := 0
	for _, s := range a.Simulator().Sessions() {
		subjects[s.SessionID] = s.SubjectID
		events += len(s.Events)
	}
	read := func() map[string][]string {
		t.Helper()
		var out bytes.Buffer
		if err := Tail(ctx, cfg, TailOptions{Topic: cfg.Topics.Enriched, Brokers: a.Brokers(), FromBeginning: true, Max: events, Decrypt: true}, &out); err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		sc := bufio.NewScanner(&out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct {
				Key     string                   `json:"key"`
				Privacy string                   `json:"privacy"`
				Value   *schemas.EnrichedSession `json:"value"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatal(err)
			}
			if line.Privacy == "decrypted" && (line.Value.Session.SubjectID == nil || *line.Value.Session.SubjectID != subjects[line.Key]) {
				t.Errorf("session %s decrypted to subject %v, the simulator set %s", line.Key, line.Value.Session.SubjectID, subjects[line.Key])
			}
			got[line.Key] = append(got[line.Key], line.Privacy)
		}
		return got
	}
	before := read()
	var victim, victimSession string
	for s, st := range before {
		for _, p := range st {
			if p != "decrypted" {
				t.Fatalf("session %s: %q before any erasure", s, p)
			}
		}
		victim, victimSession = subjects[s], s
	}
	var out bytes.Buffer
	if err := Erase(ctx, cfg, EraseOptions{Subject: victim, Brokers: a.Brokers(), Settle: -time.Second}, "test", &out); err == nil || !strings.Contains(err.Error(), "--settle") {
		t.Fatalf("erase with a negative --settle: %v, want an error naming --settle", err)
	}
	if err := Erase(ctx, cfg, EraseOptions{Subject: victim, Reason: "test", Brokers: a.Brokers(), Settle: 200 * time.Millisecond}, "test", &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), victim) || !strings.Contains(out.String(), `"keysErased": [`) {
		t.Fatalf("erase printed:\n%s", out.String())
	}
	after := read()
	for s, st := range after {
		want := "decrypted"
		if subjects[s] == victim {
			want = "erased"
		}
		for _, p := range st {
			if p != want {
				t.Errorf("session %s (erased: %v): %q, want %q", s, subjects[s] == victim, p, want)
			}
		}
	}
	if len(after[victimSession]) == 0 {
		t.Fatal("no record of the erased subject read back")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "created development key-encryption keyset") {
		t.Error("run did not say it created the development KEK")
	}
}

// lockedWriter serialises writes of the app's goroutines into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestRunDropMode: privacy.mode drop keeps no signed token on the sessions topic and no personal
// value in the enriched records, only the envelope saying they were dropped.
func TestRunDropMode(t *testing.T) {
	cfg := testConfig()
	cfg.Privacy.Mode = schemas.PrivacyDrop
	a, err := New(cfg, ModeRun, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	stop := startApp(t, a, ctx)
	if err := a.Simulator().WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var events, enriched bytes.Buffer
	if err := Tail(ctx, cfg, TailOptions{Topic: cfg.Topics.Sessions, Brokers: a.Brokers(), FromBeginning: true, Max: 9}, &events); err != nil {
		t.Fatal(err)
	}
	if err := Tail(ctx, cfg, TailOptions{Topic: cfg.Topics.Enriched, Brokers: a.Brokers(), FromBeginning: true, Max: 9}, &enriched); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(events.String(), "signedToken") || strings.Count(events.String(), "\n") != 9 {
		t.Errorf("sessions topic under drop:\n%s", events.String())
	}
	for _, field := range []string{`"subjectId"`, `"givenName"`, `"familyName"`, `"birthDate"`, `"documentNumber"`, `"content"`} {
		if strings.Contains(enriched.String(), field) {
			t.Errorf("an enriched record under drop holds %s", field)
		}
	}
	if got := strings.Count(enriched.String(), `"privacy":{"mode":"drop"`); got != 9 {
		t.Errorf("%d of 9 enriched records carry the drop envelope:\n%s", got, enriched.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
