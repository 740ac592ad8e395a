package commands

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	received     prometheus.Counter
	replies      *prometheus.CounterVec // outcome, reason
	replayed     prometheus.Counter
	created      prometheus.Counter
	ambiguous    prometheus.Counter
	lookups      *prometheus.CounterVec // result
	transactions *prometheus.CounterVec // kind, result
	duration     prometheus.Histogram
	flowRefresh  *prometheus.CounterVec // result
	tableEntries prometheus.Gauge
	restarts     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_commands_received_total",
			Help: "Command records consumed from topics.commands (a batch consumed again after an abort counts again)."}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_commands_replies_total",
			Help: "Replies committed to topics.replies by outcome (created, failed) and reason (none for created; malformed, unknown_flow, ambiguous_flow_name, environment_mismatch, redirect_not_allowed, deadline_passed, rejected, unavailable)."},
			[]string{"outcome", "reason"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_commands_replayed_total",
			Help: "Commands answered again from the reply recorded for their command id, without an IDnow call."}),
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_commands_sessions_created_total",
			Help: "Create-session calls IDnow answered with a session (committed or not)."}),
		ambiguous: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_commands_ambiguous_total",
			Help: "Create-session calls whose outcome was unknown (timeout, connection reset, 5xx, undecodable answer), and commands found with an intent but no reply; each leads to a lookup before any new call."}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_commands_lookups_total",
			Help: "Lookups of a command's session among its flow's newest sessions, by result (found, not_found, error)."}, []string{"result"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_commands_transactions_total",
			Help: "Kafka transactions by kind (intent: CommandState intents before create calls; reply: replies, states and offsets) and result (committed, aborted)."},
			[]string{"kind", "result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "idnow_connector_commands_duration_seconds",
			Help:    "Time from a command record's timestamp to the commit of its reply.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}}),
		flowRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "idnow_connector_commands_flow_list_reads_total",
			Help: "Reads of GET /flows/{environment} to resolve flow names, by result (success, error)."}, []string{"result"}),
		tableEntries: prometheus.NewGauge(prometheus.GaugeOpts{Name: "idnow_connector_commands_state_entries",
			Help: "Command ids held from topics.commands_state (within commands.dedupe_window)."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_commands_client_restarts_total",
			Help: "Times the commands role re-created its Kafka client after a failure."}),
	}
	for _, c := range []prometheus.Collector{m.received, m.replies, m.replayed, m.created, m.ambiguous, m.lookups, m.transactions,
		m.duration, m.flowRefresh, m.tableEntries, m.restarts} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("commands metrics: one registry per commands role: %w", err)
			}
			return nil, fmt.Errorf("commands metrics: %w", err)
		}
	}
	// Every series exists at 0 from start-up, so rates and alerts see a zero, not a gap.
	m.replies.WithLabelValues("created", "none")
	for _, r := range []string{"malformed", "unknown_flow", "ambiguous_flow_name", "environment_mismatch", "redirect_not_allowed",
		"deadline_passed", "rejected", "unavailable"} {
		m.replies.WithLabelValues("failed", r)
	}
	for _, r := range []string{"found", "not_found", "error"} {
		m.lookups.WithLabelValues(r)
	}
	for _, k := range []string{"intent", "reply"} {
		m.transactions.WithLabelValues(k, "committed")
		m.transactions.WithLabelValues(k, "aborted")
	}
	m.flowRefresh.WithLabelValues("success")
	m.flowRefresh.WithLabelValues("error")
	return m, nil
}
