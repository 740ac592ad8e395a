// Package serde encodes and decodes the project's Avro records in the two wire formats design.md
// names: the Confluent wire format (magic byte 0, 4-byte schema id) when a schema registry is
// configured, and Avro single-object encoding (0xC3 0x01 + CRC-64-AVRO fingerprint) otherwise.
//
// A Codec always decodes both formats, so consumers keep working while producers switch.
package serde

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/avro"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Record header keys written next to every record, so tools can tell what a record holds without
// decoding it.
const (
	HeaderSchema  = "idnow.schema"   // the record schema's full name
	HeaderEventID = "idnow.event_id" // the IDnow eventId the record derives from
)

// Config is the `schema_registry.*` config section.
type Config struct {
	URL      string        `koanf:"url"`      // empty = single-object encoding, no registry
	Username string        `koanf:"username"` // optional basic auth
	Password string        `koanf:"password"`
	Register bool          `koanf:"register"` // register the schema at start-up (false: only look it up)
	Timeout  time.Duration `koanf:"timeout"`  // per registry request
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config { return Config{Register: true, Timeout: 10 * time.Second} }

// Validate reports configuration mistakes by key.
func (c Config) Validate() error {
	if c.URL != "" && !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		return fmt.Errorf("schema_registry.url %q must start with http:// or https:// (or be empty for single-object encoding)", c.URL)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("schema_registry.timeout must be positive, e.g. 10s")
	}
	if (c.Username == "") != (c.Password == "") {
		return fmt.Errorf("schema_registry.username and schema_registry.password must be set together")
	}
	return nil
}

// NewRegistryClient returns a registry client for cfg, or nil when no registry is configured.
func NewRegistryClient(cfg Config) (*sr.Client, error) {
	if cfg.URL == "" {
		return nil, nil
	}
	opts := []sr.ClientOpt{sr.URLs(cfg.URL), sr.HTTPClient(&http.Client{Timeout: cfg.Timeout})}
	if cfg.Username != "" {
		opts = append(opts, sr.BasicAuth(cfg.Username, cfg.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client for %s: %w", cfg.URL, err)
	}
	return cl, nil
}

// ErrUndecodable marks a record that can never be decoded by this codec (wrong format, unknown
// schema, corrupt body). It is a permanent failure: retrying cannot help.
var ErrUndecodable = errors.New("undecodable record")

const (
	confluentMagic = 0x00
	soeMagic0      = 0xC3
	soeMagic1      = 0x01
)

// Codec encodes values of one record schema and decodes records written with it or with any
// compatible writer schema the registry knows.
type Codec struct {
	schema   schemas.Schema
	registry *sr.Client // nil = single-object encoding
	id       int        // registry schema id when registry != nil
	soeFP    [8]byte

	mu       sync.RWMutex
	resolved map[int]*avro.Schema // registry id -> writer resolved against our reader schema
}

// NewCodec prepares a codec. With a registry it registers (or, when register is false, looks up)
// the schema under subject and encodes in the Confluent wire format; without one it uses Avro
// single-object encoding.
func NewCodec(ctx context.Context, schema schemas.Schema, registry *sr.Client, subject string, register bool) (*Codec, error) {
	c := &Codec{schema: schema, registry: registry, resolved: map[int]*avro.Schema{}}
	// The single-object header carries the CRC-64-AVRO fingerprint of the canonical form,
	// little-endian, as the Avro specification prescribes.
	h := avro.NewRabin()
	h.Write(schema.Avro.Canonical())
	binary.LittleEndian.PutUint64(c.soeFP[:], h.Sum64())
	if registry == nil {
		return c, nil
	}
	s := sr.Schema{Schema: schema.Text, Type: sr.TypeAvro}
	if register {
		id, err := registry.RegisterSchema(ctx, subject, s, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("register schema %s under subject %q: %w (set schema_registry.register: false if the registry is managed elsewhere)", schema.FullName, subject, err)
		}
		c.id = id
	} else {
		ss, err := registry.LookupSchema(ctx, subject, s)
		if err != nil {
			return nil, fmt.Errorf("look up schema %s under subject %q: %w (register it, or set schema_registry.register: true)", schema.FullName, subject, err)
		}
		c.id = ss.ID
	}
	c.resolved[c.id] = schema.Avro
	return c, nil
}

// NewDecoder returns a codec for reading only: it neither registers nor looks up the schema at
// construction, and fetches writer schemas from registry (which may be nil) when a record names
// one. Encoding with it uses single-object encoding.
func NewDecoder(schema schemas.Schema, registry *sr.Client) *Codec {
	c, _ := NewCodec(context.Background(), schema, nil, "", false)
	c.registry = registry
	return c
}

// Schema returns the codec's record schema.
func (c *Codec) Schema() schemas.Schema { return c.schema }

// SchemaID returns the registry id used for encoding, or 0 in single-object mode.
func (c *Codec) SchemaID() int { return c.id }

// AppendEncode appends the encoding of v to dst.
func (c *Codec) AppendEncode(dst []byte, v any) ([]byte, error) {
	if c.id == 0 {
		out, err := c.schema.Avro.AppendSingleObject(dst, v)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", c.schema.FullName, err)
		}
		return out, nil
	}
	dst = append(dst, confluentMagic, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(c.id))
	out, err := c.schema.Avro.AppendEncode(dst, v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.schema.FullName, err)
	}
	return out, nil
}

// Encode returns the encoding of v.
func (c *Codec) Encode(v any) ([]byte, error) { return c.AppendEncode(nil, v) }

// Decode decodes b, in either wire format, into v. Errors that can never succeed on retry wrap
// ErrUndecodable; a registry that cannot be reached returns an error without it.
func (c *Codec) Decode(ctx context.Context, b []byte, v any) error {
	switch {
	case len(b) >= 10 && b[0] == soeMagic0 && b[1] == soeMagic1:
		if [8]byte(b[2:10]) != c.soeFP {
			return fmt.Errorf("%w: single-object record written with schema fingerprint %x, not %s (%x)", ErrUndecodable, b[2:10], c.schema.FullName, c.soeFP)
		}
		if err := c.decodeBody(c.schema.Avro, b[10:], v); err != nil {
			return err
		}
		return nil
	case len(b) >= 5 && b[0] == confluentMagic:
		id := int(binary.BigEndian.Uint32(b[1:5]))
		writer, err := c.readerFor(ctx, id)
		if err != nil {
			return err
		}
		return c.decodeBody(writer, b[5:], v)
	default:
		n := min(len(b), 2)
		return fmt.Errorf("%w: %d bytes starting %x are neither Confluent wire format nor Avro single-object encoding", ErrUndecodable, len(b), b[:n])
	}
}

func (c *Codec) decodeBody(s *avro.Schema, body []byte, v any) error {
	rest, err := s.Decode(body, v)
	if err != nil {
		return fmt.Errorf("%w: decode %s: %w", ErrUndecodable, c.schema.FullName, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after %s", ErrUndecodable, len(rest), c.schema.FullName)
	}
	return nil
}

// readerFor returns a schema that reads data written with registry schema id into our type.
func (c *Codec) readerFor(ctx context.Context, id int) (*avro.Schema, error) {
	c.mu.RLock()
	s, ok := c.resolved[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	if c.registry == nil {
		return nil, fmt.Errorf("%w: record written with registry schema id %d, but no schema_registry.url is configured", ErrUndecodable, id)
	}
	ws, err := c.registry.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%w: schema id %d is not in the registry", ErrUndecodable, id)
		}
		return nil, fmt.Errorf("fetch schema id %d from the registry: %w", id, err)
	}
	writer, err := avro.Parse(ws.Schema)
	if err != nil {
		return nil, fmt.Errorf("%w: registry schema id %d does not parse: %w", ErrUndecodable, id, err)
	}
	resolved, err := avro.Resolve(writer, c.schema.Avro)
	if err != nil {
		return nil, fmt.Errorf("%w: registry schema id %d is not readable as %s: %w", ErrUndecodable, id, c.schema.FullName, err)
	}
	c.mu.Lock()
	c.resolved[id] = resolved
	c.mu.Unlock()
	return resolved, nil
}

// SingleObjectFingerprint returns the CRC-64-AVRO fingerprint a single-object record carries.
func (c *Codec) SingleObjectFingerprint() [8]byte { return c.soeFP }

// NewRecord is the record the connector writes for one event: keyed by the session id, so a
// session's records stay in order on one partition, holding value (encoded with schema) and the
// standard headers, HeaderSchema and HeaderEventID, that let tools tell what a record holds
// without decoding it. The ingress and the enricher both build their output with it, so the two
// topics carry the same headers.
func NewRecord(topic, sessionID, eventID string, schema schemas.Schema, value []byte) *kgo.Record {
	return &kgo.Record{
		Topic: topic,
		Key:   []byte(sessionID),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderSchema, Value: []byte(schema.FullName)},
			{Key: HeaderEventID, Value: []byte(eventID)},
		},
	}
}
