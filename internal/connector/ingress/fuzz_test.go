package ingress

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParseDelivery feeds arbitrary bodies, content types and signature headers through the
// parsing path a webhook takes before and after signature verification. It must never panic,
// and anything it accepts must respect the body limit. `make test` runs it briefly; run longer
// with: go test -run '^$' -fuzz FuzzParseDelivery -fuzztime 5m ./connector/ingress
func FuzzParseDelivery(f *testing.F) {
	f.Add("application/jwt", "", []byte("eyJhbGciOiJSUzI1NiJ9.e30.sig"))
	f.Add("application/json", "a.b.c", []byte(`{"eventId":"e","payload":{"sessionId":"s"}}`))
	f.Add("application/json; charset=utf-8", "Bearer a.b.c", []byte(`{"eventId":1}`))
	f.Add("text/plain", "", []byte("x"))
	f.Add("application/jwt; x=\"", "", []byte{0xff, 0x00})
	const maxBody = 4096
	f.Fuzz(func(t *testing.T, contentType, signature string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/idnow", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("X-Idnow-Signature", signature)
		d, herr := parseDelivery(r, maxBody, "X-Idnow-Signature", new([]byte))
		if herr != nil {
			if herr.status < 400 || herr.status > 415 {
				t.Fatalf("unexpected status %d", herr.status)
			}
			return
		}
		if len(body) > maxBody || d.token == "" {
			t.Fatalf("accepted a delivery it should not have: %d bytes, token %q", len(body), d.token)
		}
		// The JSON body is compared with the verified data claim.
		_ = sameJSON(body, body)
	})
}

// FuzzEventReader signs arbitrary data claims and reads them as the handler does (the verifier's
// strict scan hands the members to an eventReader), against the parser the ingress used before
// (oracleParseEvent: encoding/json over the verified claim): the verifier's answer must not
// depend on the reader, and on every token it accepts both must map the same event or refuse it
// naming the same field. Accepted events always have valid ids and clean text. Run longer with:
// go test -run '^$' -fuzz FuzzEventReader -fuzztime 5m ./internal/connector/ingress
func FuzzEventReader(f *testing.F) {
	f.Add([]byte(`{"eventId":"e","eventSequence":3,"createdAt":"2026-01-01T00:00:00Z","payload":{"sessionId":"s"}}`))
	f.Add([]byte(`{"eventId":12,"payload":{"sessionId":"s","sessionStatus":null}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"eventId":"e\u0000","payload":{"sessionId":".."}}`))
	f.Add([]byte("{\"eventId\":\"e\xff\",\"payload\":{\"sessionId\":\"s\"}}"))
	f.Add([]byte(`{"EventID":"e","PAYLOAD":{"sessionid":"s","lastStepId":"p"},"lastStepId":"t","eventSequence":"-7"}`))
	f.Add([]byte(`{"eventId":"e","payload":[{"sessionId":"s"}],"sessionId":"s2"}`))
	f.Add([]byte(`{"eventId":"e","sessionId":"s","payload":{"flowId":{"x":1}}}`))
	f.Add([]byte(`{"eventId":"e\u00e9\ufffd","createdAt":1764064800000,"environment":"a\tb","payload":{"sessionId":"s"}}`))
	d := newDataVerifier(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		tok := d.token(t, data)
		claims, oldErr := d.v.Verify(t.Context(), tok)
		var rd eventReader
		_, newErr := d.v.VerifyData(t.Context(), tok, rd.visit)
		if (oldErr == nil) != (newErr == nil) {
			t.Fatalf("Verify: %v, VerifyData: %v", oldErr, newErr)
		}
		if oldErr != nil {
			return
		}
		got, gotErr := rd.event()
		want, wantErr := oracleParseEvent(claims.Data)
		if gotErr != nil || wantErr != nil {
			var g, w *FieldError
			if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) || g.Field != w.Field {
				t.Fatalf("reader: %v, old parser: %v", gotErr, wantErr)
			}
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reader and old parser disagree:\n%+v\n%+v", got, want)
		}
		ev := got
		if !idPattern.MatchString(ev.EventID) || !idPattern.MatchString(ev.SessionID) || len(ev.EventID) > maxIDLength || len(ev.SessionID) > maxIDLength {
			t.Fatalf("accepted an event without valid ids: %q %q", ev.EventID, ev.SessionID)
		}
		for _, p := range []*string{ev.EventVersion, ev.EventDeliverID, ev.Environment, ev.FlowID, ev.SessionStatus, ev.LastStepID, ev.LastStepType, ev.LastStepStatus, &ev.EventName} {
			if p != nil && (!utf8.ValidString(*p) || strings.ContainsFunc(*p, unicode.IsControl)) {
				t.Fatalf("accepted a text field with invalid UTF-8 or control characters: %q", *p)
			}
		}
	})
}
