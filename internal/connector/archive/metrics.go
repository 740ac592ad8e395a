package archive

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Result label values of idnow_connector_archive_sessions_total.
const (
	sessionArchived    = "archived"
	sessionReused      = "reused"
	sessionSkipped     = "skipped_status"
	sessionUndecodable = "undecodable"
	sessionInvalid     = "invalid_session_id"
	sessionDuplicate   = "duplicate"
	sessionErased      = "erased"
	fileUploaded       = "uploaded"
	fileExisting       = "existing"
	fileMissing        = "missing"
	stageDownload      = "download"
	stageDigest        = "digest"
	stageUpload        = "upload"
	stageManifest      = "manifest"
	stageKey           = "key"
	transactionCommit  = "committed"
	transactionAborted = "aborted"
)

var fileDurationBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

type metrics struct {
	sessions     *prometheus.CounterVec
	files        *prometheus.CounterVec
	missing      *prometheus.CounterVec
	bytes        prometheus.Counter
	retries      *prometheus.CounterVec
	fileDuration prometheus.Histogram
	transactions *prometheus.CounterVec
	inFlight     prometheus.Gauge
	lastArchived prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_archive_sessions_total",
			Help: "EnrichedSession records handled by the archiver, by result (archived; reused: this record's manifest already existed; duplicate: the session was archived for this status from another record; skipped_status: not in archive.on_status or not the record of the event announcing it; undecodable; invalid_session_id; erased: privacy.mode encrypt and the data key the record names was erased, so its evidence is not archived).",
		}, []string{"result"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_archive_files_total",
			Help: "Referenced files handled by the archiver, by result (uploaded, existing: the content-addressed object was already there, missing).",
		}, []string{"result"}),
		missing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_archive_missing_files_total",
			Help: "Files recorded as missing in a manifest, by reason (not_found, too_large, refused, digest_mismatch, permanent_error).",
		}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "idnow_connector_archive_bytes_total",
			Help: "Bytes of files downloaded and verified by the archiver (plaintext, before any encryption).",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_archive_retries_total",
			Help: "Retries after a transient failure, by stage (download, digest: the bytes did not match the declared digest or length, upload, manifest, key: finding the data key under privacy.mode encrypt).",
		}, []string{"stage"}),
		fileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "idnow_connector_archive_file_duration_seconds",
			Help:    "Time to archive one file: download, digest, upload, retries included.",
			Buckets: fileDurationBuckets,
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "idnow_connector_archive_transactions_total",
			Help: "Archiver batches ended, by result (committed, aborted); an aborted batch is archived again (idempotently) and produced again.",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_archive_files_in_flight",
			Help: "Files being downloaded or uploaded by the archiver.",
		}),
		lastArchived: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "idnow_connector_archive_last_commit_timestamp_seconds",
			Help: "Unix time of the archiver's last committed batch; 0 before the first.",
		}),
	}
	for _, r := range []string{sessionArchived, sessionReused, sessionDuplicate, sessionSkipped, sessionUndecodable, sessionInvalid, sessionErased} {
		m.sessions.WithLabelValues(r)
	}
	for _, r := range []string{fileUploaded, fileExisting, fileMissing} {
		m.files.WithLabelValues(r)
	}
	for _, r := range missingReasons {
		m.missing.WithLabelValues(r)
	}
	for _, s := range []string{stageDownload, stageDigest, stageUpload, stageManifest, stageKey} {
		m.retries.WithLabelValues(s)
	}
	for _, r := range []string{transactionCommit, transactionAborted} {
		m.transactions.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sessions, m.files, m.missing, m.bytes, m.retries, m.fileDuration, m.transactions, m.inFlight, m.lastArchived} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
