package state

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// ErrNotCoPartitioned reports a state topic whose partition count differs from the sessions
// topic's: restoring partition p of the state would then not restore the sessions of sessions
// partition p.
var ErrNotCoPartitioned = errors.New("state topic is not co-partitioned with the sessions topic")

// EnsureTopic checks topics.state against topics.sessions (which must exist): same partition
// count and cleanup.policy compact. A missing state topic is created that way when
// topics.create is set. Every refusal says how to fix it.
func EnsureTopic(ctx context.Context, adm *kadm.Client, t kafka.TopicsConfig) error {
	t.State = t.StateTopic()
	details, err := adm.ListTopics(ctx, t.Sessions, t.State)
	if err != nil {
		return fmt.Errorf("list topics %s, %s: %w", t.Sessions, t.State, err)
	}
	sess, ok := details[t.Sessions]
	if !ok {
		return fmt.Errorf("%w: topics.sessions %q must exist before the state topic is checked", kafka.ErrTopicMissing, t.Sessions)
	}
	if sess.Err != nil {
		return fmt.Errorf("topics.sessions %q must exist before the state topic is checked: %w", t.Sessions, sess.Err)
	}
	want := len(sess.Partitions)
	st, ok := details[t.State]
	if !ok || errors.Is(st.Err, kerr.UnknownTopicOrPartition) {
		if !t.Create {
			return fmt.Errorf("%w: topics.state %q; create it with %d partitions (as many as %s) and cleanup.policy=compact, e.g. kafka-topics.sh --create --topic %s --partitions %d --config cleanup.policy=compact, or set topics.create: true",
				kafka.ErrTopicMissing, t.State, want, t.Sessions, t.State, want)
		}
		existed, err := kafka.CreateTopic(ctx, adm, int32(want), t.ReplicationFactor, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, t.State)
		if err != nil {
			return fmt.Errorf("state topic: %w", err)
		}
		if !existed {
			return nil
		}
		// Created concurrently by another replica or role: check what it created.
		if st, err = kafka.ListTopicWhenVisible(ctx, adm, t.State); err != nil {
			return err
		}
	}
	if st.Err != nil {
		return fmt.Errorf("describe state topic %q: %w", t.State, st.Err)
	}
	if got := len(st.Partitions); got != want {
		return fmt.Errorf("%w: topics.state %q has %d partitions but topics.sessions %q has %d. The state of a session must sit in the partition of the same number as its events. "+
			"Fix: point topics.state at a new topic name (it is created with %d partitions), or delete %q and let it be re-created; "+
			"either way the enricher starts without the record of what it enriched, so events enriched before may be enriched once more",
			ErrNotCoPartitioned, t.State, got, t.Sessions, want, want, t.State)
	}
	rc, err := kafka.DescribeTopicConfig(ctx, adm, t.State)
	if err != nil {
		return fmt.Errorf("describe configs of state topic %q: %w", t.State, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil && *c.Value != "compact" {
			return fmt.Errorf("topics.state %q has cleanup.policy=%s; it must be compact (alone), or the state of quiet sessions is deleted and their events enriched again. Fix: kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact",
				t.State, *c.Value, t.State)
		}
	}
	return nil
}
