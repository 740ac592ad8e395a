package ingress

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a webhook request: the bounded label values of the request metrics, one per answer
// the ingress can give.
const (
	resultAccepted         = "accepted"
	resultDuplicate        = "duplicate"
	resultBadRequest       = "bad_request"
	resultUnauthorized     = "unauthorized"
	resultTooLarge         = "too_large"
	resultUnsupportedMedia = "unsupported_media_type"
	resultMethodNotAllowed = "method_not_allowed"
	resultNotFound         = "not_found"
	resultOverloaded       = "overloaded"
	resultKafkaUnavailable = "kafka_unavailable"
	resultKeysUnavailable  = "keys_unavailable"
	resultShuttingDown     = "shutting_down"
	resultForbidden        = "forbidden"
	resultBodyTimeout      = "body_timeout"
)

type metrics struct {
	// byResult holds the series of the common results resolved once, so a request does not
	// hash its label value and look the series up (WithLabelValues) twice; rarer results do.
	byResult map[string]resultSeries
	produced resultSeries // produceDuration{outcome="ok"}
	failed   resultSeries // produceDuration{outcome="error"}

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	produceDuration *prometheus.HistogramVec
	dedupeHits      prometheus.Counter
	inflightJoins   prometheus.Counter
	lateAcks        prometheus.Counter
	inFlight        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_ingress_requests_total",
			Help: "Webhook requests answered, by result (accepted, duplicate, bad_request, unauthorized, too_large, unsupported_media_type, method_not_allowed, not_found, overloaded, kafka_unavailable, keys_unavailable, shutting_down, forbidden, body_timeout).",
		}, []string{"result"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idnow_connector_ingress_request_duration_seconds",
			Help:    "Time from request start to answer, by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		produceDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "idnow_connector_ingress_produce_duration_seconds",
			Help:    "Time for Kafka to acknowledge a SessionEvent (acks=all), by outcome (ok, error).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		dedupeHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_ingress_dedupe_hits_total",
			Help: "Redelivered webhooks (same eventId within ingress.dedupe.window, or joining a produce of it still in flight) answered without producing again.",
		}),
		inflightJoins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_ingress_inflight_joins_total",
			Help: "Redelivered webhooks that arrived while the same eventId was still being produced and waited for that produce instead of writing the event again.",
		}),
		lateAcks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_ingress_late_acks_total",
			Help: "Events Kafka acknowledged after their webhook had been answered 503 (produce_timeout passed); the eventId entered the dedupe window so IDnow's retry is answered as a duplicate.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_ingress_in_flight_requests",
			Help: "Webhook requests being handled now (capped by ingress.max_concurrent).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.requestDuration, m.produceDuration, m.dedupeHits, m.inflightJoins, m.lateAcks, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Pre-create the common series so dashboards and alerts see zeros rather than gaps.
	m.byResult = make(map[string]resultSeries)
	for _, r := range []string{resultAccepted, resultDuplicate, resultBadRequest, resultUnauthorized, resultKafkaUnavailable, resultKeysUnavailable, resultOverloaded, resultForbidden, resultBodyTimeout} {
		m.requests.WithLabelValues(r)
	}
	// The answers of a healthy ingress under load: their duration series are resolved (and so
	// exported) from the start as well.
	for _, r := range []string{resultAccepted, resultDuplicate} {
		m.byResult[r] = resultSeries{count: m.requests.WithLabelValues(r), duration: m.requestDuration.WithLabelValues(r)}
	}
	m.produced = resultSeries{duration: m.produceDuration.WithLabelValues("ok")}
	m.failed = resultSeries{duration: m.produceDuration.WithLabelValues("error")}
	return m, nil
}

// resultSeries are the series of one label value.
type resultSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// answered counts a request answered with result after d.
func (m *metrics) answered(result string, d time.Duration) {
	if s, ok := m.byResult[result]; ok {
		s.count.Inc()
		s.duration.Observe(d.Seconds())
		return
	}
	m.requests.WithLabelValues(result).Inc()
	m.requestDuration.WithLabelValues(result).Observe(d.Seconds())
}
