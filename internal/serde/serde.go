// Package serde encodes and decodes the project's Avro records in the two wire formats design.md
// names: the Confluent wire format (magic byte 0, 4-byte schema id) when a schema registry is
// configured, and Avro single-object encoding (0xC3 0x01 + CRC-64-AVRO fingerprint) otherwise.
//
// A Codec always decodes both formats, so consumers keep working while producers switch.
package serde

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

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

// ErrUndecodable marks a record that can never be decoded by this codec (wrong format, unknown
// schema, corrupt body). It is a permanent failure: retrying cannot help.
var ErrUndecodable = errors.New("undecodable record")

const (
	soeMagic0 = 0xC3
	soeMagic1 = 0x01
)

// confluentHeader is franz-go's Confluent wire format header (magic 0, big-endian schema id).
var confluentHeader = new(sr.ConfluentHeader)

// Codec encodes values of one record schema and decodes records written with it or with any
// compatible writer schema: a released version from the schema's history (single-object), or any
// schema the registry holds (Confluent), resolved into the codec's schema by Avro schema
// resolution (fields added since have their defaults, removed fields are skipped).
type Codec struct {
	schema   schemas.Schema
	registry *sr.Client // nil = single-object encoding
	id       int        // registry schema id when registry != nil
	soeFP    [8]byte
	// known maps each released version's single-object fingerprint to its writer schema; the
	// current schema is included under its own fingerprint.
	known map[[8]byte]schemas.Version

	// confluent frames and unframes the Confluent wire format and keeps, per registry id, the
	// decoder that reads that writer schema into ours (registered on first sight of the id).
	confluent *sr.Serde

	mu   sync.RWMutex
	byFP map[[8]byte]*avro.Schema // fingerprint -> writer resolved against our reader schema

	// sizeHint is the length of the last encoding. Encode allocates a bit more than that up
	// front: appending a record of a few KiB to an empty buffer reallocates it a dozen times
	// (a fifth of the enricher's allocated bytes went to that).
	sizeHint atomic.Int64
}

// registryRecord is the type the codec's sr.Serde registers its per-id decoders under; the codec
// decodes into whatever value the caller passes, so the type is only a key.
type registryRecord struct{}

// CodecConfig says what a codec encodes and how it uses the registry.
type CodecConfig struct {
	// Schema is the schema the codec writes and reads into (required).
	Schema schemas.Schema
	// Subject is the registry subject (TopicNameStrategy: "<topic>-value"); required with a
	// registry, ignored without one.
	Subject string
	// Register registers the schema under Subject; false looks up an already registered one
	// (schema_registry.register).
	Register bool
	// Compatibility sets the subject's level in the registry (schema_registry.compatibility)
	// before registering, so the registry itself refuses a schema that would break the
	// topic's readers. Empty leaves the registry's level alone; it applies only when
	// registering.
	Compatibility string
}

// NewCodec prepares a codec. With a registry it registers (or looks up) cfg.Schema under
// cfg.Subject and encodes in the Confluent wire format; with a nil registry it uses Avro
// single-object encoding.
func NewCodec(ctx context.Context, cfg CodecConfig, registry *sr.Client) (*Codec, error) {
	schema, subject, register := cfg.Schema, cfg.Subject, cfg.Register
	c := &Codec{
		schema: schema, registry: registry, soeFP: schemas.Fingerprint(schema.Avro),
		known:     map[[8]byte]schemas.Version{},
		confluent: sr.NewSerde(sr.Header(confluentHeader)), byFP: map[[8]byte]*avro.Schema{},
	}
	for _, v := range schema.History {
		c.known[v.Fingerprint] = v
	}
	// The current schema has the latest version's wire form once it is released (history_test.go);
	// between a change and its history entry it is still the schema this code writes.
	c.byFP[c.soeFP] = schema.Avro
	if registry == nil {
		return c, nil
	}
	s := sr.Schema{Schema: schema.Text, Type: sr.TypeAvro}
	if register {
		if cfg.Compatibility != "" {
			if err := setCompatibility(ctx, registry, subject, cfg.Compatibility); err != nil {
				return nil, err
			}
		}
		id, err := registry.RegisterSchema(ctx, subject, s, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("register schema %s under subject %q: %w (the registry refuses a schema that breaks its compatibility rule: release the change as a new topic, docs/data-contract.md; set schema_registry.register: false if the registry is managed elsewhere)", schema.FullName, subject, err)
		}
		c.id = id
	} else {
		ss, err := registry.LookupSchema(ctx, subject, s)
		if err != nil {
			return nil, fmt.Errorf("look up schema %s under subject %q: %w (register it, or set schema_registry.register: true)", schema.FullName, subject, err)
		}
		c.id = ss.ID
	}
	c.registerDecoder(c.id, schema.Avro)
	return c, nil
}

// setCompatibility sets subject's compatibility level, so the registry checks every new version
// against it; Apicurio defaults to NONE and Confluent to BACKWARD, neither of which is the FULL
// compatibility the contract promises.
func setCompatibility(ctx context.Context, registry *sr.Client, subject, level string) error {
	var l sr.CompatibilityLevel
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil || l.String() == "" {
		return fmt.Errorf("schema_registry.compatibility %q is not a registry compatibility level (FULL, FULL_TRANSITIVE, BACKWARD, FORWARD, NONE, ...)", level)
	}
	for _, r := range registry.SetCompatibility(ctx, sr.SetCompatibility{Level: l}, subject) {
		if r.Err != nil {
			return fmt.Errorf("set compatibility %s on subject %q: %w (set schema_registry.compatibility: \"\" to leave the registry's level alone)", l, subject, r.Err)
		}
	}
	return nil
}

// NewDecoder returns a codec for reading only: it neither registers nor looks up the schema at
// construction, and fetches writer schemas from registry (which may be nil) when a record names
// one. Encoding with it uses single-object encoding.
func NewDecoder(schema schemas.Schema, registry *sr.Client) *Codec {
	c, _ := NewCodec(context.Background(), CodecConfig{Schema: schema}, nil)
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
	out, err := sr.AppendEncode(dst, v, confluentHeader, c.id, nil, func(b []byte, v any) ([]byte, error) {
		return c.schema.Avro.AppendEncode(b, v)
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.schema.FullName, err)
	}
	return out, nil
}

// Encode returns the encoding of v, in a buffer sized from the previous encoding.
func (c *Codec) Encode(v any) ([]byte, error) {
	hint := c.sizeHint.Load()
	out, err := c.AppendEncode(make([]byte, 0, hint+hint/4+64), v)
	if err == nil {
		c.sizeHint.Store(int64(len(out)))
	}
	return out, err
}

// Decode decodes b, in either wire format, into v. Errors that can never succeed on retry wrap
// ErrUndecodable; a registry that cannot be reached returns an error without it.
func (c *Codec) Decode(ctx context.Context, b []byte, v any) error {
	if len(b) >= 10 && b[0] == soeMagic0 && b[1] == soeMagic1 {
		writer, err := c.readerForFingerprint([8]byte(b[2:10]))
		if err != nil {
			return err
		}
		return c.decodeBody(writer, b[10:], v)
	}
	if id, _, err := c.confluent.DecodeID(b); err == nil {
		err := c.confluent.Decode(b, v)
		if !errors.Is(err, sr.ErrNotRegistered) {
			return err
		}
		// First record with this writer id: fetch, resolve and register its decoder, then decode.
		if err := c.learnID(ctx, id); err != nil {
			return err
		}
		return c.confluent.Decode(b, v)
	}
	n := min(len(b), 2)
	return fmt.Errorf("%w: %d bytes starting %x are neither Confluent wire format nor Avro single-object encoding", ErrUndecodable, len(b), b[:n])
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

// readerForFingerprint returns a schema that reads single-object data written with the schema
// whose fingerprint is fp into our type: the current schema itself, or a released version
// resolved against it.
func (c *Codec) readerForFingerprint(fp [8]byte) (*avro.Schema, error) {
	c.mu.RLock()
	s, ok := c.byFP[fp]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	v, ok := c.known[fp]
	if !ok {
		return nil, c.unknownFingerprint(fp)
	}
	resolved, err := avro.Resolve(v.Avro, c.schema.Avro)
	if err != nil {
		// CheckFull in the schemas tests rules this out for the shipped history.
		return nil, fmt.Errorf("%w: single-object record written with %s %s is not readable as the current schema: %w", ErrUndecodable, c.schema.FullName, v.Name(), err)
	}
	c.mu.Lock()
	c.byFP[fp] = resolved
	c.mu.Unlock()
	return resolved, nil
}

// unknownFingerprint explains a fingerprint that is no version of the codec's schema.
func (c *Codec) unknownFingerprint(fp [8]byte) error {
	known := make([]string, 0, len(c.schema.History)+1)
	for _, v := range c.schema.History {
		known = append(known, fmt.Sprintf("%s %x", v.Name(), v.Fingerprint))
	}
	if _, released := c.known[c.soeFP]; !released {
		known = append(known, fmt.Sprintf("current (unreleased) %x", c.soeFP))
	}
	return fmt.Errorf("%w: single-object record written with schema fingerprint %x, which is no known version of %s (known: %s); "+
		"it was written with another record type or by a newer connector: read it with a connector at least as new as the writer, or use schema_registry.url so readers fetch the writer schema",
		ErrUndecodable, fp, c.schema.FullName, strings.Join(known, ", "))
}

// registerDecoder makes the codec's serde decode records of registry id with reader, a schema
// that reads that id's writer schema into the codec's type.
func (c *Codec) registerDecoder(id int, reader *avro.Schema) {
	c.confluent.Register(id, registryRecord{}, sr.DecodeFn(func(body []byte, v any) error {
		return c.decodeBody(reader, body, v)
	}))
}

// learnID fetches the writer schema of registry id (once: the serde keeps the decoder) and
// resolves it against the codec's schema.
func (c *Codec) learnID(ctx context.Context, id int) error {
	if c.registry == nil {
		return fmt.Errorf("%w: record written with registry schema id %d, but no schema_registry.url is configured", ErrUndecodable, id)
	}
	ws, err := c.registry.SchemaByID(ctx, id)
	if err != nil {
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: schema id %d is not in the registry", ErrUndecodable, id)
		}
		return fmt.Errorf("fetch schema id %d from the registry: %w", id, err)
	}
	writer, err := avro.Parse(ws.Schema)
	if err != nil {
		return fmt.Errorf("%w: registry schema id %d does not parse: %w", ErrUndecodable, id, err)
	}
	resolved, err := avro.Resolve(writer, c.schema.Avro)
	if err != nil {
		return fmt.Errorf("%w: registry schema id %d is not readable as %s: %w", ErrUndecodable, id, c.schema.FullName, err)
	}
	c.registerDecoder(id, resolved)
	return nil
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
