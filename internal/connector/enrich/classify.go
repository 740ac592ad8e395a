package enrich

import (
	"context"
	"errors"
	"net/http"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

// Error classes: the bounded label values of the retry and DLQ metrics and the value of the
// idnow.dlq.error_class header.
const (
	// Permanent: the record goes to the DLQ.
	ClassUndecodable     = "undecodable"       // the SessionEvent does not decode (wrong format, unknown schema)
	ClassSessionNotFound = "session_not_found" // IDnow answered 404 for the session
	ClassForbidden       = "forbidden"         // IDnow answered 403: the API client may not see the session
	ClassAPIRejected     = "api_rejected"      // another permanent IDnow answer (400, 409, 422, 501, ...)
	ClassAPIResponse     = "api_response"      // IDnow answered 2xx with a body that does not parse or is too large
	ClassSchemaMismatch  = "schema_mismatch"   // the EnrichedSession does not encode with the schema
	ClassInternal        = "internal"          // an error no classifier knows; shipped to the DLQ with its message
	ClassRecordTooLarge  = "record_too_large"  // the EnrichedSession exceeds the output limit even with metadata only, or the broker refused it as too large
	ClassOutputRejected  = "output_rejected"   // the broker refused the output record for good (invalid or corrupt record, policy; produced alone)

	// Retryable: retried with backoff for as long as they last.
	ClassRateLimited    = "rate_limited"    // IDnow 429
	ClassServerError    = "server_error"    // IDnow 5xx
	ClassTimeout        = "timeout"         // an attempt ran past idnow.timeout
	ClassNetwork        = "network"         // connection refused, reset, DNS
	ClassUnauthorized   = "unauthorized"    // the token endpoint or API rejected the credentials
	ClassSchemaRegistry = "schema_registry" // the registry could not be asked for a writer schema
	ClassKeyManager     = "key_manager"     // privacy.mode encrypt: a data key could not be made, wrapped or read (key manager, keys topic)
)

// stageError marks which step of the enrichment failed, so the classifier can tell a decode
// failure from an API failure without looking at message text.
type stageError struct {
	stage string // "decode", "api", "encode"
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

const (
	stageDecode = "decode"
	stageAPI    = "api"
	stageEncode = "encode"
	stageSize   = "size"
	// stagePrivacy: privacy.mode could not be applied. Always retried: a record is never
	// written with its personal fields in clear text, nor sent to the DLQ for a key-manager
	// outage that concerns every event alike.
	stagePrivacy = "privacy"
)

// permanentClasses and retryableClasses list every class, so the labelled counters can be
// created at zero before the first failure: an alert on increase() sees the first one.
var (
	permanentClasses = []string{ClassUndecodable, ClassSessionNotFound, ClassForbidden, ClassAPIRejected,
		ClassAPIResponse, ClassSchemaMismatch, ClassInternal, ClassRecordTooLarge, ClassOutputRejected}
	retryableClasses = []string{ClassRateLimited, ClassServerError, ClassTimeout, ClassNetwork, ClassUnauthorized, ClassSchemaRegistry, ClassKeyManager}
)

// Classification is the verdict on one failed attempt.
type Classification struct {
	// Class is one of the Class* constants.
	Class string
	// Retryable is true when the same attempt can succeed later.
	Retryable bool
}

// Classify decides whether err is retryable or permanent, and its class. It uses errors.Is and
// errors.As only. Context errors must be checked by the caller first (ctx.Err()); Classify
// treats a context error that is not the caller's as a timeout.
//
// A rejected token (401 after a refresh, or the token endpoint refusing the credentials) is
// retryable here although the IDnow client calls it permanent: it concerns every event alike,
// so sending events to the DLQ would empty the stream into it until an operator fixes the
// credentials. Blocking instead keeps the events in order and makes the outage visible.
func Classify(err error) Classification {
	var se *stageError
	stage := ""
	if errors.As(err, &se) {
		stage = se.stage
	}
	switch stage {
	case stageDecode:
		if errors.Is(err, serde.ErrUndecodable) {
			return Classification{ClassUndecodable, false}
		}
		return Classification{ClassSchemaRegistry, true}
	case stageEncode:
		return Classification{ClassSchemaMismatch, false}
	case stageSize:
		return Classification{ClassRecordTooLarge, false}
	case stagePrivacy:
		return Classification{ClassKeyManager, true}
	}
	switch {
	case errors.Is(err, idnow.ErrUnauthorized):
		return Classification{ClassUnauthorized, true}
	case errors.Is(err, idnow.ErrNotFound):
		return Classification{ClassSessionNotFound, false}
	case errors.Is(err, idnow.ErrForbidden):
		return Classification{ClassForbidden, false}
	case errors.Is(err, idnow.ErrRateLimited):
		return Classification{ClassRateLimited, true}
	case errors.Is(err, idnow.ErrTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Classification{ClassTimeout, true}
	case errors.Is(err, idnow.ErrDecode), errors.Is(err, idnow.ErrResponseTooLarge):
		return Classification{ClassAPIResponse, false}
	}
	var apiErr *idnow.APIError
	hasStatus := errors.As(err, &apiErr) && apiErr.StatusCode != 0
	switch {
	case idnow.IsRetryable(err):
		if hasStatus && apiErr.StatusCode >= http.StatusInternalServerError {
			return Classification{ClassServerError, true}
		}
		if hasStatus {
			// 408 and 425: the server gave up waiting, which is a timeout from our side.
			return Classification{ClassTimeout, true}
		}
		return Classification{ClassNetwork, true}
	case stage == stageAPI && idnow.IsPermanent(err):
		return Classification{ClassAPIRejected, false}
	}
	return Classification{ClassInternal, false}
}
