package kafka

import (
	"context"
	"errors"
	"fmt"
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

// ListTopicWhenVisible lists one topic that is known to exist (e.g. a create answered
// TOPIC_ALREADY_EXISTS), asking again for up to newTopicVisibleWithin while the answer is
// UNKNOWN_TOPIC_OR_PARTITION: the client answers listings from metadata it cached for up to
// kgo.MetadataMinAge (5 s), and a broker learns of a new topic a moment after its creation.
func ListTopicWhenVisible(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetail, error) {
	deadline := time.Now().Add(newTopicVisibleWithin)
	for {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return kadm.TopicDetail{}, fmt.Errorf("list topic %s: %w", topic, err)
		}
		d, ok := details[topic]
		if ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return d, nil
		}
		if time.Now().After(deadline) {
			return kadm.TopicDetail{}, fmt.Errorf("list topic %s: not visible %s after it was created: %w", topic, newTopicVisibleWithin, kerr.UnknownTopicOrPartition)
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return kadm.TopicDetail{}, ctx.Err()
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
