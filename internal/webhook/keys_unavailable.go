package webhook

import "errors"

// ErrKeysUnavailable means the verifier cannot decide whether a token is genuine because it lacks
// the signing key and cannot get it: no keys have been loaded from the JWKS yet, or the token
// names a kid that is not loaded while the JWKS cannot be fetched (IDnow may just have rotated its
// keys while its JWKS host, or the way to it, is down). The fault is the receiver's, not the
// sender's: the ingress answers 503 + Retry-After so that IDnow retries the delivery.
var ErrKeysUnavailable = errors.New("webhook signing keys unavailable")
