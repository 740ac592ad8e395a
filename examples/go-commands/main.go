// Command go-commands sends one CreateSessionCommand to the connector's commands topic and
// prints the player URL from its CommandReply: the request/reply pattern of docs/commands.md
// in a plain Go producer (franz-go and twmb/avro, Avro single-object encoding, i.e. a connector
// without schema_registry.url).
//
//	go run ./examples/go-commands --brokers 127.0.0.1:9092 --flow AutoIdent --subject customer-42
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	commandsTopic := flag.String("commands-topic", "idnow.commands", "topics.commands")
	repliesTopic := flag.String("replies-topic", "idnow.commands.replies", "topics.replies")
	flow := flag.String("flow", "AutoIdent", "the flow's name as GET /flows lists it")
	subject := flag.String("subject", "customer-42", "the person's pseudonymous id (metadata.subjectId, record key)")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the reply")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	url, err := createSession(ctx, strings.Split(*brokers, ","), *commandsTopic, *repliesTopic, *flow, *subject)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-commands:", err)
		os.Exit(1)
	}
	fmt.Println(url)
}

func createSession(ctx context.Context, brokers []string, commandsTopic, repliesTopic, flow, subject string) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	// 1. Remember where the replies topic ends now: the reply comes after that.
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, repliesTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return "", fmt.Errorf("end offsets of %s: %w", repliesTopic, err)
	}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { from[o.Partition] = kgo.NewOffset().At(o.Offset) })

	// 2. Send the command: Avro single-object encoding, key = the subject, a unique command id.
	commandID := newID()
	cmd := schemas.CreateSessionCommand{CommandID: commandID, FlowName: &flow,
		Input: map[string]string{}, Metadata: map[string]string{"subjectId": subject}}
	value, err := schemas.CreateSessionCommandSchema().Avro.AppendSingleObject(nil, &cmd)
	if err != nil {
		return "", err
	}
	rec := &kgo.Record{Topic: commandsTopic, Key: []byte(subject), Value: value,
		Headers: []kgo.RecordHeader{{Key: "idnow.command.id", Value: []byte(commandID)}}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return "", fmt.Errorf("produce: %w", err)
	}

	// 3. Read the replies committed after that point (read_committed: the connector writes in
	//    transactions) until the one for this command id.
	replies, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{repliesTopic: from}))
	if err != nil {
		return "", err
	}
	defer replies.Close()
	for {
		fs := replies.PollFetches(ctx)
		if ctx.Err() != nil {
			return "", fmt.Errorf("no reply to command %s: %w", commandID, ctx.Err())
		}
		for _, r := range fs.Records() {
			var reply schemas.CommandReply
			if _, err := schemas.CommandReplySchema().Avro.DecodeSingleObject(r.Value, &reply); err != nil {
				return "", fmt.Errorf("decode reply: %w", err)
			}
			if reply.CommandID != commandID {
				continue
			}
			switch {
			case reply.Failed != nil:
				return "", fmt.Errorf("command failed (%s): %s", reply.Failed.Reason, reply.Failed.Message)
			case reply.Created.PlayerURL == nil:
				return "", errors.New("session " + reply.Created.SessionID + " exists but IDnow gave no player URL for it; send a new command")
			}
			fmt.Fprintf(os.Stderr, "session %s created for command %s\n", reply.Created.SessionID, commandID)
			return *reply.Created.PlayerURL, nil
		}
	}
}

// newID returns a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
