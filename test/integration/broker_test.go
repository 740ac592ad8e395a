//go:build integration

package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tckafka "github.com/testcontainers/testcontainers-go/modules/kafka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// defaultKafkaImage is the image used when testcontainers starts the broker; KAFKA_IMAGE
	// overrides it. It matches the version make kafka-up runs, so both paths test the same
	// broker.
	defaultKafkaImage = "apache/kafka:4.4.0"

	// noBrokerMessage is what a test says when it cannot get a broker.
	noBrokerMessage = "no Kafka broker: set KAFKA_BROKERS or run `make kafka-up` (then KAFKA_BROKERS=127.0.0.1:19092)"

	// dockerProbeTimeout bounds the check whether a Docker engine answers: a missing or
	// wedged engine must cost seconds, never hang the suite.
	dockerProbeTimeout = 2 * time.Second

	// containerStartTimeout bounds pulling and starting the Kafka image.
	containerStartTimeout = 5 * time.Minute

	// opTimeout bounds one admin or client operation in a test.
	opTimeout = 60 * time.Second
)

// containerStarter is the command the apache/kafka container runs instead of the module's
// starter script, which only works on Confluent images (it sources /etc/confluent/...). The
// module copies that script into the container once the mapped port is known; this waits for
// it, takes only its KAFKA_ADVERTISED_LISTENERS line (the host-reachable address) and then
// runs the apache image's own launcher, which turns the KAFKA_* variables into the broker
// configuration.
const containerStarter = `while [ ! -f /usr/sbin/testcontainers_start.sh ]; do sleep 0.1; done
eval "$(grep '^export KAFKA_ADVERTISED_LISTENERS=' /usr/sbin/testcontainers_start.sh)"
exec /etc/kafka/docker/run`

// shared is the broker the whole test binary uses, chosen once.
var shared struct {
	once      sync.Once
	brokers   []string
	skip      string
	err       error
	container *tckafka.KafkaContainer
}

// brokers returns the seed brokers of the Kafka cluster the suite runs against: KAFKA_BROKERS
// (comma-separated) if set; else a container started through testcontainers-go when a Docker
// engine answers (once per test binary, terminated by TestMain); else it skips the test with
// instructions. A container that fails to start fails the test: Docker was there, so that is
// a real problem, not a missing prerequisite.
func brokers(t testing.TB) []string {
	t.Helper()
	shared.once.Do(resolveBrokers)
	if shared.err != nil {
		t.Fatalf("Kafka broker: %v", shared.err)
	}
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	return slices.Clone(shared.brokers)
}

func resolveBrokers() {
	if env := parseBrokerList(os.Getenv("KAFKA_BROKERS")); len(env) > 0 {
		shared.brokers = env
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	answers := dockerAnswers(ctx)
	cancel()
	if !answers {
		shared.skip = noBrokerMessage
		return
	}
	shared.brokers, shared.err = startContainer()
}

// parseBrokerList splits a comma-separated broker list, dropping blanks.
func parseBrokerList(s string) []string {
	var out []string
	for b := range strings.SplitSeq(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// dockerEndpoint returns where a Docker engine would listen: DOCKER_HOST if set (unix:// and
// tcp:// only; other transports cannot be probed cheaply), else the first socket that exists
// among the usual rootful, rootless and Docker Desktop locations.
func dockerEndpoint() (network, address string) {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		u, err := url.Parse(h)
		if err != nil {
			return "", ""
		}
		switch u.Scheme {
		case "unix":
			return "unix", u.Path
		case "tcp":
			return "tcp", u.Host
		default:
			return "", ""
		}
	}
	candidates := []string{"/var/run/docker.sock"}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "docker.sock"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".docker", "run", "docker.sock"))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return "unix", c
		}
	}
	return "", ""
}

// dockerAnswers reports whether a Docker engine responds within ctx's deadline. On a unix
// socket it asks the engine's /_ping (a socket file can outlive its daemon); on TCP, where
// TLS may be in the way, a connection is taken as enough.
func dockerAnswers(ctx context.Context) bool {
	network, address := dockerEndpoint()
	if network == "" {
		return false
	}
	var d net.Dialer
	if network == "tcp" {
		conn, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return false
		}
		_ = conn.Close()
		return true
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", address)
		},
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return false
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startContainer starts a single-node apache/kafka broker (KRaft) configured like the one
// make kafka-up runs and returns its host-reachable address.
func startContainer() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	image := os.Getenv("KAFKA_IMAGE")
	if image == "" {
		image = defaultKafkaImage
	}
	clusterID, err := randomClusterID()
	if err != nil {
		return nil, err
	}
	c, err := tckafka.Run(ctx, image,
		tckafka.WithClusterID(clusterID),
		testcontainers.WithEnv(map[string]string{
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":  "false",
			"KAFKA_MIN_INSYNC_REPLICAS":        "1",
			"KAFKA_DEFAULT_REPLICATION_FACTOR": "1",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", containerStarter),
	)
	shared.container = c
	if err != nil {
		return nil, fmt.Errorf("start %s with testcontainers: %w", image, err)
	}
	bs, err := c.Brokers(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the broker address of the %s container: %w", image, err)
	}
	return bs, nil
}

// terminateContainer stops the container brokers started, if any, and reports whether there
// was one.
func terminateContainer() (bool, error) {
	if shared.container == nil {
		return false, nil
	}
	if err := testcontainers.TerminateContainer(shared.container); err != nil {
		return true, fmt.Errorf("terminate: %w", err)
	}
	return true, nil
}

// randomClusterID returns a KRaft cluster id: 16 random bytes, URL-safe base64 unpadded.
func randomClusterID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate cluster id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// newClient returns a franz-go client on seeds with opts appended, closed when the test ends.
func newClient(t testing.TB, seeds []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(seeds...)}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("new Kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// newAdmin returns an admin client on seeds, closed when the test ends.
func newAdmin(t testing.TB, seeds []string) *kadm.Client {
	t.Helper()
	return kadm.NewClient(newClient(t, seeds))
}

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// uniqueName returns a topic or transactional id unique to this test run, so tests never see
// each other's data on a broker that outlives them (make kafka-up keeps its data).
func uniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random name suffix: %v", err)
	}
	name := unsafeNameChars.ReplaceAllString(t.Name(), "_")
	return fmt.Sprintf("itest.%s.%s.%x", prefix, name, b)
}

// createTopic creates topic with the given partitions and the broker's default replication
// factor, waits until its leaders are known, and deletes it when the test ends.
func createTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := adm.DeleteTopic(ctx, topic); err != nil {
			t.Logf("delete topic %s: %v", topic, err)
		}
	})
	waitTopicReady(t, adm, topic, partitions)
}

// waitTopicReady waits until every partition of topic has a leader.
func waitTopicReady(t testing.TB, adm *kadm.Client, topic string, partitions int32) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		md, err := adm.Metadata(ctx, topic)
		cancel()
		if err == nil {
			td, ok := md.Topics[topic]
			if ok && td.Err == nil && int32(len(td.Partitions)) == partitions && allLed(td) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: partitions not led after %s (last error: %v)", topic, opTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func allLed(td kadm.TopicDetail) bool {
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

// consumeUntil reads topic from the start at the given isolation level until done reports true
// for the records read so far, or fails the test after opTimeout.
func consumeUntil(t testing.TB, seeds []string, topic string, isolation kgo.IsolationLevel, done func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := newClient(t, seeds,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(isolation),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var got []*kgo.Record
	for !done(got) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s: %d records after %s, not done: %v", topic, len(got), opTimeout, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Errorf("consume %s[%d]: %v", topic, p, err)
		})
		got = append(got, fs.Records()...)
	}
	return got
}

// TestBrokerVersion logs the version of every broker, as guessed from its ApiVersions
// response, so CI logs show what the suite ran against, and checks that the broker has the
// APIs the connector relies on. With KAFKA_EXPECT_VERSION set (e.g. "4.4", as .ci/run does)
// the guess must name that version.
func TestBrokerVersion(t *testing.T) {
	adm := newAdmin(t, brokers(t))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatalf("ApiVersions: %v", err)
	}
	if len(versions) == 0 {
		t.Fatal("ApiVersions: no broker answered")
	}
	want := os.Getenv("KAFKA_EXPECT_VERSION")
	required := []kmsg.Key{
		kmsg.InitProducerID, kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.EndTxn,
		kmsg.TxnOffsetCommit, kmsg.ConsumerGroupHeartbeat, kmsg.CreateTopics,
	}
	for _, v := range versions.Sorted() {
		if v.Err != nil {
			t.Errorf("broker %d: ApiVersions: %v", v.NodeID, v.Err)
			continue
		}
		guess := v.VersionGuess()
		t.Logf("broker %d: Apache Kafka %s", v.NodeID, guess)
		for _, k := range required {
			if _, ok := v.KeyMaxVersion(int16(k)); !ok {
				t.Errorf("broker %d (%s) does not support %s, which the connector needs", v.NodeID, guess, k.Name())
			}
		}
		if want != "" && !strings.Contains(guess, "v"+strings.TrimPrefix(want, "v")) {
			t.Errorf("broker %d is %s, KAFKA_EXPECT_VERSION=%s", v.NodeID, guess, want)
		}
	}
}

// TestBrokerTransactions proves the broker supports what the enricher's exactly-once mode
// needs: a transactional producer commits and aborts across partitions, and a read_committed
// reader sees exactly the committed records, while a read_uncommitted one also sees the
// aborted ones (so the abort really wrote data that isolation then hid).
func TestBrokerTransactions(t *testing.T) {
	seeds := brokers(t)
	adm := newAdmin(t, seeds)
	topic := uniqueName(t, "txn")
	const partitions = 3
	createTopic(t, adm, topic, partitions)

	producer := newClient(t, seeds,
		kgo.TransactionalID(uniqueName(t, "txn-producer")),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	var committed []string
	runTxn := func(label string, n int, end kgo.TransactionEndTry) {
		t.Helper()
		if err := producer.BeginTransaction(); err != nil {
			t.Fatalf("%s: begin transaction: %v", label, err)
		}
		for i := range n {
			v := fmt.Sprintf("%s-%d", label, i)
			r := &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", i)), Value: []byte(v)}
			if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("%s: produce: %v", label, err)
			}
			if end == kgo.TryCommit {
				committed = append(committed, v)
			}
		}
		if err := producer.EndTransaction(ctx, end); err != nil {
			t.Fatalf("%s: end transaction: %v", label, err)
		}
	}
	runTxn("committed", 30, kgo.TryCommit)
	runTxn("aborted", 20, kgo.TryAbort)
	// A commit after the abort: the last stable offset must move past the abort marker.
	runTxn("committed-after-abort", 10, kgo.TryCommit)

	// One non-transactional sentinel per partition, written last: once a reader has seen all
	// of them it has read everything before them, so "exactly" can be checked without timing.
	plain := newClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(partitions) {
		r := &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("sentinel-%d", p))}
		if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce sentinel to partition %d: %v", p, err)
		}
	}
	allSentinels := func(rs []*kgo.Record) bool {
		n := 0
		for _, r := range rs {
			if strings.HasPrefix(string(r.Value), "sentinel-") {
				n++
			}
		}
		return n == partitions
	}
	payload := func(rs []*kgo.Record) (values []string, parts map[int32]int) {
		parts = map[int32]int{}
		for _, r := range rs {
			if !strings.HasPrefix(string(r.Value), "sentinel-") {
				values = append(values, string(r.Value))
				parts[r.Partition]++
			}
		}
		slices.Sort(values)
		return values, parts
	}

	gotCommitted, parts := payload(consumeUntil(t, seeds, topic, kgo.ReadCommitted(), allSentinels))
	want := slices.Clone(committed)
	slices.Sort(want)
	if !slices.Equal(gotCommitted, want) {
		t.Errorf("read_committed got %d records, want exactly the %d committed ones\n got: %v\nwant: %v",
			len(gotCommitted), len(want), gotCommitted, want)
	}
	if len(parts) != partitions {
		t.Errorf("committed records landed in partitions %v, want all %d (the transaction must span partitions)", parts, partitions)
	}

	gotAll, _ := payload(consumeUntil(t, seeds, topic, kgo.ReadUncommitted(), allSentinels))
	if len(gotAll) != 60 {
		t.Errorf("read_uncommitted got %d records, want 60 (30 + 20 aborted + 10)", len(gotAll))
	}
}

// localBroker controls the broker scripts/kafka-up.sh runs, for tests that simulate a broker
// outage. Stopping it affects every test using the broker, so such tests must not run in
// parallel with others.
type localBroker struct {
	root string
	env  []string
}

// newLocalBroker returns a controller for the scripts' broker, or skips the test when the
// suite is not running against it (KAFKA_BROKERS unset or pointing elsewhere, or no broker
// recorded in $KAFKA_DIR/kafka.pid). A test that stops the broker gets it restarted at
// cleanup if it failed before restarting it itself.
func newLocalBroker(t testing.TB) *localBroker {
	t.Helper()
	seeds := brokers(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("find repository root: %v", err)
	}
	port := os.Getenv("KAFKA_PORT")
	if port == "" {
		port = "19092"
	}
	if !slices.Contains(seeds, "127.0.0.1:"+port) && !slices.Contains(seeds, "localhost:"+port) {
		t.Skipf("broker outage tests need the broker of `make kafka-up` (KAFKA_BROKERS=127.0.0.1:%s); suite runs against %v", port, seeds)
	}
	dir := os.Getenv("KAFKA_DIR")
	if dir == "" {
		dir = filepath.Join(".cache", "kafka")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "kafka.pid")); err != nil {
		t.Skipf("broker outage tests need the broker of `make kafka-up`; no %s: %v", filepath.Join(dir, "kafka.pid"), err)
	}
	lb := &localBroker{root: root, env: append(os.Environ(), "KAFKA_DIR="+dir, "KAFKA_PORT="+port)}
	t.Cleanup(func() {
		// Idempotent: a no-op when the broker is up, a restart when a test left it down.
		if err := lb.run("kafka-up.sh"); err != nil {
			t.Errorf("restart broker at cleanup: %v", err)
		}
	})
	return lb
}

// Stop stops the broker (kafka-down: TERM, bounded wait, KILL).
func (lb *localBroker) Stop(t testing.TB) {
	t.Helper()
	if err := lb.run("kafka-down.sh"); err != nil {
		t.Fatalf("stop broker: %v", err)
	}
}

// Start starts the broker again and waits until it answers (kafka-up).
func (lb *localBroker) Start(t testing.TB) {
	t.Helper()
	if err := lb.run("kafka-up.sh"); err != nil {
		t.Fatalf("start broker: %v", err)
	}
}

func (lb *localBroker) run(script string) error {
	// kafka-up waits at most KAFKA_START_TIMEOUT (90 s) and kafka-down KAFKA_STOP_TIMEOUT
	// (60 s) plus KILL; this bound only catches a script that hangs outright.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(lb.root, "scripts", script))
	cmd.Env = lb.env
	cmd.Dir = lb.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", script, err, out)
	}
	return nil
}

// repoRoot finds the module root (the directory holding go.mod) above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TestBrokerRestartKeepsData stops the local broker and starts it again, as the outage tests
// do, and checks that acknowledged records and the topic survive and clients reconnect.
func TestBrokerRestartKeepsData(t *testing.T) {
	lb := newLocalBroker(t)
	seeds := brokers(t)
	adm := newAdmin(t, seeds)
	topic := uniqueName(t, "restart")
	const partitions = 3
	createTopic(t, adm, topic, partitions)

	producer := newClient(t, seeds, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	produce := func(label string, n int) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		var values []string
		for i := range n {
			v := fmt.Sprintf("%s-%d", label, i)
			r := &kgo.Record{Key: []byte(v), Value: []byte(v)}
			if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", v, err)
			}
			values = append(values, v)
		}
		return values
	}
	want := produce("before", 20)

	began := time.Now()
	lb.Stop(t)
	t.Logf("broker stopped in %s", time.Since(began).Round(time.Millisecond))
	began = time.Now()
	lb.Start(t)
	t.Logf("broker answering again after %s", time.Since(began).Round(time.Millisecond))

	// The same client must carry on once the broker is back.
	began = time.Now()
	want = append(want, produce("after", 5)...)
	t.Logf("first produce after the restart took %s", time.Since(began).Round(time.Millisecond))
	waitTopicReady(t, adm, topic, partitions)
	got := consumeUntil(t, seeds, topic, kgo.ReadCommitted(), func(rs []*kgo.Record) bool { return len(rs) >= len(want) })
	values := make([]string, 0, len(got))
	for _, r := range got {
		values = append(values, string(r.Value))
	}
	slices.Sort(values)
	slices.Sort(want)
	if !slices.Equal(values, want) {
		t.Errorf("after restart read %v, want %v", values, want)
	}
}
