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
	return untilVisible(ctx, func() (kadm.ResourceConfig, error) {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return kadm.ResourceConfig{}, err
		}
		rc, err := rcs.On(topic, nil)
		if err == nil {
			err = rc.Err
		}
		return rc, err
	})
}

// ListTopicWhenVisible lists one topic that is known to exist (e.g. a create answered
// TOPIC_ALREADY_EXISTS), asking again for up to newTopicVisibleWithin while the answer is
// UNKNOWN_TOPIC_OR_PARTITION: the client answers listings from metadata it cached for up to
// kgo.MetadataMinAge (5 s), and a broker learns of a new topic a moment after its creation.
func ListTopicWhenVisible(ctx context.Context, adm *kadm.Client, topic string) (kadm.TopicDetail, error) {
	d, err := untilVisible(ctx, func() (kadm.TopicDetail, error) {
		details, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return kadm.TopicDetail{}, err
		}
		d, ok := details[topic]
		if !ok {
			return d, kerr.UnknownTopicOrPartition
		}
		return d, d.Err
	})
	if err != nil {
		return kadm.TopicDetail{}, fmt.Errorf("list topic %s: %w", topic, err)
	}
	return d, nil
}

// untilVisible calls read until it answers anything but UNKNOWN_TOPIC_OR_PARTITION, for at most
// newTopicVisibleWithin.
func untilVisible[T any](ctx context.Context, read func() (T, error)) (T, error) {
	deadline := time.Now().Add(newTopicVisibleWithin)
	for {
		v, err := read()
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return v, err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
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
