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
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/webhook"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/schemas"
)

// Verifier checks webhook signatures and the optional static header; *webhook.Verifier is the
// production implementation.
type Verifier interface {
	Verify(ctx context.Context, token string) (*webhook.Claims, error)
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
	dedupe   *dedupe
	metrics  *metrics
	log      *slog.Logger
	slots    chan struct{}
	// maxBuffered is the producer's kgo.MaxBufferedRecords: past it a webhook is refused at once.
	maxBuffered int64
	closing     atomic.Bool
	now         func() time.Time
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

// parseDelivery extracts the token from either IDnow delivery variant. It enforces the body
// limit and content types and never trusts a length the client claims.
func parseDelivery(r *http.Request, maxBody int64, signatureHeader string) (*delivery, *httpError) {
	if r.ContentLength > maxBody {
		return nil, &httpError{http.StatusRequestEntityTooLarge, resultTooLarge, "body larger than " + strconv.FormatInt(maxBody, 10) + " bytes"}
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, &httpError{http.StatusUnsupportedMediaType, resultUnsupportedMedia, "missing or malformed Content-Type: send application/jwt (token as body) or application/json (with the token in " + signatureHeader + ")"}
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
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &httpError{http.StatusRequestEntityTooLarge, resultTooLarge, "body larger than " + strconv.FormatInt(maxBody, 10) + " bytes"}
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
	result, status := h.serve(w, r, start)
	h.metrics.requests.WithLabelValues(result).Inc()
	h.metrics.requestDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if status >= 500 {
		h.log.Warn("webhook not accepted", "result", result, "status", status)
	} else if status >= 400 {
		h.log.Info("webhook rejected", "result", result, "status", status)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, start time.Time) (result string, status int) {
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
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		return h.unavailable(w, resultOverloaded, "too many concurrent requests; retry")
	}
	h.metrics.inFlight.Inc()
	defer h.metrics.inFlight.Dec()

	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes)
	if err := h.verifier.CheckStaticHeader(r.Header); err != nil {
		return h.fail(w, &httpError{http.StatusUnauthorized, resultUnauthorized, err.Error()})
	}
	d, herr := parseDelivery(r, h.cfg.MaxBodyBytes, h.cfg.SignatureHeader)
	if herr != nil {
		return h.fail(w, herr)
	}
	claims, err := h.verifier.Verify(r.Context(), d.token)
	if err != nil {
		if errors.Is(err, webhook.ErrKeysUnavailable) {
			return h.unavailable(w, resultKeysUnavailable, "signing keys not loaded yet; retry")
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
	ev, err := ParseEvent(claims.Data)
	if err != nil {
		return h.fail(w, &httpError{http.StatusBadRequest, resultBadRequest, err.Error()})
	}
	if h.dedupe.seen(ev.EventID) {
		h.metrics.dedupeHits.Inc()
		return h.ok(w, resultDuplicate, ev.EventID)
	}
	ev.ReceivedAt = start.UTC().Truncate(time.Millisecond)
	ev.DeliveryVariant = d.variant
	if h.cfg.KeepSignedToken {
		ev.SignedToken = &d.token
	}
	if err := h.produce(r.Context(), ev); err != nil {
		h.log.Error("could not write webhook event to Kafka; answered 503 so IDnow retries",
			"topic", h.topic, "event_id", ev.EventID, "err", err)
		return h.unavailable(w, resultKafkaUnavailable, "could not store the event; retry")
	}
	h.dedupe.accepted(ev.EventID)
	return h.ok(w, resultAccepted, ev.EventID)
}

// produce writes the event and waits for acks=all. The wait is bounded by ingress.produce_timeout
// but not by the caller's connection: a record already on its way is awaited even if IDnow hung
// up, so the dedupe window learns of it.
func (h *Handler) produce(ctx context.Context, ev *schemas.SessionEvent) error {
	value, err := h.encoder.AppendEncode(nil, ev)
	if err != nil {
		return err
	}
	rec := &kgo.Record{
		Topic: h.topic,
		Key:   []byte(ev.SessionID),
		Value: value,
		Headers: []kgo.RecordHeader{
			{Key: serde.HeaderSchema, Value: []byte(h.encoder.Schema().FullName)},
			{Key: serde.HeaderEventID, Value: []byte(ev.EventID)},
		},
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	// A full producer buffer (Kafka slow or away) is refused at once rather than queued behind.
	if h.kafka.BufferedProduceRecords() >= h.maxBuffered {
		err = kgo.ErrMaxBuffered
	} else {
		// ProduceSync, because it un-lingers the partition it wrote to (a lone webhook does not
		// wait out kgo's linger), in a goroutine, because a record already in flight to an
		// unresponsive broker is not canceled by ctx while IDnow must get its answer within
		// produce_timeout regardless. If a record lands after we answered 503, IDnow's retry
		// makes a duplicate, never a loss.
		acked := make(chan error, 1)
		go func() { acked <- h.kafka.ProduceSync(ctx, rec).FirstErr() }()
		select {
		case err = <-acked:
		case <-ctx.Done():
			err = fmt.Errorf("no acknowledgement within ingress.produce_timeout (%s): %w", h.cfg.ProduceTimeout, ctx.Err())
		}
	}
	if err != nil {
		err = fmt.Errorf("produce event %s to %s: %w", ev.EventID, h.topic, err)
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	h.metrics.produceDuration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return err
}

type answer struct {
	Status  string `json:"status"`
	EventID string `json:"eventId,omitempty"`
	Error   string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(a)
}

func (h *Handler) ok(w http.ResponseWriter, result, eventID string) (string, int) {
	writeJSON(w, http.StatusOK, answer{Status: result, EventID: eventID})
	return result, http.StatusOK
}

func (h *Handler) fail(w http.ResponseWriter, e *httpError) (string, int) {
	writeJSON(w, e.status, answer{Status: "rejected", Error: e.msg})
	return e.result, e.status
}

func (h *Handler) unavailable(w http.ResponseWriter, result, msg string) (string, int) {
	w.Header().Set("Retry-After", strconv.Itoa(int(h.cfg.RetryAfter.Round(time.Second)/time.Second)))
	writeJSON(w, http.StatusServiceUnavailable, answer{Status: "unavailable", Error: msg})
	return result, http.StatusServiceUnavailable
}
