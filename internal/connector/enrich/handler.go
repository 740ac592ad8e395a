package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/privacy"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/tracing"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// SessionAPI is what the enricher needs from the IDnow API; *idnow.Client satisfies it.
type SessionAPI interface {
	GetSession(ctx context.Context, sessionID string) (*idnow.Session, error)
	GetDataBlocks(ctx context.Context, sessionID string) ([]idnow.DataBlock, error)
}

// Message is one consumed record travelling through the handler chain.
type Message struct {
	// Record is the consumed SessionEvent record, untouched.
	Record *kgo.Record
	// Attempts counts the handler invocations so far; the Retry middleware maintains it.
	Attempts int
	// OutOfOrder is set by the enricher when the pipeline state ranks the event's status below
	// one already enriched; the handler writes it into EnrichedSession.outOfOrder.
	OutOfOrder bool
}

// Result is what handling a message produced.
type Result struct {
	// Records are the records to produce for the message: one EnrichedSession, or one DLQ record.
	Records []*kgo.Record
	// Status and Outcome label an enrichment (bounded by statusLabel and outcomeLabel).
	Status, Outcome string
	// DLQClass is the error class when the message went to the DLQ, empty otherwise.
	DLQClass string
	// Truncated is the truncation level label ("content" or "metadata") when the EnrichedSession
	// was shortened to fit the output limit, empty otherwise.
	Truncated string
	// ReceivedAt and CreatedAt are the SessionEvent's receive time and IDnow's event time (zero
	// when absent), for the end-to-end latency histograms observed when the batch commits.
	ReceivedAt, CreatedAt time.Time
	// Skipped is a state.Skip* reason when the event was not enriched because the pipeline
	// state shows it enriched already; Records is then empty.
	Skipped string
	// OutOfOrder mirrors EnrichedSession.outOfOrder.
	OutOfOrder bool

	// sessionOutcome is the normalised outcome written into the EnrichedSession, for the state.
	sessionOutcome string
	// state is the session's state after this event, written with it; nil without a state store.
	state *stateUpdate
	// span is the event's span (the Trace middleware), the parent of its commit span; invalid
	// when tracing is off.
	span trace.SpanContext
}

// Truncation level labels of idnow_connector_enrich_records_truncated_total, in degrade order.
const (
	TruncatedContent  = "content"  // data-block content JSON dropped (schemas.TruncationContentDropped)
	TruncatedMetadata = "metadata" // data blocks and file references dropped (schemas.TruncationMetadataOnly)
)

// HandlerFunc handles one message. It returns an error only for failures the chain could not
// turn into output; the enricher then abandons the batch (nothing is skipped).
type HandlerFunc func(ctx context.Context, m *Message) (Result, error)

// Middleware wraps a HandlerFunc with one concern (retry, DLQ, metrics).
type Middleware func(HandlerFunc) HandlerFunc

// Chain wraps h in mw, the first middleware outermost.
func Chain(h HandlerFunc, mw ...Middleware) HandlerFunc {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// Decoder decodes SessionEvent records in either wire format; *serde.Codec satisfies it.
type Decoder interface {
	Decode(ctx context.Context, b []byte, v any) error
}

// Encoder encodes EnrichedSession values; *serde.Codec satisfies it.
type Encoder interface {
	Encode(v any) ([]byte, error)
	Schema() schemas.Schema
}

// HandlerDeps are what the enrich handler needs.
type HandlerDeps struct {
	API      SessionAPI
	Events   Decoder
	Enriched Encoder
	Topic    string // topics.enriched
	Policy   DataBlocksConfig
	Version  string
	Now      func() time.Time // nil = time.Now
	// MaxRecordBytes returns the output limit as recordSize counts it; nil or 0 = unlimited.
	MaxRecordBytes func() int
	// Log receives a warning per shortened record; nil = no log.
	Log *slog.Logger
	// Privacy applies privacy.mode and privacy.pseudonymize to each EnrichedSession before it
	// is encoded; its new data keys are returned in Result.Records, so they commit in the same
	// transaction as the records encrypted under them. nil = plain.
	Privacy *privacy.Protector
}

// NewHandler returns the core handler: decode the SessionEvent, read the session (and its data
// blocks when policy says so), Map, encode, and return the EnrichedSession record keyed by
// session id with the schema and event-id headers the ingress also writes.
func NewHandler(d HandlerDeps) HandlerFunc {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, m *Message) (Result, error) {
		var ev schemas.SessionEvent
		if err := d.Events.Decode(ctx, m.Record.Value, &ev); err != nil {
			return Result{}, &stageError{stage: stageDecode, err: err}
		}
		if ev.SessionID == "" {
			return Result{}, &stageError{stage: stageDecode, err: fmt.Errorf("%w: SessionEvent %s has an empty sessionId", serde.ErrUndecodable, ev.EventID)}
		}
		s, err := d.API.GetSession(ctx, ev.SessionID)
		if err != nil {
			return Result{}, &stageError{stage: stageAPI, err: fmt.Errorf("get session: %w", err)}
		}
		fetched := d.Policy.fetchesBlocks(string(s.Status))
		var blocks []idnow.DataBlock
		if fetched {
			if blocks, err = d.API.GetDataBlocks(ctx, ev.SessionID); err != nil {
				return Result{}, &stageError{stage: stageAPI, err: fmt.Errorf("get data blocks: %w", err)}
			}
		}
		out := Map(&ev, s, blocks, fetched, d.Policy, now(), d.Version)
		out.OutOfOrder = m.OutOfOrder
		var keyRecs []*kgo.Record
		if d.Privacy != nil {
			if keyRecs, err = d.Privacy.Protect(ctx, d.Topic, out); err != nil {
				return Result{}, &stageError{stage: stagePrivacy, err: fmt.Errorf("privacy.mode %s: %w", d.Privacy.Mode(), err)}
			}
		}
		value, err := d.Enriched.Encode(out)
		if err != nil {
			return Result{}, &stageError{stage: stageEncode, err: err}
		}
		rec := serde.NewRecord(d.Topic, ev.SessionID, ev.EventID, d.Enriched.Schema(), value)
		// The event's trace context (the Trace middleware's span, when tracing is on) goes on
		// the record before its size is checked against the limit, which counts headers.
		tracing.InjectRecord(ctx, rec)
		truncated := ""
		if d.MaxRecordBytes != nil {
			if limit := d.MaxRecordBytes(); limit > 0 && recordSize(rec) > limit {
				if truncated, err = fit(d, out, rec, limit); err != nil {
					return Result{}, err
				}
				if d.Log != nil {
					d.Log.WarnContext(ctx, "enriched record exceeds the output limit; shortened and marked in enrichment.truncation",
						slog.String("level", truncated), slog.Int("bytes", recordSize(rec)), slog.Int("limit", limit),
						slog.String("topic", m.Record.Topic), slog.Int("partition", int(m.Record.Partition)), slog.Int64("offset", m.Record.Offset))
				}
			}
		}
		outcome := ""
		if out.Session.Outcome != nil {
			outcome = *out.Session.Outcome
		}
		res := Result{Records: append([]*kgo.Record{rec}, keyRecs...), Status: statusLabel(out.Session.Status), Outcome: outcomeLabel(outcome), Truncated: truncated,
			OutOfOrder: out.OutOfOrder, sessionOutcome: outcome, ReceivedAt: ev.ReceivedAt}
		if ev.CreatedAt != nil {
			res.CreatedAt = *ev.CreatedAt
		}
		return res, nil
	}
}

// fit shortens out until rec (re-encoded in place) fits limit, in the documented order: first
// drop every data block's content JSON (typed fields, block metadata and file references stay:
// consumers keep the identity fields and the archiver its references), then drop data blocks
// and file references (the session details stay). Each step marks enrichment.truncation. When
// even metadata does not fit, the error classifies as record_too_large and the event goes to
// the DLQ.
func fit(d HandlerDeps, out *schemas.EnrichedSession, rec *kgo.Record, limit int) (string, error) {
	full := recordSize(rec)
	encode := func(truncation string) error {
		out.Enrichment.Truncation = &truncation
		v, err := d.Enriched.Encode(out)
		if err != nil {
			return &stageError{stage: stageEncode, err: err}
		}
		rec.Value = v
		return nil
	}
	hasContent := false
	for i := range out.DataBlocks {
		if out.DataBlocks[i].Content != nil {
			hasContent = true
			out.DataBlocks[i].Content = nil
		}
	}
	if out.Privacy != nil {
		// Encrypted content goes as its clear-text field would (privacy.mode encrypt).
		n := len(out.Privacy.Encrypted)
		privacy.DropEncrypted(out, func(p string) bool { return !isBlockPath(p) || !strings.HasSuffix(p, "].content") })
		hasContent = hasContent || len(out.Privacy.Encrypted) < n
	}
	if hasContent {
		if err := encode(schemas.TruncationContentDropped); err != nil {
			return "", err
		}
		if recordSize(rec) <= limit {
			return TruncatedContent, nil
		}
	}
	out.DataBlocks, out.FileRefs = []schemas.DataBlock{}, []schemas.FileRef{}
	privacy.DropEncrypted(out, func(p string) bool { return !isBlockPath(p) })
	if err := encode(schemas.TruncationMetadataOnly); err != nil {
		return "", err
	}
	if n := recordSize(rec); n > limit {
		return "", &stageError{stage: stageSize, err: fmt.Errorf(
			"%w: the EnrichedSession takes %d bytes, %d with metadata only; the limit is %d bytes (enrich.max_record_bytes, else the topic's max.message.bytes)",
			ErrRecordTooLarge, full, n, limit)}
	}
	return TruncatedMetadata, nil
}

// isBlockPath reports whether a privacy envelope path is inside dataBlocks.
func isBlockPath(p string) bool { return strings.HasPrefix(p, "dataBlocks[") }

// statusLabel bounds the status label: documented statuses pass, anything else is "other".
func statusLabel(s string) string {
	switch st := idnow.SessionStatus(strings.ToUpper(s)); st {
	case idnow.StatusCreated, idnow.StatusRunning, idnow.StatusCompleted, idnow.StatusAborted, idnow.StatusExpired, idnow.StatusError:
		return string(st)
	}
	return "other"
}

// outcomeLabel bounds the outcome label: the normalised outcomes pass, empty is "none", anything
// else is "other".
func outcomeLabel(o string) string {
	switch o {
	case idnow.OutcomeAccepted, idnow.OutcomeRejected, idnow.OutcomeNoOutcome:
		return o
	case "":
		return "none"
	}
	return "other"
}
