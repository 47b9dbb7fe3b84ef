package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
)

// GateStatus queries a serverless egg's gate.
func (s *Stack) GateStatus(ctx context.Context, egg string) (contract.GateStatus, error) {
	var st contract.GateStatus
	v, err := s.Client.QueryWorkflow(ctx, contract.GateWorkflowID(egg), "", contract.QueryGateStatus)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// TestGateBoundsServerlessRunners: a serverless egg with max_concurrent 1
// gets one runner at a time through the webhook path: the second pending
// job waits at the gate while the first runner's gitlab-runner runs a
// job, gets its runner once that one was torn down, every job runs, and
// nothing is left at the end.
func TestGateBoundsServerlessRunners(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const secret = "webhook-secret-gate"
	egg := s.Egg("gated", fly.RunnerServerless)
	egg.Runner.MaxConcurrent = 1
	a := s.StartAPI(secret, egg)
	s.StartWorker()
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.GateWorkflowID(egg.Name), "", "test over")
	})

	var jobs [2]gitlabtest.Job
	var runners [2]string
	// The first job runs until the test has seen the gate full.
	release := filepath.Join(t.TempDir(), "release")
	for i := range jobs {
		script := []string{"sleep 2"}
		if i == 0 {
			script = []string{"until [ -e " + release + " ]; do sleep 0.1; done"}
		}
		jobs[i] = s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}, Script: script})
		if code, hr, err := s.DeliverJobHook(ctx, a, jobs[i].ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted || hr.WorkflowID != contract.GateWorkflowID(egg.Name) {
			t.Fatalf("pending hook of job %d: %d %+v %v", jobs[i].ID, code, hr, err)
		}
		runners[i] = contract.RunnerIDFor(egg.Name, contract.RunnerWorkflowID(s.Host(), jobs[i].ID))
	}
	waitState(t, ctx, s, runners[0], store.StateActive)
	st, err := s.GateStatus(ctx, egg.Name)
	if err != nil || len(st.Running) != 1 || st.Running[0].Job.JobID != jobs[0].ID || len(st.Waiting) != 1 || st.Waiting[0].Job.JobID != jobs[1].ID {
		t.Fatalf("gate with the first runner up: %+v %v", st, err)
	}
	var nf *serviceerror.NotFound
	if _, err := s.Client.DescribeWorkflow(ctx, contract.RunnerWorkflowID(s.Host(), jobs[1].ID), ""); !errors.As(err, &nf) {
		t.Fatalf("the second job's runner workflow started beyond max_concurrent: %v", err)
	}
	// The gate counts a job as queued when it waited over a second.
	time.Sleep(1500 * time.Millisecond)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	// The machines' gitlab-runners take and run the jobs (GitLab hands
	// the oldest first); never more than one runner is alive at once.
	live := []store.RunnerState{store.StateProvisioning, store.StateRegistering, store.StateActive, store.StateDormant, store.StateDraining, store.StateTerminating}
	ranBy := map[int64]int64{}
	for len(ranBy) < len(jobs) {
		rs, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: egg.Name, States: live})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) > 1 {
			t.Fatalf("%d runners alive at once, max_concurrent is 1: %+v", len(rs), rs)
		}
		for _, job := range jobs {
			if j, _ := s.GitLab.Job(job.ID); j.Status == "success" {
				ranBy[j.ID] = j.RunnerID
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jobs never all ran: %v", ranBy)
		case <-time.After(20 * time.Millisecond):
		}
	}
	// Both on the egg's shared GitLab runner, each on a machine of its
	// own (as the machines' agents reported).
	if ranBy[jobs[0].ID] != ranBy[jobs[1].ID] {
		t.Errorf("the jobs ran on GitLab runners %d and %d, want the egg's one", ranBy[jobs[0].ID], ranBy[jobs[1].ID])
	}
	machine := map[int64]string{}
	for _, job := range jobs {
		for machine[job.ID] == "" {
			if rec, err := s.Store.GetJob(ctx, s.Host(), job.ID); err == nil {
				machine[job.ID] = rec.RunnerID
			}
			select {
			case <-ctx.Done():
				t.Fatalf("no machine recorded for job %d", job.ID)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if machine[jobs[0].ID] == machine[jobs[1].ID] {
		t.Errorf("both jobs ran on machine %s, want one serverless runner each", machine[jobs[0].ID])
	}
	for {
		st, err = s.GateStatus(ctx, egg.Name)
		if err == nil && len(st.Running) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gate never freed its slots: %+v %v", st, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if st.Stats.Started != 2 || st.Stats.Ended != 2 || st.Stats.Queued != 1 || len(st.Waiting) != 0 {
		t.Errorf("gate stats: %+v", st.Stats)
	}
	for i, job := range jobs {
		var res contract.ProvisionRunnerResult
		if err := s.Client.GetWorkflow(ctx, contract.RunnerWorkflowID(s.Host(), job.ID), "").Get(ctx, &res); err != nil || res.Outcome != "job-finished" {
			t.Errorf("runner %d: %+v %v", i, res, err)
		}
	}
	waitState(t, ctx, s, runners[0], store.StateTerminated)
	waitState(t, ctx, s, runners[1], store.StateTerminated)
	s.assertNothingLeft(ctx, runners[1])
	writeHistory(t, s, "gate_serverless", contract.GateWorkflowID(egg.Name), "")
}
