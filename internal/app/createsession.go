package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/connector/commands"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// CreateSessionOptions are the flags of `create-session`.
type CreateSessionOptions struct {
	// FlowName or FlowID names the flow (exactly one).
	FlowName, FlowID string
	// Subject is the subjectId metadata and the record key.
	Subject     string
	RedirectURL string
	// CommandID defaults to a new UUID.
	CommandID string
	// Timeout bounds the wait for the reply.
	Timeout time.Duration
	// Brokers overrides kafka.brokers.
	Brokers []string
}

// CreateSession writes one CreateSessionCommand to topics.commands, as any producer would, and
// waits for its CommandReply on topics.replies (read committed). On success it prints the
// player URL on stdout (alone, for scripts) and the session on stderr; a failed reply is an
// error naming its reason.
func CreateSession(ctx context.Context, cfg Config, opts CreateSessionOptions, stdout, stderr io.Writer) (*schemas.CommandReply, error) {
	if opts.Subject == "" {
		return nil, errors.New("create-session: --subject is required (the person's pseudonymous id)")
	}
	if (opts.FlowName == "") == (opts.FlowID == "") {
		return nil, errors.New("create-session: give exactly one of --flow NAME and --flow-id ID")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.CommandID == "" {
		opts.CommandID = newUUID()
	}
	if err := cfg.Topics.ValidateCommands(); err != nil {
		return nil, err
	}
	kc := cfg.Kafka
	kc.Brokers = cfg.Kafka.ToolBrokers(opts.Brokers)
	base, err := newKafkaOpts(kc, "create-session")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	prod, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("create-session: kafka client: %w", err)
	}
	defer prod.Close()
	// Where the reply will be: after the replies topic's current end.
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, cfg.Topics.Replies)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("create-session: read the end of %s (is the commands role running? it creates the topic): %w", cfg.Topics.Replies, err)
	}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { from[o.Partition] = kgo.NewOffset().At(o.Offset) })
	if len(from) == 0 {
		return nil, fmt.Errorf("create-session: topic %s does not exist; start the commands role (idnow-connector run or commands) first", cfg.Topics.Replies)
	}
	rc, err := serde.NewRegistryClient(cfg.SchemaRegistry)
	if err != nil {
		return nil, err
	}
	codec, err := serde.NewCodec(ctx, serde.CodecConfig{Schema: schemas.CreateSessionCommandSchema(), Subject: cfg.Topics.Commands + "-value",
		Register: cfg.SchemaRegistry.Register, Compatibility: cfg.SchemaRegistry.Compatibility}, rc)
	if err != nil {
		return nil, err
	}
	cmd := &schemas.CreateSessionCommand{CommandID: opts.CommandID, Input: map[string]string{}, Metadata: map[string]string{"subjectId": opts.Subject}}
	if opts.FlowName != "" {
		cmd.FlowName = &opts.FlowName
	} else {
		cmd.FlowID = &opts.FlowID
	}
	if opts.RedirectURL != "" {
		cmd.RedirectURL = &opts.RedirectURL
	}
	v, err := codec.Encode(cmd)
	if err != nil {
		return nil, fmt.Errorf("create-session: encode: %w", err)
	}
	rec := &kgo.Record{Topic: cfg.Topics.Commands, Key: []byte(opts.Subject), Value: v, Headers: []kgo.RecordHeader{
		{Key: serde.HeaderSchema, Value: []byte(schemas.CreateSessionCommandName)},
		{Key: commands.HeaderCommandID, Value: []byte(opts.CommandID)},
	}}
	if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("create-session: produce to %s: %w", cfg.Topics.Commands, err)
	}
	cons, err := kgo.NewClient(append(base, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topics.Replies: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, fmt.Errorf("create-session: consumer: %w", err)
	}
	defer cons.Close()
	replies := serde.NewDecoder(schemas.CommandReplySchema(), rc)
	for {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("create-session: no reply to command %s on %s within %s: is the commands role running and caught up (commands.* metrics, /readyz)?", opts.CommandID, cfg.Topics.Replies, opts.Timeout)
		}
		for _, r := range fs.Records() {
			if kafka.Header(r, commands.HeaderCommandID) != opts.CommandID {
				continue
			}
			var rep schemas.CommandReply
			if err := replies.Decode(ctx, r.Value, &rep); err != nil {
				return nil, fmt.Errorf("create-session: the reply does not decode: %w", err)
			}
			if rep.CommandID != opts.CommandID {
				continue
			}
			took := time.Since(start).Round(time.Millisecond)
			if rep.Failed != nil {
				return &rep, fmt.Errorf("create-session: command %s failed (%s): %s", rep.CommandID, rep.Failed.Reason, rep.Failed.Message)
			}
			s := rep.Created
			if s.PlayerURL == nil {
				fmt.Fprintf(stderr, "session %s (flow %s) exists for command %s, but IDnow returned no player URL for it (recovered: %v); send a new command for a new session\n",
					s.SessionID, s.FlowID, rep.CommandID, s.Recovered)
				return &rep, nil
			}
			fmt.Fprintln(stdout, *s.PlayerURL)
			fmt.Fprintf(stderr, "session %s (flow %s, %s, status %s) created for command %s in %s\n", s.SessionID, s.FlowID, s.Environment, s.Status, rep.CommandID, took)
			return &rep, nil
		}
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
