package reconcile

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	listed      prometheus.Counter
	repaired    *prometheus.CounterVec
	passes      *prometheus.CounterVec
	duration    prometheus.Histogram
	lastSuccess prometheus.Gauge
	leader      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		listed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_reconcile_sessions_listed_total",
			Help: "Distinct sessions listed from the IDnow API within the lookback, over all passes.",
		}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_reconcile_sessions_repaired_total",
			Help: "Synthetic SessionEvents written for a session status no enriched event brought, by status (CREATED, RUNNING, COMPLETED, ABORTED, EXPIRED, ERROR, other).",
		}, []string{"status"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_reconcile_passes_total",
			Help: "Reconciliation passes by result (success, failure).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idnow_connector_reconcile_pass_duration_seconds",
			Help:    "Duration of reconciliation passes, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.1, 3, 10),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_reconcile_last_success_timestamp_seconds",
			Help: "Unix time the last reconciliation pass succeeded; 0 until one did. Followers keep the value of their last pass as leader; alert on the maximum over replicas.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_reconcile_leader",
			Help: "1 while this process is the active reconciler (owns partition 0 of topics.state in reconcile.group), else 0.",
		}),
	}
	for _, c := range []prometheus.Collector{m.listed, m.repaired, m.passes, m.duration, m.lastSuccess, m.leader} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range []string{"CREATED", "RUNNING", "COMPLETED", "ABORTED", "EXPIRED", "ERROR", "other"} {
		m.repaired.WithLabelValues(s)
	}
	m.passes.WithLabelValues("success")
	m.passes.WithLabelValues("failure")
	return m, nil
}
