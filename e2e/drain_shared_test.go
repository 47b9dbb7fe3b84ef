package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// A machine of the egg's shared GitLab runner that is drained stops taking
// jobs at once, though the shared runner cannot be paused for it: its
// agent stops gitlab-runner gracefully (SIGQUIT) and stays, heartbeating,
// until the machine's teardown. A job made afterwards is taken by another
// machine of the egg (its build directory, printed by the job, is that
// machine's), and the drained machine is still there, draining.
func TestDrainedSharedMachineTakesNoJob(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	drained := "web-drained"
	first := provisionActive(t, ctx, s, egg, drained)
	dir := s.MachineDir(drained)
	before := agent.Inspect(dir)
	if !before.Alive || before.RunnerPID == 0 {
		t.Fatalf("machine %s: agent %+v, want gitlab-runner running", drained, before)
	}

	run, err := s.Client.ExecuteWorkflow(ctx, contract.StartOptions(contract.DrainWorkflowID(drained)), contract.WorkflowDrainRunner,
		contract.DrainRunnerInput{RunnerID: drained, GitLab: egg.GitLab, Actor: "tester", Reason: "e2e drain"})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.DrainRunnerResult
	if err := run.Get(ctx, &res); err != nil || res.State != string(store.StateDraining) {
		t.Fatalf("drain: %+v %v", res, err)
	}
	// The drain returned once the agent said it drains: gitlab-runner was
	// asked to stop then, and leaves at once as it runs no job.
	if st := agent.Inspect(dir); st.Phase != agent.PhaseDraining || !st.Alive {
		t.Fatalf("after the drain: agent %+v, want alive and %s", st, agent.PhaseDraining)
	}
	for syscall.Kill(before.RunnerPID, 0) == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("gitlab-runner %d of the drained machine still runs", before.RunnerPID)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if g, _ := s.GitLab.Runner(first.GitLabRunnerID); g.Paused {
		t.Error("the egg's shared runner was paused for one machine")
	}

	pl, err := s.GitLab.CreatePipeline(s.Project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "where", Tags: []string{"docker"}, Script: []string{"pwd"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	other := "web-other"
	provisionActive(t, ctx, s, egg, other)
	_, jobs := s.waitPipeline(ctx, pl.ID)
	if len(jobs) != 1 || jobs[0].Status != "success" {
		t.Fatalf("jobs %+v", jobs)
	}
	trace := string(s.GitLab.Trace(jobs[0].ID))
	if !strings.Contains(trace, s.MachineDir(other)) || strings.Contains(trace, dir+"/") {
		t.Errorf("the job did not run on %s:\n%s", other, trace)
	}
	if st := agent.Inspect(dir); !st.Alive || st.Phase != agent.PhaseDraining || st.RunnerPID != 0 && syscall.Kill(st.RunnerPID, 0) == nil {
		t.Errorf("drained machine: agent %+v, want alive, draining, no gitlab-runner", st)
	}
	writeHistory(t, s, "drain_shared_machine", contract.DrainWorkflowID(drained), "")
}
