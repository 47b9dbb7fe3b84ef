package activities

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// A job an interrupted machine was running is canceled (GitLab still shows
// it running) and retried as a new job, once: a second attempt finds the
// retry and makes no other; a job that succeeded before the machine went
// is left alone; the retry is in the audit log.
func TestRetryInterruptedJob(t *testing.T) {
	acts, gl, g := assignEnv(t)
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	acts.Store = st
	p := gl.AddProject("acme/api", gl.AddGroup("acme", 0).ID)
	pl, err := gl.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "build", Stage: "build", Tags: []string{"spot"}, Script: []string{"make"}},
		{Name: "lint", Stage: "build", Tags: []string{"spot"}, Script: []string{"make lint"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	jobs := gl.PipelineJobs(pl.ID)
	build, lint := jobs[0], jobs[1]
	gl.SetJobStatus(p.ID, build.ID, "running", 0)
	gl.SetJobStatus(p.ID, lint.ID, "success", 0)
	in := RetryJobInput{GitLab: g, Egg: "api", RunnerID: "api-p1", Job: contract.JobRef{ProjectID: p.ID, JobID: build.ID}}

	res, err := acts.RetryInterruptedJob(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != RetryOutcomeRetried || res.NewJobID == 0 || res.NewJobID == build.ID || res.Status != "canceled" {
		t.Fatalf("result = %+v", res)
	}
	if old, _ := gl.Job(build.ID); old.Status != "canceled" || !old.Retried {
		t.Errorf("old job = %s retried %v, want canceled and retried", old.Status, old.Retried)
	}
	if nj, _ := gl.Job(res.NewJobID); nj.Status != "pending" || nj.Name != "build" {
		t.Errorf("new job = %+v", nj)
	}
	again, err := acts.RetryInterruptedJob(ctx, in)
	if err != nil || again.Outcome != RetryOutcomeExisting || again.NewJobID != res.NewJobID {
		t.Errorf("second attempt = %+v, %v; want the same retry", again, err)
	}
	if n := len(gl.PipelineJobs(pl.ID)); n != 3 {
		t.Errorf("pipeline has %d jobs, want 3 (one retry)", n)
	}
	done, err := acts.RetryInterruptedJob(ctx, RetryJobInput{GitLab: g, Egg: "api", RunnerID: "api-p1", Job: contract.JobRef{ProjectID: p.ID, JobID: lint.ID}})
	if err != nil || done.Outcome != RetryOutcomeFinished {
		t.Errorf("finished job = %+v, %v", done, err)
	}
	recs, err := st.ListAudit(ctx, store.AuditFilter{RunnerID: "api-p1"})
	if err != nil {
		t.Fatal(err)
	}
	retries := 0
	for _, r := range recs {
		if r.Action == AuditJobRetry {
			retries++
		}
	}
	if retries != 1 {
		t.Errorf("%d job-retry audit records, want 1: %+v", retries, recs)
	}
	var ae *temporal.ApplicationError
	if _, err := acts.RetryInterruptedJob(ctx, RetryJobInput{GitLab: g, RunnerID: "api-p1", Job: contract.JobRef{ProjectID: p.ID, JobID: 9999}}); !errors.As(err, &ae) || ae.Type() != ErrTypeGitLabRejected {
		t.Errorf("unknown job: %v", err)
	}
}
