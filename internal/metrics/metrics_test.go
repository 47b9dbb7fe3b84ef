package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
)

type fakeCounts struct {
	runners map[string]map[store.RunnerState]int
	depth   int64
	err     error
}

func (f *fakeCounts) CountRunners(context.Context) (map[string]map[store.RunnerState]int, error) {
	return f.runners, f.err
}

func (f *fakeCounts) OutboxDepth(context.Context) (int64, error) { return f.depth, f.err }

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestObserveAndScrape(t *testing.T) {
	m := metrics.New()
	counts := &fakeCounts{runners: map[string]map[store.RunnerState]int{"web": {store.StateActive: 2, store.StateDormant: 1}}, depth: 3}
	if err := m.CollectStore(counts); err != nil {
		t.Fatal(err)
	}
	if err := m.CollectStore(counts); !errors.Is(err, metrics.ErrStoreCollected) {
		t.Errorf("second CollectStore: %v", err)
	}
	m.ObserveWebhook("job", "accepted")
	m.ObserveWebhook("job", "accepted")
	m.ObserveWebhook("push", "ignored")
	m.ObserveProvision("web", "local", "vm", 12*time.Second)
	m.ObserveJobQueue("web", 3*time.Second)
	m.ObserveJobDuration("web", "success", 90*time.Second)
	m.ObserveTransition("active", "draining")
	m.ObserveHTTP("GET", "/api/v1/runners/:id", 200, 5*time.Millisecond)
	m.ObserveOutbox("delivered")

	body := scrape(t, m)
	for _, want := range []string{
		`gosling_webhooks_total{event="job",result="accepted"} 2`,
		`gosling_webhooks_total{event="push",result="ignored"} 1`,
		`gosling_runner_provision_seconds_count{cloud="local",egg="web",kind="vm"} 1`,
		`gosling_job_queue_seconds_sum{egg="web"} 3`,
		`gosling_job_duration_seconds_count{egg="web",status="success"} 1`,
		`gosling_runner_transitions_total{from="active",to="draining"} 1`,
		`gosling_http_request_duration_seconds_count{code="200",method="GET",route="/api/v1/runners/:id"} 1`,
		`gosling_outbox_deliveries_total{result="delivered"} 1`,
		`gosling_runners{egg="web",state="active"} 2`,
		`gosling_runners{egg="web",state="dormant"} 1`,
		`gosling_runners{egg="web",state="failed"} 0`,
		`gosling_outbox_depth 3`,
		`go_goroutines`,
		`process_`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	// The gauges follow the store at every scrape.
	counts.runners["web"][store.StateActive] = 5
	counts.depth = 0
	body = scrape(t, m)
	if !strings.Contains(body, `gosling_runners{egg="web",state="active"} 5`) || !strings.Contains(body, "gosling_outbox_depth 0") {
		t.Errorf("gauges did not follow the store:\n%s", body)
	}
}

func TestStoreErrorKeepsOtherMetrics(t *testing.T) {
	m := metrics.New()
	if err := m.CollectStore(&fakeCounts{err: errors.New("database is down")}); err != nil {
		t.Fatal(err)
	}
	m.ObserveWebhook("job", "queued")
	body := scrape(t, m)
	if !strings.Contains(body, `gosling_webhooks_total{event="job",result="queued"} 1`) {
		t.Errorf("a failing store hid the other metrics:\n%s", body)
	}
	if _, err := m.Registry().Gather(); err == nil {
		t.Error("Gather hides the store error")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.ObserveWebhook("job", "accepted")
	m.ObserveProvision("e", "c", "k", time.Second)
	m.ObserveJobQueue("e", time.Second)
	m.ObserveJobDuration("e", "success", time.Second)
	m.ObserveTransition("a", "b")
	m.ObserveHTTP("GET", "/", 200, time.Second)
	m.ObserveOutbox("retry")
	m.ObserveUglyFoxAction("heartbeat", "terminate", "done")
	m.SecretAccessed(context.Background(), secretstore.AccessEvent{Op: "get", Scheme: "vault"})
}

// A resolver reports its backend calls to the metrics through Observe:
// counted by backend, operation and result, timed by backend and
// operation, and never labelled with the URI.
func TestSecretBackendCalls(t *testing.T) {
	local, err := secretstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := secretstore.NewResolver(local)
	m := metrics.New()
	r.Observe(m)
	ctx := context.Background()
	if _, err := r.Put(ctx, "local://ci/token", "value-1"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // cached after the first: one backend call
		if _, err := r.Resolve(ctx, "local://ci/token"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Resolve(ctx, "local://ci/missing"); err == nil {
		t.Fatal("a missing secret resolved")
	}
	body := scrape(t, m)
	for _, want := range []string{
		`gosling_secret_backend_calls_total{backend="local",operation="put",result="ok"} 1`,
		`gosling_secret_backend_calls_total{backend="local",operation="get",result="ok"} 1`,
		`gosling_secret_backend_calls_total{backend="local",operation="get",result="not_found"} 1`,
		`gosling_secret_backend_call_seconds_count{backend="local",operation="get"} 2`,
		`gosling_secret_backend_call_seconds_count{backend="local",operation="put"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "ci/token") || strings.Contains(body, "value-1") {
		t.Error("a URI or value reached a label")
	}
}

func TestUglyFoxActions(t *testing.T) {
	m := metrics.New()
	m.ObserveUglyFoxAction("idle.apex", "demote", "requested")
	m.ObserveUglyFoxAction("idle.apex", "demote", "requested")
	m.ObserveUglyFoxAction("reconcile", "reap", "failed")
	body := scrape(t, m)
	for _, want := range []string{
		`gosling_uglyfox_actions_total{action="demote",outcome="requested",policy="idle.apex"} 2`,
		`gosling_uglyfox_actions_total{action="reap",outcome="failed",policy="reconcile"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
