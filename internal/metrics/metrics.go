// Package metrics holds Gosling's Prometheus metrics: one registry per
// process with the Go and process collectors, the webhook, provisioning,
// job, lifecycle and HTTP metrics, and gauges read from the store at scrape
// time (pool sizes by state, outbox depth), UglyFox's actions and the calls
// that reach secret backends.
//
// Labels are bounded on purpose: eggs, clouds, runner kinds, states, GitLab
// event names, results and routes, never job, runner or project IDs. Callers
// pass label values from those sets. Every Observe method is safe on a nil
// *Metrics, which records nothing, so code paths without metrics need no
// checks.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every Gosling metric.
const namespace = "gosling"

// scrapeTimeout bounds the store queries of one scrape.
const scrapeTimeout = 2 * time.Second

// Metrics is a registry with Gosling's metrics. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	webhooks    *prometheus.CounterVec
	provision   *prometheus.HistogramVec
	jobQueue    *prometheus.HistogramVec
	jobDuration *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	httpLatency *prometheus.HistogramVec
	outbox      *prometheus.CounterVec
	uglyfox     *prometheus.CounterVec
	secretCalls *prometheus.CounterVec
	secretTime  *prometheus.HistogramVec
	sweep       sweepMetrics
	cost        costMetrics

	storeOnce sync.Once
}

// New returns a registry holding every metric, the Go runtime collector and
// the process collector.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "webhooks_total",
			Help: "GitLab webhook deliveries by event (job, pipeline, push, ...) and result (accepted, queued, duplicate, ignored, or the reason of a refusal).",
		}, []string{"event", "result"}),
		provision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "runner_provision_seconds",
			Help:    "Time from a runner's request to its agent's ready signal.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800},
		}, []string{"egg", "cloud", "kind"}),
		jobQueue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_queue_seconds",
			Help:    "Time a GitLab job waited for a runner, by egg: from its pending hook (or the Jobs API's created_at) to the Gosling runner starting it, as the runner's agent reports.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}, []string{"egg"}),
		jobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "job_duration_seconds",
			Help:    "Run time of finished GitLab jobs (GitLab's build_duration) by final status.",
			Buckets: []float64{5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 21600},
		}, []string{"egg", "status"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "runner_transitions_total",
			Help: "Runner lifecycle transitions by from and to state.",
		}, []string{"from", "to"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "API request latency by method, route pattern and status code.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"method", "route", "code"}),
		outbox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "outbox_deliveries_total",
			Help: "Outbox delivery attempts by result (delivered, retry).",
		}, []string{"result"}),
		uglyfox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "uglyfox_actions_total",
			Help: "UglyFox decisions carried out, by policy (failed, heartbeat, old.max_age, old.nadir_max_age, idle.apex, reconcile), action (terminate, recycle, demote, notify, reap, mark-terminated) and outcome (done, requested, recorded, skipped, failed).",
		}, []string{"policy", "action", "outcome"}),
		secretCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "secret_backend_calls_total",
			Help: "Calls that reached a secret backend (cache hits are not counted), by backend scheme, operation (get, put, delete, versions) and result (ok, not_found, denied, auth, throttled, canceled, error).",
		}, []string{"backend", "operation", "result"}),
		secretTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "secret_backend_call_seconds",
			Help:    "Latency of calls that reached a secret backend, by backend scheme and operation.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"backend", "operation"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.webhooks, m.provision, m.jobQueue, m.jobDuration, m.transitions, m.httpLatency, m.outbox,
		m.uglyfox, m.secretCalls, m.secretTime,
	)
	m.sweep = newSweepMetrics(m.reg)
	m.cost = newCostMetrics(m.reg)
	return m
}

// Registry is the registry, for callers that add metrics of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format. A store
// gauge that cannot be read is left out of that scrape; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// RequireBearer guards a handler (/metrics) with a bearer token:
// requests without Authorization: Bearer <token>, or with one check refuses,
// get 401; when check fails (the token's secret cannot be read) they get
// 503. check compares in constant time (mothergoose.SecretCache.Match).
func RequireBearer(h http.Handler, check func(ctx context.Context, token string) (bool, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		token = strings.TrimSpace(token)
		ok := false
		var err error
		if strings.EqualFold(scheme, "Bearer") && token != "" {
			ok, err = check(r.Context(), token)
		}
		switch {
		case err != nil:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"secrets unavailable","detail":"the metrics token could not be read; see the server log"}`))
		case !ok:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unauthorized","detail":"this server's /metrics needs Authorization: Bearer <the --metrics-token>"}`))
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// ObserveWebhook counts one webhook delivery.
func (m *Metrics) ObserveWebhook(event, result string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(event, result).Inc()
}

// ObserveProvision records how long a runner took to become ready.
func (m *Metrics) ObserveProvision(egg, cloud, kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.provision.WithLabelValues(egg, cloud, kind).Observe(d.Seconds())
}

// ObserveJobQueue records how long a job waited for a runner, once a job.
func (m *Metrics) ObserveJobQueue(egg string, d time.Duration) {
	if m == nil {
		return
	}
	m.jobQueue.WithLabelValues(egg).Observe(d.Seconds())
}

// ObserveJobDuration records a finished job's run time.
func (m *Metrics) ObserveJobDuration(egg, status string, d time.Duration) {
	if m == nil {
		return
	}
	m.jobDuration.WithLabelValues(egg, status).Observe(d.Seconds())
}

// ObserveTransition counts one runner lifecycle transition.
func (m *Metrics) ObserveTransition(from, to string) {
	if m == nil {
		return
	}
	m.transitions.WithLabelValues(from, to).Inc()
}

// ObserveHTTP records one API request; route is the route pattern (such as
// /api/v1/runners/:id), never the raw path.
func (m *Metrics) ObserveHTTP(method, route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpLatency.WithLabelValues(method, route, strconv.Itoa(status)).Observe(d.Seconds())
}

// ObserveOutbox counts one outbox delivery attempt.
func (m *Metrics) ObserveOutbox(result string) {
	if m == nil {
		return
	}
	m.outbox.WithLabelValues(result).Inc()
}

// ObserveUglyFoxAction counts one UglyFox decision that was carried out.
// outcome is one of a bounded set (done, requested, recorded, skipped,
// failed), never an error text.
func (m *Metrics) ObserveUglyFoxAction(policy, action, outcome string) {
	if m == nil {
		return
	}
	m.uglyfox.WithLabelValues(policy, action, outcome).Inc()
}

// SecretAccessed counts one call that reached a secret backend and records
// its latency; it makes *Metrics a secretstore.AccessObserver, so a resolver
// reports to it with resolver.Observe(m). The URI and actor are not labels:
// they are unbounded.
func (m *Metrics) SecretAccessed(_ context.Context, e secretstore.AccessEvent) {
	if m == nil {
		return
	}
	m.secretCalls.WithLabelValues(e.Scheme, e.Op, e.Result()).Inc()
	m.secretTime.WithLabelValues(e.Scheme, e.Op).Observe(e.Duration.Seconds())
}

// StoreCounts is the part of store.Store the scrape-time gauges read.
type StoreCounts interface {
	CountRunners(ctx context.Context) (map[string]map[store.RunnerState]int, error)
	OutboxDepth(ctx context.Context) (int64, error)
}

// ErrStoreCollected is returned by CollectStore when a store is registered
// already: one process has one store.
var ErrStoreCollected = errors.New("metrics: a store is collected already")

// CollectStore adds the gauges gosling_runners{egg,state} and
// gosling_outbox_depth, read from s at every scrape.
func (m *Metrics) CollectStore(s StoreCounts) error {
	err := ErrStoreCollected
	m.storeOnce.Do(func() { err = m.reg.Register(&storeCollector{store: s}) })
	return err
}

var (
	runnersDesc = prometheus.NewDesc(namespace+"_runners", "Runners by egg and lifecycle state, read from the store at scrape time.", []string{"egg", "state"}, nil)
	outboxDesc  = prometheus.NewDesc(namespace+"_outbox_depth", "Webhook intents waiting in the outbox for Temporal, read from the store at scrape time.", nil, nil)
)

// storeCollector reads its gauges from the store when scraped, so they are
// right whichever process changed the store.
type storeCollector struct {
	store StoreCounts
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- runnersDesc
	ch <- outboxDesc
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if counts, err := c.store.CountRunners(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(runnersDesc, err)
	} else {
		for egg, byState := range counts {
			// Every state of a known egg is reported, zeros included, so a
			// pool that empties shows 0 rather than a vanished series.
			for _, st := range store.AllStates {
				ch <- prometheus.MustNewConstMetric(runnersDesc, prometheus.GaugeValue, float64(byState[st]), egg, string(st))
			}
		}
	}
	if depth, err := c.store.OutboxDepth(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(outboxDesc, err)
	} else {
		ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(depth))
	}
}

// PoolSample is what a pool workflow reports of itself at scrape time.
type PoolSample struct {
	Egg        string
	Counts     map[string]int // by pool state (apex, nadir, promoting, ...)
	Promotions int
	Demotions  int
	// Served and DemandToRunner count jobs and sum their wait from demand
	// to a runner, by path (apex, promotion, provision).
	Served         map[string]int
	DemandToRunner map[string]time.Duration
}

// CollectPools adds the pool gauges and counters, read from read at every
// scrape: gosling_pool_runners{egg,state}, gosling_pool_promotions_total,
// gosling_pool_demotions_total and the summary
// gosling_pool_demand_to_runner_seconds{egg,path}.
func (m *Metrics) CollectPools(read func(ctx context.Context) ([]PoolSample, error)) error {
	return m.reg.Register(&poolCollector{read: read})
}

var (
	poolRunnersDesc    = prometheus.NewDesc(namespace+"_pool_runners", "Runners of each egg's pool by pool state, as the pool workflow holds them.", []string{"egg", "state"}, nil)
	poolPromotionsDesc = prometheus.NewDesc(namespace+"_pool_promotions_total", "Nadir runners promoted to Apex.", []string{"egg"}, nil)
	poolDemotionsDesc  = prometheus.NewDesc(namespace+"_pool_demotions_total", "Idle Apex runners demoted to Nadir.", []string{"egg"}, nil)
	poolDemandDesc     = prometheus.NewDesc(namespace+"_pool_demand_to_runner_seconds", "Time from a job's demand to a ready runner, by how it was served: an idle Apex runner, a promotion, or a new runner.", []string{"egg", "path"}, nil)
)

type poolCollector struct {
	read func(ctx context.Context) ([]PoolSample, error)
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolRunnersDesc
	ch <- poolPromotionsDesc
	ch <- poolDemotionsDesc
	ch <- poolDemandDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	samples, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(poolRunnersDesc, err)
	}
	for _, p := range samples {
		for _, st := range []string{"provisioning", "apex", "nadir", "promoting", "demoting", "retiring"} {
			ch <- prometheus.MustNewConstMetric(poolRunnersDesc, prometheus.GaugeValue, float64(p.Counts[st]), p.Egg, st)
		}
		ch <- prometheus.MustNewConstMetric(poolPromotionsDesc, prometheus.CounterValue, float64(p.Promotions), p.Egg)
		ch <- prometheus.MustNewConstMetric(poolDemotionsDesc, prometheus.CounterValue, float64(p.Demotions), p.Egg)
		for _, path := range []string{"apex", "promotion", "provision"} {
			ch <- prometheus.MustNewConstSummary(poolDemandDesc, uint64(p.Served[path]), p.DemandToRunner[path].Seconds(), nil, p.Egg, path)
		}
	}
}
