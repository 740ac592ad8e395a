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
		r, err := adm.CreateTopic(ctx, cfg.Partitions, cfg.ReplicationFactor, cfg.CreateConfigs(topic), topic)
		if errors.Is(err, kerr.TopicAlreadyExists) {
			// Another role or replica created it since the listing (`make run` starts the
			// enricher and the archiver, both writers of topics.enriched, at once).
			continue
		}
		if err != nil {
			return fmt.Errorf("create topic %q (partitions %d, replication factor %d): %w %s", topic, cfg.Partitions, cfg.ReplicationFactor, err, r.ErrMessage)
		}
	}
	return nil
}
