package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/workflows/contract"
)

// requestJob asks the GitLab test server for a job as gitlab-runner does
// (POST /api/v4/jobs/request with the runner's token), without waiting for
// one: it returns the job's ID, or 0 for 204 No Content.
func (s *Stack) requestJob(ctx context.Context, token string) int64 {
	s.T.Helper()
	body, _ := json.Marshal(map[string]any{"token": token, "last_update": "no-wait", "info": map[string]any{"name": "gitlab-runner", "executor": "docker"}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.GitLab.URL()+"/api/v4/jobs/request", bytes.NewReader(body))
	if err != nil {
		s.T.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusNoContent:
		return 0
	case http.StatusCreated:
		var job struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(b, &job); err != nil {
			s.T.Fatal(err)
		}
		return job.ID
	}
	s.T.Fatalf("jobs/request: %d %s", resp.StatusCode, b)
	return 0
}

// poolRunner waits for an egg's pool to have an Apex runner and returns it
// with its GitLab runner token, read where the pool stored it.
func (s *Stack) poolRunner(ctx context.Context, egg string) (contract.PoolRunner, string) {
	s.T.Helper()
	st := s.waitPool(ctx, egg, "an Apex runner", func(st contract.PoolStatus) bool { return st.Counts[contract.PoolApex] == 1 })
	r := st.Runners[0]
	token, err := s.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef))
	if err != nil {
		s.T.Fatal(err)
	}
	return r, token
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
	soloRunner, soloToken := s.poolRunner(ctx, solo.Name)
	trioRunner, trioToken := s.poolRunner(ctx, trio.Name)

	for name, want := range map[int64][]int64{soloRunner.GitLabRunnerID: {s.Project.ID}, trioRunner.GitLabRunnerID: {b1.ID, b2.ID, b3.ID}} {
		r, ok := s.GitLab.Runner(name)
		if !ok || r.Type != "project_type" || !slices.Equal(r.ProjectIDs, want) || !r.Locked {
			t.Fatalf("GitLab runner %d: %+v, want a locked project runner of %v", name, r, want)
		}
	}

	job := func(p gitlabtest.Project) int64 { return s.GitLab.AddJob(p.ID, gitlabJob()).ID }
	webJob := job(s.Project)
	bucketJobs := []int64{job(b1), job(b2), job(b3)}
	if got := s.requestJob(ctx, soloToken); got != webJob {
		t.Errorf("the path-only egg's runner got job %d, want %d", got, webJob)
	}
	if got := s.requestJob(ctx, soloToken); got != 0 {
		t.Errorf("the path-only egg's runner got job %d of another project", got)
	}
	var taken []int64
	for range bucketJobs {
		taken = append(taken, s.requestJob(ctx, trioToken))
	}
	slices.Sort(taken)
	if !slices.Equal(taken, bucketJobs) {
		t.Errorf("the bucket's runner took %v, want every project's job %v", taken, bucketJobs)
	}
	if got := s.requestJob(ctx, trioToken); got != 0 {
		t.Errorf("the bucket's runner got job %d too", got)
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
	newJob := job(b4)
	if got := s.requestJob(ctx, trioToken); got != newJob {
		t.Errorf("the bucket's runner got %d, want the new project's job %d", got, newJob)
	}
}
