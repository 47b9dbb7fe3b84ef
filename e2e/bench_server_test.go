package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/workflows/contract"
	"go.temporal.io/sdk/client"
)

// BenchmarkWebhookLoadServerProcess drives `gosling server`, its own OS
// process on PostgreSQL, with pending Job Hooks from a load generator on
// loopback (`webhooks` deliveries from `workers` concurrent senders), and
// in the same run makes as many raw SignalWithStartWorkflow calls as the
// server makes, from this process. It reports webhooks/s against raw
// calls/s (their ratio), p50/p99 of each and their p99 ratio, and the
// webhooks that neither reached Temporal nor wait in the outbox (lost;
// must be 0).
func BenchmarkWebhookLoadServerProcess(b *testing.B) {
	const (
		webhooks = 3000
		workers  = 32
	)
	for b.Loop() {
		f := startFleet(b, fleetOptions{NoWorkers: true, InMemoryTemporal: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		tc := f.temporal.Client()
		url := "http://" + f.apiAddr + "/webhooks/gitlab"
		bodies := make([][]byte, webhooks)
		jobIDs := make([]int64, webhooks)
		for i := range bodies {
			job := f.gitlab.AddJob(f.project.ID, gitlabtest.JobSpec{Name: "load", Stage: "test", Ref: "main", Tags: []string{"docker"}})
			spec, _ := f.gitlab.JobHook(job.ID)
			bodies[i], jobIDs[i] = gitlabtest.JobHookPayload(spec), job.ID
		}
		send := webhookSender(ctx, url, fleetWebhookSecret, f.gitlab.URL(), bodies, workers)
		hookLat, hookWall, statuses := runLoad(b, webhooks, workers, send)

		egg, _ := f.nest().Egg("web")
		raw := func(i int) (time.Duration, string, error) {
			id := fmt.Sprintf("raw/%d", i)
			start := time.Now()
			_, err := tc.SignalWithStartWorkflow(ctx, id, contract.SignalJobStatus, contract.JobStatus{JobID: int64(i), Status: "pending"},
				client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueueMotherGoose}, contract.WorkflowProvisionRunner,
				contract.ProvisionRunnerInput{RunnerID: id, Egg: *egg})
			return time.Since(start), "raw", err
		}
		rawLat, rawWall, _ := runLoad(b, webhooks, workers, raw)

		// What was queued is delivered once Temporal keeps up again.
		for wait := time.Now().Add(2 * time.Minute); time.Now().Before(wait); time.Sleep(time.Second) {
			if depth, err := f.store.OutboxDepth(ctx); err == nil && depth == 0 {
				break
			}
		}
		lost := statuses[mothergoose.StatusAccepted] + statuses[mothergoose.StatusQueued]
		for _, id := range jobIDs {
			if _, err := tc.DescribeWorkflow(ctx, contract.RunnerWorkflowID(f.host(), id), ""); err == nil {
				lost--
			}
		}
		depth, _ := f.store.OutboxDepth(ctx)
		lost -= int(depth)
		b.ReportMetric(float64(statuses[mothergoose.StatusQueued]), "queued")
		hookRate, rawRate := float64(webhooks)/hookWall.Seconds(), float64(webhooks)/rawWall.Seconds()
		b.ReportMetric(hookRate, "webhooks/s")
		b.ReportMetric(rawRate, "raw-calls/s")
		b.ReportMetric(hookRate/rawRate, "throughput-ratio")
		b.ReportMetric(ms(pct(hookLat, 50)), "webhook-p50-ms")
		b.ReportMetric(ms(pct(hookLat, 99)), "webhook-p99-ms")
		b.ReportMetric(ms(pct(rawLat, 50)), "raw-p50-ms")
		b.ReportMetric(ms(pct(rawLat, 99)), "raw-p99-ms")
		b.ReportMetric(float64(pct(hookLat, 99))/float64(pct(rawLat, 99)), "p99-ratio")
		b.ReportMetric(float64(lost), "lost")
		b.ReportMetric(float64(rssKiB(f.server.PID()))/1024, "server-after-load-MiB")
		cancel()
	}
}

// BenchmarkIdleRSS reports the resident memory of an idle `gosling
// server` and of idle mothergoose and uglyfox workers, each its own
// process on PostgreSQL, ten seconds after they started.
func BenchmarkIdleRSS(b *testing.B) {
	for b.Loop() {
		f := startFleet(b, fleetOptions{})
		time.Sleep(10 * time.Second)
		b.ReportMetric(float64(rssKiB(f.server.PID()))/1024, "server-MiB")
		b.ReportMetric(float64(rssKiB(f.mgWorker.PID()))/1024, "mothergoose-worker-MiB")
		b.ReportMetric(float64(rssKiB(f.ufWorker.PID()))/1024, "uglyfox-worker-MiB")
	}
}
