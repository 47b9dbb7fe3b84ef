package mothergoose

import (
	"context"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
)

// BenchmarkJobCost measures what queue time and cost accounting adds to a
// job on the SQLite store: the agent's two reports' records (ns/op), then
// one runner's settlement over the jobs it ran (settle-ms, per job) and a
// chargeback over them (chargeback-ms).
func BenchmarkJobCost(b *testing.B) {
	e := newSweepEnv(b)
	ctx := context.Background()
	egg := e.egg("web")
	egg.Runner.Type, egg.Runner.CPU, egg.Runner.Memory, egg.Runner.Disk, egg.Runner.JobsPerRunner = fly.RunnerVM, 2, 4*fly.GiB, 20*fly.GiB, 1
	nest := &fly.Nest{Eggs: []fly.Egg{egg}}
	nest.MotherGoose.Cost = fly.Cost{Currency: "USD", Prices: []fly.Price{{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand, VCPUHour: 0.04, MemoryGiBHour: 0.005, DiskGiBHour: 0.0002}}}
	e.mg.nest.Store(nest)
	now := time.Now().UTC()
	r := &store.Runner{ID: "web-p1", Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateProvisioning, GitLabHost: e.host, CreatedAt: now, UpdatedAt: now}
	if err := e.st.CreateRunner(ctx, r); err != nil {
		b.Fatal(err)
	}
	for _, to := range []store.RunnerState{store.StateRegistering, store.StateActive} {
		if _, err := e.st.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, To: to, Reason: "bench", Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	job := int64(0)
	for b.Loop() {
		job++
		b.StopTimer()
		queued := time.Now().UTC()
		if _, err := e.st.RecordJob(ctx, store.JobRecord{GitLabHost: e.host, JobID: job, ProjectID: 7, ProjectPath: "acme/web", Egg: "web", Status: "pending", QueuedAt: &queued}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.mg.recordRunnerJob(ctx, r, agentapi.JobReport{JobID: job, Status: agentapi.JobRunning}, queued.Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		if err := e.mg.recordRunnerJob(ctx, r, agentapi.JobReport{JobID: job, Status: agentapi.JobSuccess}, queued.Add(time.Second+time.Millisecond)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	rc, err := e.mg.ops.SettleRunner(ctx, r.ID)
	if err != nil || rc.Jobs != int(job) || rc.Share <= 0 {
		b.Fatalf("settlement %+v, %v", rc, err)
	}
	settle := time.Since(start)
	start = time.Now()
	lines, err := e.mg.ops.Chargeback(ctx, now.Add(-time.Hour), CostByProject)
	if err != nil || len(lines) != 1 || lines[0].Jobs != int(job) {
		b.Fatalf("chargeback %+v, %v", lines, err)
	}
	b.ReportMetric(float64(settle.Microseconds())/1000, "settle-ms")
	b.ReportMetric(float64(settle.Microseconds())/float64(job), "settle-µs/job")
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "chargeback-ms")
}
