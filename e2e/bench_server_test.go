package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/mothergoose"
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

// BenchmarkUnauthenticatedBodies sends `gosling server`, its own process,
// 16 concurrent webhook posts of 24 MB each with a wrong token, and reports
// the server's resident memory before and its peak (VmHWM) after, in MiB.
// The token is checked from the headers, so the bodies are never read: the
// peak should stay within a few MiB of the idle figure (it went from 144 to
// 904 MiB when bodies up to 25 MB were read first).
func BenchmarkUnauthenticatedBodies(b *testing.B) {
	const (
		posts = 16
		size  = 24 << 20
	)
	for b.Loop() {
		f := startFleet(b, fleetOptions{NoWorkers: true})
		time.Sleep(5 * time.Second)
		pid := f.server.PID()
		idle := rssKiB(pid)
		var wg sync.WaitGroup
		var refused atomic.Int64
		for range posts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodPost, "http://"+f.apiAddr+"/webhooks/gitlab", io.LimitReader(zeroReader{}, size))
				req.ContentLength = size
				req.Header.Set("X-Gitlab-Event", gitlabtest.EventJob)
				req.Header.Set("X-Gitlab-Token", "not-the-secret")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					// The server may close before the client sent it all.
					refused.Add(1)
					return
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				}
			}()
		}
		wg.Wait()
		peak := hwmKiB(pid)
		b.ReportMetric(float64(idle)/1024, "idle-MiB")
		b.ReportMetric(float64(peak)/1024, "peak-MiB")
		b.ReportMetric(float64(peak-idle)/1024, "growth-MiB")
		b.ReportMetric(float64(refused.Load()), "refused")
	}
}

// zeroReader is an endless body.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// hwmKiB is a process's peak resident memory (VmHWM) in KiB.
func hwmKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(f)[0], 10, 64)
			return n
		}
	}
	return 0
}
