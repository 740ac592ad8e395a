package enrich

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/idnow"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/kafka"
	"github.com/idnow-kafka-connector/idnow-kafka-connector/internal/serde"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func testMetrics(t *testing.T) *metrics {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMessage() *Message {
	return &Message{Record: &kgo.Record{Topic: "idnow.sessions", Partition: 2, Offset: 41, Key: []byte("ses-1"), Value: []byte{1, 2, 3},
		Headers: []kgo.RecordHeader{{Key: serde.HeaderEventID, Value: []byte("evt-1")}}}}
}

// scripted returns a handler that fails with errs in turn, then succeeds.
func scripted(errs ...error) (HandlerFunc, *int) {
	calls := 0
	return func(context.Context, *Message) (Result, error) {
		calls++
		if calls <= len(errs) {
			return Result{}, errs[calls-1]
		}
		return Result{Records: []*kgo.Record{{Topic: "out"}}, Status: "COMPLETED", Outcome: "accepted"}, nil
	}, &calls
}

func TestRetry(t *testing.T) {
	cfg := RetryConfig{InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantErr   bool
		wantRetry map[string]float64
	}{
		{"success first time", nil, 1, false, nil},
		{"retryable until success", []error{apiErr(503), apiErr(429), apiErr(500), apiErr(401)}, 5, false,
			map[string]float64{ClassServerError: 2, ClassRateLimited: 1, ClassUnauthorized: 1}},
		{"permanent at once", []error{apiErr(404)}, 1, true, nil},
		{"retryable then permanent", []error{apiErr(503), apiErr(403)}, 2, true, map[string]float64{ClassServerError: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMetrics(t)
			h, calls := scripted(tc.errs...)
			msg := testMessage()
			_, err := Retry(cfg, m, discardLog())(h)(t.Context(), msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if *calls != tc.wantCalls || msg.Attempts != tc.wantCalls {
				t.Errorf("calls %d, attempts %d, want %d", *calls, msg.Attempts, tc.wantCalls)
			}
			for class, n := range tc.wantRetry {
				if got := testutil.ToFloat64(m.retries.WithLabelValues(class)); got != n {
					t.Errorf("retries_total{class=%q} = %v, want %v", class, got, n)
				}
			}
			if testutil.ToFloat64(m.blocked) != 0 {
				t.Error("blocked gauge left at 1")
			}
		})
	}
}

// TestRetryNeverGivesUp: a failure that lasts keeps the handler retrying and the blocked gauge
// up until the context ends; it is never returned as a skip.
func TestRetryNeverGivesUp(t *testing.T) {
	m := testMetrics(t)
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	h := func(context.Context, *Message) (Result, error) {
		calls++
		if calls == 50 {
			if testutil.ToFloat64(m.blocked) != 1 {
				t.Error("blocked gauge is not 1 while retrying")
			}
			cancel()
		}
		return Result{}, apiErr(http.StatusServiceUnavailable)
	}
	_, err := Retry(RetryConfig{InitialBackoff: time.Microsecond, MaxBackoff: time.Microsecond}, m, discardLog())(h)(ctx, testMessage())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's end", err)
	}
	if calls != 50 {
		t.Errorf("%d calls, want 50", calls)
	}
	if testutil.ToFloat64(m.blocked) != 0 {
		t.Error("blocked gauge left at 1")
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	err := &stageError{stageAPI, &idnow.APIError{Op: "get_session", StatusCode: 429, RetryAfter: 30 * time.Millisecond}}
	h, _ := scripted(err)
	start := time.Now()
	if _, e := Retry(RetryConfig{InitialBackoff: time.Microsecond, MaxBackoff: time.Second}, testMetrics(t), discardLog())(h)(t.Context(), testMessage()); e != nil {
		t.Fatal(e)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Errorf("waited %s, less than the server's Retry-After of 30ms", waited)
	}
}

func TestDLQ(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantClass string // empty: passes through
	}{
		{"success passes", nil, ""},
		{"not found", apiErr(404), ClassSessionNotFound},
		{"undecodable", &stageError{stageDecode, fmt.Errorf("%w: junk", serde.ErrUndecodable)}, ClassUndecodable},
		{"schema mismatch", &stageError{stageEncode, errors.New("bad")}, ClassSchemaMismatch},
		{"retryable passes through", apiErr(503), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h HandlerFunc = func(context.Context, *Message) (Result, error) {
				if tc.err != nil {
					return Result{}, tc.err
				}
				return Result{Records: []*kgo.Record{{Topic: "out"}}}, nil
			}
			msg := testMessage()
			msg.Attempts = 3
			res, err := DLQ("idnow.sessions.dlq", discardLog())(h)(t.Context(), msg)
			if tc.wantClass == "" {
				if tc.err != nil && err == nil {
					t.Fatal("a retryable error was swallowed")
				}
				if res.DLQClass != "" {
					t.Fatalf("DLQClass %q for a non-permanent outcome", res.DLQClass)
				}
				return
			}
			if err != nil || res.DLQClass != tc.wantClass || len(res.Records) != 1 {
				t.Fatalf("res %+v, err %v; want one DLQ record of class %s", res, err, tc.wantClass)
			}
			d := res.Records[0]
			if d.Topic != "idnow.sessions.dlq" || string(d.Key) != "ses-1" || string(d.Value) != "\x01\x02\x03" {
				t.Errorf("DLQ record does not carry the original key and bytes: %+v", d)
			}
			want := map[string]string{
				serde.HeaderEventID: "evt-1", HeaderDLQErrorClass: tc.wantClass, HeaderDLQSourceTopic: "idnow.sessions",
				HeaderDLQSourcePartition: "2", HeaderDLQSourceOffset: "41", HeaderDLQAttempts: "3",
			}
			for k, v := range want {
				if got := kafka.Header(d, k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(kafka.Header(d, HeaderDLQError), tc.err.Error()) {
				t.Errorf("error header %q does not hold %q", kafka.Header(d, HeaderDLQError), tc.err)
			}
		})
	}
}

func TestDLQErrorHeaderBounded(t *testing.T) {
	long := errors.New(strings.Repeat("ü", 2000))
	d := dlqRecord("dlq", testMessage(), ClassInternal, long)
	if h := kafka.Header(d, HeaderDLQError); len(h) > maxDLQErrorLen+len("…") || !strings.HasSuffix(h, "…") || !strings.HasPrefix(h, "ü") {
		t.Errorf("error header not bounded on a rune boundary: %d bytes", len(h))
	}
}

func TestMetricsMiddleware(t *testing.T) {
	tests := []struct {
		name   string
		res    Result
		err    error
		result string
	}{
		{"enriched", Result{Status: "COMPLETED"}, nil, "enriched"},
		{"dlq", Result{DLQClass: ClassUndecodable}, nil, "dlq"},
		{"abandoned", Result{}, context.Canceled, "abandoned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := testMetrics(t)
			var h HandlerFunc = func(context.Context, *Message) (Result, error) {
				if testutil.ToFloat64(m.inFlight) != 1 {
					t.Error("in_flight is not 1 while handling")
				}
				return tc.res, tc.err
			}
			if _, err := Metrics(m)(h)(t.Context(), testMessage()); !errors.Is(err, tc.err) {
				t.Fatalf("err = %v", err)
			}
			if testutil.ToFloat64(m.inFlight) != 0 {
				t.Error("in_flight not back to 0")
			}
			if n := testutil.CollectAndCount(m.duration, "idnow_connector_enrich_duration_seconds"); n != 1 {
				t.Errorf("%d duration series, want 1", n)
			}
			var pb dto.Metric
			if err := m.duration.WithLabelValues(tc.result).(prometheus.Metric).Write(&pb); err != nil {
				t.Fatal(err)
			}
			if pb.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("duration_seconds{result=%q} has %d samples, want 1", tc.result, pb.GetHistogram().GetSampleCount())
			}
		})
	}
}

func TestChainOrder(t *testing.T) {
	var trace []string
	mw := func(name string) Middleware {
		return func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, m *Message) (Result, error) {
				trace = append(trace, name+">")
				r, err := next(ctx, m)
				trace = append(trace, "<"+name)
				return r, err
			}
		}
	}
	h := Chain(func(context.Context, *Message) (Result, error) { trace = append(trace, "h"); return Result{}, nil }, mw("a"), mw("b"))
	if _, err := h(t.Context(), testMessage()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(trace, " "); got != "a> b> h <b <a" {
		t.Errorf("chain order %q, want the first middleware outermost", got)
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err == nil || !strings.Contains(err.Error(), "one registry per enricher") {
		t.Errorf("second registration: %v", err)
	}
}
