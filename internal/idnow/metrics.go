package idnow

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint names used as the Op of errors and as the endpoint metric label. They are fixed
// names, never paths, so label cardinality stays bounded.
const (
	EndpointDiscovery        = "discovery"
	EndpointToken            = "token"
	EndpointListFlows        = "list_flows"
	EndpointCreateSession    = "create_session"
	EndpointGetSession       = "get_session"
	EndpointGetDataBlocks    = "get_datablocks"
	EndpointListFlowSessions = "list_flow_sessions"
	EndpointGetFile          = "get_file"
	// EndpointGetFileDownload is the presigned download that follows get_file's redirect.
	EndpointGetFileDownload = "get_file_download"
)

type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	tokenRefreshes *prometheus.CounterVec
	inFlight       prometheus.Gauge
	// presignRefreshes counts fresh presigned URLs requested after the storage refused one.
	presignRefreshes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_idnow_requests_total",
			Help: "HTTP requests to the IDnow platform by endpoint and status class (2xx, 3xx, 4xx, 5xx, error).",
		}, []string{"endpoint", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idnow_connector_idnow_request_duration_seconds",
			Help:    "Duration of one HTTP attempt to the IDnow platform, until response headers (JSON calls: until the body is read).",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_idnow_retries_total",
			Help: "Retries of IDnow calls after a retryable failure, by endpoint.",
		}, []string{"endpoint"}),
		tokenRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_idnow_token_refreshes_total",
			Help: "OAuth2 token fetches from the IDnow token endpoint by result (success, error).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_idnow_in_flight",
			Help: "IDnow API requests currently in flight from this process.",
		}),
		presignRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_idnow_presign_refreshes_total",
			Help: "Fresh presigned file URLs requested from the files endpoint after the storage refused one with 403 (expired).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.tokenRefreshes, err = register(reg, m.tokenRefreshes); err != nil {
		return nil, err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.presignRefreshes, err = register(reg, m.presignRefreshes); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, or reuses the identical collector already there, so several
// clients (e.g. one per environment) can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, fmt.Errorf("register idnow metrics: %w", err)
	}
	return c, nil
}

func statusClass(code int) string {
	switch {
	case code >= 200 && code < 300:
		return "2xx"
	case code >= 300 && code < 400:
		return "3xx"
	case code >= 400 && code < 500:
		return "4xx"
	case code >= 500 && code < 600:
		return "5xx"
	default:
		return "error"
	}
}
