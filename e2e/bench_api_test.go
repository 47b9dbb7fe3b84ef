package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// BenchmarkWebhookLoad drives the real API with pending Job Hooks from a
// load generator on loopback (bounded: `webhooks` deliveries by `workers`
// concurrent senders) against the Temporal dev server, twice in one run:
// with egg scoping (each job new to Gosling confirmed in its project
// through the GitLab test server's Jobs API) and without it
// (Config.UnconfirmedJobs), and makes the same number of raw
// SignalWithStartWorkflow calls the handler makes. It reports sustained
// webhooks/s, p50/p99 of an accepted webhook with and without scoping and
// of the raw call, their ratios, and how many accepted webhooks are not
// accounted for by what the design makes (lost; must be 0): a serverless
// egg's pending job is a demand signalled to its gate (no worker runs here,
// so the signals stay in the gate's history), or an outbox row while
// Temporal does not answer. The raw calls/s is the ceiling the dev server
// sets on this machine.
func BenchmarkWebhookLoad(b *testing.B) {
	const (
		webhooks = 3000
		workers  = 32
	)
	for b.Loop() {
		s := Start(b, Options{NoWorker: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		const secret = "bench-webhook-secret"

		// One pass: an egg of its own (so its gate's history holds only
		// its demands), its jobs made before the clock starts.
		pass := func(name string, mutate func(*mothergoose.Config)) (lat []time.Duration, wall time.Duration, statuses map[string]int, lost int) {
			egg := s.Egg(name, fly.RunnerServerless)
			a := s.StartAPIWith(mutate, secret, egg)
			bodies := make([][]byte, webhooks)
			jobIDs := map[int64]bool{}
			for i := range bodies {
				job := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: name, Stage: "test", Ref: "main", Tags: []string{"docker"}})
				spec, _ := s.GitLab.JobHook(job.ID)
				bodies[i], jobIDs[job.ID] = gitlabtest.JobHookPayload(spec), true
			}
			send := webhookSender(ctx, a.URL+"/webhooks/gitlab", secret, s.GitLab.URL(), bodies, workers)
			lat, wall, statuses = runLoad(b, webhooks, workers, func(i int) (time.Duration, string, error) { return send(i) })
			demanded := gateDemands(b, ctx, s, egg.Name, jobIDs)
			depth, _ := s.Store.OutboxDepth(ctx)
			lost = statuses[mothergoose.StatusAccepted] + statuses[mothergoose.StatusQueued] - demanded - int(depth)
			return lat, wall, statuses, lost
		}
		hookLat, hookWall, statuses, lost := pass("load", nil)
		openLat, openWall, _, openLost := pass("load-unscoped", func(c *mothergoose.Config) { c.UnconfirmedJobs = true })

		// The raw call the handler makes, for the same number of jobs.
		egg := s.Egg("raw", fly.RunnerServerless)
		raw := func(i int) (time.Duration, string, error) {
			id := fmt.Sprintf("raw/%d", i)
			start := time.Now()
			_, err := s.Client.SignalWithStartWorkflow(ctx, id, contract.SignalJobStatus, contract.JobStatus{JobID: int64(i), Status: "pending"},
				client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueueMotherGoose}, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{RunnerID: id, Egg: egg})
			return time.Since(start), "raw", err
		}
		rawLat, rawWall, _ := runLoad(b, webhooks, workers, raw)

		b.ReportMetric(float64(webhooks)/hookWall.Seconds(), "webhooks/s")
		b.ReportMetric(float64(webhooks)/openWall.Seconds(), "unscoped-webhooks/s")
		b.ReportMetric(float64(webhooks)/rawWall.Seconds(), "raw-calls/s")
		b.ReportMetric(openWall.Seconds()/hookWall.Seconds(), "scoped/unscoped-throughput")
		b.ReportMetric(ms(pct(hookLat, 50)), "webhook-p50-ms")
		b.ReportMetric(ms(pct(hookLat, 99)), "webhook-p99-ms")
		b.ReportMetric(ms(pct(openLat, 99)), "unscoped-p99-ms")
		b.ReportMetric(float64(pct(hookLat, 99))/float64(pct(openLat, 99)), "scoped/unscoped-p99")
		b.ReportMetric(ms(pct(rawLat, 50)), "raw-p50-ms")
		b.ReportMetric(ms(pct(rawLat, 99)), "raw-p99-ms")
		b.ReportMetric(float64(pct(hookLat, 99))/float64(pct(rawLat, 99)), "p99-ratio")
		b.ReportMetric(float64(statuses[mothergoose.StatusQueued]), "queued")
		b.ReportMetric(float64(lost+openLost), "lost")
		cancel()
	}
}

// gateDemands counts the jobs among want that an egg's gate was signalled
// as demand (contract.SignalDemand), from its history.
func gateDemands(b *testing.B, ctx context.Context, s *Stack, egg string, want map[int64]bool) int {
	b.Helper()
	seen := map[int64]bool{}
	iter := s.Client.GetWorkflowHistory(ctx, contract.GateWorkflowID(egg), "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			b.Fatal(err)
		}
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a == nil || a.GetSignalName() != contract.SignalDemand {
			continue
		}
		var d contract.Demand
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &d); err != nil {
			b.Fatal(err)
		}
		if want[d.Job.JobID] {
			seen[d.Job.JobID] = true
		}
	}
	return len(seen)
}

// webhookSender returns a load call that delivers bodies[i] as a pending
// Job Hook to url, as GitLab does (its headers, a new Idempotency-Key per
// delivery), and returns the latency and the answer's status.
func webhookSender(ctx context.Context, url, secret, instance string, bodies [][]byte, conns int) func(i int) (time.Duration, string, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
	return func(i int) (time.Duration, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Gitlab-Event", gitlabtest.EventJob)
		req.Header.Set("X-Gitlab-Token", secret)
		req.Header.Set("X-Gitlab-Instance", instance)
		req.Header.Set("X-Gitlab-Webhook-UUID", gitlabtest.NewUUID())
		req.Header.Set("X-Gitlab-Event-UUID", gitlabtest.NewUUID())
		req.Header.Set("Idempotency-Key", gitlabtest.NewUUID())
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var hr mothergoose.Result
		if err := json.NewDecoder(resp.Body).Decode(&hr); err != nil {
			return 0, "", err
		}
		if resp.StatusCode >= 300 {
			return 0, "", fmt.Errorf("status %d: %+v", resp.StatusCode, hr)
		}
		return time.Since(start), hr.Status, nil
	}
}

// runLoad makes n calls from `workers` goroutines and returns each call's
// latency (sorted), the wall time, and the count of each result.
func runLoad(b *testing.B, n, workers int, call func(i int) (time.Duration, string, error)) ([]time.Duration, time.Duration, map[string]int) {
	lat := make([]time.Duration, n)
	results := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d, r, err := call(i)
				if err != nil {
					b.Errorf("call %d: %v", i, err)
					return
				}
				lat[i], results[i] = d, r
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	counts := map[string]int{}
	for _, r := range results {
		counts[r]++
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat, wall, counts
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
