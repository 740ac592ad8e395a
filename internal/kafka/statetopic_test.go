package kafka

import (
	"strings"
	"testing"
)

func TestStateTopic(t *testing.T) {
	tc := DefaultTopicsConfig()
	if got := tc.StateTopic(); got != "idnow.sessions.state" {
		t.Fatalf("default state topic = %q, want idnow.sessions.state", got)
	}
	tc.Sessions = "team-a.sessions"
	if got := tc.StateTopic(); got != "team-a.sessions.state" {
		t.Fatalf("state topic of a renamed sessions topic = %q, want team-a.sessions.state", got)
	}
	tc.State = "explicit"
	if got := tc.StateTopic(); got != "explicit" {
		t.Fatalf("explicit state topic = %q", got)
	}
	tc.State = tc.Enriched
	if err := tc.Validate(); err == nil || !strings.Contains(err.Error(), "topics.state") {
		t.Fatalf("state = enriched topic: err = %v", err)
	}
	tc.State = "bad name!"
	if err := tc.Validate(); err == nil || !strings.Contains(err.Error(), "topics.state") {
		t.Fatalf("illegal state topic name: err = %v", err)
	}
}
