package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
)

// EraseRequest is one `idnow-connector erase` call: exactly one of Subject and Session.
type EraseRequest struct {
	Subject string
	Session string
	// Reason is free text for the audit trail (a ticket number, "Art. 17 request"); it must not
	// hold personal data, the audit topic keeps it for its whole retention.
	Reason string
	// Actor is who asked (operator name, user@host).
	Actor string
}

// AuditRecord is the value (JSON) of an erasure's record on topics.audit. It names the key
// reference, never the subject id, so the audit trail holds no personal data.
type AuditRecord struct {
	Type string    `json:"type"` // always "erasure"
	At   time.Time `json:"at"`
	// Actor and Reason are as given to erase.
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
	// Target is "subject" or "session".
	Target string `json:"target"`
	// KeyRef is the HMAC key reference of the subject or session (the prefix of its keys).
	KeyRef string `json:"keyRef"`
	// SessionID is the erased session's id (session ids are not personal data); empty for a
	// subject.
	SessionID string `json:"sessionId,omitempty"`
	// KeysErased lists the data keys tombstoned.
	KeysErased []string `json:"keysErased"`
	// Tombstones counts the tombstones written per topic.
	Tombstones map[string]int `json:"tombstones"`
	// SecondPassKeys lists the keys found only by the second pass (made by a transaction that
	// was open during the first); they are in KeysErased too.
	SecondPassKeys []string `json:"secondPassKeys,omitempty"`
	// ConnectorVersion is the version of the connector that erased.
	ConnectorVersion string `json:"connectorVersion"`
}

// EraseDeps are what Erase needs.
type EraseDeps struct {
	// Opts are the shared client options (seed brokers, TLS, SASL).
	Opts   []kgo.Opt
	Topics kafka.TopicsConfig
	// Pepper computes the key reference of the subject or session.
	Pepper  *Pepper
	Version string
	Now     func() time.Time // nil = time.Now
	// Settle is how long erase waits before its second pass over the keys topic; 0 = no second
	// pass. An enricher may be encrypting the subject's event under a key it has just made, in a
	// transaction still open when the first pass reads the keys topic (read_committed, so it
	// cannot see that key): without the second pass that key, committed a moment later, would
	// keep the subject readable. After Settle, erase also waits for every transaction open on
	// the keys topic to end (at most MaxTransaction), then tombstones every key of the
	// reference that appeared meanwhile.
	Settle time.Duration
	// MaxTransaction bounds the wait for open transactions on the keys topic (the broker aborts
	// a transaction older than the producer's transaction timeout: enrich.transaction_timeout).
	MaxTransaction time.Duration
	// afterFirstPass, when set, runs between the two passes (tests).
	afterFirstPass func()
}

// Erase crypto-shreds a subject or a session: it tombstones every data key of its key
// reference in topics.keys (compaction then removes them, and with them the only way to read
// the personal fields written under them, in every copy of every record downstream), tombstones
// a session's state record in topics.state and its records in topics.enriched when that topic is
// compacted, and appends an AuditRecord to topics.audit, created when missing. It writes the
// audit record also when no key was found (the request is recorded either way) and returns it.
func Erase(ctx context.Context, d EraseDeps, req EraseRequest) (AuditRecord, error) {
	if (req.Subject == "") == (req.Session == "") {
		return AuditRecord{}, errors.New("erase: give exactly one of --subject and --session")
	}
	if d.Pepper == nil {
		return AuditRecord{}, errors.New("erase: the pepper (privacy.pepper_file) is needed to find the keys")
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	rec := AuditRecord{Type: "erasure", At: now().UTC(), Actor: req.Actor, Reason: req.Reason, Tombstones: map[string]int{}, ConnectorVersion: d.Version, KeysErased: []string{}}
	if req.Subject != "" {
		rec.Target, rec.KeyRef = ScopeSubject, d.Pepper.KeyRef(ScopeSubject, req.Subject)
	} else {
		rec.Target, rec.KeyRef, rec.SessionID = ScopeSession, d.Pepper.KeyRef(ScopeSession, req.Session), req.Session
	}
	cl, err := kgo.NewClient(append(slices.Clone(d.Opts), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return rec, fmt.Errorf("erase: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := kafka.EnsureTopics(ctx, adm, d.Topics, d.Topics.Keys, d.Topics.Audit); err != nil {
		return rec, fmt.Errorf("erase: %w", err)
	}
	// Only the names are needed: a keyring that never unwraps.
	ring, err := NewKeyring(&KEK{Source: "none"}, 1)
	if err != nil {
		return rec, err
	}
	keys := NewKeysTopic(d.Opts, d.Topics.Keys, ring, nil)
	if _, err := keys.CatchUp(ctx); err != nil {
		return rec, fmt.Errorf("erase: %w", err)
	}
	tombs := keyTombstones(d.Topics.Keys, ring.Names(rec.KeyRef), &rec)
	if rec.SessionID != "" {
		state := d.Topics.StateTopic()
		ok, err := exists(ctx, adm, state)
		if err != nil {
			return rec, fmt.Errorf("erase: %w", err)
		}
		if ok {
			tombs = append(tombs, &kgo.Record{Topic: state, Key: []byte(rec.SessionID)})
			rec.Tombstones[state] = 1
		}
		ok, err = compacted(ctx, adm, d.Topics.Enriched)
		if err != nil {
			return rec, fmt.Errorf("erase: %w", err)
		}
		if ok {
			tombs = append(tombs, &kgo.Record{Topic: d.Topics.Enriched, Key: []byte(rec.SessionID)})
			rec.Tombstones[d.Topics.Enriched] = 1
		}
	}
	if len(tombs) > 0 {
		if err := cl.ProduceSync(ctx, tombs...).FirstErr(); err != nil {
			return rec, fmt.Errorf("erase: write tombstones: %w", err)
		}
	}
	if d.afterFirstPass != nil {
		d.afterFirstPass()
	}
	if d.Settle > 0 {
		if err := settle(ctx, adm, d.Topics.Keys, d.Settle, d.MaxTransaction); err != nil {
			return rec, fmt.Errorf("erase: the first pass tombstoned %d keys; %w", len(rec.KeysErased), err)
		}
		if _, err := keys.CatchUp(ctx); err != nil {
			return rec, fmt.Errorf("erase: second pass: %w", err)
		}
		before := len(rec.KeysErased)
		late := keyTombstones(d.Topics.Keys, ring.Names(rec.KeyRef), &rec)
		rec.SecondPassKeys = slices.Clone(rec.KeysErased[before:])
		if len(late) > 0 {
			if err := cl.ProduceSync(ctx, late...).FirstErr(); err != nil {
				return rec, fmt.Errorf("erase: write the second pass's tombstones: %w", err)
			}
		}
	}
	value, err := json.Marshal(rec)
	if err != nil {
		return rec, fmt.Errorf("erase: audit record: %w", err)
	}
	key := rec.KeyRef
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: d.Topics.Audit, Key: []byte(key), Value: value,
		Headers: []kgo.RecordHeader{{Key: "idnow.audit.type", Value: []byte(rec.Type)}}}).FirstErr(); err != nil {
		return rec, fmt.Errorf("erase: the keys are tombstoned but the audit record was not written to %s: %w", d.Topics.Audit, err)
	}
	return rec, nil
}

// keyTombstones returns a tombstone for each of names not yet in rec.KeysErased and records
// them there.
func keyTombstones(topic string, names []string, rec *AuditRecord) []*kgo.Record {
	var tombs []*kgo.Record
	for _, name := range names {
		if slices.Contains(rec.KeysErased, name) {
			continue
		}
		tombs = append(tombs, &kgo.Record{Topic: topic, Key: []byte(name)})
		rec.KeysErased = append(rec.KeysErased, name)
	}
	rec.Tombstones[topic] += len(tombs)
	return tombs
}

// settle waits wait, then until every transaction that was open on topic at that moment has
// ended (its last stable offsets reach the end offsets seen then), at most maxTxn.
func settle(ctx context.Context, adm *kadm.Client, topic string, wait, maxTxn time.Duration) error {
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return ctx.Err()
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("list the end offsets of %s: %w", topic, err)
	}
	deadline := time.Now().Add(maxTxn)
	for {
		stable, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = stable.Error()
		}
		if err != nil {
			return fmt.Errorf("list the last stable offsets of %s: %w", topic, err)
		}
		open := 0
		ends.Each(func(o kadm.ListedOffset) {
			if s, ok := stable.Lookup(topic, o.Partition); !ok || s.Offset < o.Offset {
				open++
			}
		})
		if open == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d partitions of %s still have a transaction open after %s: "+
				"run `idnow-connector doctor` to find it, then erase again", open, topic, maxTxn)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// exists reports whether topic exists; only "unknown topic" means it does not, any other
// failure is returned (skipping a tombstone because a request failed would be a silent
// partial erasure).
func exists(ctx context.Context, adm *kadm.Client, topic string) (bool, error) {
	d, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("look up topic %s: %w", topic, err)
	}
	t, ok := d[topic]
	switch {
	case !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition):
		return false, nil
	case t.Err != nil:
		return false, fmt.Errorf("look up topic %s: %w", topic, t.Err)
	}
	return true, nil
}

// compacted reports whether topic exists with a cleanup.policy that includes compact: only then
// does a tombstone remove a session's records. As exists, only "unknown topic" is not an error.
func compacted(ctx context.Context, adm *kadm.Client, topic string) (bool, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	return slices.Contains(kafka.CleanupPolicy(rc), "compact"), nil
}
