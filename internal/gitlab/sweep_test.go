package gitlab

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

func TestListPendingJobsFollowsPagesAndRateLimits(t *testing.T) {
	s := newServer(t)
	g := s.AddGroup("acme", 0)
	p := s.AddProject("acme/web", g.ID)
	want := map[int64]bool{}
	for i := range 230 {
		j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "build", Tags: []string{"docker"}})
		want[j.ID] = true
		if i%10 == 0 {
			s.SetJobStatus(p.ID, j.ID, "running", 0) // not pending: left out
			delete(want, j.ID)
		}
	}
	s.RateLimitNext(http.MethodGet, "/projects/*/jobs", 1, gitlabtest.RateLimitHeaders{RetryAfter: "0"})
	c, _ := newClient(t, s)
	jobs, pages, err := c.ListPendingJobs(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != len(want) || pages != 3 {
		t.Fatalf("got %d jobs in %d pages, want %d in 3", len(jobs), pages, len(want))
	}
	for _, j := range jobs {
		if !want[j.ID] || j.Status != "pending" || len(j.TagList) != 1 || j.ProjectID != p.ID || j.CreatedAt.IsZero() {
			t.Fatalf("job %+v", j)
		}
	}
	// Three pages and the one 429 that was waited out.
	if n := s.CountRequests(http.MethodGet, "/projects/*/jobs"); n != 4 {
		t.Errorf("requests = %d, want 4", n)
	}
	// By path too.
	if jobs, _, err := c.ListPendingJobs(context.Background(), p.PathWithNamespace); err != nil || len(jobs) != len(want) {
		t.Errorf("by path: %d jobs, %v", len(jobs), err)
	}
}

func TestHookHealthDisableTestAndSave(t *testing.T) {
	ctx := context.Background()
	s := newServer(t)
	g := s.AddGroup("acme", 0)
	p := s.AddProject("acme/web", g.ID)
	var up atomic.Bool
	up.Store(true)
	var got atomic.Int64
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer endpoint.Close()
	c, _ := newClient(t, s)
	spec := HookSpec{URL: endpoint.URL + "/webhooks/gitlab", Token: "hook-secret", JobEvents: true, PipelineEvents: true}
	id, err := c.AddProjectHook(ctx, p.ID, spec)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing to test with yet.
	if err := c.TestProjectHook(ctx, p.ID, id, "job_events"); !errors.Is(err, ErrHookTestFailed) {
		t.Fatalf("test without jobs: %v", err)
	}
	// Four failed deliveries in a row disable the hook for a minute.
	s.FailNextDeliveries(id, 4)
	s.PutFile(p.ID, gitlabtest.CIConfigPath, []byte("build:\n  script: [make]\n"))
	hooks := disable(t, s, c, p.ID)
	if hooks[0].AlertStatus != HookTemporarilyDisabled || hooks[0].DisabledUntil == nil || hooks[0].URL != spec.URL || !hooks[0].JobEvents {
		t.Fatalf("hook after 4 failures: %+v", hooks[0])
	}
	// While the endpoint is down, a test delivery fails and the hook stays off.
	up.Store(false)
	if err := c.TestProjectHook(ctx, p.ID, id, "job_events"); !errors.Is(err, ErrHookTestFailed) {
		t.Fatalf("test with the endpoint down: %v", err)
	}
	// Once it is back, a test delivery reaches it and re-enables the hook.
	up.Store(true)
	before := got.Load()
	if err := c.TestProjectHook(ctx, p.ID, id, "job_events"); err != nil {
		t.Fatal(err)
	}
	if got.Load() != before+1 {
		t.Errorf("the test delivery did not reach the endpoint")
	}
	if hooks, _ := c.ListProjectHooks(ctx, p.ID); hooks[0].Disabled() || hooks[0].AlertStatus != HookExecutable {
		t.Errorf("after a good test: %+v", hooks[0])
	}
	// Saving the hook re-enables it too, and changes what it sends.
	s.FailNextDeliveries(id, 4)
	disable(t, s, c, p.ID)
	spec.PushEvents = true
	if err := c.EditProjectHook(ctx, p.ID, id, spec); err != nil {
		t.Fatal(err)
	}
	if hooks, _ := c.ListProjectHooks(ctx, p.ID); hooks[0].Disabled() || !hooks[0].PushEvents {
		t.Errorf("after saving: %+v", hooks[0])
	}
	if err := c.EditProjectHook(ctx, p.ID, id+100, spec); !IsNotFound(err) {
		t.Errorf("saving an unknown hook: %v", err)
	}
}

// disable makes pipelines (a Job Hook and a Pipeline Hook each) until the
// failing deliveries have disabled the project's hook.
func disable(t *testing.T, s *gitlabtest.Server, c *Client, project int64) []ProjectHook {
	t.Helper()
	for range 2 {
		if _, err := s.CreatePipelineFromCIConfig(project, "main", nil); err != nil {
			t.Fatal(err)
		}
	}
	return waitHooks(t, c, project, func(h ProjectHook) bool { return h.Disabled() })
}

func waitHooks(t *testing.T, c *Client, project int64, cond func(ProjectHook) bool) []ProjectHook {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		hooks, err := c.ListProjectHooks(context.Background(), project)
		if err != nil {
			t.Fatal(err)
		}
		if len(hooks) > 0 && cond(hooks[0]) {
			return hooks
		}
		if time.Now().After(deadline) {
			t.Fatalf("hooks never met the condition: %+v", hooks)
		}
	}
}

func TestCreateAndGetPipeline(t *testing.T) {
	ctx := context.Background()
	s := newServer(t)
	g := s.AddGroup("acme", 0)
	p := s.AddProject("acme/nest", g.ID)
	s.PutFile(p.ID, gitlabtest.CIConfigPath, []byte("job:\n  tags: [gosling-admin]\n  script: [\"echo $GOSLING_JOB\"]\n"))
	c, _ := newClient(t, s)
	pl, err := c.CreatePipeline(ctx, p.PathWithNamespace, "main", map[string]string{"GOSLING_JOB": "prune"})
	if err != nil {
		t.Fatal(err)
	}
	if pl.ID == 0 || pl.Finished() || pl.ProjectID != p.ID {
		t.Fatalf("created %+v", pl)
	}
	jobs := s.PipelineJobs(pl.ID)
	if len(jobs) != 1 {
		t.Fatalf("jobs %+v", jobs)
	}
	s.SetJobStatus(p.ID, jobs[0].ID, "success", 0)
	got, err := c.GetPipeline(ctx, p.ID, pl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != pl.ID {
		t.Fatalf("got %+v", got)
	}
	if v, ok := s.Pipeline(pl.ID); !ok || len(v.Variables) != 1 || v.Variables[0].Key != "GOSLING_JOB" {
		t.Errorf("pipeline variables %+v", v.Variables)
	}
	if _, err := c.GetPipeline(ctx, p.ID, pl.ID+99); !IsNotFound(err) {
		t.Errorf("unknown pipeline: %v", err)
	}
}
