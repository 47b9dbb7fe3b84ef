package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// sweepMetrics are the pending-job sweep's and the webhooks' health.
type sweepMetrics struct {
	found    *prometheus.CounterVec
	passes   *prometheus.CounterVec
	disabled *prometheus.GaugeVec
}

func newSweepMetrics(reg *prometheus.Registry) sweepMetrics {
	s := sweepMetrics{
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sweep_jobs_found_total",
			Help: "Pending GitLab jobs a sweep found with no demand recorded (their Job Hook never arrived) and served, by egg.",
		}, []string{"egg"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sweep_passes_total",
			Help: "Sweep passes by egg and result (ok, partial: some projects could not be read).",
		}, []string{"egg", "result"}),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "webhook_disabled",
			Help: "1 while GitLab does not deliver to Gosling's hook of a project (disabled for a while or for good, or missing and not made again), 0 once it does; by egg and project path.",
		}, []string{"egg", "project"}),
	}
	reg.MustRegister(s.found, s.passes, s.disabled)
	return s
}

// ObserveSweepFound counts jobs a sweep served because no hook brought them.
func (m *Metrics) ObserveSweepFound(egg string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.sweep.found.WithLabelValues(egg).Add(float64(n))
}

// ObserveSweepPass counts one sweep pass of an egg; result is ok or partial.
func (m *Metrics) ObserveSweepPass(egg, result string) {
	if m == nil {
		return
	}
	m.sweep.passes.WithLabelValues(egg, result).Inc()
}

// SetWebhookDisabled records whether Gosling's hook of a project is out of
// service. project is the project's path: the label is bounded by the
// projects the Nest serves.
func (m *Metrics) SetWebhookDisabled(egg, project string, disabled bool) {
	if m == nil {
		return
	}
	v := 0.0
	if disabled {
		v = 1
	}
	m.sweep.disabled.WithLabelValues(egg, project).Set(v)
}
