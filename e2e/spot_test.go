package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// A spot VM egg (the local provider plays Spot) has a job running when its
// machine is interrupted (gosling dev interrupt's agent.Interrupt): the
// agent reports it, the pool retires the runner, and once it is gone the
// job is retried once through GitLab's API; the retry finishes on another
// runner, and both the interruption and the retry are in the audit log.
func TestSpotInterruptionRetriesTheJobOnAnotherRunner(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg, project := s.projectEgg("spot", fly.RunnerVM)
	egg.Runner.Capacity, egg.Runner.Env = fly.CapacitySpot, nil
	a := s.StartAPIWith(func(*mothergoose.Config) {}, jobsSecret, egg)
	s.Acts.MotherGoose = a.MotherGoose.Operations()
	s.StartWorker()
	s.hookProject(a, project)
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(egg.Name), "", "test over")
	})

	// The first run of the job waits to be interrupted; its retry finds
	// the mark the first left and finishes.
	mark := filepath.Join(t.TempDir(), "first-run")
	pl, err := s.GitLab.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
		Name: "build", Stage: "test", Tags: []string{"docker"},
		Script: []string{"if [ -e " + mark + " ]; then echo retried run; else touch " + mark + "; sleep 600; fi"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	first := s.GitLab.PipelineJobs(pl.ID)[0]
	var interrupted string
	waitFor(t, ctx, "the job running on a spot runner", func() bool {
		st, err := s.PoolStatus(ctx, egg.Name)
		if err != nil {
			return false
		}
		for _, r := range st.Runners {
			if r.State == contract.PoolApex && slices.Contains(r.Jobs, first.ID) {
				interrupted = r.ID
			}
		}
		_, statErr := os.Stat(mark)
		return interrupted != "" && statErr == nil
	})
	if err := agent.Interrupt(s.MachineDir(interrupted), time.Second); err != nil {
		t.Fatal(err)
	}

	p, jobs := s.waitPipeline(ctx, pl.ID)
	if p.Status != "success" || len(jobs) != 2 {
		t.Fatalf("pipeline %s with %d jobs, want success with the job and its one retry: %+v", p.Status, len(jobs), jobs)
	}
	old, retry := jobs[0], jobs[1]
	if old.ID != first.ID || old.Status != "canceled" || !old.Retried || retry.Status != "success" || retry.RetriesCount != 1 ||
		!strings.Contains(string(s.GitLab.Trace(retry.ID)), "retried run") {
		t.Errorf("jobs = %+v / %+v", old, retry)
	}
	rec, err := s.Store.GetJob(ctx, s.Host(), retry.ID)
	if err != nil || rec.RunnerID == "" || rec.RunnerID == interrupted {
		t.Errorf("the retry ran on %q (%v), want a runner other than %s", rec.RunnerID, err, interrupted)
	}
	st := s.waitPool(ctx, egg.Name, "the interrupted runner gone", func(st contract.PoolStatus) bool {
		for _, r := range st.Runners {
			if r.ID == interrupted {
				return false
			}
		}
		return len(st.Interrupted) == 1 && st.Interrupted[0].Retry == activities.RetryOutcomeRetried
	})
	if x := st.Interrupted[0]; x.Job.JobID != first.ID || x.NewJobID != retry.ID || x.RunnerID != interrupted {
		t.Errorf("pool's interrupted job = %+v", x)
	}
	if r, err := s.Store.GetRunner(ctx, interrupted); err != nil || r.State != store.StateTerminated {
		t.Errorf("interrupted runner in the store: %+v, %v", r, err)
	}
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{RunnerID: interrupted})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Action]++
	}
	if seen[mothergoose.AuditInterruption] != 1 || seen[activities.AuditJobRetry] != 1 {
		t.Errorf("audit of %s: %v, want one interruption and one job-retry", interrupted, seen)
	}
	writeHistory(t, s, "pool_spot_interruption", contract.PoolWorkflowID(egg.Name), "")
}

// A capacity refusal on the egg's first placement (local spot, which the
// local provider refuses while capacity/refuse-spot exists, as EC2 says
// InsufficientInstanceCapacity) provisions on the next one of its fallback
// list (local on demand); the pool remembers the refusal, so a second
// runner made within the cool-down does not ask for spot again.
func TestCapacityRefusalFallsBackAndIsRemembered(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg, project := s.projectEgg("fallback", fly.RunnerVM)
	egg.Runner.Capacity, egg.Runner.Env = fly.CapacitySpot, nil
	egg.Runner.Fallback = []fly.Placement{{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand}}
	egg.Runner.CapacityCooldown = fly.Duration(10 * time.Minute)
	a := s.StartAPIWith(func(*mothergoose.Config) {}, jobsSecret, egg)
	s.Acts.MotherGoose = a.MotherGoose.Operations()
	s.StartWorker()
	s.hookProject(a, project)
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(egg.Name), "", "test over")
	})
	refuse := filepath.Join(s.Tofu.StateDir(), "capacity", "refuse-spot")
	if err := os.MkdirAll(filepath.Dir(refuse), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(refuse, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// Two jobs that run until released: two runners, made one after the
	// other.
	release := filepath.Join(t.TempDir(), "release")
	job := func() int64 {
		pl, err := s.GitLab.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "build", Stage: "test", Tags: []string{"docker"}, Script: []string{"until [ -e " + release + " ]; do sleep 0.1; done"},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return pl.ID
	}
	served := func(st contract.PoolStatus) int {
		n := 0
		for _, r := range st.Runners {
			if r.State == contract.PoolApex && len(r.Jobs) > 0 {
				n++
			}
		}
		return n
	}
	first := job()
	st := s.waitPool(ctx, egg.Name, "the first job served", func(st contract.PoolStatus) bool { return served(st) == 1 })
	if len(st.Refused) != 1 || st.Refused[0].Placement.String() != "local/spot" || st.Refused[0].Class != "capacity" {
		t.Fatalf("refused placements = %+v, want local/spot", st.Refused)
	}
	refusedAt := st.Refused[0].At
	second := job()
	st = s.waitPool(ctx, egg.Name, "the second job served", func(st contract.PoolStatus) bool { return served(st) == 2 })
	if len(st.Refused) != 1 || !st.Refused[0].At.Equal(refusedAt) {
		t.Errorf("refused placements = %+v: spot was asked again within its cool-down", st.Refused)
	}
	// Each runner's store record and audit say where it was made: the
	// first fell back from spot, the second never asked for it.
	fallbacks := 0
	for _, r := range st.Runners {
		recs, err := s.Store.ListAudit(ctx, store.AuditFilter{RunnerID: r.ID})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Action == "cloud-fallback" {
				fallbacks++
				if !strings.Contains(string(rec.After), "local/on_demand") || !strings.Contains(rec.Reason, "local/spot refused (capacity)") {
					t.Errorf("fallback of %s: %s %s", r.ID, rec.Reason, rec.After)
				}
			}
		}
	}
	if fallbacks != 1 {
		t.Errorf("%d cloud-fallback records, want 1 (the first runner's)", fallbacks)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{first, second} {
		if p, _ := s.waitPipeline(ctx, id); p.Status != "success" {
			t.Errorf("pipeline %d: %s", id, p.Status)
		}
	}
	writeHistory(t, s, "pool_capacity_refusal", contract.PoolWorkflowID(egg.Name), "")
	writeHistory(t, s, "provision_capacity_fallback", contract.PoolWorkflowID(egg.Name)+"/runner/"+contract.PoolRunnerID(egg.Name, 1), "")
}
