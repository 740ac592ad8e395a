package kafka

import (
	"fmt"
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/plugin/kprom"
)

// metricsNamespace prefixes every franz-go client metric (idnow_connector_kafka_*).
const metricsNamespace = "idnow_connector_kafka"

// kpromHooks returns the franz-go metrics hooks registered on reg.
func kpromHooks(reg prometheus.Registerer) *kprom.Metrics {
	return kprom.NewMetrics(metricsNamespace,
		kprom.Registerer(newGaugeRenamer(reg)),
		kprom.WithClientLabel(),
		// kprom's default counts only uncompressed bytes: the "Records produced" and "Records
		// fetched" dashboard panels need the per-record counters, and the compressed bytes next
		// to the uncompressed ones show what kafka.compression saves. ConsistentNaming names the
		// uncompressed counters *_uncompressed_bytes_total so the two cannot be confused. By node
		// and topic: a handful of series per client (the connector uses three topics).
		kprom.FetchAndProduceDetail(
			kprom.ByNode, kprom.ByTopic,
			kprom.Records, kprom.Batches,
			kprom.UncompressedBytes, kprom.CompressedBytes,
			kprom.ConsistentNaming,
		),
	)
}

// gaugeRenames maps the kprom gauges whose names end in _total, a suffix Prometheus reserves
// for counters (`promtool check metrics` flags them, and rate() over them looks plausible but
// is meaningless), to the names the connector exposes them under, with a help text that says
// what they are. kprom v1.5 has no option to name them.
var gaugeRenames = map[string]struct{ name, help string }{
	metricsNamespace + "_buffered_produce_records_total": {
		name: metricsNamespace + "_buffered_produce_records",
		help: "Records buffered in the client, waiting to be produced or acknowledged.",
	},
	metricsNamespace + "_buffered_fetch_records_total": {
		name: metricsNamespace + "_buffered_fetch_records",
		help: "Records fetched and buffered in the client, not yet polled by the application.",
	},
}

// descFQName reads the metric name out of a Desc's String form, the only place client_golang
// exposes it.
var descFQName = regexp.MustCompile(`fqName: "([^"]+)"`)

// gaugeRenamer is the Registerer kprom registers its collectors on: every collector passes
// through to the real registerer unchanged, except the gauges in gaugeRenames, which are
// registered under their new names instead.
type gaugeRenamer struct {
	prometheus.Registerer

	mu      sync.Mutex
	renamed map[prometheus.Collector]prometheus.Collector // kprom's collector -> the one registered
}

func newGaugeRenamer(reg prometheus.Registerer) *gaugeRenamer {
	return &gaugeRenamer{Registerer: reg, renamed: map[prometheus.Collector]prometheus.Collector{}}
}

// Register registers c, or its renamed stand-in when c is one of the gauges to rename.
func (r *gaugeRenamer) Register(c prometheus.Collector) error {
	rc, ok, err := renameGauge(c)
	if err != nil {
		return err
	}
	if !ok {
		return r.Registerer.Register(c)
	}
	if err := r.Registerer.Register(rc); err != nil {
		return err
	}
	r.mu.Lock()
	r.renamed[c] = rc
	r.mu.Unlock()
	return nil
}

// MustRegister is Register that panics, as prometheus.Registerer requires (promauto, which kprom
// uses, calls it).
func (r *gaugeRenamer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister unregisters c or, when it was renamed, its stand-in (kprom unregisters everything
// when its client closes; a re-created client registers again).
func (r *gaugeRenamer) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	rc, ok := r.renamed[c]
	delete(r.renamed, c)
	r.mu.Unlock()
	if ok {
		return r.Registerer.Unregister(rc)
	}
	return r.Registerer.Unregister(c)
}

// renameGauge returns the renamed stand-in for c and true, or false when c is not to be renamed.
func renameGauge(c prometheus.Collector) (prometheus.Collector, bool, error) {
	g, ok := c.(prometheus.GaugeFunc)
	if !ok {
		return nil, false, nil
	}
	m := descFQName.FindStringSubmatch(g.Desc().String())
	if m == nil {
		return nil, false, nil
	}
	to, ok := gaugeRenames[m[1]]
	if !ok {
		return nil, false, nil
	}
	// The gauge's only labels are kprom's constant ones (client_id): read them from a sample.
	var pb dto.Metric
	if err := collectOne(g).Write(&pb); err != nil {
		return nil, false, fmt.Errorf("read the labels of kprom gauge %s: %w", m[1], err)
	}
	labels := prometheus.Labels{}
	for _, lp := range pb.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	return &renamedGauge{inner: g, desc: prometheus.NewDesc(to.name, to.help, nil, labels)}, true, nil
}

// collectOne returns the single sample a GaugeFunc collects.
func collectOne(g prometheus.GaugeFunc) prometheus.Metric {
	ch := make(chan prometheus.Metric, 1) // a GaugeFunc sends exactly one
	g.Collect(ch)
	return <-ch
}

// renamedGauge exposes a GaugeFunc's value under another name.
type renamedGauge struct {
	inner prometheus.GaugeFunc
	desc  *prometheus.Desc
}

func (g *renamedGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *renamedGauge) Collect(ch chan<- prometheus.Metric) {
	var pb dto.Metric
	if err := collectOne(g.inner).Write(&pb); err != nil {
		ch <- prometheus.NewInvalidMetric(g.desc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, pb.GetGauge().GetValue())
}
