package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrTopicMissing reports a topic that does not exist and that the connector may not create.
var ErrTopicMissing = errors.New("topic does not exist")

// EnsureTopics checks that every named topic exists and, when cfg.Create is set, creates the
// missing ones with the configured partitions and replication factor. Topics created concurrently
// by another replica count as existing.
func EnsureTopics(ctx context.Context, adm *kadm.Client, cfg TopicsConfig, topics ...string) error {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("list topics %v: %w", topics, err)
	}
	var missing []string
	for _, t := range topics {
		d, ok := details[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, t)
			continue
		}
		if d.Err != nil {
			return fmt.Errorf("describe topic %q: %w", t, d.Err)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !cfg.Create {
		return fmt.Errorf("%w: %v; create it (partitions: %d suggested) or set topics.create: true", ErrTopicMissing, missing, cfg.Partitions)
	}
	// One request per topic: each gets its own retention (topics.retention.*) or compaction.
	for _, topic := range missing {
		if _, err := CreateTopic(ctx, adm, cfg.Partitions, cfg.ReplicationFactor, cfg.CreateConfigs(topic), topic); err != nil {
			return err
		}
	}
	return nil
}

// CreateTopic creates topic and reports whether it existed already: another role or replica
// created it since the caller looked (`make run` starts the enricher and the archiver, both
// writers of topics.enriched, at once). kadm returns the topic's TOPIC_ALREADY_EXISTS as its
// error; that is not a failure here. Other errors carry the broker's message.
func CreateTopic(ctx context.Context, adm *kadm.Client, partitions int32, replicationFactor int16, configs map[string]*string, topic string) (existed bool, err error) {
	r, err := adm.CreateTopic(ctx, partitions, replicationFactor, configs, topic)
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		return true, nil
	case err != nil && r.ErrMessage != "":
		return false, fmt.Errorf("create topic %q (partitions %d, replication factor %d): %w: %s", topic, partitions, replicationFactor, err, r.ErrMessage)
	case err != nil:
		return false, fmt.Errorf("create topic %q (partitions %d, replication factor %d): %w", topic, partitions, replicationFactor, err)
	}
	return false, nil
}
