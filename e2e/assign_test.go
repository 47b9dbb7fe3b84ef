package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// waitJobRunBy waits for a GitLab job to finish and returns the GitLab
// runner that ran it.
func (s *Stack) waitJobRunBy(ctx context.Context, jobID int64) int64 {
	s.T.Helper()
	for {
		j, ok := s.GitLab.Job(jobID)
		if ok && (j.Status == "success" || j.Status == "failed") {
			return j.RunnerID
		}
		select {
		case <-ctx.Done():
			s.T.Fatalf("job %d never finished: %+v", jobID, j)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// poolRunner waits for an egg's pool to have an Apex runner and returns it.
func (s *Stack) poolRunner(ctx context.Context, egg string) contract.PoolRunner {
	s.T.Helper()
	st := s.waitPool(ctx, egg, "an Apex runner", func(st contract.PoolStatus) bool { return st.Counts[contract.PoolApex] == 1 })
	return st.Runners[0]
}

// TestPoolRunnersTakeEveryProjectsJobs: a VM egg named by its project's
// path alone, and a VM bucket of three projects (named by path and by ID),
// each get pool runners that GitLab hands every one of their projects'
// jobs, and no other project's; a project the bucket gains later is served
// by the same runner.
func TestPoolRunnersTakeEveryProjectsJobs(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	acme, _ := s.GitLab.GroupByFullPath("acme")
	b1, b2, b3 := s.GitLab.AddProject("b1", acme.ID), s.GitLab.AddProject("b2", acme.ID), s.GitLab.AddProject("b3", acme.ID)

	pooled := func(name string, projects ...fly.ProjectRef) fly.Egg {
		egg := s.Egg(name, fly.RunnerVM)
		egg.Version, egg.Projects = "v1", projects
		egg.Runner.MaxConcurrent = 1
		egg.Apex = fly.Pool{Min: 1, Max: 1, IdleTimeout: fly.Duration(time.Hour)}
		return egg
	}
	solo := pooled("solo", fly.ProjectRef{Path: s.Project.PathWithNamespace})
	trio := pooled("trio", fly.ProjectRef{Path: "acme/b1"}, fly.ProjectRef{ID: b2.ID}, fly.ProjectRef{Path: "ACME/B3"})
	trio.Kind = fly.KindBucket
	s.StartPool(ctx, solo, 300*time.Millisecond)
	s.StartPool(ctx, trio, 300*time.Millisecond)
	soloRunner := s.poolRunner(ctx, solo.Name)
	trioRunner := s.poolRunner(ctx, trio.Name)

	for name, want := range map[int64][]int64{soloRunner.GitLabRunnerID: {s.Project.ID}, trioRunner.GitLabRunnerID: {b1.ID, b2.ID, b3.ID}} {
		r, ok := s.GitLab.Runner(name)
		if !ok || r.Type != "project_type" || !slices.Equal(r.ProjectIDs, want) || !r.Locked {
			t.Fatalf("GitLab runner %d: %+v, want a locked project runner of %v", name, r, want)
		}
	}

	// The machines' gitlab-runners ask GitLab for work: each job goes to
	// its project's egg, and a project no egg serves keeps its job.
	other := s.GitLab.AddProject("other", acme.ID)
	job := func(p gitlabtest.Project) int64 { return s.GitLab.AddJob(p.ID, gitlabJob()).ID }
	unserved := job(other)
	webJob := job(s.Project)
	bucketJobs := []int64{job(b1), job(b2), job(b3)}
	if got := s.waitJobRunBy(ctx, webJob); got != soloRunner.GitLabRunnerID {
		t.Errorf("the path-only egg's job ran on runner %d, want %d", got, soloRunner.GitLabRunnerID)
	}
	for _, id := range bucketJobs {
		if got := s.waitJobRunBy(ctx, id); got != trioRunner.GitLabRunnerID {
			t.Errorf("the bucket's job %d ran on runner %d, want %d", id, got, trioRunner.GitLabRunnerID)
		}
	}
	if j, _ := s.GitLab.Job(unserved); j.Status != "pending" || j.RunnerID != 0 {
		t.Errorf("a job of a project no egg serves: %+v, want pending", j)
	}

	// The bucket gains a project: its runner is enabled there.
	b4 := s.GitLab.AddProject("b4", acme.ID)
	grown := trio
	grown.Version, grown.Projects = "v2", append(slices.Clone(trio.Projects), fly.ProjectRef{Path: "acme/b4"})
	if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(trio.Name), "", contract.SignalPoolSpec, grown); err != nil {
		t.Fatal(err)
	}
	for {
		if r, _ := s.GitLab.Runner(trioRunner.GitLabRunnerID); slices.Contains(r.ProjectIDs, b4.ID) && r.Locked {
			break
		}
		select {
		case <-ctx.Done():
			r, _ := s.GitLab.Runner(trioRunner.GitLabRunnerID)
			t.Fatalf("the bucket's runner was never enabled in the new project: %+v", r)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := s.waitJobRunBy(ctx, job(b4)); got != trioRunner.GitLabRunnerID {
		t.Errorf("the new project's job ran on runner %d, want the bucket's %d", got, trioRunner.GitLabRunnerID)
	}
}
