package idnow

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestParseFlexTime(t *testing.T) {
	want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Time
	}{
		{"rfc3339 utc", `"2026-03-04T05:06:07Z"`, want},
		{"rfc3339 offset", `"2026-03-04T07:06:07+02:00"`, want},
		{"rfc3339 nanos", `"2026-03-04T05:06:07.250Z"`, want.Add(250 * time.Millisecond)},
		{"no zone is utc", `"2026-03-04T05:06:07"`, want},
		{"compact offset", `"2026-03-04T05:06:07+0000"`, want},
		{"space separated", `"2026-03-04 05:06:07"`, want},
		{"epoch millis number", `1772600767000`, want},
		{"epoch millis string", `"1772600767000"`, want},
		{"epoch seconds number", `1772600767`, want},
		{"epoch seconds fraction", `1772600767.5`, want.Add(500 * time.Millisecond)},
		{"null", `null`, time.Time{}},
		{"empty string", `""`, time.Time{}},
		{"garbage is zero, not an error", `"yesterday"`, time.Time{}},
		{"negative is zero", `-5`, time.Time{}},
		{"object is zero", `{"a":1}`, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseFlexTime([]byte(tt.in))
			if !got.Equal(tt.want) {
				t.Fatalf("parseFlexTime(%s) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeOutcome(t *testing.T) {
	tests := []struct{ in, want string }{
		{"accepted", OutcomeAccepted},
		{"ACCEPTED", OutcomeAccepted},
		{" Rejected ", OutcomeRejected},
		{"NO_OUTCOME", OutcomeNoOutcome},
		{"no-outcome", OutcomeNoOutcome},
		{"No Outcome", OutcomeNoOutcome},
		{"", ""},
		{"MANUAL_REVIEW", "manual_review"},
	}
	for _, tt := range tests {
		if got := NormalizeOutcome(tt.in); got != tt.want {
			t.Errorf("NormalizeOutcome(%q) = %q, want %q", tt.in, got, tt.want)
		}
		s := Session{Outcome: tt.in}
		if got := s.NormalizedOutcome(); got != tt.want {
			t.Errorf("Session{Outcome:%q}.NormalizedOutcome() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSessionStatusIsTerminal(t *testing.T) {
	tests := []struct {
		s    SessionStatus
		want bool
	}{
		{StatusCreated, false},
		{StatusRunning, false},
		{StatusCompleted, true},
		{StatusAborted, true},
		{StatusExpired, true},
		{StatusError, true},
		{"completed", true},
		{"PAUSED", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := tt.s.IsTerminal(); got != tt.want {
			t.Errorf("%q.IsTerminal() = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func TestLastStepVariants(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want LastStep
	}{
		{"id variant", `{"stepId":"s1","stepDescription":"Document check","verdict":"PASSED"}`,
			LastStep{StepID: "s1", StepDescription: "Document check", Verdict: "PASSED"}},
		{"name variant", `{"stepName":"Liveness","stepType":"LIVENESS","verdict":"FAILED"}`,
			LastStep{StepName: "Liveness", StepType: "LIVENESS", Verdict: "FAILED"}},
		{"verdict object", `{"stepId":"s2","verdict":{"status":"PASSED","reason":"ok"}}`,
			LastStep{StepID: "s2", Verdict: "PASSED"}},
		{"verdict object without status", `{"stepId":"s3","verdict":{"x":1}}`,
			LastStep{StepID: "s3", Verdict: `{"x":1}`}},
		{"unknown fields and null verdict", `{"stepId":"s4","verdict":null,"extra":[1,2]}`,
			LastStep{StepID: "s4"}},
		{"numeric id", `{"stepId":42}`, LastStep{StepID: "42"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got LastStep
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSessionUnmarshal(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	completed := created.Add(10 * time.Minute)
	tests := []struct {
		name string
		in   string
		want Session
	}{
		{
			name: "documented terminal session",
			in: `{"sessionId":"sess-1","flowId":"flow-1","flowVersion":3,"environment":"live","sessionStatus":"COMPLETED",
				"subjectId":"subj-1","outcome":"ACCEPTED","createdAt":"2026-01-02T03:04:05Z","startedAt":null,
				"updatedAt":"2026-01-02T03:14:05Z","completedAt":1767323645000,"expiresAt":"2026-01-03T03:04:05Z",
				"redirectUrl":"https://example.com/back","state":"st","lastStep":{"stepName":"Doc","stepType":"DOCUMENT","verdict":"PASSED"},
				"metadata":{"subjectId":"subj-1","n":7,"o":{"a":true}},"results":{"score":0.9},"brandNewField":{"x":1}}`,
			want: Session{
				SessionID: "sess-1", FlowID: "flow-1", FlowVersion: "3", Environment: "live", Status: StatusCompleted,
				SubjectID: "subj-1", Outcome: "ACCEPTED", CreatedAt: created, UpdatedAt: completed, CompletedAt: &completed,
				ExpiresAt: created.Add(24 * time.Hour), RedirectURL: "https://example.com/back", State: "st",
				LastStep: &LastStep{StepName: "Doc", StepType: "DOCUMENT", Verdict: "PASSED"},
				Metadata: map[string]string{"subjectId": "subj-1", "n": "7", "o": `{"a":true}`},
				Results:  json.RawMessage(`{"score":0.9}`),
			},
		},
		{
			name: "subject from metadata, unknown status, string version",
			in:   `{"sessionId":"s2","sessionStatus":"PAUSED","flowVersion":"1.2","metadata":{"subjectId":"m-subj"},"results":null}`,
			want: Session{SessionID: "s2", Status: "PAUSED", FlowVersion: "1.2", SubjectID: "m-subj", Metadata: map[string]string{"subjectId": "m-subj"}},
		},
		{
			name: "nested sessionContext",
			in:   `{"flowId":"f","sessionContext":{"sessionId":"s3","sessionStatus":"CREATED","createdAt":"2026-01-02T03:04:05Z"}}`,
			want: Session{SessionID: "s3", FlowID: "f", Status: StatusCreated, CreatedAt: created},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Session
			if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCreatedSessionUnmarshal(t *testing.T) {
	in := `{"flowId":"f1","flowVersion":2,"environment":"staging","playerUrl":"https://player/?token=x","sdkToken":"sdk",
		"sessionContext":{"sessionId":"s1","sessionStatus":"CREATED","createdAt":"2026-01-02T03:04:05Z","expiresAt":"2026-01-03T03:04:05Z"}}`
	var got CreatedSession
	if err := json.Unmarshal([]byte(in), &got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	want := CreatedSession{FlowID: "f1", FlowVersion: "2", Environment: "staging", SessionID: "s1", Status: StatusCreated,
		CreatedAt: created, ExpiresAt: created.Add(24 * time.Hour), PlayerURL: "https://player/?token=x", SDKToken: "sdk"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestFlowUnmarshal(t *testing.T) {
	tests := []struct {
		in   string
		want Flow
	}{
		{`{"id":"f1","name":"KYC","description":"d","version":4,"environment":"live"}`, Flow{ID: "f1", Name: "KYC", Description: "d", Version: "4", Environment: "live"}},
		{`{"id":"f2","name":"KYC"}`, Flow{ID: "f2", Name: "KYC"}},
		{`{"flowId":"f3","name":"x","version":"v1","unknown":true}`, Flow{ID: "f3", Name: "x", Version: "v1"}},
	}
	for _, tt := range tests {
		var got Flow
		if err := json.Unmarshal([]byte(tt.in), &got); err != nil {
			t.Fatalf("unmarshal %s: %v", tt.in, err)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
