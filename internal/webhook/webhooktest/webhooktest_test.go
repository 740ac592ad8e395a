package webhooktest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook/webhooktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func jwksKids(t *testing.T, raw []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			KTY string `json:"kty"`
			ALG string `json:"alg"`
			USE string `json:"use"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v", err)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatalf("JWKS leaks private key material for %s", k.KID)
		}
		if k.USE != "sig" || k.ALG == "" {
			t.Fatalf("JWKS entry %+v lacks use=sig or alg", k)
		}
		kids = append(kids, k.KID)
	}
	return kids
}

func TestSignVerifiesWithPublicKey(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	tests := []struct {
		alg string
	}{{alg: "RS256"}, {alg: "ES256"}}
	for _, tc := range tests {
		t.Run(tc.alg, func(t *testing.T) {
			tok := ks.Sign(t, tc.alg, webhooktest.Claims("iss", "aud", webhooktest.Event("s1", "e1")))
			parsed, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
				if tk.Header["kid"] != ks.KID(tc.alg) {
					t.Errorf("kid = %v, want %s", tk.Header["kid"], ks.KID(tc.alg))
				}
				return ks.PublicKey(tc.alg), nil
			}, jwt.WithValidMethods([]string{tc.alg}), jwt.WithIssuer("iss"), jwt.WithAudience("aud"), jwt.WithExpirationRequired())
			if err != nil || !parsed.Valid {
				t.Fatalf("parse: %v", err)
			}
		})
	}
	if ks.KID("HS256") != "" || ks.PublicKey("HS256") != nil {
		t.Error("unknown alg must yield no kid and no key")
	}
}

func TestSignRawKeepsBytesAndVerifies(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			header := []byte(fmt.Sprintf(`{"alg":%q,"kid":%q,"kid":"dup"}`, alg, ks.KID(alg)))
			claims := []byte(`{"iss":"iss","data":{"a":1},"data":{"a":2}}`)
			tok := ks.SignRaw(t, alg, header, claims)
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token has %d segments, want 3", len(parts))
			}
			for i, want := range [][]byte{header, claims} {
				got, err := base64.RawURLEncoding.DecodeString(parts[i])
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("segment %d = %q (%v), want the exact bytes %q", i, got, err, want)
				}
			}
			sig, err := base64.RawURLEncoding.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			method := jwt.GetSigningMethod(alg)
			if err := method.Verify(parts[0]+"."+parts[1], sig, ks.PublicKey(alg)); err != nil {
				t.Fatalf("signature does not verify with the published key: %v", err)
			}
		})
	}
}

func TestRotateReplacesKeys(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	before := jwksKids(t, ks.JWKS())
	want := []string{ks.KID("RS256"), ks.KID("ES256")}
	if !slices.Equal(before, want) {
		t.Fatalf("JWKS kids = %v, want %v", before, want)
	}
	ks.Rotate(t)
	after := jwksKids(t, ks.JWKS())
	if len(after) != 2 {
		t.Fatalf("JWKS after rotation has %d keys, want 2", len(after))
	}
	for _, old := range before {
		if slices.Contains(after, old) {
			t.Fatalf("old kid %s still published after rotation", old)
		}
	}
	if !slices.Equal(after, []string{ks.KID("RS256"), ks.KID("ES256")}) {
		t.Fatalf("KID() does not follow rotation: %v", after)
	}
}

func TestServe(t *testing.T) {
	ks := webhooktest.NewKeySet(t)
	url := ks.Serve(t)
	get := func() (int, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	tests := []struct {
		name       string
		up         bool
		rotate     bool
		wantStatus int
	}{
		{name: "serves the JWKS", up: true, wantStatus: http.StatusOK},
		{name: "serves the rotated JWKS", up: true, rotate: true, wantStatus: http.StatusOK},
		{name: "unavailable", up: false, wantStatus: http.StatusServiceUnavailable},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rotate {
				ks.Rotate(t)
			}
			ks.SetAvailable(tc.up)
			status, body := get()
			if status != tc.wantStatus {
				t.Fatalf("status = %d, want %d", status, tc.wantStatus)
			}
			if status == http.StatusOK && string(body) != string(ks.JWKS()) {
				t.Fatalf("served %s, want the current JWKS %s", body, ks.JWKS())
			}
			if got := ks.Hits(); got != int64(i+1) {
				t.Fatalf("Hits() = %d, want %d", got, i+1)
			}
		})
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestEventAndClaims(t *testing.T) {
	ev := webhooktest.Event("sess-1", "evt-1")
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		EventID        string `json:"eventId"`
		EventName      string `json:"eventName"`
		EventVersion   string `json:"eventVersion"`
		EventDeliverID string `json:"eventDeliverId"`
		EventSequence  int    `json:"eventSequence"`
		CreatedAt      string `json:"createdAt"`
		Environment    string `json:"environment"`
		Payload        struct {
			FlowID        string `json:"flowId"`
			SessionID     string `json:"sessionId"`
			SessionStatus string `json:"sessionStatus"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if got.EventID != "evt-1" || got.Payload.SessionID != "sess-1" || got.EventName != "session.completed" ||
		got.Payload.SessionStatus != "COMPLETED" || got.Environment != "live" || got.EventSequence < 1 ||
		got.EventVersion == "" || got.Payload.FlowID == "" || !uuid.MatchString(got.EventDeliverID) {
		t.Fatalf("Event() = %s", raw)
	}
	if _, err := time.Parse(time.RFC3339, got.CreatedAt); err != nil {
		t.Fatalf("createdAt %q is not ISO 8601: %v", got.CreatedAt, err)
	}
	if webhooktest.Event("s", "e")["eventDeliverId"] == webhooktest.Event("s", "e")["eventDeliverId"] {
		t.Error("eventDeliverId must be new per delivery")
	}

	c := webhooktest.Claims("iss", "aud", ev)
	exp, err := c.GetExpirationTime()
	if err != nil {
		t.Fatal(err)
	}
	iat, err := c.GetIssuedAt()
	if err != nil {
		t.Fatal(err)
	}
	if c["iss"] != "iss" || c["aud"] != "aud" || c["data"] == nil || exp.Sub(iat.Time) != 5*time.Minute {
		t.Fatalf("Claims() = %v", c)
	}
}

func BenchmarkSign(b *testing.B) {
	ks := webhooktest.NewKeySet(b)
	claims := webhooktest.Claims("iss", "aud", webhooktest.Event("s", "e"))
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ks.Sign(b, alg, claims)
			}
		})
	}
}
