package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// sweepMetrics are the pending-job sweep's and the webhooks' health.
type sweepMetrics struct {
	found    *prometheus.CounterVec
	passes   *prometheus.CounterVec
	disabled *prometheus.GaugeVec
	resends  *prometheus.CounterVec
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
	s.resends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "webhook_redeliveries_total",
		Help: "Failed webhook deliveries the sweep resent from GitLab's delivery log, by egg and result (accepted, refused: the API answered 4xx, failed: 5xx, unreachable: no answer, rate_limited: GitLab's limit, expired: no longer resendable, gave_up: failed too often).",
	}, []string{"egg", "result"})
	reg.MustRegister(s.found, s.passes, s.disabled, s.resends)
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

// ObserveRedelivery counts one resend of a failed delivery (or one given
// up); result is one of accepted, refused, failed, unreachable,
// rate_limited, expired, gave_up.
func (m *Metrics) ObserveRedelivery(egg, result string) {
	if m == nil {
		return
	}
	m.sweep.resends.WithLabelValues(egg, result).Inc()
}
