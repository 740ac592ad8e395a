package schemas

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/avro"
)

// TestCommandSchemasRoundTrip checks the struct tags of the command types against their schemas.
func TestCommandSchemasRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli()).UTC()
	reply := &CommandReply{CommandID: "c1", Outcome: OutcomeCreated, RepliedAt: now,
		Created: &SessionCreated{SessionID: "s1", FlowID: "f1", FlowVersion: ptr("3"), Environment: "live", Status: "CREATED",
			PlayerURL: ptr("https://player.example/?token=x"), CreatedAt: &now, ExpiresAt: &now}}
	tests := []struct {
		name  string
		s     Schema
		in    any
		fresh any
	}{
		{"command", CreateSessionCommandSchema(), &CreateSessionCommand{CommandID: "c1", FlowName: ptr("AutoIdent"),
			Input: map[string]string{"basicIdentity": `{"givenName":"Erika"}`}, Metadata: map[string]string{"subjectId": "s-1"},
			RedirectURL: ptr("https://example.com/done"), Deadline: &now}, &CreateSessionCommand{}},
		{"reply created", CommandReplySchema(), reply, &CommandReply{}},
		{"reply failed", CommandReplySchema(), &CommandReply{CommandID: "c2", Outcome: OutcomeFailed, RepliedAt: now, Replayed: true,
			Failed: &CommandFailed{Reason: ReasonUnknownFlow, Message: "no flow named x"}}, &CommandReply{}},
		{"state intent", CommandStateSchema(), &CommandState{CommandID: "c1", FlowID: ptr("f1"), AttemptedAt: &now, UpdatedAt: now}, &CommandState{}},
		{"state answered", CommandStateSchema(), &CommandState{CommandID: "c1", FlowID: ptr("f1"), AttemptedAt: &now, Reply: reply, UpdatedAt: now}, &CommandState{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.Avro.Encode(tc.in)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if _, err := tc.s.Avro.Decode(b, tc.fresh); err != nil {
				t.Fatalf("decode: %v", err)
			}
			utc(reflect.ValueOf(tc.fresh))
			if !reflect.DeepEqual(tc.in, tc.fresh) {
				t.Fatalf("round trip changed the value:\n in: %+v\nout: %+v", tc.in, tc.fresh)
			}
		})
	}
}

func utc(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		if tm, ok := v.Interface().(*time.Time); ok {
			*tm = tm.UTC()
			return
		}
		utc(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if tm, ok := v.Field(i).Addr().Interface().(*time.Time); ok {
				*tm = tm.UTC()
				continue
			}
			utc(v.Field(i))
		}
	}
}

// TestCommandStateEmbedsReply checks that the CommandReply inlined in command_state.avsc is the
// CommandReply of command_reply.avsc (same canonical form): the state topic records exactly
// what was replied.
func TestCommandStateEmbedsReply(t *testing.T) {
	var st struct {
		Fields []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(CommandStateSchema().Text), &st); err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Fields {
		if f.Name != "reply" {
			continue
		}
		var union []any
		if err := json.Unmarshal(f.Type, &union); err != nil || len(union) != 2 {
			t.Fatalf("reply is not [null, CommandReply]: %v", err)
		}
		inline, _ := union[1].(map[string]any)
		if inline == nil {
			t.Fatal("reply's second branch is not an inline record")
		}
		inline["namespace"] = "io.idnow.connector.v1"
		b, _ := json.Marshal(inline)
		s, err := avro.Parse(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := string(s.Canonical()), string(CommandReplySchema().Avro.Canonical()); got != want {
			t.Fatalf("command_state.avsc's reply differs from command_reply.avsc:\n got %s\nwant %s", got, want)
		}
		return
	}
	t.Fatal("command_state.avsc has no reply field")
}

// TestCommandSchemasClassified checks every field of the command schemas carries an idnow.pii
// classification (the privacy work enforces this over all schemas; these are classified from
// the start).
func TestCommandSchemasClassified(t *testing.T) {
	allowed := map[string]bool{"none": true, "identity": true, "document": true, "contact": true, "biometric": true, "pseudonym": true, "credential": true}
	for _, f := range []string{"create_session_command.avsc", "command_reply.avsc", "command_state.avsc"} {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var root any
		if err := json.Unmarshal(text, &root); err != nil {
			t.Fatal(err)
		}
		n := 0
		var walk func(any)
		walk = func(node any) {
			switch v := node.(type) {
			case []any:
				for _, e := range v {
					walk(e)
				}
			case map[string]any:
				if v["type"] == "record" {
					for _, fl := range v["fields"].([]any) {
						fm := fl.(map[string]any)
						n++
						if c, _ := fm["idnow.pii"].(string); !allowed[c] {
							t.Errorf("%s: field %s.%s has idnow.pii %q", f, v["name"], fm["name"], c)
						}
						walk(fm["type"])
					}
				}
			}
		}
		walk(root)
		if n < 5 {
			t.Fatalf("%s: only %d fields walked", f, n)
		}
	}
	// input is personal data, metadata (subjectId) a pseudonym, the player URL a credential.
	for field, want := range map[string]string{"input": "identity", "metadata": "pseudonym"} {
		if got := fieldClass(t, CreateSessionCommandSchema().Text, field); got != want {
			t.Errorf("CreateSessionCommand.%s is %q, want %q", field, got, want)
		}
	}
}

func fieldClass(t *testing.T, text, name string) string {
	t.Helper()
	var r struct {
		Fields []map[string]any `json:"fields"`
	}
	if err := json.Unmarshal([]byte(text), &r); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Fields {
		if f["name"] == name {
			s, _ := f["idnow.pii"].(string)
			return s
		}
	}
	return ""
}
