package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/workflows/contract"
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
// job waits at the gate, gets its runner once the first one's job ended
// and its runner was torn down, and nothing is left at the end.
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
	for i := range jobs {
		jobs[i] = s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}})
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

	finish := func(job gitlabtest.Job) {
		s.GitLab.SetJobStatus(s.Project.ID, job.ID, "success", 0)
		if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
			t.Fatalf("success hook of job %d: %d %+v %v", job.ID, code, hr, err)
		}
	}
	finish(jobs[0])
	waitState(t, ctx, s, runners[0], store.StateTerminated)
	waitState(t, ctx, s, runners[1], store.StateActive)
	finish(jobs[1])
	waitState(t, ctx, s, runners[1], store.StateTerminated)
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
	s.assertNothingLeft(ctx, runners[1])
	writeHistory(t, s, "gate_serverless", contract.GateWorkflowID(egg.Name), "")
}
