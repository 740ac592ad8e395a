package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the verifier's Prometheus collectors. Every label is bounded: result of a refresh
// (ok, error) or the reason code of a verification, never a kid, issuer or session id.
type metrics struct {
	refreshes      *prometheus.CounterVec
	keys           prometheus.Gauge
	lastSuccess    prometheus.Gauge
	refetchLimited prometheus.Counter
	verifications  *prometheus.CounterVec
	// byCode holds the pre-created verification counters so the hot path avoids the label lookup.
	byCode map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_webhook_jwks_refreshes_total",
			Help: "JWKS fetches by result (ok, error), whether periodic, retried or triggered by an unknown kid.",
		}, []string{"result"}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_webhook_jwks_keys",
			Help: "Signing keys currently loaded from the JWKS; 0 means webhooks are answered 503.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_webhook_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful JWKS fetch.",
		}),
		refetchLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_webhook_jwks_refetch_rate_limited_total",
			Help: "JWKS refetches for an unknown kid that were skipped by webhook.jwks_refetch_min_interval.",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_webhook_verifications_total",
			Help: "Webhook verifications by result: ok or the reason code of the rejection.",
		}, []string{"result"}),
		byCode: make(map[string]prometheus.Counter, len(reasonCodes)+1),
	}
	// Pre-create every series so dashboards and alerts see zeros instead of missing data.
	for _, r := range []string{"ok", "error"} {
		m.refreshes.WithLabelValues(r)
	}
	for _, code := range reasonCodes {
		m.byCode[code] = m.verifications.WithLabelValues(code)
	}
	m.byCode[codeForUnknownReasonSlug] = m.verifications.WithLabelValues(codeForUnknownReasonSlug)

	collectors := []prometheus.Collector{m.refreshes, m.keys, m.lastSuccess, m.refetchLimited, m.verifications}
	for i, c := range collectors {
		if err := reg.Register(c); err != nil {
			// Leave the registry as it was, so a retry with another registry or after fixing a
			// duplicate does not trip over half of our collectors.
			for _, done := range collectors[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	return m, nil
}

// observe counts one verification outcome by its reason.
func (m *metrics) observe(reason string) {
	m.byCode[reasonCode(reason)].Inc()
}

// unregister removes the collectors again, for a constructor that fails after registering them.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{m.refreshes, m.keys, m.lastSuccess, m.refetchLimited, m.verifications} {
		reg.Unregister(c)
	}
}
