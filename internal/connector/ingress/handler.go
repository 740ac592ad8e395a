package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Verifier checks webhook signatures and the optional static header; *webhook.Verifier is the
// production implementation.
type Verifier interface {
	// VerifyData verifies the token and hands the members of its data claim to visit while it
	// reads them (webhook.Verifier.VerifyData), so the event is parsed once.
	VerifyData(ctx context.Context, token string, visit func(webhook.DataMember)) (*webhook.Claims, error)
	CheckStaticHeader(h http.Header) error
}

// Encoder turns a SessionEvent into record bytes; *serde.Codec is the production implementation.
type Encoder interface {
	AppendEncode(dst []byte, v any) ([]byte, error)
	Schema() schemas.Schema
}

// Handler is the webhook endpoint. It is safe for concurrent use.
type Handler struct {
	cfg      Config
	topic    string
	verifier Verifier
	encoder  Encoder
	kafka    *kgo.Client
	tracker  *tracker
	addrs    *addrPolicy
	rejects  *rejectLog
	metrics  *metrics
	log      *slog.Logger
	slots    chan struct{}
	closing  atomic.Bool
	now      func() time.Time
	// tracer is nil when tracing is off (tracing.go).
	tracer trace.Tracer
}

// delivery is what an HTTP request carried, before verification.
type delivery struct {
	token     string
	variant   string
	bodyEvent []byte // the JSON body of the signature_header variant
}

// httpError is an answer other than success, with a reason safe to show to the sender.
type httpError struct {
	status int
	result string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// bufPool recycles the buffers a request's body is read into and a record's value is encoded
// into (a few hundred bytes to a few KiB each, once per webhook): under load the garbage
// collector then has little more than the event itself to sweep.
var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBuf bounds what returns to bufPool, so one large body does not stay pinned.
const maxPooledBuf = 64 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// putBuf returns b, grown to hold used, to the pool.
func putBuf(b *[]byte, used []byte) {
	if cap(used) > maxPooledBuf {
		return
	}
	*b = used[:0]
	bufPool.Put(b)
}

// readBody appends what r yields to dst until EOF or an error.
func readBody(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// parseDelivery extracts the token from either IDnow delivery variant. It enforces the body
// limit and content types and never trusts a length the client claims. The body is read into
// *buf (grown as needed); d.bodyEvent points into it, so *buf must outlive d.
func parseDelivery(r *http.Request, maxBody int64, signatureHeader string, buf *[]byte) (*delivery, *httpError) {
	if r.ContentLength > maxBody {
		return nil, &httpError{http.StatusRequestEntityTooLarge, resultTooLarge, "body larger than " + strconv.FormatInt(maxBody, 10) + " bytes"}
	}
	mediaType := r.Header.Get("Content-Type")
	// The two bare types IDnow sends skip the parser (and its allocations); anything else, with
	// parameters or in other case, is parsed.
	if mediaType != "application/jwt" && mediaType != "application/json" {
		var err error
		if mediaType, _, err = mime.ParseMediaType(mediaType); err != nil {
			return nil, &httpError{http.StatusUnsupportedMediaType, resultUnsupportedMedia, "missing or malformed Content-Type: send application/jwt (token as body) or application/json (with the token in " + signatureHeader + ")"}
		}
	}
	var variant string
	switch mediaType {
	case "application/jwt":
		variant = schemas.DeliveryJWTBody
	case "application/json":
		variant = schemas.DeliverySignatureHeader
	default:
		return nil, &httpError{http.StatusUnsupportedMediaType, resultUnsupportedMedia, "Content-Type " + mediaType + " not supported: send application/jwt or application/json"}
	}
	body, err := readBody((*buf)[:0], io.LimitReader(r.Body, maxBody+1))
	*buf = body
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge, resultTooLarge, "body larger than " + strconv.FormatInt(maxBody, 10) + " bytes"}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &httpError{http.StatusRequestTimeout, resultBodyTimeout, "the request body was not received within ingress.body_read_timeout: send the whole webhook at once"}
		}
		return nil, &httpError{http.StatusBadRequest, resultBadRequest, "could not read the request body: " + err.Error()}
	}
	if int64(len(body)) > maxBody {
		return nil, &httpError{http.StatusRequestEntityTooLarge, resultTooLarge, "body larger than " + strconv.FormatInt(maxBody, 10) + " bytes"}
	}
	d := &delivery{variant: variant}
	switch variant {
	case schemas.DeliveryJWTBody:
		d.token = string(bytes.TrimSpace(body))
		if d.token == "" {
			return nil, &httpError{http.StatusBadRequest, resultBadRequest, "empty body: the signed webhook JWT is expected as the body"}
		}
	case schemas.DeliverySignatureHeader:
		d.token = strings.TrimSpace(strings.TrimPrefix(r.Header.Get(signatureHeader), "Bearer "))
		if d.token == "" {
			return nil, &httpError{http.StatusUnauthorized, resultUnauthorized, "JSON delivery without a signature: the JWT is expected in the " + signatureHeader + " header"}
		}
		if !json.Valid(body) {
			return nil, &httpError{http.StatusBadRequest, resultBadRequest, "body is not valid JSON"}
		}
		d.bodyEvent = body
	}
	return d, nil
}

// sameJSON reports whether two JSON documents are equal as values (key order and number
// formatting aside).
func sameJSON(a, b []byte) bool {
	var va, vb any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// ServeHTTP implements the webhook endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	var span trace.Span
	if h.tracer != nil {
		r, span = h.startWebhookSpan(r)
	}
	client, peer := h.addrs.client(r)
	result, status, reason := h.serve(w, r, client, start)
	h.metrics.answered(result, time.Since(start))
	switch {
	case status >= 500:
		h.rejects.record(r.Context(), slog.LevelWarn, result, status, addrString(client), addrString(peer), reason)
	case status >= 400:
		h.rejects.record(r.Context(), slog.LevelInfo, result, status, addrString(client), addrString(peer), reason)
	}
	if span != nil {
		endWebhookSpan(span, result, status, reason)
	}
}

// addrString renders a client address for logs; "unknown" when a trusted proxy sent a header we
// could not read.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

// serve answers the request. The order matters: everything that needs no body is checked first,
// the body is read under ingress.body_read_timeout before a concurrency slot is taken (a sender
// that trickles its body holds a goroutine for at most that long, never a slot), and only then
// is the signature verified and the event produced.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, client netip.Addr, start time.Time) (result string, status int, reason string) {
	// Until the body has been read completely, any answer closes the connection: otherwise the
	// server would try to read (and discard) the rest of an unwanted body before answering, for
	// as long as the sender cares to trickle it.
	w.Header()["Connection"] = headerClose
	if !h.addrs.allows(client) {
		return h.fail(w, &httpError{http.StatusForbidden, resultForbidden, "the sender's address is not allowed to deliver webhooks here"})
	}
	if r.URL.Path != h.cfg.Path {
		return h.fail(w, &httpError{http.StatusNotFound, resultNotFound, "no webhook endpoint here: POST to " + h.cfg.Path})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return h.fail(w, &httpError{http.StatusMethodNotAllowed, resultMethodNotAllowed, "method " + r.Method + " not allowed: POST the webhook"})
	}
	if h.closing.Load() {
		return h.unavailable(w, resultShuttingDown, "the receiver is shutting down; retry")
	}
	if err := h.verifier.CheckStaticHeader(r.Header); err != nil {
		return h.fail(w, &httpError{http.StatusUnauthorized, resultUnauthorized, err.Error()})
	}

	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	rc := http.NewResponseController(w)
	// ErrNotSupported (a ResponseWriter without a connection, as in handler tests) leaves the
	// server's read_timeout in charge.
	deadlineSet := rc.SetReadDeadline(start.Add(h.cfg.BodyReadTimeout)) == nil
	body := getBuf()
	defer func() { putBuf(body, *body) }()
	d, herr := parseDelivery(r, h.cfg.MaxBodyBytes, h.cfg.SignatureHeader, body)
	if deadlineSet {
		// Nothing more is read for this request (on failure the connection closes after the
		// answer). Lift the short deadline so the server's background read does not time out,
		// and cancel the request's context, while the signature is checked and Kafka
		// acknowledges; write_timeout still bounds the rest.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if herr != nil {
		return h.fail(w, herr)
	}
	delete(w.Header(), "Connection") // the body is consumed: the connection may be kept alive

	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		return h.unavailable(w, resultOverloaded, "too many concurrent requests; retry")
	}
	h.metrics.inFlight.Inc()
	defer h.metrics.inFlight.Dec()

	var rd eventReader
	claims, err := h.verifier.VerifyData(r.Context(), d.token, rd.visit)
	if err != nil {
		if errors.Is(err, webhook.ErrKeysUnavailable) {
			return h.unavailable(w, resultKeysUnavailable, "the token's signing key is not available (keys not loaded or the key set unreachable); retry")
		}
		var ve *webhook.VerificationError
		if errors.As(err, &ve) {
			return h.fail(w, &httpError{http.StatusUnauthorized, resultUnauthorized, "webhook signature rejected: " + ve.Reason})
		}
		if r.Context().Err() != nil {
			return h.fail(w, &httpError{http.StatusBadRequest, resultBadRequest, "request canceled"})
		}
		return h.fail(w, &httpError{http.StatusUnauthorized, resultUnauthorized, "webhook signature rejected"})
	}
	if d.variant == schemas.DeliverySignatureHeader && !sameJSON(d.bodyEvent, claims.Data) {
		return h.fail(w, &httpError{http.StatusUnauthorized, resultUnauthorized, "the JSON body does not match the signed token's data claim"})
	}
	ev, err := rd.event()
	if err != nil {
		return h.fail(w, &httpError{http.StatusBadRequest, resultBadRequest, err.Error()})
	}
	ev.ReceivedAt = start.UTC().Truncate(time.Millisecond)
	ev.DeliveryVariant = d.variant
	if h.tracer != nil {
		eventSpanAttrs(r.Context(), ev.EventID, ev.EventName, ev.DeliveryVariant)
	}
	if h.cfg.KeepSignedToken {
		ev.SignedToken = &d.token
	}

	f, lead, dup := h.tracker.begin(ev.EventID)
	if dup {
		h.metrics.dedupeHits.Inc()
		return h.ok(w, resultDuplicate, ev.EventID)
	}
	var (
		record context.Context  // the lead's record, expiring with produce_timeout
		joined <-chan time.Time // a joiner's own produce_timeout
	)
	if lead {
		// The produce outlives the request (see produce); only the webhook span's identity
		// goes with it, as the parent of the record's send span.
		var parent trace.SpanContext
		if h.tracer != nil {
			parent = trace.SpanContextFromContext(r.Context())
		}
		record = h.produce(parent, ev, f)
	} else {
		h.metrics.inflightJoins.Inc()
		wait := time.NewTimer(h.cfg.ProduceTimeout)
		defer wait.Stop()
		joined = wait.C
	}
	// The lead waits for its record's own produce_timeout context rather than a second timer;
	// the promise cancels that context just before it releases f, so a cancellation (not a
	// deadline) only means the outcome is a moment away.
	var expired <-chan struct{}
	if record != nil {
		expired = record.Done()
	}
	timedOut := false
	select {
	case <-f.done:
	case <-joined:
		timedOut = true
	case <-expired:
		if timedOut = errors.Is(record.Err(), context.DeadlineExceeded); !timedOut {
			<-f.done
		}
	}
	if timedOut {
		f.abandoned.Store(true)
		h.log.ErrorContext(r.Context(), "Kafka did not acknowledge the webhook event within ingress.produce_timeout; answered 503 so IDnow retries (a later acknowledgement makes the retry a duplicate)",
			"topic", h.topic, "event_id", ev.EventID, "produce_timeout", h.cfg.ProduceTimeout.String())
		return h.unavailable(w, resultKafkaUnavailable, "could not store the event in time; retry")
	}
	if f.err != nil {
		h.log.ErrorContext(r.Context(), "could not write webhook event to Kafka; answered 503 so IDnow retries",
			"topic", h.topic, "event_id", ev.EventID, "err", f.err)
		return h.unavailable(w, resultKafkaUnavailable, "could not store the event; retry")
	}
	if !lead {
		// The redelivery joined the first delivery's produce: the event is written once.
		h.metrics.dedupeHits.Inc()
		return h.ok(w, resultDuplicate, ev.EventID)
	}
	return h.ok(w, resultAccepted, ev.EventID)
}

// produce writes the event and reports the outcome to f (and so to every request waiting for
// it) once Kafka acknowledged it with acks=all or gave up. It returns at once: the record goes to
// franz-go with a promise, detached from any request, as a record already on its way to an
// unresponsive broker cannot be recalled; its fate is awaited even after the requests gave up at
// produce_timeout. If it lands late, the eventId still enters the dedupe window and IDnow's retry
// is answered as a duplicate instead of being written again. No goroutine is started per webhook:
// the promise runs on franz-go's own, and the client does not linger (ProducerOpts), so a lone
// webhook is sent at once while concurrent ones still share batches.
//
// It returns the record's context, which expires with produce_timeout and is canceled when the
// promise ran, or nil when the event could not be encoded (f is then already released).
func (h *Handler) produce(parent trace.SpanContext, ev *schemas.SessionEvent, f *flight) context.Context {
	start := time.Now()
	buf := getBuf()
	value, err := h.encoder.AppendEncode((*buf)[:0], ev)
	if err != nil {
		putBuf(buf, *buf)
		h.produced(ev, f, start, fmt.Errorf("encode event %s: %w", ev.EventID, err))
		return nil
	}
	rec := serde.NewRecord(h.topic, ev.SessionID, ev.EventID, h.encoder.Schema(), value)
	ctx := context.Background()
	var span trace.Span
	if h.tracer != nil && parent.IsValid() {
		ctx, span = h.startSendSpan(parent, rec)
	}
	// The record's context expires with produce_timeout: a record still in the buffer by then is
	// failed (the waiting requests were answered 503 and IDnow retries); one already sent to the
	// broker is awaited, as kgo cannot take it back.
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ProduceTimeout)
	// TryProduce refuses at once (kgo.ErrMaxBuffered) when the producer buffer is full, Kafka
	// being slow or away, rather than queueing the webhook behind it.
	h.kafka.TryProduce(ctx, rec, func(rec *kgo.Record, err error) {
		cancel()
		if err != nil {
			err = fmt.Errorf("produce event %s to %s: %w", ev.EventID, h.topic, err)
		}
		if span != nil {
			endSendSpan(span, rec, err)
		}
		// kgo is done with the value once the promise runs.
		putBuf(buf, value)
		h.produced(ev, f, start, err)
	})
	return ctx
}

// produced ends a produce: the metrics, the flight's outcome (and with it the dedupe window),
// and a log line when the requests had already been answered 503.
func (h *Handler) produced(ev *schemas.SessionEvent, f *flight, start time.Time, err error) {
	series := h.metrics.produced
	if err != nil {
		series = h.metrics.failed
	}
	series.duration.Observe(time.Since(start).Seconds())
	h.tracker.finish(ev.EventID, f, err)
	if f.abandoned.Load() {
		if err == nil {
			h.metrics.lateAcks.Inc()
			h.log.Warn("Kafka acknowledged a webhook event after its request was answered 503; IDnow's retry will be answered as a duplicate",
				"topic", h.topic, "event_id", ev.EventID, "after", time.Since(start).String())
		} else {
			h.log.Warn("a webhook event answered 503 finally failed; IDnow's retry will write it",
				"topic", h.topic, "event_id", ev.EventID, "err", err)
		}
	}
}

// ProducerOpts are the options the ingress's Kafka client needs on top of the shared ones
// (kafka.ClientOpts): no linger. The handler produces every webhook with a promise instead of
// ProduceSync in a goroutine of its own (the goroutine, its stack growth and kgo's linger timer
// per record were a measurable share of the CPU per webhook, BENCHMARKS.md); ProduceSync
// un-lingered the record's partition, which without linger is what happens anyway. Under load
// records still share batches: they collect while the previous produce request is in flight.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{kgo.ProducerLinger(0)}
}

type answer struct {
	Status  string `json:"status"`
	EventID string `json:"eventId,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Header values set on every answer, shared rather than allocated per request (net/http only
// reads them).
var (
	headerJSON    = []string{"application/json"}
	headerNosniff = []string{"nosniff"}
	headerClose   = []string{"close"}
)

func writeJSON(w http.ResponseWriter, status int, a answer) {
	w.Header()["Content-Type"] = headerJSON
	w.Header()["X-Content-Type-Options"] = headerNosniff
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}

func (h *Handler) ok(w http.ResponseWriter, result, eventID string) (string, int, string) {
	// The answer every accepted webhook gets, written without encoding/json: result is one of
	// the result constants and eventID matched IDPattern, so neither needs escaping. The bytes
	// are what writeJSON would write.
	w.Header()["Content-Type"] = headerJSON
	w.Header()["X-Content-Type-Options"] = headerNosniff
	w.WriteHeader(http.StatusOK)
	b := make([]byte, 0, len(`{"status":"","eventId":""}`)+len(result)+len(eventID)+1)
	b = append(append(append(append(append(b, `{"status":"`...), result...), `","eventId":"`...), eventID...), "\"}\n"...)
	_, _ = w.Write(b)
	return result, http.StatusOK, ""
}

func (h *Handler) fail(w http.ResponseWriter, e *httpError) (string, int, string) {
	writeJSON(w, e.status, answer{Status: "rejected", Error: e.msg})
	return e.result, e.status, e.msg
}

func (h *Handler) unavailable(w http.ResponseWriter, result, msg string) (string, int, string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Round(time.Second)/time.Second)))
	writeJSON(w, http.StatusServiceUnavailable, answer{Status: "unavailable", Error: msg})
	return result, http.StatusServiceUnavailable, msg
}
