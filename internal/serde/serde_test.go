package serde

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func sampleEvent() *schemas.SessionEvent {
	return &schemas.SessionEvent{
		EventID: "e1", EventName: "session.completed", SessionID: "s1",
		ReceivedAt: time.UnixMilli(1_700_000_000_000).UTC(), DeliveryVariant: schemas.DeliveryJWTBody,
	}
}

func TestSingleObjectRoundTrip(t *testing.T) {
	c, err := NewCodec(t.Context(), CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Encode(sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xC3 || b[1] != 0x01 {
		t.Fatalf("want single-object magic, got %x", b[:2])
	}
	// The fingerprint must be the one the Avro library itself writes (spec: CRC-64-AVRO, LE).
	ref, _ := schemas.SessionEventSchema().Avro.AppendSingleObject(nil, sampleEvent())
	if string(ref[:10]) != string(b[:10]) {
		t.Fatalf("header %x differs from the library's %x", b[:10], ref[:10])
	}
	var got schemas.SessionEvent
	if err := c.Decode(t.Context(), b, &got); err != nil {
		t.Fatal(err)
	}
	if got.EventID != "e1" || got.SessionID != "s1" {
		t.Fatalf("decoded %+v", got)
	}
}

func TestRegistryRoundTripAndCrossDecode(t *testing.T) {
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	withSR, err := NewCodec(ctx, CodecConfig{Schema: schemas.SessionEventSchema(), Subject: "idnow.sessions-value", Register: true}, cl)
	if err != nil {
		t.Fatal(err)
	}
	if withSR.SchemaID() == 0 {
		t.Fatal("schema id not assigned")
	}
	b, err := withSR.Encode(sampleEvent())
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 {
		t.Fatalf("want Confluent magic 0, got %x", b[0])
	}
	// A second codec that only looks the schema up decodes what the first wrote.
	lookup, err := NewCodec(ctx, CodecConfig{Schema: schemas.SessionEventSchema(), Subject: "idnow.sessions-value"}, cl)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.SessionEvent
	if err := lookup.Decode(ctx, b, &got); err != nil {
		t.Fatal(err)
	}
	if got.EventID != "e1" {
		t.Fatalf("decoded %+v", got)
	}
	// A registry codec also decodes single-object records (producers may switch formats).
	soe, _ := NewCodec(ctx, CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	sb, _ := soe.Encode(sampleEvent())
	if err := withSR.Decode(ctx, sb, &got); err != nil {
		t.Fatalf("registry codec decoding single-object: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	ctx := t.Context()
	soe, _ := NewCodec(ctx, CodecConfig{Schema: schemas.SessionEventSchema()}, nil)
	enriched, _ := NewCodec(ctx, CodecConfig{Schema: schemas.EnrichedSessionSchema()}, nil)
	good, _ := soe.Encode(sampleEvent())
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"json", []byte(`{"eventId":"x"}`)},
		{"truncated", good[:len(good)-3]},
		{"trailing bytes", append(append([]byte{}, good...), 1, 2)},
		{"confluent without registry", []byte{0, 0, 0, 0, 7, 2, 'a'}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ev schemas.SessionEvent
			err := soe.Decode(ctx, tc.in, &ev)
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("want ErrUndecodable, got %v", err)
			}
		})
	}
	t.Run("other schema's fingerprint", func(t *testing.T) {
		var es schemas.EnrichedSession
		if err := enriched.Decode(ctx, good, &es); !errors.Is(err, ErrUndecodable) {
			t.Fatalf("want ErrUndecodable, got %v", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"default", DefaultConfig(), false},
		{"url", Config{URL: "http://sr:8081", Timeout: time.Second}, false},
		{"bad scheme", Config{URL: "sr:8081", Timeout: time.Second}, true},
		{"half auth", Config{URL: "http://sr", Username: "u", Timeout: time.Second}, true},
		{"no timeout", Config{}, true},
		{"password file", Config{URL: "https://sr", Username: "u", PasswordFile: "/run/pw", Timeout: time.Second}, false},
		{"password and password file", Config{URL: "https://sr", Username: "u", Password: "p", PasswordFile: "/run/pw", Timeout: time.Second}, true},
		{"password file without username", Config{URL: "https://sr", PasswordFile: "/run/pw", Timeout: time.Second}, true},
		{"bearer", Config{URL: "https://sr", BearerTokenFile: "/run/token", Timeout: time.Second}, false},
		{"basic and bearer", Config{URL: "https://sr", Username: "u", Password: "p", BearerTokenFile: "/t", Timeout: time.Second}, true},
		{"mtls", Config{URL: "https://sr", TLS: TLSConfig{CertFile: "c", KeyFile: "k"}, Timeout: time.Second}, false},
		{"half mtls", Config{URL: "https://sr", TLS: TLSConfig{CertFile: "c"}, Timeout: time.Second}, true},
		{"tls over http", Config{URL: "http://sr", TLS: TLSConfig{CAFile: "ca"}, Timeout: time.Second}, true},
		{"compatibility lower-case", Config{Compatibility: "full_transitive", Timeout: time.Second}, false},
		{"compatibility unknown", Config{Compatibility: "SOMETIMES", Timeout: time.Second}, true},
		{"compatibility left alone", Config{Compatibility: "", Timeout: time.Second}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}
