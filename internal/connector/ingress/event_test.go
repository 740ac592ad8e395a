package ingress

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// dataVerifier reads data claims the way the handler does: signed into a token (ES256, fast to
// sign), verified by a real webhook.Verifier whose strict scan hands the members to an
// eventReader.
type dataVerifier struct {
	keys   *webhooktest.KeySet
	v      *webhook.Verifier
	header []byte
}

func newDataVerifier(t testing.TB) *dataVerifier {
	t.Helper()
	keys := webhooktest.NewKeySet(t)
	wcfg := webhook.DefaultConfig()
	wcfg.JWKSURL = keys.Serve(t)
	wcfg.AllowInsecureHTTP = true // httptest serves the JWKS over plain http
	wcfg.Issuer, wcfg.Audience = testIssuer, testAudience
	v, err := webhook.NewVerifier(t.Context(), wcfg, webhook.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &dataVerifier{keys: keys, v: v, header: fmt.Appendf(nil, `{"alg":"ES256","kid":%q}`, keys.KID("ES256"))}
}

// token signs claims whose data claim is exactly data.
func (d *dataVerifier) token(t testing.TB, data []byte) string {
	now := time.Now().Unix()
	claims := fmt.Appendf(nil, `{"iss":%q,"aud":%q,"iat":%d,"exp":%d,"data":`, testIssuer, testAudience, now, now+300)
	claims = append(append(claims, data...), '}')
	return d.keys.SignRaw(t, "ES256", d.header, claims)
}

// read verifies a token carrying data and reads its event, as ServeHTTP does.
func (d *dataVerifier) read(t testing.TB, data []byte) (*schemas.SessionEvent, error) {
	var rd eventReader
	if _, err := d.v.VerifyData(t.Context(), d.token(t, data), rd.visit); err != nil {
		return nil, err
	}
	return rd.event()
}

func TestEventReader(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantField string // non-empty: a *FieldError naming it
		// wantReason, when set: the verifier refuses the token (a *webhook.VerificationError
		// with this reason) before any event is read.
		wantReason string
		check      func(t *testing.T, ev map[string]any)
	}{
		{name: "full event", in: `{"eventId":"e1","eventVersion":"1.0","eventName":"session.completed","eventDeliverId":"d1",
			"eventSequence":3,"createdAt":"2026-11-25T10:00:00.123Z","environment":"live",
			"payload":{"flowId":"f1","sessionId":"s1","sessionStatus":"COMPLETED"},
			"lastStepId":"st1","lastStepType":"DocumentVerification","lastStepStatus":"DONE"}`,
			check: func(t *testing.T, ev map[string]any) {
				want := map[string]any{"eventId": "e1", "eventName": "session.completed", "eventVersion": "1.0", "eventDeliverId": "d1",
					"eventSequence": int64(3), "createdAt": time.Date(2026, 11, 25, 10, 0, 0, 123e6, time.UTC), "environment": "live",
					"flowId": "f1", "sessionId": "s1", "sessionStatus": "COMPLETED", "lastStepId": "st1",
					"lastStepType": "DocumentVerification", "lastStepStatus": "DONE"}
				for k, v := range want {
					if ev[k] != v {
						t.Errorf("%s = %v, want %v", k, ev[k], v)
					}
				}
			}},
		{name: "unknown name and status pass through", in: `{"eventId":"e","eventName":"session.reviewed","payload":{"sessionId":"s","sessionStatus":"IN_REVIEW"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventName"] != "session.reviewed" || ev["sessionStatus"] != "IN_REVIEW" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "numbers where strings are documented", in: `{"eventId":12345,"eventVersion":2,"eventName":"x","payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "12345" || ev["eventVersion"] != "2" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "sequence as string, epoch createdAt", in: `{"eventId":"e","eventSequence":"7","createdAt":1764064800000,"payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventSequence"] != int64(7) || ev["createdAt"] != time.UnixMilli(1764064800000).UTC() {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "unparsable createdAt kept as null", in: `{"eventId":"e","createdAt":"yesterday","payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if _, ok := ev["createdAt"]; ok {
					t.Errorf("createdAt should be absent, got %v", ev["createdAt"])
				}
			}},
		{name: "lastStep inside payload", in: `{"eventId":"e","payload":{"sessionId":"s","lastStepId":"p1"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["lastStepId"] != "p1" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "top-level sessionId tolerated", in: `{"eventId":"e","sessionId":"s-top"}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["sessionId"] != "s-top" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "missing eventId", in: `{"payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "blank eventId", in: `{"eventId":"  ","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "missing sessionId", in: `{"eventId":"e","payload":{}}`, wantField: "payload.sessionId"},
		{name: "object as eventId", in: `{"eventId":{"a":1},"payload":{"sessionId":"s"}}`, wantField: "data"},
		{name: "sequence not integer", in: `{"eventId":"e","eventSequence":1.5,"payload":{"sessionId":"s"}}`, wantField: "eventSequence"},
		{name: "huge eventId", in: `{"eventId":"` + strings.Repeat("x", 300) + `","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "exactly 128 bytes", in: `{"eventId":"` + strings.Repeat("x", 128) + `","payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if len(ev["eventId"].(string)) != 128 {
					t.Errorf("got %v", ev["eventId"])
				}
			}},
		{name: "array", in: `[]`, wantReason: webhook.ReasonInvalidData},
		{name: "payload not an object", in: `{"eventId":"e","payload":["s"]}`, wantField: "data"},
		{name: "payload null", in: `{"eventId":"e","sessionId":"s","payload":null}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["sessionId"] != "s" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "names matched as encoding/json matches them", in: `{"EVENTID":"e","Payload":{"SessionId":"s","flowid":"f"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "e" || ev["sessionId"] != "s" || ev["flowId"] != "f" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "escaped strings unescaped", in: `{"eventId":"e\u0031","eventName":"a\/b \"c\"","payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "e1" || ev["eventName"] != `a/b "c"` {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "members of other objects and arrays ignored", in: `{"eventId":"e","meta":{"eventId":"x"},"list":[{"sessionId":"y"}],"payload":{"sessionId":"s","inner":{"sessionId":"z"}}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "e" || ev["sessionId"] != "s" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "uuid ids as IDnow sends them", in: `{"eventId":"98da8c6c-7f38-4c1e-9d0a-2f4b7c1e5a10","payload":{"sessionId":"b8fb5272-1c9d-4b53-8f0e-6a4e2d9c7b31"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "98da8c6c-7f38-4c1e-9d0a-2f4b7c1e5a10" || ev["sessionId"] != "b8fb5272-1c9d-4b53-8f0e-6a4e2d9c7b31" {
					t.Errorf("got %v", ev)
				}
			}},
		{name: "ids with dots and colons", in: `{"eventId":"evt:2026.11.25-1","payload":{"sessionId":"s.1:a-b"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["eventId"] != "evt:2026.11.25-1" || ev["sessionId"] != "s.1:a-b" {
					t.Errorf("got %v", ev)
				}
			}},
		// Issue 9, problem 6: identifiers that would be replaced, forge keys or walk API paths.
		{name: "sessionId ..", in: `{"eventId":"e","payload":{"sessionId":".."}}`, wantField: "payload.sessionId"},
		{name: "sessionId .", in: `{"eventId":"e","payload":{"sessionId":"."}}`, wantField: "payload.sessionId"},
		{name: "top-level sessionId ..", in: `{"eventId":"e","sessionId":".."}`, wantField: "sessionId"},
		{name: "sessionId with slash", in: `{"eventId":"e","payload":{"sessionId":"s/../datablocks"}}`, wantField: "payload.sessionId"},
		{name: "sessionId with NUL", in: `{"eventId":"e","payload":{"sessionId":"s\u0000x"}}`, wantField: "payload.sessionId"},
		{name: "eventId with newline", in: `{"eventId":"e\n","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "eventId with DEL", in: `{"eventId":"e\u007f","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "eventId invalid UTF-8", in: "{\"eventId\":\"e\xff\",\"payload\":{\"sessionId\":\"s\"}}", wantReason: webhook.ReasonInvalidUTF8},
		{name: "eventId lone surrogate", in: `{"eventId":"e\ud800","payload":{"sessionId":"s"}}`, wantReason: webhook.ReasonInvalidUTF8},
		{name: "eventId with space", in: `{"eventId":"e 1","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "eventId non-ASCII", in: `{"eventId":"é","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "eventId 129 bytes", in: `{"eventId":"` + strings.Repeat("x", 129) + `","payload":{"sessionId":"s"}}`, wantField: "eventId"},
		{name: "sessionId invalid UTF-8", in: "{\"eventId\":\"e\",\"payload\":{\"sessionId\":\"s\xc3\"}}", wantReason: webhook.ReasonInvalidUTF8},
		{name: "flowId with control character", in: `{"eventId":"e","payload":{"sessionId":"s","flowId":"f\u0001"}}`, wantField: "payload.flowId"},
		{name: "eventName invalid UTF-8", in: "{\"eventId\":\"e\",\"eventName\":\"session.\xfe\",\"payload\":{\"sessionId\":\"s\"}}", wantReason: webhook.ReasonInvalidUTF8},
		{name: "duplicate member", in: `{"eventId":"e","eventid":"f","payload":{"sessionId":"s"}}`, wantReason: webhook.ReasonDuplicateKey},
		{name: "genuine U+FFFD in a text field is kept", in: `{"eventId":"e","lastStepType":"x\ufffd","payload":{"sessionId":"s"}}`,
			check: func(t *testing.T, ev map[string]any) {
				if ev["lastStepType"] != "x\ufffd" {
					t.Errorf("got %q", ev["lastStepType"])
				}
			}},
	}
	d := newDataVerifier(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := d.read(t, []byte(tc.in))
			if tc.wantReason != "" {
				var ve *webhook.VerificationError
				if !errors.As(err, &ve) || ve.Reason != tc.wantReason {
					t.Fatalf("want the verifier to refuse the token (%s), got %v", tc.wantReason, err)
				}
				return
			}
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("want FieldError on %s, got %v", tc.wantField, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]any{"eventId": ev.EventID, "eventName": ev.EventName, "sessionId": ev.SessionID}
			for k, p := range map[string]*string{"eventVersion": ev.EventVersion, "eventDeliverId": ev.EventDeliverID, "environment": ev.Environment,
				"flowId": ev.FlowID, "sessionStatus": ev.SessionStatus, "lastStepId": ev.LastStepID, "lastStepType": ev.LastStepType, "lastStepStatus": ev.LastStepStatus} {
				if p != nil {
					m[k] = *p
				}
			}
			if ev.EventSequence != nil {
				m["eventSequence"] = *ev.EventSequence
			}
			if ev.CreatedAt != nil {
				m["createdAt"] = *ev.CreatedAt
			}
			tc.check(t, m)
		})
	}
}

// idPattern is IDPattern compiled, the reference isID is held to.
var idPattern = regexp.MustCompile(IDPattern)

// TestIsIDMatchesIDPattern: the hand-written check accepts exactly what IDPattern does.
func TestIsIDMatchesIDPattern(t *testing.T) {
	for _, v := range []string{"", "a", "A", "0", ".", "..", "-a", ":a", "a.b:c-d", "a_b", "a b", "a/b", "é", "a\x00", "a\n",
		strings.Repeat("x", 127), strings.Repeat("x", 128), strings.Repeat("x", 129), "98da8c6c-7f38-4c1e-9d0a-2f4b7c1e5a10", "a\u0080"} {
		if got, want := isID(v), idPattern.MatchString(v); got != want {
			t.Errorf("isID(%q) = %v, IDPattern says %v", v, got, want)
		}
	}
}

// FuzzIsID holds isID to IDPattern on arbitrary strings.
func FuzzIsID(f *testing.F) {
	f.Add("evt:2026.11.25-1")
	f.Add("-")
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := isID(v), idPattern.MatchString(v); got != want {
			t.Fatalf("isID(%q) = %v, IDPattern says %v", v, got, want)
		}
	})
}
