package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDescribeTopicConfig(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "present"), kfake.SeedTopics(1, "compacted"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rc, err := DescribeTopicConfig(t.Context(), adm, "present")
	if err != nil || rc.Name != "present" {
		t.Fatalf("present topic: %+v, %v", rc, err)
	}
	if got := CleanupPolicy(rc); len(got) != 1 || got[0] != "delete" {
		t.Errorf("cleanup.policy of a default topic = %v, want [delete]", got)
	}
	if _, err := adm.AlterTopicConfigs(t.Context(), []kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr("compact,delete")}}, "compacted"); err != nil {
		t.Fatal(err)
	}
	rc, err = DescribeTopicConfig(t.Context(), adm, "compacted")
	if got := CleanupPolicy(rc); err != nil || len(got) != 2 || got[0] != "compact" || got[1] != "delete" {
		t.Errorf("cleanup.policy after setting compact,delete = %v (%v)", got, err)
	}
	// An unknown topic is retried (it may have been created a moment ago), until the context
	// ends: the error is the context's, not UNKNOWN_TOPIC_OR_PARTITION at the first answer.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = DescribeTopicConfig(ctx, adm, "absent")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("absent topic: %v after %s, want the context's deadline after retrying", err, time.Since(start))
	}
}
