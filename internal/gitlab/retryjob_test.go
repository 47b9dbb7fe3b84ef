package gitlab

import (
	"context"
	"errors"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// A job is retried as GitLab retries it: only once finished, as a new job
// with a new ID that is pending, the old job left as it was; a job that
// is not finished, or was retried already, is refused with 403.
func TestRetryJob(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "compile", Stage: "build", Ref: "main", Tags: []string{"spot"}, PipelineID: 77})

	for _, status := range []string{"pending", "running"} {
		s.SetJobStatus(p.ID, j.ID, status, 0)
		if _, err := c.RetryJob(ctx, p.ID, j.ID); !errors.Is(err, ErrJobNotRetryable) || !IsForbidden(err) {
			t.Errorf("retry a %s job: %v, want ErrJobNotRetryable (403)", status, err)
		}
	}
	canceled, err := c.CancelJob(ctx, p.ID, j.ID)
	if err != nil || canceled.Status != "canceled" {
		t.Fatalf("CancelJob = %+v, %v", canceled, err)
	}
	retry, err := c.RetryJob(ctx, p.ID, j.ID)
	if err != nil {
		t.Fatalf("RetryJob: %v", err)
	}
	if retry.ID == j.ID || retry.Status != "pending" || retry.Name != "compile" || retry.PipelineID != 77 || len(retry.TagList) != 1 || retry.TagList[0] != "spot" {
		t.Errorf("retry = %+v", retry)
	}
	if old, err := c.GetJob(ctx, p.ID, j.ID); err != nil || old.Status != "canceled" {
		t.Errorf("the old job after its retry: %+v, %v", old, err)
	}
	if st, _ := s.Job(j.ID); !st.Retried {
		t.Error("the old job is not marked retried")
	}
	if nj, _ := s.Job(retry.ID); nj.RetriesCount != 1 {
		t.Errorf("retries_count = %d, want 1", nj.RetriesCount)
	}
	if _, err := c.RetryJob(ctx, p.ID, j.ID); !errors.Is(err, ErrJobNotRetryable) {
		t.Errorf("retry a retried job: %v, want ErrJobNotRetryable", err)
	}
	if _, err := c.RetryJob(ctx, p.ID, 9999); !IsNotFound(err) {
		t.Errorf("retry an unknown job: %v", err)
	}
}
