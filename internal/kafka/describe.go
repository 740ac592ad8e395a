package kafka

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// newTopicVisibleWithin bounds the wait for a just-created topic to be known to the broker that
// answers.
const newTopicVisibleWithin = 10 * time.Second

// DescribeTopicConfig describes topic's configuration. A topic created a moment ago (by
// EnsureTopics) can still be unknown to the broker answering, until the controller's metadata
// reaches it, so UNKNOWN_TOPIC_OR_PARTITION is retried for up to 10 s; any other error is
// returned at once.
func DescribeTopicConfig(ctx context.Context, adm *kadm.Client, topic string) (kadm.ResourceConfig, error) {
	deadline := time.Now().Add(newTopicVisibleWithin)
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err == nil {
			var rc kadm.ResourceConfig
			rc, err = rcs.On(topic, nil)
			if err == nil {
				err = rc.Err
			}
			if err == nil {
				return rc, nil
			}
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return kadm.ResourceConfig{}, err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return kadm.ResourceConfig{}, ctx.Err()
		}
	}
}

// CleanupPolicy returns the policies of a described topic's cleanup.policy ("compact",
// "delete"), nil when the description does not carry it.
func CleanupPolicy(rc kadm.ResourceConfig) []string {
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			return strings.Split(*c.Value, ",")
		}
	}
	return nil
}
