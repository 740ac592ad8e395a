package enrich

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

func apiErr(status int) error {
	return &stageError{stage: stageAPI, err: fmt.Errorf("get session: %w", &idnow.APIError{Op: "get_session", SessionID: "s", StatusCode: status})}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Classification
	}{
		{"undecodable event", &stageError{stageDecode, fmt.Errorf("x: %w", serde.ErrUndecodable)}, Classification{ClassUndecodable, false}},
		{"registry unreachable", &stageError{stageDecode, errors.New("fetch schema id 7: connection refused")}, Classification{ClassSchemaRegistry, true}},
		{"encode", &stageError{stageEncode, errors.New("field x: bad type")}, Classification{ClassSchemaMismatch, false}},
		{"404", apiErr(http.StatusNotFound), Classification{ClassSessionNotFound, false}},
		{"403", apiErr(http.StatusForbidden), Classification{ClassForbidden, false}},
		{"401 blocks, never DLQ", apiErr(http.StatusUnauthorized), Classification{ClassUnauthorized, true}},
		{"token rejected", &stageError{stageAPI, fmt.Errorf("token: %w", idnow.ErrUnauthorized)}, Classification{ClassUnauthorized, true}},
		{"429", apiErr(http.StatusTooManyRequests), Classification{ClassRateLimited, true}},
		{"500", apiErr(http.StatusInternalServerError), Classification{ClassServerError, true}},
		{"503", apiErr(http.StatusServiceUnavailable), Classification{ClassServerError, true}},
		{"408", apiErr(http.StatusRequestTimeout), Classification{ClassTimeout, true}},
		{"400", apiErr(http.StatusBadRequest), Classification{ClassAPIRejected, false}},
		{"501", apiErr(http.StatusNotImplemented), Classification{ClassAPIRejected, false}},
		{"attempt timeout", &stageError{stageAPI, &idnow.APIError{Op: "get_session", Err: idnow.ErrTimeout}}, Classification{ClassTimeout, true}},
		{"bad body", &stageError{stageAPI, &idnow.APIError{Op: "get_datablocks", Err: idnow.ErrDecode}}, Classification{ClassAPIResponse, false}},
		{"too large", &stageError{stageAPI, &idnow.APIError{Op: "get_datablocks", Err: idnow.ErrResponseTooLarge}}, Classification{ClassAPIResponse, false}},
		{"connection refused", &stageError{stageAPI, &idnow.APIError{Op: "get_session", Err: syscall.ECONNREFUSED}}, Classification{ClassNetwork, true}},
		{"dial error", &stageError{stageAPI, &idnow.APIError{Op: "get_session", Err: &net.OpError{Op: "dial", Err: errors.New("no route")}}}, Classification{ClassNetwork, true}},
		{"context", &stageError{stageAPI, context.DeadlineExceeded}, Classification{ClassTimeout, true}},
		{"key manager down blocks, never DLQ", &stageError{stagePrivacy, errors.New("wrap the data keyset: key manager encrypt: connection refused")}, Classification{ClassKeyManager, true}},
		{"key manager timeout is the key manager's", &stageError{stagePrivacy, context.DeadlineExceeded}, Classification{ClassKeyManager, true}},
		{"unknown", errors.New("something else"), Classification{ClassInternal, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %+v, want %+v", tc.err, got, tc.want)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	for in, want := range map[string]string{"COMPLETED": "COMPLETED", "running": "RUNNING", "ON_HOLD": "other", "": "other"} {
		if got := statusLabel(in); got != want {
			t.Errorf("statusLabel(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"accepted": "accepted", "rejected": "rejected", "no_outcome": "no_outcome", "": "none", "manual_review": "other"} {
		if got := outcomeLabel(in); got != want {
			t.Errorf("outcomeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
