package runnerstandin

import (
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are gitlab-runner's own metric names (docs.gitlab.com/runner/
// monitoring; commands/multi.go and builds_helper.go), for what the
// stand-in does. Labels: runner is the short token, runner_name the
// config name, system_id the runner's system ID.
type metrics struct {
	reg          *prometheus.Registry
	versionInfo  *prometheus.GaugeVec
	concurrent   prometheus.Gauge
	limit        *prometheus.GaugeVec
	jobs         *prometheus.GaugeVec
	jobsTotal    *prometheus.CounterVec
	failedJobs   *prometheus.CounterVec
	jobDuration  *prometheus.HistogramVec
	apiRequests  *prometheus.CounterVec
	errorsTotal  *prometheus.CounterVec
	runnerLabels []string
}

func newMetrics() *metrics {
	runner := []string{"runner", "runner_name", "system_id"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		versionInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitlab_runner_version_info",
			Help: "A metric with a constant '1' value labeled by different build stats fields (gitlab-runner STAND-IN, not the real gitlab-runner).",
		}, []string{"name", "version", "revision", "branch", "built_at", "go_version", "os", "architecture"}),
		concurrent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gitlab_runner_concurrent", Help: "The current value of concurrent setting",
		}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitlab_runner_limit", Help: "The current value of limit setting",
		}, runner),
		jobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitlab_runner_jobs", Help: "The current number of running builds.",
		}, append(runner, "state", "stage", "executor_stage")),
		jobsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitlab_runner_jobs_total", Help: "Total number of handled jobs",
		}, runner),
		failedJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitlab_runner_failed_jobs_total", Help: "Total number of failed jobs",
		}, append(runner, "failure_reason")),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gitlab_runner_job_duration_seconds", Help: "Histogram of job durations",
			Buckets: []float64{30, 60, 300, 600, 1800, 3600, 7200, 10800, 18000, 36000},
		}, runner),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitlab_runner_api_request_statuses_total",
			Help: "The total number of api requests, partitioned by runner, system_id, endpoint and status.",
		}, append(runner, "endpoint", "status")),
		errorsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitlab_runner_errors_total", Help: "The number of caught errors.",
		}, []string{"level"}),
		runnerLabels: runner,
	}
	m.reg.MustRegister(m.versionInfo, m.concurrent, m.limit, m.jobs, m.jobsTotal, m.failedJobs, m.jobDuration, m.apiRequests, m.errorsTotal,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.versionInfo.WithLabelValues(Name, Version, Revision, "standin", "", runtime.Version(), runtime.GOOS, runtime.GOARCH).Set(1)
	m.errorsTotal.WithLabelValues("warning").Add(0)
	m.errorsTotal.WithLabelValues("error").Add(0)
	return m
}

func (m *metrics) labels(rc RunnerConfig, systemID string) []string {
	return []string{ShortToken(rc.Token), rc.Name, systemID}
}

func (m *metrics) configure(cfg *Config, systemID string) {
	m.concurrent.Set(float64(cfg.Concurrent))
	for _, rc := range cfg.Runners {
		m.limit.WithLabelValues(m.labels(rc, systemID)...).Set(float64(rc.Limit))
		m.jobsTotal.WithLabelValues(m.labels(rc, systemID)...).Add(0)
	}
}

func (m *metrics) jobStarted(rc RunnerConfig, systemID string) {
	m.jobsTotal.WithLabelValues(m.labels(rc, systemID)...).Inc()
	m.jobs.WithLabelValues(append(m.labels(rc, systemID), "running", "step_script", "step_script")...).Inc()
}

func (m *metrics) jobFinished(rc RunnerConfig, systemID, failureReason string, d time.Duration) {
	m.jobs.WithLabelValues(append(m.labels(rc, systemID), "running", "step_script", "step_script")...).Dec()
	m.jobDuration.WithLabelValues(m.labels(rc, systemID)...).Observe(d.Seconds())
	if failureReason != "" {
		m.failedJobs.WithLabelValues(append(m.labels(rc, systemID), failureReason)...).Inc()
	}
}

func (m *metrics) request(rc RunnerConfig, systemID, endpoint string, status int) {
	code := "-100"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	m.apiRequests.WithLabelValues(append(m.labels(rc, systemID), endpoint, code)...).Inc()
}
