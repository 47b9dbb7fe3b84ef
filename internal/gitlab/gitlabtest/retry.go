package gitlabtest

import (
	"errors"
	"net/http"
)

// ErrNotRetryable is RetryJob's answer for a job GitLab would not retry.
var ErrNotRetryable = errors.New("gitlabtest: job is not retryable")

// retryable is GitLab's Ci::Build#retryable?: a finished job (success,
// failed or canceled) that no retry replaced yet. Jobs still running,
// pending or created are not, nor are retried ones: GitLab answers those
// with 403 "Job is not retryable".
func (j *job) retryable() bool {
	if j.Retried {
		return false
	}
	switch j.Status {
	case "success", "failed", "canceled":
		return true
	}
	return false
}

// RetryJob retries a job as POST /projects/:id/jobs/:job_id/retry does
// (Ci::RetryJobService): a new job with a new ID, the same name, stage,
// pipeline, tags, script and variables, one more retries_count, and
// pending (its Job Hook is sent, its pipeline runs again); the old job
// keeps its status and is marked retried. It returns the new job, ErrNoJob
// for an unknown job, ErrNotRetryable for one GitLab would refuse.
func (s *Server) RetryJob(jobID int64) (Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return Job{}, ErrNoJob
	}
	n, err := s.retryJob(j)
	if err != nil {
		return Job{}, err
	}
	return n.snapshot(), nil
}

// retryJob is RetryJob. The caller holds s.mu.
func (s *Server) retryJob(j *job) (*job, error) {
	if !j.retryable() {
		return nil, ErrNotRetryable
	}
	n := &job{Job: j.snapshot()}
	n.ID = s.newID("job")
	n.Status, n.RunnerID, n.Token, n.FailureReason, n.ExitCode = "created", 0, "", "", nil
	n.CreatedAt, n.StartedAt, n.FinishedAt = s.now().UTC(), nil, nil
	n.Retried, n.RetriesCount = false, j.RetriesCount+1
	j.Retried = true
	s.jobs[n.ID] = n
	s.moveJob(n, "pending")
	if p, ok := s.pipelines[n.PipelineID]; ok {
		s.processPipeline(p)
	}
	return n, nil
}

// retryJobRoute is POST /projects/:id/jobs/:job_id/retry: 201 with the new
// job; 403 {"message": "403 Forbidden - Job is not retryable"} for a job
// that is not (lib/api/ci/jobs.rb); 404 for a job not in the project.
func (s *Server) retryJobRoute(w http.ResponseWriter, r *http.Request, _ *user) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.projectJob(w, r)
	if !ok {
		return
	}
	n, err := s.retryJob(j)
	if err != nil {
		writeMessage(w, http.StatusForbidden, "403 Forbidden - Job is not retryable")
		return
	}
	writeJSON(w, http.StatusCreated, s.jobJSON(r, n, false))
}
