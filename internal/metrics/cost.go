package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// costMetrics are what jobs cost, per egg and project: the chargeback's
// counters. project is the project's path: the label is bounded by the
// projects the Nest serves.
type costMetrics struct {
	cost    *prometheus.CounterVec
	machine *prometheus.CounterVec
}

func newCostMetrics(reg *prometheus.Registry) costMetrics {
	c := costMetrics{
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "job_cost_total",
			Help: "What jobs cost, in the price table's currency (MG/config.fly cost block), by egg, project path and part: run (the job's machine time at its runner's price) and idle (its share of its runner's idle and stopped time, when the runner ends; project \"\" for a runner that ran no job).",
		}, []string{"egg", "project", "part"}),
		machine: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "job_machine_seconds_total",
			Help: "Machine time charged to jobs directly, by egg and project path: each job's run time on its runner divided by the runner's job slots.",
		}, []string{"egg", "project"}),
	}
	reg.MustRegister(c.cost, c.machine)
	return c
}

// ObserveJobCost adds to what an egg's project's jobs cost; part is run
// or idle. Zero and negative amounts are not counted.
func (m *Metrics) ObserveJobCost(egg, project, part string, amount float64) {
	if m == nil || amount <= 0 {
		return
	}
	m.cost.cost.WithLabelValues(egg, project, part).Add(amount)
}

// ObserveJobMachineSeconds adds the machine time charged to a job.
func (m *Metrics) ObserveJobMachineSeconds(egg, project string, seconds float64) {
	if m == nil || seconds <= 0 {
		return
	}
	m.cost.machine.WithLabelValues(egg, project).Add(seconds)
}
