package privacy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// keyMetrics are the idnow_connector_privacy_* series of a keyring (docs/metrics.md). They
// count keys and key-manager calls, never name a subject or a key.
type keyMetrics struct {
	created         prometheus.Counter
	unwrapped       prometheus.Counter
	refreshFailures prometheus.Counter
	erasedSeen      prometheus.Counter
}

// Instrument registers the keyring's metrics with reg. Call it once, before the keyring is used.
func (k *Keyring) Instrument(reg prometheus.Registerer) error {
	m := &keyMetrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_privacy_data_keys_created_total",
			Help: "Data keys this process made and wrapped with the key-encryption key (one key-manager call each)."}),
		unwrapped: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_privacy_data_keys_unwrapped_total",
			Help: "Data keys unwrapped with the key-encryption key (key-cache misses; one key-manager call each)."}),
		refreshFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_privacy_keys_refresh_failures_total",
			Help: "Reads of the keys topic that failed (retried at the next refresh)."}),
		erasedSeen: prometheus.NewCounter(prometheus.CounterOpts{Name: "idnow_connector_privacy_data_keys_erased_total",
			Help: "Tombstones read from the keys topic: data keys erased by idnow-connector erase."}),
	}
	live := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "idnow_connector_privacy_data_keys",
		Help: "Live data keys known from the keys topic or made by this process."}, func() float64 { return float64(k.Len()) })
	for _, c := range []prometheus.Collector{m.created, m.unwrapped, m.refreshFailures, m.erasedSeen, live} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("privacy metrics: %w", err)
		}
	}
	k.mu.Lock()
	k.metrics = m
	k.mu.Unlock()
	return nil
}

func (k *Keyring) count(f func(*keyMetrics) prometheus.Counter) {
	k.mu.Lock()
	m := k.metrics
	k.mu.Unlock()
	if m != nil {
		f(m).Inc()
	}
}
