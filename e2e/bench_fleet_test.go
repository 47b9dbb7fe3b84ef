package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/tofu"
)

// envOr reads a positive number or duration knob of a benchmark.
func envOr[T int | time.Duration](name string, def T) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out T
	switch any(def).(type) {
	case int:
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return def
		}
		out = T(n)
	case time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return def
		}
		out = T(d)
	}
	return out
}

// BenchmarkFleet is the sizing run: `gosling server` and two `gosling
// worker --queue mothergoose` replicas, each its own process on PostgreSQL
// and an in-memory Temporal dev server, serve 1,000 serverless eggs (one
// GitLab project each) a steady stream of jobs: 20 pending Job Hooks a
// second for 5 minutes (GOSLING_FLEET_RATE, GOSLING_FLEET_DURATION,
// GOSLING_FLEET_EGGS change them). Machines are SIMULATED by the workers
// (--simulate-machines, benchmarks only): each apply takes the time a real
// `tofu apply` of the local module took in this run, without OpenTofu;
// every other step (store, GitLab test server, secrets, Temporal) is real.
// Each simulated job runs 5 seconds; its runner is then torn down. It reports
// p50/p99 from the pending hook to a ready runner, the jobs served, the
// peak resident memory of each worker and the largest runner workflow
// history.
func BenchmarkFleet(b *testing.B) {
	rate := envOr("GOSLING_FLEET_RATE", 20)
	duration := envOr("GOSLING_FLEET_DURATION", 5*time.Minute)
	eggs := envOr("GOSLING_FLEET_EGGS", 1000)
	for b.Loop() {
		applyTime := measureLocalApply(b)
		f := startFleetOf(b, eggs, applyTime)
		ctx, cancel := context.WithTimeout(context.Background(), duration+15*time.Minute)

		var (
			mu       sync.Mutex
			lat      []time.Duration
			failures atomic.Int64
			peak     sync.Map
			wg       sync.WaitGroup
		)
		stopRSS := make(chan struct{})
		go func() {
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopRSS:
					return
				case <-t.C:
				}
				for _, w := range []*Process{f.mgWorker, f.extraWorker} {
					kib := rssKiB(w.PID())
					if old, ok := peak.Load(w.Name); !ok || old.(int64) < kib {
						peak.Store(w.Name, kib)
					}
				}
			}
		}()

		// The load generator only sends: one collector reads the store
		// every 2 seconds (not a poll per job), and a runner's time to
		// ready comes from its recorded history.
		sentAt := map[string]time.Time{}
		job := func(n int) {
			defer wg.Done()
			p := f.projects[n%len(f.projects)]
			j := f.gitlab.AddJob(p.ID, gitlabtest.JobSpec{Name: "fleet", Stage: "test", Ref: "main", Tags: []string{"docker"}, Status: "pending"})
			egg := fmt.Sprintf("fleet-%04d", n%len(f.projects))
			runnerID := contract.RunnerIDFor(egg, contract.RunnerWorkflowID(f.host(), j.ID))
			mu.Lock()
			sentAt[runnerID] = time.Now()
			mu.Unlock()
			if code, r := f.deliver(ctx, j.ID, fmt.Sprintf("fleet-%d-pending", j.ID)); code != 202 {
				b.Errorf("job %d: %d %+v", j.ID, code, r)
				failures.Add(1)
			}
		}
		start := time.Now()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		sent := 0
		for time.Since(start) < duration {
			<-tick.C
			wg.Add(1)
			go job(sent)
			sent++
		}
		tick.Stop()
		wg.Wait()
		mu.Lock()
		pending := len(sentAt)
		mu.Unlock()
		for pending > 0 && ctx.Err() == nil {
			rs, err := f.store.ListRunners(ctx, store.RunnerFilter{Limit: 100000})
			if err != nil {
				break
			}
			for _, r := range rs {
				mu.Lock()
				at, waiting := sentAt[r.ID]
				mu.Unlock()
				if !waiting || r.State == store.StateProvisioning || r.State == store.StateRegistering {
					continue
				}
				hist, err := f.store.RunnerHistory(ctx, r.ID)
				if err != nil {
					continue
				}
				mu.Lock()
				delete(sentAt, r.ID)
				served := false
				for _, h := range hist {
					if h.To == store.StateActive {
						lat, served = append(lat, h.At.Sub(at)), true
						break
					}
				}
				if !served {
					failures.Add(1) // failed before it was ever ready
				}
				pending = len(sentAt)
				mu.Unlock()
			}
			time.Sleep(2 * time.Second)
		}
		failures.Add(int64(pending))
		close(stopRSS)

		maxHistory := int64(0)
		rs, _ := f.store.ListRunners(context.Background(), store.RunnerFilter{Limit: 100000})
		for i, r := range rs {
			if i%10 != 0 || r.WorkflowID == "" {
				continue // a sample of one in ten
			}
			if d, err := f.temporal.Client().DescribeWorkflow(context.Background(), r.WorkflowID, ""); err == nil && d.HistoryLength > int(maxHistory) {
				maxHistory = int64(d.HistoryLength)
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(sent), "jobs")
		b.ReportMetric(float64(len(lat)), "jobs-served")
		b.ReportMetric(float64(failures.Load()), "failed")
		b.ReportMetric(float64(sent)/duration.Seconds(), "jobs/s")
		b.ReportMetric(ms(applyTime), "apply-ms")
		b.ReportMetric(ms(pct(lat, 50)), "hook-to-runner-p50-ms")
		b.ReportMetric(ms(pct(lat, 99)), "hook-to-runner-p99-ms")
		for _, name := range []string{f.mgWorker.Name, f.extraWorker.Name} {
			if v, ok := peak.Load(name); ok {
				b.ReportMetric(float64(v.(int64))/1024, name+"-peak-MiB")
			}
		}
		b.ReportMetric(float64(rssKiB(f.server.PID()))/1024, "server-MiB")
		b.ReportMetric(float64(maxHistory), "max-history-events")
		cancel()
	}
}

// measureLocalApply times one real `tofu apply` of the local VM module
// (stopped, so no agent starts) and destroys it.
func measureLocalApply(b *testing.B) time.Duration {
	b.Helper()
	ex, err := tofu.New(testbin.Tofu(b), filepath.Join(b.TempDir(), "tofu"))
	if err != nil {
		b.Fatal(err)
	}
	m := tofu.Machine{
		RunnerID: "fleet-apply", Egg: "fleet", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: tofu.PowerStopped,
		CPU: 1, MemoryMiB: 1024, DiskGiB: 10,
		Agent: agentapi.Config{RunnerID: "fleet-apply", Egg: "fleet", GitLabURL: "http://127.0.0.1:9", TokenRef: "local://runners/fleet-apply/token",
			Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorShell}},
		AgentBinary: testbin.Gosling(b), StateDir: ex.StateDir(),
	}
	vars, err := m.Variables()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	if _, err := ex.Apply(ctx, tofu.ApplyRequest{Workspace: m.RunnerID, Module: m.Module(), Vars: vars}); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	_ = ex.Destroy(ctx, m.RunnerID, nil)
	return took
}

// startFleetOf is a fleet of n serverless eggs, one project each, served
// by the server and two mothergoose workers whose machines are simulated.
func startFleetOf(b *testing.B, n int, applyTime time.Duration) *fleet {
	b.Helper()
	f := startFleet(b, fleetOptions{NoWorkers: true, InMemoryTemporal: true})
	g := f.gitlab.AddGroup("fleet", 0)
	for i := range n {
		p := f.gitlab.AddProject(fmt.Sprintf("fleet/p%04d", i), g.ID)
		f.projects = append(f.projects, p)
		egg := fmt.Sprintf(`egg "fleet-%04d" {
  gitlab {
    host           = %q
    insecure       = true
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }
  project_id = %d
  runner {
    type           = "serverless"
    clouds         = ["local"]
    memory         = "2GiB"
    max_concurrent = 50
    tags           = ["docker"]
  }
}
`, i, f.host(), p.ID)
		path := filepath.Join(f.nestDir, "Eggs", fmt.Sprintf("fleet-%04d", i), "config.fly")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(egg), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// The server reads the Nest at start: restart it on the fleet's Nest.
	f.server.Kill(syscall.SIGTERM)
	f.startServer()
	WaitHTTP(b, "http://"+f.apiAddr+"/readyz", 200, time.Minute, f.server)
	sim := []string{"--simulate-machines=" + applyTime.String(), "--simulate-job=5s"}
	f.mgWorker = StartProcess(b, "mothergoose-worker-1", f.stateDir, f.env, append([]string{"worker", "--queue", "mothergoose", "--metrics-addr", f.mgMetrics}, sim...)...)
	f.extraWorker = StartProcess(b, "mothergoose-worker-2", f.stateDir, f.env, append([]string{"worker", "--queue", "mothergoose", "--metrics-addr", FreeAddr(b)}, sim...)...)
	return f
}
