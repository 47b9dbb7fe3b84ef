package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/client"
)

// benchRunners is the fleet size of the UglyFox benchmarks.
const benchRunners = 10_000

// seedFleet writes benchRunners runners of ten pooled eggs to the store,
// each with a GitLab runner in the test server and a workspace on disk,
// every hundredth one with failures at the threshold. Runners are on the
// aws cloud: the local provider's process probes would find no machines.
func seedFleet(b *testing.B, s *Stack) []fly.Egg {
	b.Helper()
	ctx := context.Background()
	var eggs []fly.Egg
	for e := range 10 {
		egg := s.Egg(fmt.Sprintf("egg%d", e), fly.RunnerVM)
		egg.Apex.Min = 1
		eggs = append(eggs, egg)
	}
	startUglyFox(b, s, eggs...)
	now := time.Now().UTC()
	for i := range benchRunners {
		egg := eggs[i%len(eggs)].Name
		id := contract.PoolRunnerID(egg, int64(i))
		gl := s.GitLab.AddRunner(gitlabtest.Runner{Type: "project_type", ProjectID: s.Project.ID, Description: contract.RunnerDescription(egg, id), Tags: []string{"docker"}})
		r := &store.Runner{
			ID: id, Egg: egg, Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: store.StateActive, GitLabHost: s.Host(),
			GitLabRunnerID: gl.ID, Workspace: id, WorkflowID: contract.PoolWorkflowID(egg) + "/runner/" + id,
			LastJobAt: &now, CreatedAt: now.Add(-time.Hour), UpdatedAt: now,
		}
		if i%100 == 0 {
			r.Failures = 5
		}
		if i%3 == 0 {
			r.State = store.StateDormant
		}
		if err := s.Store.CreateRunner(ctx, r); err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(s.Tofu.WorkspaceDir(id), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	return eggs
}

type passMeter struct {
	b       *testing.B
	elapsed time.Duration
	alloc   uint64
	peak    uint64
	passes  int
}

func (m *passMeter) measure(pass func()) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	pass()
	m.elapsed += time.Since(t0)
	runtime.ReadMemStats(&after)
	m.alloc += after.TotalAlloc - before.TotalAlloc
	m.peak = max(m.peak, after.HeapInuse)
	m.passes++
}

func (m *passMeter) report() {
	n := float64(m.passes)
	m.b.ReportMetric(m.elapsed.Seconds()/n, "s/pass")
	m.b.ReportMetric(float64(m.alloc)/n/(1<<20), "MiB-alloc/pass")
	m.b.ReportMetric(float64(m.peak)/(1<<20), "MiB-heap-inuse")
}

// BenchmarkUglyFoxPolicyPass10k runs one real policy pass (the Prune
// workflow on the dev server) over 10,000 runners: paged store reads,
// Evaluate, and an audit record for each of the 100 decisions (the failed
// policy set to notify, so every pass finds the same work). Memory is the
// worker's, in this process. Target: under 5 s per pass.
func BenchmarkUglyFoxPolicyPass10k(b *testing.B) {
	s := Start(b, Options{})
	seedFleet(b, s)
	ctx := context.Background()
	policy := fly.DefaultUglyFox()
	policy.Failed.Action = fly.ActionNotify
	m := &passMeter{b: b}
	n := 0
	for b.Loop() {
		n++
		m.measure(func() {
			run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: contract.PruneWorkflowID(fmt.Sprintf("bench-%d", n)), TaskQueue: contract.TaskQueueUglyFox},
				contract.WorkflowPrune, contract.PruneInput{Policy: policy})
			if err != nil {
				b.Fatal(err)
			}
			var res contract.PruneResult
			if err := run.Get(ctx, &res); err != nil {
				b.Fatal(err)
			}
			if res.Runners != benchRunners || len(res.Decisions) != benchRunners/100 || res.Failed != 0 {
				b.Fatalf("pass saw %d runners, made %d decisions, %d failed", res.Runners, len(res.Decisions), res.Failed)
			}
		})
	}
	m.report()
}

// BenchmarkUglyFoxReconcilePass10k runs one real reconciliation pass over
// 10,000 runners: 10,000 GitLab runners listed 100 a page from the test
// server, 10,000 workspaces, 10,000 store rows. Before each pass ten
// orphans of each kind are planted (a GitLab runner with nothing behind it,
// a workspace with no row, a row with neither), and the pass reaps all
// thirty. Target: under 5 s per pass.
func BenchmarkUglyFoxReconcilePass10k(b *testing.B) {
	s := Start(b, Options{})
	eggs := seedFleet(b, s)
	ctx := context.Background()
	m := &passMeter{b: b}
	n := 0
	for b.Loop() {
		n++
		b.StopTimer()
		for i := range 10 {
			egg := eggs[i].Name
			s.GitLab.AddRunner(gitlabtest.Runner{ProjectID: s.Project.ID, Description: contract.RunnerDescription(egg, fmt.Sprintf("%s-ghost-%d-%d", egg, n, i))})
			if err := os.MkdirAll(s.Tofu.WorkspaceDir(fmt.Sprintf("%s-stray-%d-%d", egg, n, i)), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := s.Store.CreateRunner(ctx, &store.Runner{ID: fmt.Sprintf("%s-row-%d-%d", egg, n, i), Egg: egg, Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: store.StateActive, GitLabHost: s.Host()}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		m.measure(func() {
			run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: contract.ReconcileWorkflowID(fmt.Sprintf("bench-%d", n)), TaskQueue: contract.TaskQueueUglyFox},
				contract.WorkflowReconcile, contract.ReconcileInput{Policy: fly.DefaultUglyFox()})
			if err != nil {
				b.Fatal(err)
			}
			var res contract.ReconcileResult
			if err := run.Get(ctx, &res); err != nil {
				b.Fatal(err)
			}
			if res.GitLabRunners < benchRunners || res.Rows < benchRunners || len(res.Findings) != 30 || res.Failed != 0 {
				b.Fatalf("pass saw %d GitLab runners and %d rows, found %d, %d failed: %s", res.GitLabRunners, res.Rows, len(res.Findings), res.Failed, findingsOf(res))
			}
		})
	}
	m.report()
}
