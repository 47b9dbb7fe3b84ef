package rift_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// counter reads gosling_rift_cache_<name>_total{egg,store}.
func counter(h *harness, name, egg, store string) float64 {
	return metricValue(h, "gosling_rift_cache_"+name+"_total", map[string]string{"egg": egg, "store": store})
}

// metricValue reads one sample from the server's registry; 0 when absent.
func metricValue(h *harness, name string, labels map[string]string) float64 {
	mfs, err := h.srv.Metrics().Registry().Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func TestMetricsNames(t *testing.T) {
	h := start(t, t.TempDir(), options{})
	n, err := testutil.GatherAndCount(h.srv.Metrics().Registry(), "gosling_rift_cache_bytes")
	if err != nil || n != 2 {
		t.Errorf("gosling_rift_cache_bytes has %d series (%v); want one per egg's cache", n, err)
	}
}
