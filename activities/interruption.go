package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// AuditJobRetry records the retry of a job an interrupted machine did not
// finish.
const AuditJobRetry = "job-retry"

// RetryJobInput names a job that an interrupted runner's machine did not
// finish, to retry once that machine is gone.
type RetryJobInput struct {
	GitLab   fly.GitLab      `json:"gitlab"`
	Egg      string          `json:"egg"`
	RunnerID string          `json:"runner_id"`
	Job      contract.JobRef `json:"job"`
}

// RetryJobResult says what became of the job: Outcome is retried (NewJobID
// is its retry), finished (it ended before the machine went: nothing to
// do) or retried-already (a retry of it exists, NewJobID, made by an
// earlier attempt or by someone else).
type RetryJobResult struct {
	Outcome  string `json:"outcome"`
	Status   string `json:"status"`
	NewJobID int64  `json:"new_job_id,omitempty"`
}

// Outcomes of RetryInterruptedJob.
const (
	RetryOutcomeRetried  = "retried"
	RetryOutcomeFinished = "finished"
	RetryOutcomeExisting = "retried-already"
)

// RetryInterruptedJob retries, once, a job that a runner's machine was
// running when its cloud took the machine away, so it lands on another
// runner: GitLab still shows such a job running (or pending) until it
// notices the runner is gone, and retries only finished jobs, so a job
// not finished is canceled first (POST /projects/:id/jobs/:job_id/cancel),
// then retried (POST .../retry: a new job with a new ID). A job that
// succeeded, or failed for its own reasons, before the machine went is
// left alone. A retry of the job that exists already (in the job's
// pipeline, the same name and a higher ID: an earlier attempt whose answer
// was lost) is taken as this one's, so the job is retried once. The retry
// goes to the audit log. A job GitLab does not show, or will not retry for
// this token, is a non-retryable ErrTypeGitLabRejected.
func (a *Activities) RetryInterruptedJob(ctx context.Context, in RetryJobInput) (RetryJobResult, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return RetryJobResult{}, err
	}
	p, id := in.Job.ProjectID, in.Job.JobID
	j, err := gl.GetJob(ctx, p, id)
	if gitlab.IsNotFound(err) || gitlab.IsForbidden(err) {
		return RetryJobResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	if err != nil {
		return RetryJobResult{}, fmt.Errorf("read job %d: %w", id, err)
	}
	if existing, ok, err := retryOf(ctx, gl, *j); err != nil {
		return RetryJobResult{}, err
	} else if ok {
		return RetryJobResult{Outcome: RetryOutcomeExisting, Status: j.Status, NewJobID: existing}, a.auditRetry(ctx, in, j.Status, existing)
	}
	switch j.Status {
	case "success", "skipped", "manual":
		return RetryJobResult{Outcome: RetryOutcomeFinished, Status: j.Status}, nil
	case "failed", "canceled":
	default:
		c, err := gl.CancelJob(ctx, p, id)
		if err != nil {
			return RetryJobResult{}, fmt.Errorf("cancel interrupted job %d: %w", id, err)
		}
		j.Status = c.Status
	}
	n, err := gl.RetryJob(ctx, p, id)
	if errors.Is(err, gitlab.ErrJobNotRetryable) {
		// A retry may have been made since the look above.
		if existing, ok, lerr := retryOf(ctx, gl, *j); lerr == nil && ok {
			return RetryJobResult{Outcome: RetryOutcomeExisting, Status: j.Status, NewJobID: existing}, a.auditRetry(ctx, in, j.Status, existing)
		}
		return RetryJobResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	if err != nil {
		return RetryJobResult{}, err
	}
	return RetryJobResult{Outcome: RetryOutcomeRetried, Status: j.Status, NewJobID: n.ID}, a.auditRetry(ctx, in, j.Status, n.ID)
}

// retryOf finds a retry of job j: a job of its pipeline with its name and
// stage and a higher ID.
func retryOf(ctx context.Context, gl *gitlab.Client, j gitlab.Job) (int64, bool, error) {
	if j.PipelineID == 0 {
		return 0, false, nil
	}
	jobs, err := gl.ListPipelineJobs(ctx, j.ProjectID, j.PipelineID)
	if gitlab.IsNotFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look for a retry of job %d: %w", j.ID, err)
	}
	for _, o := range jobs {
		if o.ID > j.ID && o.Name == j.Name && o.Stage == j.Stage {
			return o.ID, true, nil
		}
	}
	return 0, false, nil
}

func (a *Activities) auditRetry(ctx context.Context, in RetryJobInput, status string, newJobID int64) error {
	before, _ := json.Marshal(map[string]any{"job_id": in.Job.JobID, "status": status})
	after, _ := json.Marshal(map[string]any{"job_id": newJobID})
	_, err := a.Store.AppendAudit(ctx, store.AuditRecord{
		At: time.Now().UTC(), Actor: contract.ActorPool, Action: AuditJobRetry, Egg: in.Egg, RunnerID: in.RunnerID,
		Reason: fmt.Sprintf("job %d of project %d was running on runner %s when its cloud took the machine away; retried as job %d", in.Job.JobID, in.Job.ProjectID, in.RunnerID, newJobID),
		Before: before, After: after, Key: fmt.Sprintf("%s/%s/%d", in.RunnerID, AuditJobRetry, in.Job.JobID),
	})
	return err
}
