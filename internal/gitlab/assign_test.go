package gitlab

import (
	"context"
	"net/http"
	"testing"
)

func TestGetProjectFollowsRedirects(t *testing.T) {
	s := newServer(t)
	acme := s.AddGroup("acme", 0)
	p := s.AddProject("web", acme.ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	got, err := c.GetProject(ctx, "acme/web")
	if err != nil || got.ID != p.ID || got.PathWithNamespace != "acme/web" || got.NamespaceID != acme.ID {
		t.Fatalf("by path: %+v %v", got, err)
	}
	s.MoveProject(p.ID, "site", acme.ID)
	if got, err := c.GetProject(ctx, "acme/web"); err != nil || got.ID != p.ID || got.PathWithNamespace != "acme/site" {
		t.Errorf("old path: %+v %v, want the project at its new path", got, err)
	}
	if got, err := c.GetProject(ctx, "1"); err != nil || got.PathWithNamespace != "acme/site" {
		t.Errorf("by ID: %+v %v", got, err)
	}
	if _, err := c.GetProject(ctx, "acme/none"); !IsNotFound(err) {
		t.Errorf("unknown path: %v", err)
	}
}

func TestListProjectHooks(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	if hooks, err := c.ListProjectHooks(ctx, p.ID); err != nil || len(hooks) != 0 {
		t.Fatalf("no hooks: %+v %v", hooks, err)
	}
	id, err := c.AddProjectHook(ctx, p.ID, HookSpec{URL: "https://gosling.example.com/webhooks/gitlab", Token: "s", JobEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	hooks, err := c.ListProjectHooks(ctx, p.ID)
	if err != nil || len(hooks) != 1 || hooks[0].ID != id || hooks[0].URL != "https://gosling.example.com/webhooks/gitlab" || !hooks[0].JobEvents || hooks[0].PushEvents {
		t.Errorf("hooks %+v %v", hooks, err)
	}
}

// TestEnableProjectRunner: a runner created in one project is enabled in
// another once unlocked; repeating is harmless; the assignment reads back.
func TestEnableProjectRunner(t *testing.T) {
	s := newServer(t)
	acme := s.AddGroup("acme", 0)
	a, b := s.AddProject("a", acme.ID), s.AddProject("b", acme.ID)
	user := "glpat-not-admin"
	s.AddUser(user)
	c, err := New(s.URL(), user, WithRetry(testRetryMax, testWaitMin, testWaitMax))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := projectSpec(a.ID, "gosling/bucket/p1")
	spec.Locked = true
	r, err := c.CreateRunner(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnableProjectRunner(ctx, b.ID, r.ID); !IsForbidden(err) {
		t.Fatalf("enabling a locked runner as a user: %v, want 403", err)
	}
	if err := c.SetRunnerLocked(ctx, r.ID, false); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.EnableProjectRunner(ctx, b.ID, r.ID); err != nil {
			t.Fatalf("enable: %v", err)
		}
	}
	if err := c.SetRunnerLocked(ctx, r.ID, true); err != nil {
		t.Fatal(err)
	}
	got, err := c.RunnerProjects(ctx, r.ID)
	if err != nil || !got.Locked || len(got.ProjectIDs) != 2 || got.ProjectIDs[0] != a.ID || got.ProjectIDs[1] != b.ID {
		t.Errorf("assignment %+v %v", got, err)
	}
	if n := s.CountRequests(http.MethodPost, "/projects/*/runners"); n != 3 {
		t.Errorf("%d enable requests, want 3", n)
	}
}
