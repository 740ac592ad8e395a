// Package kafka turns the `kafka.*` and `topics.*` configuration into franz-go clients, starts the
// embedded development broker, creates topics and classifies Kafka errors as retryable or not.
package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config is the `kafka.*` config section.
type Config struct {
	Brokers            []string       `koanf:"brokers"`              // empty: `run` starts the embedded broker; ingress and enricher refuse to start unless embedded.enabled
	ClientID           string         `koanf:"client_id"`            // prefix of every client id
	Compression        string         `koanf:"compression"`          // none, gzip, snappy, lz4, zstd
	DeliveryTimeout    time.Duration  `koanf:"delivery_timeout"`     // upper bound for one record to be acknowledged
	MaxBufferedRecords int            `koanf:"max_buffered_records"` // producer buffer; past it produce fails fast
	DialTimeout        time.Duration  `koanf:"dial_timeout"`
	TLS                TLSConfig      `koanf:"tls"`
	SASL               SASLConfig     `koanf:"sasl"`
	Embedded           EmbeddedConfig `koanf:"embedded"`
}

// TLSConfig enables TLS to the brokers.
type TLSConfig struct {
	Enabled            bool   `koanf:"enabled"`
	CAFile             string `koanf:"ca_file"`
	CertFile           string `koanf:"cert_file"`
	KeyFile            string `koanf:"key_file"`
	InsecureSkipVerify bool   `koanf:"insecure_skip_verify"`
}

// SASLConfig enables SASL authentication.
type SASLConfig struct {
	Mechanism    string `koanf:"mechanism"` // empty, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	Username     string `koanf:"username"`
	Password     string `koanf:"password"`
	PasswordFile string `koanf:"password_file"`
}

// EmbeddedConfig configures the in-process development broker used when no brokers are set.
type EmbeddedConfig struct {
	// Enabled lets the ingress and enricher modes start the embedded broker when kafka.brokers
	// is empty. Without it they refuse to start: a production pod whose broker setting went
	// missing must fail, not acknowledge webhooks into a broker on its own disk. `run` (the
	// development mode) starts the embedded broker with empty brokers either way.
	Enabled    bool   `koanf:"enabled"`
	DataDir    string `koanf:"data_dir"`   // where the broker persists its log; empty = memory only
	Listen     string `koanf:"listen"`     // 127.0.0.1:port; port 0 picks a free one
	Partitions int    `koanf:"partitions"` // default partitions of auto-created topics
}

// TopicsConfig is the `topics.*` config section.
type TopicsConfig struct {
	Sessions      string `koanf:"sessions"`
	Enriched      string `koanf:"enriched"`
	DLQ           string `koanf:"dlq"`
	State         string `koanf:"state"`          // compacted pipeline state, co-partitioned with Sessions; empty = Sessions + ".state"
	Keys          string `koanf:"keys"`           // compacted wrapped data keys (privacy.mode encrypt); a tombstone erases a key
	Audit         string `koanf:"audit"`          // audit records of erasures (idnow-connector erase)
	Commands      string `koanf:"commands"`       // CreateSessionCommand, key = the caller's subject or correlation id
	Replies       string `koanf:"replies"`        // CommandReply, key = the command's key
	CommandsState string `koanf:"commands_state"` // CommandState per command id (compacted, retention = commands.dedupe_window)
	Archived      string `koanf:"archived"`       // ArchivedSession per archived session, written by the archiver
	// Retention is the retention.ms given to each topic the connector creates (topics.create).
	Retention         RetentionConfig `koanf:"retention"`
	Create            bool            `koanf:"create"`             // create missing topics at start-up
	Partitions        int32           `koanf:"partitions"`         // for created topics
	ReplicationFactor int16           `koanf:"replication_factor"` // for created topics; -1 = broker default
}

// DefaultConfig returns the documented defaults of `kafka.*`.
func DefaultConfig() Config {
	return Config{
		ClientID:           "idnow-connector",
		Compression:        "lz4",
		DeliveryTimeout:    30 * time.Second,
		MaxBufferedRecords: 10000,
		DialTimeout:        5 * time.Second,
		Embedded:           EmbeddedConfig{DataDir: "data/kafka", Listen: "127.0.0.1:9092", Partitions: 6},
	}
}

// DefaultTopicsConfig returns the documented defaults of `topics.*`.
func DefaultTopicsConfig() TopicsConfig {
	return TopicsConfig{
		Sessions: "idnow.sessions", Enriched: "idnow.sessions.enriched", DLQ: "idnow.sessions.dlq",
		Keys: "idnow.keys", Audit: "idnow.audit",
		Commands: "idnow.commands", Replies: "idnow.commands.replies", CommandsState: "idnow.commands.state",
		Archived: "idnow.sessions.archived",
		Create:   true, Partitions: 6, ReplicationFactor: -1,
		Retention: DefaultRetention(),
	}
}

// RetentionConfig is the `topics.retention.*` section: how long each topic the connector creates
// keeps its records (its retention.ms). 0 keeps them forever (retention.ms=-1). Topics that
// exist already are left as they are; change them with kafka-configs.sh (docs/privacy.md).
// The state and keys topics are compacted and have no time limit: a session's state and a
// subject's key live until they are replaced or erased.
type RetentionConfig struct {
	Sessions time.Duration `koanf:"sessions"`
	Enriched time.Duration `koanf:"enriched"`
	DLQ      time.Duration `koanf:"dlq"`
	Audit    time.Duration `koanf:"audit"`
	// Commands and Replies: a CreateSessionCommand carries the person's input data blocks, so
	// it should not outlive the time a caller needs to send and read it.
	Commands time.Duration `koanf:"commands"`
	Replies  time.Duration `koanf:"replies"`
	// Archived: the ArchivedSession index of the evidence archive; it should live as long as
	// the archive's objects (the bucket's lifecycle rule), so forever by default.
	Archived time.Duration `koanf:"archived"`
}

// DefaultRetention returns the documented defaults: SessionEvents 7 days (enough to replay and
// backfill; they hold no personal data), EnrichedSessions 30 days (consumers land them within
// it; personal fields are protected by privacy.mode), the DLQ 30 days (time for an operator to
// fix and replay), the audit trail forever (erasures must stay provable), commands and their
// replies 7 days (a command is answered within seconds; its input blocks are personal data),
// the archive's index forever (as long as the archived objects).
func DefaultRetention() RetentionConfig {
	const day = 24 * time.Hour
	return RetentionConfig{Sessions: 7 * day, Enriched: 30 * day, DLQ: 30 * day, Audit: 0, Commands: 7 * day, Replies: 7 * day, Archived: 0}
}

// CreateConfigs returns the topic configuration a topic named topic is created with:
// retention.ms for the time-limited topics, cleanup.policy=compact for the keys topic. nil for
// a topic this section does not know.
func (t TopicsConfig) CreateConfigs(topic string) map[string]*string {
	ms := func(d time.Duration) map[string]*string {
		v := int64(-1)
		if d > 0 {
			v = d.Milliseconds()
		}
		s := strconv.FormatInt(v, 10)
		return map[string]*string{"retention.ms": &s}
	}
	switch topic {
	case t.Sessions:
		return ms(t.Retention.Sessions)
	case t.Enriched:
		return ms(t.Retention.Enriched)
	case t.DLQ:
		return ms(t.Retention.DLQ)
	case t.Audit:
		return ms(t.Retention.Audit)
	case t.Commands:
		return ms(t.Retention.Commands)
	case t.Replies:
		return ms(t.Retention.Replies)
	case t.Archived:
		return ms(t.Retention.Archived)
	case t.Keys:
		compact := "compact"
		return map[string]*string{"cleanup.policy": &compact}
	}
	return nil
}

// StateTopic returns topics.state, or topics.sessions + ".state" when it is empty (the default:
// idnow.sessions.state). The state belongs to one sessions topic, so a deployment that renames
// its sessions topic gets its own state topic too.
func (t TopicsConfig) StateTopic() string {
	if t.State != "" {
		return t.State
	}
	return t.Sessions + ".state"
}

// UsesEmbedded reports whether the configuration asks for the embedded development broker.
func (c Config) UsesEmbedded() bool { return len(c.Brokers) == 0 }

// ToolBrokers returns the seed brokers a command-line tool (tail, dlq-replay) dials: override
// (its --brokers flag) when given, else kafka.brokers, else the embedded broker's listen address.
// That address is written with 127.0.0.1 for localhost: the embedded broker listens on 127.0.0.1
// only, and localhost can resolve to ::1 first, where nothing answers.
func (c Config) ToolBrokers(override []string) []string {
	switch {
	case len(override) > 0:
		return override
	case len(c.Brokers) > 0:
		return c.Brokers
	}
	host, port, err := net.SplitHostPort(c.Embedded.Listen)
	if err != nil || host != "localhost" {
		// Validate refuses anything but 127.0.0.1 and localhost; an unparsable address is
		// passed on as it is, for the client to name in its error.
		return []string{c.Embedded.Listen}
	}
	return []string{net.JoinHostPort("127.0.0.1", port)}
}

// RequireBrokers is the check of the production modes (ingress, enricher): empty kafka.brokers
// is an error unless kafka.embedded.enabled asks for the development broker explicitly.
func (c Config) RequireBrokers(mode string) error {
	if len(c.Brokers) > 0 || c.Embedded.Enabled {
		return nil
	}
	return fmt.Errorf("kafka.brokers is empty (environment: IDNOW_CONNECTOR_KAFKA__BROKERS): the %s mode needs the seed brokers of a Kafka cluster, e.g. kafka-1:9092,kafka-2:9092; "+
		"to use the in-process development broker instead (never in production) set kafka.embedded.enabled: true", mode)
}

// Validate reports configuration mistakes by key.
func (c Config) Validate() error {
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("kafka.brokers: %q is not host:port (e.g. kafka-1:9092): %w", b, err)
		}
	}
	if c.ClientID == "" {
		return fmt.Errorf("kafka.client_id must not be empty")
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	if c.DeliveryTimeout <= 0 {
		return fmt.Errorf("kafka.delivery_timeout must be positive, e.g. 30s")
	}
	if c.MaxBufferedRecords <= 0 {
		return fmt.Errorf("kafka.max_buffered_records must be positive, e.g. 10000")
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("kafka.dial_timeout must be positive, e.g. 5s")
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.SASL.Username == "" || (c.SASL.Password == "" && c.SASL.PasswordFile == "") {
			return fmt.Errorf("kafka.sasl.username and kafka.sasl.password (or password_file) are required with kafka.sasl.mechanism %s", c.SASL.Mechanism)
		}
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q is not supported: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("kafka.tls.cert_file and kafka.tls.key_file must be set together")
	}
	if c.Embedded.Enabled && !c.UsesEmbedded() {
		return fmt.Errorf("kafka.embedded.enabled is true but kafka.brokers is set to %s: use one or the other (the embedded broker is for development only)", strings.Join(c.Brokers, ","))
	}
	if c.UsesEmbedded() {
		host, port, err := net.SplitHostPort(c.Embedded.Listen)
		if err != nil {
			return fmt.Errorf("kafka.embedded.listen %q is not host:port: %w", c.Embedded.Listen, err)
		}
		if host != "127.0.0.1" && host != "localhost" {
			return fmt.Errorf("kafka.embedded.listen %q: the embedded broker only listens on 127.0.0.1 (it is for development); set kafka.brokers for a real cluster", c.Embedded.Listen)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("kafka.embedded.listen %q: bad port: %w", c.Embedded.Listen, err)
		}
		if c.Embedded.Partitions <= 0 {
			return fmt.Errorf("kafka.embedded.partitions must be positive")
		}
	}
	return nil
}

// Validate reports configuration mistakes by key.
func (t TopicsConfig) Validate() error {
	for key, name := range map[string]string{"topics.sessions": t.Sessions, "topics.enriched": t.Enriched, "topics.dlq": t.DLQ, "topics.state": t.StateTopic()} {
		if name == "" {
			return fmt.Errorf("%s must name a topic", key)
		}
		if len(name) > 249 || strings.ContainsFunc(name, func(r rune) bool {
			legal := r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			return !legal
		}) {
			return fmt.Errorf("%s %q is not a legal Kafka topic name (letters, digits, '.', '_', '-', at most 249)", key, name)
		}
	}
	if t.Sessions == t.Enriched || t.Sessions == t.DLQ || t.Enriched == t.DLQ {
		return fmt.Errorf("topics.sessions, topics.enriched and topics.dlq must be three different topics")
	}
	if st := t.StateTopic(); st == t.Sessions || st == t.Enriched || st == t.DLQ {
		return fmt.Errorf("topics.state %q must be a topic of its own (compacted, written only by the enricher)", st)
	}
	for key, name := range map[string]string{"topics.keys": t.Keys, "topics.audit": t.Audit} {
		if name != "" && (name == t.Sessions || name == t.Enriched || name == t.DLQ || name == t.StateTopic()) {
			return fmt.Errorf("%s %q must be a topic of its own", key, name)
		}
	}
	if t.Keys != "" && t.Keys == t.Audit {
		return fmt.Errorf("topics.keys and topics.audit must be different topics")
	}
	for key, d := range map[string]time.Duration{"topics.retention.sessions": t.Retention.Sessions, "topics.retention.enriched": t.Retention.Enriched,
		"topics.retention.dlq": t.Retention.DLQ, "topics.retention.audit": t.Retention.Audit,
		"topics.retention.commands": t.Retention.Commands, "topics.retention.replies": t.Retention.Replies,
		"topics.retention.archived": t.Retention.Archived} {
		if d < 0 || (d > 0 && d < time.Minute) {
			return fmt.Errorf("%s %s must be 0 (keep forever) or at least 1m, e.g. 168h", key, d)
		}
	}
	// topics.archived is the archiver's alone; components that do not archive build a
	// TopicsConfig without it, so only a set name is checked.
	if a := t.Archived; a != "" {
		if len(a) > 249 || strings.ContainsFunc(a, func(r rune) bool {
			legal := r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			return !legal
		}) {
			return fmt.Errorf("topics.archived %q is not a legal Kafka topic name (letters, digits, '.', '_', '-', at most 249)", a)
		}
		if a == t.Sessions || a == t.Enriched || a == t.DLQ || a == t.StateTopic() {
			return fmt.Errorf("topics.archived %q must be a topic of its own (written only by the archiver)", a)
		}
	}
	if t.Partitions <= 0 {
		return fmt.Errorf("topics.partitions must be positive, e.g. 6")
	}
	if t.ReplicationFactor == 0 || t.ReplicationFactor < -1 {
		return fmt.Errorf("topics.replication_factor must be -1 (broker default) or positive, e.g. 3")
	}
	return nil
}

// ValidateCommands checks the topics of the commands role: legal names, three different
// topics, none shared with the session pipeline.
func (t TopicsConfig) ValidateCommands() error {
	keys := []struct{ key, name string }{{"topics.commands", t.Commands}, {"topics.replies", t.Replies}, {"topics.commands_state", t.CommandsState}}
	for _, k := range keys {
		if k.name == "" {
			return fmt.Errorf("%s must name a topic", k.key)
		}
		if len(k.name) > 249 || strings.ContainsFunc(k.name, func(r rune) bool {
			legal := r == '.' || r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			return !legal
		}) {
			return fmt.Errorf("%s %q is not a legal Kafka topic name (letters, digits, '.', '_', '-', at most 249)", k.key, k.name)
		}
	}
	seen := map[string]string{}
	for _, k := range append(keys, struct{ key, name string }{"topics.sessions", t.Sessions}, struct{ key, name string }{"topics.enriched", t.Enriched},
		struct{ key, name string }{"topics.dlq", t.DLQ}, struct{ key, name string }{"topics.state", t.StateTopic()}) {
		if other, dup := seen[k.name]; dup {
			return fmt.Errorf("%s and %s are both %q: topics.commands, topics.replies and topics.commands_state must be topics of their own", other, k.key, k.name)
		}
		seen[k.name] = k.key
	}
	return nil
}

func compression(name string) (kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("kafka.compression %q is not one of none, gzip, snappy, lz4, zstd", name)
}

// ClientOpts builds the franz-go options every client of the connector shares: seeds, client id,
// security, idempotent acks=all producing and metrics. role distinguishes the client in its id
// and its metrics (e.g. "ingress", "enricher"). Callers append role-specific options.
func ClientOpts(cfg Config, role string, reg prometheus.Registerer) ([]kgo.Opt, error) {
	codec, err := compression(cfg.Compression)
	if err != nil {
		return nil, err
	}
	clientID := cfg.ClientID + "-" + role
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(clientID),
		// acks=all with idempotence is the only producer mode the connector uses: a webhook
		// answered 2xx must be on every in-sync replica.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.DialTimeout(cfg.DialTimeout),
	}
	if reg != nil {
		opts = append(opts, kgo.WithHooks(kpromHooks(reg)))
	}
	if cfg.TLS.Enabled {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.SASL.Mechanism != "" {
		pass := cfg.SASL.Password
		if cfg.SASL.PasswordFile != "" {
			b, err := os.ReadFile(cfg.SASL.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.sasl.password_file: %w", err)
			}
			pass = strings.TrimRight(string(b), "\r\n")
		}
		switch strings.ToUpper(cfg.SASL.Mechanism) {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASL.Username, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASL.Username, Pass: pass}.AsSha512Mechanism()))
		}
	}
	return opts, nil
}

func tlsConfig(c TLSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify} //nolint:gosec // opt-in by config, documented as unsafe
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
