package idnow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	status := func(code int) error { return &APIError{Op: EndpointGetSession, SessionID: "s", StatusCode: code} }
	tests := []struct {
		name string
		err  error
		want errClass
	}{
		{"nil", nil, classNone},
		{"429", status(429), classRetryable},
		{"500", status(500), classRetryable},
		{"502", status(502), classRetryable},
		{"503", status(503), classRetryable},
		{"504", status(504), classRetryable},
		{"408", status(408), classRetryable},
		{"501", status(501), classPermanent},
		{"400", status(400), classPermanent},
		{"401", status(401), classPermanent},
		{"403", status(403), classPermanent},
		{"404", status(404), classPermanent},
		{"409", status(409), classPermanent},
		{"422", status(422), classPermanent},
		{"wrapped 503", fmt.Errorf("enrich: %w", status(503)), classRetryable},
		{"attempt timeout", &APIError{Op: "x", Err: fmt.Errorf("%w: %w", ErrTimeout, context.DeadlineExceeded)}, classRetryable},
		{"caller cancel", &APIError{Op: "x", Err: context.Canceled}, classContext},
		{"caller deadline", context.DeadlineExceeded, classContext},
		{"conn reset", &APIError{Op: "x", Err: &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "read", Err: syscall.ECONNRESET}}}, classRetryable},
		{"conn refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, classRetryable},
		{"unexpected eof", &APIError{Op: "x", Err: fmt.Errorf("read body: %w", io.ErrUnexpectedEOF)}, classRetryable},
		{"dns", &url.Error{Op: "Get", URL: "u", Err: &net.DNSError{Err: "no such host", Name: "h"}}, classRetryable},
		{"url error wrapping a plain error", &url.Error{Op: "Get", URL: "u", Err: errors.New("unsupported protocol scheme")}, classPermanent},
		{"decode", &APIError{Op: "x", Err: fmt.Errorf("%w: bad", ErrDecode)}, classPermanent},
		{"file too large", &APIError{Op: "x", Err: ErrFileTooLarge}, classPermanent},
		{"token 503 inside a call", &APIError{Op: EndpointGetSession, Err: &APIError{Op: EndpointToken, StatusCode: 503}}, classRetryable},
		{"token 401 inside a call", &APIError{Op: EndpointGetSession, Err: &APIError{Op: EndpointToken, StatusCode: 401}}, classPermanent},
		{"unknown error", errors.New("boom"), classPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
			if got := IsRetryable(tt.err); got != (tt.want == classRetryable) {
				t.Fatalf("IsRetryable = %v", got)
			}
			if got := IsPermanent(tt.err); got != (tt.want == classPermanent) {
				t.Fatalf("IsPermanent = %v", got)
			}
		})
	}
}

func TestAPIErrorMessageAndSentinels(t *testing.T) {
	err := fmt.Errorf("enrich: %w", &APIError{Op: EndpointGetSession, SessionID: "sess-9", StatusCode: 404,
		Body: []byte(`{"code":"SESSION_NOT_FOUND","message":"Erika Mustermann not found"}`)})
	msg := err.Error()
	for _, want := range []string{"get_session", "sess-9", "404", "SESSION_NOT_FOUND"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "Erika") {
		t.Errorf("message %q leaks the error body", msg)
	}
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) {
		t.Errorf("sentinel matching wrong for 404")
	}
	if !errors.Is(&APIError{StatusCode: 429}, ErrRateLimited) || !errors.Is(&APIError{StatusCode: 403}, ErrForbidden) || !errors.Is(&APIError{StatusCode: 401}, ErrUnauthorized) {
		t.Errorf("sentinel matching wrong")
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.SessionID != "sess-9" {
		t.Errorf("errors.As failed: %v", apiErr)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 10 ", 10 * time.Second},
		{"-1", 0},
		{"1.5", 0},
		{"Thu, 01 Jan 2026 00:00:30 GMT", 30 * time.Second},
		{"Wed, 31 Dec 2025 23:00:00 GMT", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRetryBackOffPlan(t *testing.T) {
	cfg := DefaultConfig().Retry
	bo := cfg.backoff().NewBackOff()
	if got := bo.NextAfter(2*time.Second, time.Minute); got < 2*time.Second {
		t.Fatalf("wait with Retry-After 2s = %v, want >= 2s", got)
	}
	if got := bo.NextAfter(time.Hour, 5*time.Second); got > 5*time.Second+cfg.MaxBackoff {
		t.Fatalf("wait with huge Retry-After = %v, want capped near max_retry_after", got)
	}
	for range 50 {
		if got := bo.NextAfter(0, time.Minute); got > cfg.MaxBackoff*3/2 || got <= 0 {
			t.Fatalf("wait = %v outside (0, 1.5*max_backoff]", got)
		}
	}
}
