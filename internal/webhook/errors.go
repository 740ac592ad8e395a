package webhook

import (
	"errors"
	"fmt"
)

// ErrInvalidToken is matched (errors.Is) by every *VerificationError: the delivery is not a valid
// IDnow webhook and the ingress should answer 401.
var ErrInvalidToken = errors.New("invalid webhook token")

// Reasons carried by VerificationError. They are short, stable and free of secrets and token
// contents, so the ingress may put them in a 401 response body.
const (
	// ReasonMalformed: the token is not a well-formed compact JWS with JSON header and claims.
	ReasonMalformed = "malformed token"
	// ReasonMissingKID: the header names no key; guessing one is refused.
	ReasonMissingKID = "missing kid header"
	// ReasonUnknownKey: the kid is not in the JWKS, even after a refetch (or the refetch was
	// rate-limited).
	ReasonUnknownKey = "unknown signing key"
	// ReasonKeyMismatch: the kid names a key pinned to another algorithm or of the wrong type.
	ReasonKeyMismatch = "signing key does not match the token algorithm"
	// ReasonBadSignature: the signature does not verify with the named key.
	ReasonBadSignature = "bad signature"
	// ReasonAlgorithmNotAllowed: alg is none, HS*, unknown or not in webhook.algorithms.
	ReasonAlgorithmNotAllowed = "algorithm not allowed"
	// ReasonExpired: exp lies in the past by more than webhook.clock_skew.
	ReasonExpired = "token expired"
	// ReasonNotYetValid: iat or nbf lies in the future by more than webhook.clock_skew.
	ReasonNotYetValid = "token not yet valid / iat in the future"
	// ReasonWrongIssuer: iss differs from webhook.issuer.
	ReasonWrongIssuer = "wrong issuer"
	// ReasonWrongAudience: aud does not contain webhook.audience.
	ReasonWrongAudience = "wrong audience"
	// ReasonMissingClaim: exp, iat, iss or aud is absent.
	ReasonMissingClaim = "missing required claim"
	// ReasonClaimNotNumeric: exp, iat or nbf is present but not a JSON number (e.g. the string
	// "1700000000", which lenient decoders turn into a date).
	ReasonClaimNotNumeric = "exp, iat or nbf is not a JSON number"
	// ReasonTooOld: iat lies further in the past than webhook.max_token_age (plus clock_skew),
	// whatever exp says.
	ReasonTooOld = "token older than webhook.max_token_age"
	// ReasonCritHeader: the header has a crit parameter. RFC 7515 §4.1.11 requires rejecting a
	// token whose critical extensions are not understood, and this receiver understands none.
	ReasonCritHeader = "crit header not supported"
	// ReasonDuplicateKey: a JSON object in the header or the claims (including data, at any depth)
	// repeats a member name, which decoders resolve differently.
	ReasonDuplicateKey = "duplicate JSON member name"
	// ReasonInvalidUTF8: a string in the header or the claims is not valid UTF-8 (or holds an
	// escaped lone surrogate), which decoders would silently replace.
	ReasonInvalidUTF8 = "invalid UTF-8 in token JSON"
	// ReasonMissingData: the data claim carrying the IDnow event is absent or null.
	ReasonMissingData = "missing data claim"
	// ReasonInvalidData: the data claim is present but not a JSON object.
	ReasonInvalidData = "data claim is not a JSON object"
	// ReasonStaticHeader: the header configured in webhook.static_header is absent, repeated or
	// wrong.
	ReasonStaticHeader = "static header missing or wrong"

	reasonOK                 = "ok"
	reasonKeysUnavailable    = "keys unavailable"
	reasonCanceled           = "canceled"
	codeForUnknownReasonSlug = "other"
)

// reasonCodes maps every reason to the bounded metric label value used in
// idnow_connector_webhook_verifications_total{result}.
var reasonCodes = map[string]string{
	reasonOK:                  "ok",
	ReasonMalformed:           "malformed",
	ReasonMissingKID:          "missing_kid",
	ReasonUnknownKey:          "unknown_kid",
	ReasonKeyMismatch:         "key_mismatch",
	ReasonBadSignature:        "bad_signature",
	ReasonAlgorithmNotAllowed: "alg_not_allowed",
	ReasonExpired:             "expired",
	ReasonNotYetValid:         "not_yet_valid",
	ReasonWrongIssuer:         "wrong_issuer",
	ReasonWrongAudience:       "wrong_audience",
	ReasonMissingClaim:        "missing_claim",
	ReasonClaimNotNumeric:     "claim_not_numeric",
	ReasonTooOld:              "too_old",
	ReasonCritHeader:          "crit_header",
	ReasonDuplicateKey:        "duplicate_key",
	ReasonInvalidUTF8:         "invalid_utf8",
	ReasonMissingData:         "missing_data",
	ReasonInvalidData:         "invalid_data",
	ReasonStaticHeader:        "static_header",
	reasonKeysUnavailable:     "keys_unavailable",
	reasonCanceled:            "canceled",
}

// reasonCode returns the metric label for reason; unknown reasons collapse into one value so the
// label set stays bounded whatever happens.
func reasonCode(reason string) string {
	if c, ok := reasonCodes[reason]; ok {
		return c
	}
	return codeForUnknownReasonSlug
}

// VerificationError reports why a webhook was rejected. Reason is one of the Reason* constants and
// safe to show to the sender; Err is the underlying cause for logs (it never contains the token or
// its claims, but may contain attacker-chosen header values such as kid or alg).
type VerificationError struct {
	Reason string
	Err    error
}

// Error implements error.
func (e *VerificationError) Error() string {
	if e.Err == nil {
		return "webhook verification failed: " + e.Reason
	}
	return fmt.Sprintf("webhook verification failed: %s: %v", e.Reason, e.Err)
}

// Unwrap exposes both ErrInvalidToken and the cause, so errors.Is(err, ErrInvalidToken) holds for
// every verification failure and the cause (e.g. jwt.ErrTokenExpired) stays inspectable.
func (e *VerificationError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrInvalidToken}
	}
	return []error{ErrInvalidToken, e.Err}
}

// Code returns the bounded, machine-readable form of Reason (e.g. "expired", "unknown_kid"): the
// value of the result label of idnow_connector_webhook_verifications_total.
func (e *VerificationError) Code() string { return reasonCode(e.Reason) }

func invalid(reason string, err error) *VerificationError {
	return &VerificationError{Reason: reason, Err: err}
}
