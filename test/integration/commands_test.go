//go:build integration

package integration

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/commands"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnowsim"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// TestCommandsExactlyOneSession runs the commands role as a child process against the real
// broker and the simulator, with 20 % of create-session calls made ambiguous (the simulator
// creates the session, then withholds the answer until the client times out). 200 command
// records go in: valid ones by flow id and by flow name, invalid ones (redirect not allowed,
// unknown flow name, past deadline, undecodable bytes) and repeated command ids. The consumer
// is SIGKILLed mid-run and started again. Every record gets exactly one committed reply, and
// the simulator holds exactly one session per valid command id and none for the invalid ones.
func TestCommandsExactlyOneSession(t *testing.T) {
	const (
		total      = 200
		duplicates = 10 // the last records repeat earlier command ids (same key)
		firstPart  = 120
		killAfter  = 40 // sessions created before the kill
	)
	seeds := brokers(t)
	sc := idnowsim.DefaultConfig()
	sc.Listen, sc.Seed, sc.StepDelay = "127.0.0.1:0", 17, time.Hour
	sc.Faults.CreateTimeoutRate, sc.Faults.CreateTimeoutHang = 0.2, 10*time.Second
	sim, err := idnowsim.New(sc, idnowsim.Deps{Registry: prometheus.NewRegistry(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })

	topics, cfg := commandsRig(t, seeds, sim)

	codec, err := serde.NewCodec(t.Context(), serde.CodecConfig{Schema: schemas.CreateSessionCommandSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	wantReason := map[string]string{}
	valid := map[string]bool{}
	var recs []*kgo.Record
	for i := range total - duplicates {
		id := fmt.Sprintf("cmd-%03d-%s", i, strconv.FormatInt(time.Now().UnixNano()%1e6, 36))
		key := fmt.Sprintf("subject-%d", i%37)
		if i%40 == 39 {
			// Not a CreateSessionCommand at all; answered by the header's command id.
			recs = append(recs, &kgo.Record{Topic: topics.Commands, Key: []byte(key), Value: []byte{0xC3, 0x01, 0xde, 0xad},
				Headers: []kgo.RecordHeader{{Key: commands.HeaderCommandID, Value: []byte(id)}}})
			wantReason[id] = schemas.ReasonMalformed
			continue
		}
		cmd := &schemas.CreateSessionCommand{CommandID: id, Input: map[string]string{}, Metadata: map[string]string{"subjectId": key}}
		switch i % 10 {
		case 0:
			cmd.FlowID, cmd.RedirectURL = ptr("flw-auto-ident"), ptr("https://elsewhere.example.org/idnow/done")
			wantReason[id] = schemas.ReasonRedirectNotAllowed
		case 1:
			cmd.FlowName = ptr("No such flow")
			wantReason[id] = schemas.ReasonUnknownFlow
		case 2:
			cmd.FlowID, cmd.Deadline = ptr("flw-basic-identity"), &past
			wantReason[id] = schemas.ReasonDeadlinePassed
		case 3, 5, 7:
			cmd.FlowName = ptr([]string{"AutoIdent", "Age verification", "bank account check"}[i%3])
			cmd.RedirectURL = ptr("https://onboarding.example.com/idnow/done?c=" + id)
			valid[id] = true
		default:
			cmd.FlowID = ptr([]string{"flw-basic-identity", "flw-auto-ident", "flw-reusable-id"}[i%3])
			cmd.Input = map[string]string{"basicIdentity": `{"givenName":"Erika","familyName":"Mustermann","birthDate":"1964-08-12"}`}
			valid[id] = true
		}
		v, err := codec.Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topics.Commands, Key: []byte(key), Value: v,
			Headers: []kgo.RecordHeader{{Key: commands.HeaderCommandID, Value: []byte(id)}}})
	}
	for i := range duplicates {
		orig := recs[3+10*i] // valid commands (i%10 == 3), sent again unchanged
		recs = append(recs, &kgo.Record{Topic: orig.Topic, Key: orig.Key, Value: orig.Value, Headers: orig.Headers})
	}
	prod := newClient(t, seeds)
	produce := func(rs []*kgo.Record) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatalf("produce commands: %v", err)
		}
	}

	produce(recs[:firstPart])
	began := time.Now()
	first := startChild(t, "commands-1", "commands", cfg)
	deadline := time.Now().Add(2 * time.Minute)
	for sim.Stats().SessionsCreated < killAfter {
		if time.Now().After(deadline) {
			t.Fatalf("only %d sessions created after 2m", sim.Stats().SessionsCreated)
		}
		time.Sleep(5 * time.Millisecond)
	}
	first.kill()
	killedAt := time.Now()
	atKill := sim.Stats()
	t.Logf("killed after %d sessions (%d ambiguous creates so far)", atKill.SessionsCreated, atKill.CreateTimeouts)
	produce(recs[firstPart:])
	startChild(t, "commands-2", "commands", cfg)

	replies := serde.NewDecoder(schemas.CommandReplySchema(), nil)
	byID := map[string][]*schemas.CommandReply{}
	got := consumeUntil(t, seeds, topics.Replies, kgo.ReadCommitted(), func(rs []*kgo.Record) bool { return len(rs) >= total })
	took := time.Since(began)
	time.Sleep(2 * time.Second) // anything beyond the expected replies would show up now
	got = consumeUntil(t, seeds, topics.Replies, kgo.ReadCommitted(), func(rs []*kgo.Record) bool { return len(rs) >= len(got) })
	if len(got) != total {
		t.Fatalf("%d replies for %d command records", len(got), total)
	}
	buckets := map[int]int{}
	answeredBeforeKill := 0
	for _, r := range got {
		buckets[int(r.Timestamp.Sub(began).Seconds())/5*5]++
		var rep schemas.CommandReply
		if err := replies.Decode(t.Context(), r.Value, &rep); err == nil && rep.Created != nil && !rep.Replayed && r.Timestamp.Before(killedAt) {
			answeredBeforeKill++
		}
	}
	// The kill must land mid-work: sessions created by the first process whose reply it never
	// committed, which the second one has to find instead of creating them again.
	if int(atKill.SessionsCreated) <= answeredBeforeKill {
		t.Errorf("at the kill %d sessions existed and %d had a committed reply: the kill did not interrupt a create", atKill.SessionsCreated, answeredBeforeKill)
	}
	t.Logf("at the kill: %d sessions created, %d of them answered", atKill.SessionsCreated, answeredBeforeKill)
	t.Logf("replies by commit time (seconds after the first start: count): %v", buckets)
	for _, r := range got {
		var rep schemas.CommandReply
		if err := replies.Decode(t.Context(), r.Value, &rep); err != nil {
			t.Fatalf("reply %s/%d@%d does not decode: %v", r.Topic, r.Partition, r.Offset, err)
		}
		byID[rep.CommandID] = append(byID[rep.CommandID], &rep)
	}
	recovered, replayed := 0, 0
	for id, reps := range byID {
		wantN := 1
		if valid[id] {
			for _, r := range recs[total-duplicates:] {
				if kafka.Header(r, commands.HeaderCommandID) == id {
					wantN++
				}
			}
		}
		if len(reps) != wantN {
			t.Errorf("command %s: %d replies, want %d", id, len(reps), wantN)
			continue
		}
		fresh := 0
		for _, rep := range reps {
			if rep.Replayed {
				replayed++
			} else {
				fresh++
			}
			switch {
			case valid[id]:
				if rep.Outcome != schemas.OutcomeCreated || rep.Created.SessionID != reps[0].Created.SessionID {
					t.Errorf("command %s: reply %+v, want the one session created", id, rep)
				}
				if rep.Created.Recovered && !rep.Replayed {
					recovered++
				}
			case rep.Outcome != schemas.OutcomeFailed || rep.Failed.Reason != wantReason[id]:
				t.Errorf("command %s: reply %+v, want failed %s", id, rep, wantReason[id])
			}
		}
		if fresh != 1 {
			t.Errorf("command %s: %d replies not marked replayed, want 1", id, fresh)
		}
	}
	if len(byID) != len(valid)+len(wantReason) {
		t.Errorf("replies for %d command ids, want %d", len(byID), len(valid)+len(wantReason))
	}
	perCommand := map[string]int{}
	for _, s := range sim.Sessions() {
		perCommand[s.Metadata[schemas.MetadataCommandID]]++
	}
	for id := range valid {
		if perCommand[id] != 1 {
			t.Errorf("command %s: %d sessions at the simulator, want exactly 1", id, perCommand[id])
		}
	}
	for id := range wantReason {
		if perCommand[id] != 0 {
			t.Errorf("invalid command %s: %d sessions at the simulator, want none", id, perCommand[id])
		}
	}
	st := sim.Stats()
	if st.CreateTimeouts == 0 {
		t.Errorf("no create call was made ambiguous; the test proves nothing")
	}
	if int(st.SessionsCreated) != len(valid) {
		t.Errorf("the simulator created %d sessions for %d valid commands", st.SessionsCreated, len(valid))
	}
	t.Logf("%d command records (%d valid ids, %d invalid, %d repeated) -> %d replies in %s; simulator: %d sessions, %d create calls made ambiguous (%.0f %%); %d replies recovered by lookup, %d replayed",
		total, len(valid), len(wantReason), duplicates, len(got), took.Round(time.Millisecond), st.SessionsCreated, st.CreateTimeouts,
		100*float64(st.CreateTimeouts)/float64(st.SessionsCreated), recovered, replayed)
}

// commandsRig picks unique topics, group and transactional id for a commands test (deleted at
// the end) and returns the settings of a commands child against sim.
func commandsRig(t testing.TB, seeds []string, sim *idnowsim.Simulator) (kafka.TopicsConfig, settings) {
	t.Helper()
	sc := sim.Config()
	topics := kafka.TopicsConfig{Commands: uniqueName(t, "commands"), Replies: uniqueName(t, "replies"), CommandsState: uniqueName(t, "cmdstate")}
	group, txn := uniqueName(t, "group"), uniqueName(t, "txn")
	adm := newAdmin(t, seeds)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = adm.DeleteGroups(ctx, group)
		if _, err := adm.DeleteTopics(ctx, topics.Commands, topics.Replies, topics.CommandsState); err != nil {
			t.Logf("delete topics: %v", err)
		}
	})
	cfg := settings{
		"kafka.brokers":                  strings.Join(seeds, ","),
		"topics.commands":                topics.Commands,
		"topics.replies":                 topics.Replies,
		"topics.commands_state":          topics.CommandsState,
		"topics.partitions":              "3",
		"admin.listen":                   freeAddr(t),
		"log.level":                      "info",
		"idnow.api_url":                  sim.APIURL(),
		"idnow.token_url":                sim.TokenURL(),
		"idnow.client_id":                sc.ClientID,
		"idnow.client_secret":            sc.ClientSecret,
		"idnow.environment":              sc.Environment,
		"idnow.allow_insecure_http":      "true",
		"idnow.rate_limit":               "0",
		"idnow.timeout":                  "1s",
		"idnow.retry.max_attempts":       "3",
		"idnow.retry.initial_backoff":    "20ms",
		"idnow.retry.max_backoff":        "200ms",
		"commands.group":                 group,
		"commands.transactional_id":      txn,
		"commands.instance_id":           "c1", // the restarted process fences its predecessor at once
		"commands.rate_limit":            "500",
		"commands.max_poll_records":      "40",
		"commands.concurrency":           "8",
		"commands.redirect_allowlist":    "https://onboarding.example.com/idnow/",
		"commands.lookup_delay":          "1500ms",
		"commands.lookup_clock_skew":     "5s",
		"commands.retry.initial_backoff": "50ms",
		"commands.retry.max_backoff":     "500ms",
		"commands.session_timeout":       "6s",
		"commands.transaction_timeout":   "20s",
		"commands.shutdown_timeout":      "10s",
	}

	// Callers own topics.commands; the role creates topics.replies and topics.commands_state.
	createTopic(t, adm, topics.Commands, 3)
	return topics, cfg
}

func ptr[T any](v T) *T { return &v }
