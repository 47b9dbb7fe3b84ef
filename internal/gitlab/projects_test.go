package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

func TestListGroupProjects(t *testing.T) {
	s := newServer(t)
	acme := s.AddGroup("acme", 0)
	sub := s.AddGroup("platform", acme.ID)
	other := s.AddGroup("other", 0)
	for i := range 130 {
		s.AddProject(fmt.Sprintf("svc-%03d", i), acme.ID)
	}
	for i := range 4 {
		s.AddProject(fmt.Sprintf("tool-%d", i), sub.ID)
	}
	shared := s.AddProject("shared-in", other.ID)
	s.ShareProject(shared.ID, acme.ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	direct, err := c.ListGroupProjects(ctx, acme.ID, false)
	if err != nil {
		t.Fatalf("ListGroupProjects: %v", err)
	}
	if len(direct) != 130 {
		t.Errorf("direct projects = %d, want 130", len(direct))
	}
	for _, p := range direct {
		if p.ID == shared.ID {
			t.Errorf("project shared into the group was claimed")
		}
		if p.NamespaceID != acme.ID || !strings.HasPrefix(p.PathWithNamespace, "acme/svc-") || !strings.HasSuffix(p.WebURL, "/"+p.PathWithNamespace) {
			t.Errorf("project = %+v", p)
		}
	}
	deep, err := c.ListGroupProjects(ctx, acme.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(deep) != 134 {
		t.Errorf("projects with subgroups = %d, want 134", len(deep))
	}
	for _, rec := range s.Requests() {
		if !strings.HasSuffix(rec.Path, "/projects") {
			continue
		}
		q, _ := url.ParseQuery(rec.Query)
		if q.Get("with_shared") != "false" || q.Get("per_page") != "100" {
			t.Errorf("query %q must set with_shared=false and per_page=100", rec.Query)
		}
	}
	if _, err := c.ListGroupProjects(ctx, 999, false); !IsNotFound(err) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestAddProjectHook(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	id, err := c.AddProjectHook(ctx, p.ID, HookSpec{
		URL:                   "https://gosling.example.com/hooks/gitlab",
		Token:                 "hook-secret",
		JobEvents:             true,
		PipelineEvents:        true,
		EnableSSLVerification: true,
	})
	if err != nil {
		t.Fatalf("AddProjectHook: %v", err)
	}
	hooks := s.Hooks(p.ID)
	if len(hooks) != 1 {
		t.Fatalf("%d hooks, want 1", len(hooks))
	}
	h := hooks[0]
	// push_events defaults to true in GitLab: false must be sent explicitly.
	if h.ID != id || h.PushEvents || !h.JobEvents || !h.PipelineEvents || h.MergeRequestsEvents || !h.EnableSSLVerification || h.Token != "hook-secret" {
		t.Errorf("hook = %+v", h)
	}

	if _, err := c.AddProjectHook(ctx, p.ID, HookSpec{URL: "ftp://nope"}); err == nil || !strings.Contains(err.Error(), "url is blocked") {
		t.Errorf("bad URL: err = %v, want GitLab's 422 field message", err)
	}
	s.FailNext(http.MethodPost, "/projects/*/hooks", http.StatusInternalServerError, 1, false)
	if _, err := c.AddProjectHook(ctx, p.ID, HookSpec{URL: "https://x.example"}); err == nil {
		t.Errorf("AddProjectHook on 500 succeeded")
	}
	if n := s.CountRequests(http.MethodPost, "/projects/*/hooks"); n != 3 {
		t.Errorf("%d hook POSTs, want 3 (no retry)", n)
	}
}

func TestGetJobAndJobTags(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "compile", Stage: "build", Ref: "feature", Tags: []string{"gosling", "arm64"}, PipelineID: 77})
	got, err := c.GetJob(ctx, p.ID, j.ID)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	want := Job{ID: j.ID, Status: "pending", Name: "compile", Ref: "feature", Stage: "build", TagList: []string{"gosling", "arm64"}, PipelineID: 77, ProjectID: p.ID}
	if fmt.Sprint(*got) != fmt.Sprint(want) {
		t.Errorf("GetJob = %+v, want %+v", *got, want)
	}
	tags, err := c.JobTags(ctx, p.ID, j.ID)
	if err != nil || strings.Join(tags, ",") != "gosling,arm64" {
		t.Errorf("JobTags = %v, %v", tags, err)
	}

	r, err := c.CreateRunner(ctx, projectSpec(p.ID, "picker"))
	if err != nil {
		t.Fatal(err)
	}
	s.SetJobStatus(p.ID, j.ID, "running", r.ID)
	if got, err := c.GetJob(ctx, p.ID, j.ID); err != nil || got.RunnerID != r.ID || got.Status != "running" {
		t.Errorf("after pick: %+v, %v", got, err)
	}

	if _, err := c.GetJob(ctx, p.ID, 9999); !IsNotFound(err) {
		t.Errorf("unknown job: %v", err)
	}
	other := s.AddProject("acme/web", p.GroupID)
	if _, err := c.JobTags(ctx, other.ID, j.ID); !IsNotFound(err) {
		t.Errorf("job of another project: %v", err)
	}
}

func TestEditAndDeleteProjectHook(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/web", 0)
	c, _ := newClient(t, s)
	ctx := context.Background()
	id, err := c.AddProjectHook(ctx, "acme/web", HookSpec{Name: "gosling:prod", Description: "token from vault://ci/hook/token",
		URL: "https://a.example/webhooks/gitlab", Token: "one", JobEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := c.ListProjectHooks(ctx, p.ID)
	if err != nil || len(hooks) != 1 {
		t.Fatalf("ListProjectHooks: %v, %+v", err, hooks)
	}
	if h := hooks[0]; h.ID != id || h.Name != "gosling:prod" || h.Description != "token from vault://ci/hook/token" || !h.TokenPresent || h.PushEvents {
		t.Errorf("listed hook = %+v", h)
	}
	// An edit sends every flag; the token only when given, else it stays.
	if err := c.EditProjectHook(ctx, "acme/web", id, HookSpec{Name: "gosling:prod", URL: "https://b.example/webhooks/gitlab",
		JobEvents: true, PipelineEvents: true, MergeRequestsEvents: true}); err != nil {
		t.Fatal(err)
	}
	h := s.Hooks(p.ID)[0]
	if h.URL != "https://b.example/webhooks/gitlab" || h.Token != "one" || !h.PipelineEvents || !h.MergeRequestsEvents || h.PushEvents || h.EnableSSLVerification {
		t.Errorf("edited hook = %+v", h)
	}
	if err := c.EditProjectHook(ctx, p.ID, 999, HookSpec{URL: "https://c.example"}); !IsNotFound(err) {
		t.Errorf("edit of a missing hook: %v", err)
	}
	if err := c.DeleteProjectHook(ctx, p.ID, id); err != nil {
		t.Fatal(err)
	}
	if len(s.Hooks(p.ID)) != 0 {
		t.Error("the hook is still there")
	}
}
