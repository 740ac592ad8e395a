package idnow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Sentinel errors, matched with errors.Is against any error this package returns.
var (
	// ErrNotFound matches an API answer 404 (unknown session, flow or file).
	ErrNotFound = errors.New("idnow: not found")
	// ErrUnauthorized matches an API answer 401 that persisted after a forced token refresh,
	// a token endpoint that rejected the client credentials, and a token endpoint that
	// answered a redirect: in every case no call can authenticate until an operator acts.
	ErrUnauthorized = errors.New("idnow: unauthorized")
	// ErrForbidden matches an API answer 403 (the API client lacks a permission).
	ErrForbidden = errors.New("idnow: forbidden")
	// ErrRateLimited matches an API answer 429.
	ErrRateLimited = errors.New("idnow: rate limited")
	// ErrTimeout marks an attempt that exceeded idnow.timeout while the caller's context was
	// still live; it is retryable, unlike the caller's own deadline.
	ErrTimeout = errors.New("idnow: attempt timed out")
	// ErrFileTooLarge marks a file larger than idnow.max_file_size.
	ErrFileTooLarge = errors.New("idnow: file exceeds idnow.max_file_size")
	// ErrResponseTooLarge marks a JSON response larger than idnow.max_response_size.
	ErrResponseTooLarge = errors.New("idnow: response exceeds idnow.max_response_size")
	// ErrDecode marks a 2xx response whose body could not be decoded.
	ErrDecode = errors.New("idnow: undecodable response")
	// ErrInsecureURL marks a URL the client refused to contact: plain http without
	// idnow.allow_insecure_http, a downgrade from https to http, a discovered token endpoint
	// outside idnow.auth_url's origin, a redirect where none is followed, or a presigned file
	// URL that points at a loopback, private or link-local address. It is permanent.
	ErrInsecureURL = errors.New("idnow: refused URL")
	// ErrInvalidID marks an identifier (session, flow, vault entry) that cannot be put into an
	// API path: empty, "." or "..", which would address another resource. It is permanent.
	ErrInvalidID = errors.New("idnow: invalid identifier")
)

// maxErrorBody bounds APIError.Body so a large HTML error page never bloats errors or logs.
const maxErrorBody = 512

// APIError describes a failed IDnow call: the operation, the session it concerned, and
// either the HTTP status the API answered or the transport error underneath.
type APIError struct {
	// Op is the operation, one of the fixed endpoint names (get_session, get_datablocks, ...).
	Op string
	// SessionID is the session the call concerned, empty when none.
	SessionID string
	// VaultEntryID is the file the call concerned (get_file), empty otherwise.
	VaultEntryID string
	// StatusCode is the HTTP status, 0 when no response was received.
	StatusCode int
	// RetryAfter is the server's Retry-After hint, 0 when absent.
	RetryAfter time.Duration
	// Body is the start of the error response body (at most 512 bytes). It is deliberately
	// left out of Error() because IDnow's error format is undocumented and a validation
	// message could echo submitted personal data; inspect it deliberately when debugging.
	Body []byte
	// Err is the underlying cause (transport error, decode error or a sentinel); may be nil.
	Err error
}

// Error names the operation, the session and the status or cause, never the body.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("idnow ")
	b.WriteString(e.Op)
	if e.SessionID != "" {
		b.WriteString(" session ")
		b.WriteString(e.SessionID)
	}
	if e.VaultEntryID != "" {
		b.WriteString(" vault entry ")
		b.WriteString(e.VaultEntryID)
	}
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if code := errorCode(e.Body); code != "" {
			fmt.Fprintf(&b, " (%s)", code)
		}
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes the underlying cause to errors.Is and errors.As.
func (e *APIError) Unwrap() error { return e.Err }

// Is lets errors.Is match the status sentinels without every caller comparing codes.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

// errorCode extracts a short machine-readable code from a JSON error body, if any. Only
// code-like fields are used (not free-text messages) so no submitted data is echoed.
func errorCode(body []byte) string {
	if len(body) == 0 || body[0] != '{' {
		return ""
	}
	var v map[string]json.RawMessage
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	for _, k := range []string{"code", "errorCode", "error"} {
		var s string
		if raw, ok := v[k]; ok && json.Unmarshal(raw, &s) == nil && s != "" && len(s) <= 64 && !strings.ContainsAny(s, " \n") {
			return s
		}
	}
	return ""
}

// IsRetryable reports whether err is worth retrying later: 408, 425, 429 and 5xx other than
// 501/505, attempt timeouts, connection resets/refusals, unexpected EOFs and other network
// errors. The caller's own context cancellation or deadline is neither retryable nor
// permanent: check ctx.Err() for that.
func IsRetryable(err error) bool {
	return classify(err) == classRetryable
}

// IsPermanent reports whether retrying err cannot help: 4xx answers (400, 401 after a
// refresh, 403, 404, 409, 422, ...), 501/505, oversized files and undecodable responses.
// Every non-nil error is exactly one of retryable, permanent or a context error.
func IsPermanent(err error) bool {
	return classify(err) == classPermanent
}

type errClass int

const (
	classNone errClass = iota
	classContext
	classRetryable
	classPermanent
)

// classify is the single decision point for retryable versus permanent.
func classify(err error) errClass {
	if err == nil {
		return classNone
	}
	// Refusals are decided before any I/O (or at dial time, where they surface wrapped in
	// network errors that would otherwise look transient): retrying cannot change them.
	if errors.Is(err, ErrInsecureURL) || errors.Is(err, ErrInvalidID) {
		return classPermanent
	}
	if errors.Is(err, ErrTimeout) {
		return classRetryable
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return classContext
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		if apiErr.StatusCode != 0 {
			return classifyStatus(apiErr.StatusCode)
		}
		if apiErr.Err != nil {
			// An outer call error may wrap an inner one (e.g. the token fetch it needed).
			return classify(apiErr.Err)
		}
	}
	if errors.Is(err, ErrFileTooLarge) || errors.Is(err, ErrResponseTooLarge) || errors.Is(err, ErrDecode) || errors.Is(err, ErrUnauthorized) {
		return classPermanent
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrHandlerTimeout) {
		return classRetryable
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		// *url.Error implements net.Error for every cause, so judge what it wraps instead.
		if urlErr.Timeout() {
			return classRetryable
		}
		return classify(urlErr.Err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		// Timeouts, DNS hiccups and dial failures are transient from a client's point of view.
		return classRetryable
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return classRetryable
	}
	return classPermanent
}

func classifyStatus(code int) errClass {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
		return classRetryable
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return classPermanent
	case code >= 500:
		return classRetryable
	case code >= 400:
		return classPermanent
	default:
		// A 1xx/3xx where a 2xx was expected is a protocol surprise, not a transient state.
		return classPermanent
	}
}

// parseRetryAfter reads Retry-After as delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
