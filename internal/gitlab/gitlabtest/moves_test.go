package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// TestMoveProjectRedirects: a renamed or transferred project keeps its ID;
// its old path still resolves (GitLab's redirect routes) until another
// project takes it; paths are matched case-insensitively.
func TestMoveProjectRedirects(t *testing.T) {
	s, c := setup(t)
	acme := s.AddGroup("acme", 0)
	other := s.AddGroup("other", 0)
	web := s.AddProject("web", acme.ID)
	get := func(path string) (int, string) {
		t.Helper()
		status, _, body := c.do(http.MethodGet, "/projects/"+url.PathEscape(path), nil)
		if status != http.StatusOK {
			return status, ""
		}
		var p struct {
			ID                int64  `json:"id"`
			PathWithNamespace string `json:"path_with_namespace"`
		}
		if err := json.Unmarshal([]byte(body), &p); err != nil || p.ID != web.ID {
			t.Fatalf("GET %s: %s", path, body)
		}
		return status, p.PathWithNamespace
	}
	if _, p := get("ACME/Web"); p != "acme/web" {
		t.Errorf("case-insensitive path: %q", p)
	}
	s.MoveProject(web.ID, "site", acme.ID)
	s.MoveProject(web.ID, "other/site", other.ID)
	for _, old := range []string{"acme/web", "acme/site", "other/site"} {
		if status, p := get(old); status != http.StatusOK || p != "other/site" {
			t.Errorf("GET %s: %d %q, want the moved project at other/site", old, status, p)
		}
	}
	if p, ok := s.ProjectByID(web.ID); !ok || p.PathWithNamespace != "other/site" || p.GroupID != other.ID {
		t.Errorf("moved project: %+v", p)
	}
	if spec, ok := s.JobHook(s.AddJob(web.ID, gitlabtest.JobSpec{}).ID); !ok || spec.Project.PathWithNamespace != "other/site" {
		t.Errorf("hooks name %q after the move", spec.Project.PathWithNamespace)
	}
	// A new project at the old path takes it over.
	fresh := s.AddProject("acme/web", acme.ID)
	status, _, body := c.do(http.MethodGet, "/projects/"+url.PathEscape("acme/web"), nil)
	if status != http.StatusOK || !json.Valid([]byte(body)) || !containsID(body, fresh.ID) {
		t.Errorf("GET acme/web after a new project took it: %d %s", status, body)
	}
	if status, _ := get("gone/nowhere"); status != http.StatusNotFound {
		t.Errorf("unknown path: %d", status)
	}
}

func containsID(body string, id int64) bool {
	var p struct {
		ID int64 `json:"id"`
	}
	return json.Unmarshal([]byte(body), &p) == nil && p.ID == id
}

// TestEnableProjectRunner: a project runner enabled in more projects takes
// their jobs; a locked runner needs an administrator, a group runner cannot
// be enabled, a repeat is a validation error, and a runner cannot be taken
// from its last project.
func TestEnableProjectRunner(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	acme := s.AddGroup("acme", 0)
	a, b, x := s.AddProject("a", acme.ID), s.AddProject("b", acme.ID), s.AddProject("x", acme.ID)
	user := call{t: t, s: s, token: "glpat-user"}
	s.AddUser("glpat-user")
	rc := runnerCall{t, s}

	unlocked := s.AddRunner(gitlabtest.Runner{ProjectID: a.ID, Tags: []string{"docker"}})
	locked := s.AddRunner(gitlabtest.Runner{ProjectID: a.ID, Tags: []string{"docker"}, Locked: true})
	group := s.AddRunner(gitlabtest.Runner{Type: "group_type", GroupID: acme.ID, Tags: []string{"docker"}})
	enable := func(c call, project, runner int64) (int, string) {
		status, _, body := c.do(http.MethodPost, fmt.Sprintf("/projects/%d/runners", project), map[string]any{"runner_id": runner})
		return status, body
	}
	jobB := s.AddJob(b.ID, gitlabtest.JobSpec{Tags: []string{"docker"}})
	if a := rc.request(unlocked.Token, ""); a.status != http.StatusNoContent {
		t.Fatalf("a runner of project a took b's job before it was enabled there: %d", a.status)
	}
	if status, body := enable(user, b.ID, unlocked.ID); status != http.StatusCreated {
		t.Fatalf("enable: %d %s", status, body)
	}
	if job := decodeJob(t, rc.request(unlocked.Token, "")); job.ID != jobB.ID {
		t.Errorf("enabled runner got job %d, want b's %d", job.ID, jobB.ID)
	}
	if status, body := enable(user, b.ID, unlocked.ID); status != http.StatusBadRequest {
		t.Errorf("repeat: %d %s", status, body)
	}
	if status, body := enable(user, b.ID, locked.ID); status != http.StatusForbidden {
		t.Errorf("locked runner by a user: %d %s", status, body)
	}
	if status, body := enable(admin, b.ID, locked.ID); status != http.StatusCreated {
		t.Errorf("locked runner by an administrator: %d %s", status, body)
	}
	if status, body := enable(admin, x.ID, group.ID); status != http.StatusForbidden {
		t.Errorf("group runner: %d %s", status, body)
	}
	if status, body := enable(user, 999, unlocked.ID); status != http.StatusNotFound {
		t.Errorf("unknown project: %d %s", status, body)
	}
	if r, _ := s.Runner(unlocked.ID); len(r.ProjectIDs) != 2 || r.ProjectIDs[1] != b.ID {
		t.Errorf("runner projects %v", r.ProjectIDs)
	}
	status, _, body := admin.do(http.MethodGet, fmt.Sprintf("/runners/%d", unlocked.ID), nil)
	var details struct {
		Projects []struct {
			ID int64 `json:"id"`
		} `json:"projects"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &details) != nil || len(details.Projects) != 2 {
		t.Errorf("runner details: %d %s", status, body)
	}

	if status, _, body := user.do(http.MethodDelete, fmt.Sprintf("/projects/%d/runners/%d", a.ID, unlocked.ID), nil); status != http.StatusOK {
		t.Errorf("disable: %d %s", status, body)
	}
	if status, _, body := user.do(http.MethodDelete, fmt.Sprintf("/projects/%d/runners/%d", b.ID, unlocked.ID), nil); status != http.StatusForbidden {
		t.Errorf("disable from the last project: %d %s", status, body)
	}
	jobA := s.AddJob(a.ID, gitlabtest.JobSpec{Tags: []string{"docker"}})
	if a := rc.request(unlocked.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("runner disabled in a took its job %d: %d", jobA.ID, a.status)
	}
}
