package kafka

import (
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestHeader(t *testing.T) {
	r := &kgo.Record{Headers: []kgo.RecordHeader{
		{Key: "idnow.schema", Value: []byte("com.idnow.SessionEvent")},
		{Key: "empty", Value: nil},
		{Key: "twice", Value: []byte("first")},
		{Key: "twice", Value: []byte("second")},
	}}
	for _, tc := range []struct{ key, want string }{
		{"idnow.schema", "com.idnow.SessionEvent"},
		{"empty", ""},
		{"twice", "first"},
		{"absent", ""},
		{"IDNOW.SCHEMA", ""}, // header keys are case-sensitive, as in Kafka
	} {
		if got := Header(r, tc.key); got != tc.want {
			t.Errorf("Header(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	if got := Header(&kgo.Record{}, "idnow.schema"); got != "" {
		t.Errorf("Header on a record without headers = %q, want empty", got)
	}
}

func TestToolBrokers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		brokers  []string
		listen   string
		override []string
		want     []string
	}{
		{name: "flag wins", brokers: []string{"kafka-1:9092"}, listen: "127.0.0.1:9092", override: []string{"other:9092"}, want: []string{"other:9092"}},
		{name: "kafka.brokers next", brokers: []string{"kafka-1:9092", "kafka-2:9092"}, listen: "localhost:9092", want: []string{"kafka-1:9092", "kafka-2:9092"}},
		{name: "embedded 127.0.0.1", listen: "127.0.0.1:19092", want: []string{"127.0.0.1:19092"}},
		{name: "embedded localhost dials 127.0.0.1", listen: "localhost:19092", want: []string{"127.0.0.1:19092"}},
		{name: "unparsable passed on", listen: "localhost", want: []string{"localhost"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Brokers = tc.brokers
			c.Embedded.Listen = tc.listen
			if got := c.ToolBrokers(tc.override); !slices.Equal(got, tc.want) {
				t.Errorf("ToolBrokers(%v) = %v, want %v", tc.override, got, tc.want)
			}
		})
	}
}
