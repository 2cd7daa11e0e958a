package pipeline

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apbatch/apbatch/schemas"
)

// Metrics are the batch stages' Prometheus metrics:
//
//   - apbatch_batches_started_total{tenant}: batches the ingest role created;
//   - apbatch_batches_failed_total{tenant}: batches refused at split (a
//     file-level problem);
//   - apbatch_batches_completed_total{tenant}: batches whose manifest the
//     write role published;
//   - apbatch_batch_duration_seconds: from a batch's creation to its
//     manifest published (restarts in between included);
//   - apbatch_rows_written_total{tenant,check,status}: results recorded in
//     published parts, one per row and check, by status (schemas.Statuses).
//
// Labels are bounded: tenants are the platform's collectivités, checks and
// statuses are fixed sets; never a batch id, a file name or a personal
// datum. The nil *Metrics records nothing.
type Metrics struct {
	started, failed, completed *prometheus.CounterVec
	rows                       *prometheus.CounterVec
	duration                   prometheus.Histogram
}

// NewMetrics returns the metrics registered with reg (a per-process
// registry, never the global one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_batches_started_total", Help: "Batches created from uploaded files, by tenant.",
		}, []string{"tenant"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_batches_failed_total", Help: "Batches refused at split (unreadable or invalid file), by tenant.",
		}, []string{"tenant"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_batches_completed_total", Help: "Batches whose results and manifest are published, by tenant.",
		}, []string{"tenant"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apbatch_rows_written_total",
			Help: "Results written to published Parquet parts (one per row and check), by tenant, check and status.",
		}, []string{"tenant", "check", "status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "apbatch_batch_duration_seconds",
			Help:    "Time from a batch's creation to its manifest published.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600},
		}),
	}
	for _, c := range []prometheus.Collector{m.started, m.failed, m.completed, m.rows, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) batchStarted(tenant string) {
	if m != nil {
		m.started.WithLabelValues(tenant).Inc()
	}
}

func (m *Metrics) batchFailed(tenant string) {
	if m != nil {
		m.failed.WithLabelValues(tenant).Inc()
	}
}

// batchCompleted counts a batch of tenant created at created and published
// at now.
func (m *Metrics) batchCompleted(tenant string, created, now time.Time) {
	if m == nil {
		return
	}
	m.completed.WithLabelValues(tenant).Inc()
	if !created.IsZero() {
		m.duration.Observe(max(now.Sub(created), 0).Seconds())
	}
}

// rowsWritten counts the results of one part.
func (m *Metrics) rowsWritten(tenant string, rows []*schemas.Result) {
	if m == nil {
		return
	}
	type key struct {
		check  schemas.Check
		status schemas.Status
	}
	n := make(map[key]int)
	for _, r := range rows {
		n[key{r.Check, r.Status}]++
	}
	for k, v := range n {
		m.rows.WithLabelValues(tenant, string(k.check), string(k.status)).Add(float64(v))
	}
}
