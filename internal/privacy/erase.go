package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
	if _, err := NewKeysTopic(d.Opts, d.Topics.Keys, ring, nil).CatchUp(ctx); err != nil {
		return rec, fmt.Errorf("erase: %w", err)
	}
	var tombs []*kgo.Record
	for _, name := range ring.Names(rec.KeyRef) {
		tombs = append(tombs, &kgo.Record{Topic: d.Topics.Keys, Key: []byte(name)})
		rec.KeysErased = append(rec.KeysErased, name)
	}
	rec.Tombstones[d.Topics.Keys] = len(tombs)
	if rec.SessionID != "" {
		state := d.Topics.StateTopic()
		if exists(ctx, adm, state) {
			tombs = append(tombs, &kgo.Record{Topic: state, Key: []byte(rec.SessionID)})
			rec.Tombstones[state] = 1
		}
		if compacted(ctx, adm, d.Topics.Enriched) {
			tombs = append(tombs, &kgo.Record{Topic: d.Topics.Enriched, Key: []byte(rec.SessionID)})
			rec.Tombstones[d.Topics.Enriched] = 1
		}
	}
	if len(tombs) > 0 {
		if err := cl.ProduceSync(ctx, tombs...).FirstErr(); err != nil {
			return rec, fmt.Errorf("erase: write tombstones: %w", err)
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

func exists(ctx context.Context, adm *kadm.Client, topic string) bool {
	d, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return false
	}
	t, ok := d[topic]
	return ok && t.Err == nil
}

// compacted reports whether topic exists with a cleanup.policy that includes compact: only then
// does a tombstone remove a session's records.
func compacted(ctx context.Context, adm *kadm.Client, topic string) bool {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return false
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		return false
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			return slices.Contains(strings.Split(*c.Value, ","), "compact")
		}
	}
	return false
}
