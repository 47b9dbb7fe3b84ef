package rift

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is Rift's own Prometheus registry (a Rift process is not
// MotherGoose's, so it does not share internal/metrics' registry). Labels
// are bounded: eggs, the store (cache: the S3 build cache; mirror: the
// image mirror), eviction reasons (age, size) and results. It implements
// space.Observer.
type Metrics struct {
	reg       *prometheus.Registry
	bytes     *prometheus.GaugeVec
	hits      *prometheus.CounterVec
	misses    *prometheus.CounterVec
	evictions *prometheus.CounterVec
	certs     *prometheus.CounterVec
}

// NewMetrics returns a registry with Rift's metrics and the Go and process
// collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		bytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "gosling", Subsystem: "rift", Name: "cache_bytes",
			Help: "Bytes Rift holds for an egg, by store (cache: build cache objects; mirror: image blobs).",
		}, []string{"egg", "store"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gosling", Subsystem: "rift", Name: "cache_hits_total",
			Help: "Reads served from Rift's disk: build cache GETs of a stored object, mirror blob GETs of a stored blob.",
		}, []string{"egg", "store"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gosling", Subsystem: "rift", Name: "cache_misses_total",
			Help: "Reads Rift's disk could not serve: build cache GETs of a missing key, mirror blob GETs fetched from the upstream.",
		}, []string{"egg", "store"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gosling", Subsystem: "rift", Name: "cache_evictions_total",
			Help: "Entries evicted, by reason: age (unused past the egg's max_age) or size (least recently used past the egg's cache size).",
		}, []string{"egg", "store", "reason"}),
		certs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gosling", Subsystem: "rift", Name: "client_certificates_total",
			Help: "Client certificate requests by egg and result (issued, refused).",
		}, []string{"egg", "result"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.bytes, m.hits, m.misses, m.evictions, m.certs)
	return m
}

// Registry is the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Bytes sets gosling_rift_cache_bytes.
func (m *Metrics) Bytes(egg, store string, n int64) {
	m.bytes.WithLabelValues(egg, store).Set(float64(n))
}

// Hit counts gosling_rift_cache_hits_total.
func (m *Metrics) Hit(egg, store string) { m.hits.WithLabelValues(egg, store).Inc() }

// Miss counts gosling_rift_cache_misses_total.
func (m *Metrics) Miss(egg, store string) { m.misses.WithLabelValues(egg, store).Inc() }

// Evicted counts gosling_rift_cache_evictions_total.
func (m *Metrics) Evicted(egg, store, reason string, n int) {
	m.evictions.WithLabelValues(egg, store, reason).Add(float64(n))
}

func (m *Metrics) certificate(egg, result string) { m.certs.WithLabelValues(egg, result).Inc() }
