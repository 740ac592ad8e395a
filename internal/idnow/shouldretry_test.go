package idnow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// TestShouldRetry pins the decisions of withRetry's plain loop: what the classifier allows,
// what a POST may repeat, and where idnow.retry.max_attempts stops.
func TestShouldRetry(t *testing.T) {
	get := &request{endpoint: EndpointGetSession, idempotent: true}
	post := &request{endpoint: EndpointCreateSession}
	status := func(code int) error { return &APIError{Op: EndpointGetSession, StatusCode: code} }
	dialRefused := &APIError{Op: EndpointCreateSession, Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}
	timeout := &APIError{Op: EndpointCreateSession, Err: fmt.Errorf("%w after 10s", ErrTimeout)}
	tests := []struct {
		name        string
		maxAttempts int
		req         *request
		attempt     int
		err         error
		want        bool
	}{
		{"GET 503 first attempt", 6, get, 1, status(503), true},
		{"GET 503 fifth attempt", 6, get, 5, status(503), true},
		{"GET 503 attempts used up", 6, get, 6, status(503), false},
		{"GET 503 no attempt limit", 0, get, 1000, status(503), true},
		{"GET 404 never", 6, get, 1, status(404), false},
		{"GET invalid id never", 6, get, 1, &APIError{Err: ErrInvalidID}, false},
		{"GET decode error never", 6, get, 1, &APIError{Err: ErrDecode}, false},
		{"GET attempt timeout", 6, get, 1, timeout, true},
		{"POST 429 refused outright", 6, post, 1, status(429), true},
		{"POST 503 refused outright", 6, post, 1, status(503), true},
		{"POST connection refused", 6, post, 1, dialRefused, true},
		{"POST 500 may have acted", 6, post, 1, status(500), false},
		{"POST timeout may have acted", 6, post, 1, timeout, false},
		{"POST 503 attempts used up", 2, post, 2, status(503), false},
		{"cancelled", 6, get, 1, &APIError{Err: errors.Join(errors.New("x"), errCanceledForTest)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{cfg: DefaultConfig()}
			c.cfg.Retry.MaxAttempts = tt.maxAttempts
			if got := c.shouldRetry(tt.req, tt.attempt, tt.err); got != tt.want {
				t.Fatalf("shouldRetry(attempt %d, %v) = %v, want %v", tt.attempt, tt.err, got, tt.want)
			}
		})
	}
}

// errCanceledForTest stands for the caller's cancellation as an attempt reports it.
var errCanceledForTest = fmt.Errorf("attempt: %w", context.Canceled)
