package idnowsim

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the simulator's Prometheus series, all prefixed idnow_sim_. Labels are bounded:
// endpoint names, status classes, fault kinds, outcomes and statuses; never ids.
type metrics struct {
	apiRequests      *prometheus.CounterVec   // endpoint, status_class
	faults           *prometheus.CounterVec   // kind
	tokenRequests    *prometheus.CounterVec   // auth_method, outcome
	sessionsCreated  *prometheus.CounterVec   // origin
	transitions      *prometheus.CounterVec   // status
	webhookAttempts  *prometheus.CounterVec   // outcome
	webhookDuration  prometheus.Histogram     //
	webhookEvents    *prometheus.CounterVec   // outcome: delivered, given_up
	presigned        *prometheus.CounterVec   // outcome
	apiDuration      *prometheus.HistogramVec // endpoint
	webhookQueueSize prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, queueLen func() float64) (*metrics, error) {
	m := &metrics{
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_api_requests_total", Help: "Simulated IDnow API requests by endpoint and response status class.",
		}, []string{"endpoint", "status_class"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "idnow_sim_api_request_duration_seconds", Help: "Time to answer simulated API requests, injected latency included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"endpoint"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_faults_injected_total", Help: "Injected faults by kind (429, 500, 503, slow, webhook_fail, create_timeout).",
		}, []string{"kind"}),
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_token_requests_total", Help: "Token endpoint requests by client authentication method and outcome.",
		}, []string{"auth_method", "outcome"}),
		sessionsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_sessions_created_total", Help: "Sessions created, by origin (api or generator).",
		}, []string{"origin"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_session_transitions_total", Help: "Session status transitions by status reached.",
		}, []string{"status"}),
		webhookAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_webhook_attempts_total", Help: "Webhook delivery attempts by outcome (ok, status_4xx, status_5xx, error, injected_failure; mirror_<outcome> for simulator.webhook_mirror_url).",
		}, []string{"outcome"}),
		webhookDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "idnow_sim_webhook_attempt_duration_seconds", Help: "Duration of webhook delivery attempts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		webhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_webhook_events_total", Help: "Webhook events finished, by outcome (delivered, given_up, or dropped: never attempted because of faults.webhook_drop_rate or a delivery pause).",
		}, []string{"outcome"}),
		presigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_sim_presigned_requests_total", Help: "Presigned file URL requests by outcome.",
		}, []string{"outcome"}),
		webhookQueueSize: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "idnow_sim_webhook_queue_length", Help: "Webhook deliveries waiting to be attempted (including scheduled retries).",
		}, queueLen),
	}
	for _, c := range []prometheus.Collector{
		m.apiRequests, m.apiDuration, m.faults, m.tokenRequests, m.sessionsCreated, m.transitions,
		m.webhookAttempts, m.webhookDuration, m.webhookEvents, m.presigned, m.webhookQueueSize,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register simulator metrics: %w", err)
		}
	}
	return m, nil
}

// statusClass maps an HTTP status to its bounded class label, e.g. 404 -> "4xx".
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
