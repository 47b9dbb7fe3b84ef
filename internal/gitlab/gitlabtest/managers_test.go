package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

type managerJSON struct {
	ID                 int64   `json:"id"`
	SystemID           string  `json:"system_id"`
	Version            *string `json:"version"`
	CreatedAt          string  `json:"created_at"`
	ContactedAt        *string `json:"contacted_at"`
	Status             string  `json:"status"`
	JobExecutionStatus string  `json:"job_execution_status"`
}

func listManagers(t *testing.T, admin call, runnerID int64) []managerJSON {
	t.Helper()
	status, _, body := admin.do(http.MethodGet, fmt.Sprintf("/runners/%d/managers", runnerID), nil)
	if status != http.StatusOK {
		t.Fatalf("GET managers: %d %s", status, body)
	}
	var out []managerJSON
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// One runner token, many machines: each system_id is a manager of the
// runner; one that sends none is the legacy manager; a job records which
// manager took it; managers silent past the stale age are deleted.
func TestRunnerManagersBySystemID(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	s, admin := setup(t, gitlabtest.WithClock(clk.now), gitlabtest.WithLongPolling(0), gitlabtest.WithStaleManagerCleanup(48*time.Hour))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	c := runnerCall{t, s}

	for _, id := range []string{"s_machine1", "s_machine2"} {
		if a := c.json(http.MethodPost, "/runners/verify", map[string]any{"token": r.Token, "system_id": id}); a.status != http.StatusOK {
			t.Fatalf("verify %s: %d %s", id, a.status, a.body)
		}
	}
	// gitlab-runner 12.8 sends no system_id.
	if a := c.json(http.MethodPost, "/runners/verify", map[string]any{"token": r.Token}); a.status != http.StatusOK {
		t.Fatalf("verify without system_id: %d %s", a.status, a.body)
	}
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "build"})
	if a := c.json(http.MethodPost, "/jobs/request", map[string]any{"token": r.Token, "system_id": "s_machine2",
		"info": map[string]any{"version": "18.6.0"}}); a.status != http.StatusCreated {
		t.Fatalf("request: %d %s", a.status, a.body)
	}
	ms := listManagers(t, admin, r.ID)
	var got []string
	for _, m := range ms {
		version := ""
		if m.Version != nil {
			version = *m.Version
		}
		got = append(got, m.SystemID+":"+m.Status+":"+m.JobExecutionStatus+":"+version)
	}
	want := "s_machine1:online:idle: s_machine2:online:active:18.6.0 <legacy>:online:idle:"
	if strings.Join(got, " ") != want {
		t.Errorf("managers = %q, want %q", strings.Join(got, " "), want)
	}
	if n := len(s.Runners()); n != 1 {
		t.Errorf("%d runners, want the one", n)
	}

	// A day on, machine 1 and the legacy one are silent; two days on
	// they are gone, machine 2 (still calling) is kept.
	clk.add(24 * time.Hour)
	c.json(http.MethodPost, "/runners/verify", map[string]any{"token": r.Token, "system_id": "s_machine2"})
	if ms := listManagers(t, admin, r.ID); len(ms) != 3 || ms[0].Status != "offline" {
		t.Errorf("after a day: %+v", ms)
	}
	clk.add(25 * time.Hour)
	if n := s.CleanUpStaleManagers(); n != 2 {
		t.Errorf("clean-up deleted %d managers, want 2", n)
	}
	if ms := s.Managers(r.ID); len(ms) != 1 || ms[0].SystemID != "s_machine2" {
		t.Errorf("after clean-up: %+v", ms)
	}
	if status, _, _ := admin.do(http.MethodGet, "/runners/999999/managers", nil); status != http.StatusNotFound {
		t.Errorf("managers of a missing runner: %d", status)
	}
}

// GitLab.com's cap on runners created per project or group in a window:
// the cap-th creation is the last, deleting does not give room back, and
// the window passing does.
func TestRunnerCreationCap(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)}
	s, admin := setup(t, gitlabtest.WithClock(clk.now), gitlabtest.WithRunnerCreationCap(3, 7*24*time.Hour))
	g := s.AddGroup("acme", 0)
	p := s.AddProject("acme/web", g.ID)
	other := s.AddProject("acme/api", g.ID)
	create := func(body map[string]any) (int, string) {
		status, _, b := admin.do(http.MethodPost, "/user/runners", body)
		return status, b
	}
	project := map[string]any{"runner_type": "project_type", "project_id": p.ID, "tag_list": "docker"}
	var last int64
	for i := range 3 {
		status, body := create(project)
		if status != http.StatusCreated {
			t.Fatalf("creation %d: %d %s", i+1, status, body)
		}
		var r struct {
			ID int64 `json:"id"`
		}
		_ = json.Unmarshal([]byte(body), &r)
		last = r.ID
	}
	if status, _, _ := admin.do(http.MethodDelete, fmt.Sprintf("/runners/%d", last), nil); status != http.StatusNoContent {
		t.Fatalf("delete: %d", status)
	}
	status, body := create(project)
	if status != http.StatusBadRequest || !strings.Contains(body, "Maximum number of ci registered project runners (3) exceeded") {
		t.Errorf("fourth creation: %d %s", status, body)
	}
	if status, body := create(map[string]any{"runner_type": "project_type", "project_id": other.ID, "tag_list": "docker"}); status != http.StatusCreated {
		t.Errorf("another project has its own cap: %d %s", status, body)
	}
	if n := s.RunnersCreated(p.ID, false); n != 3 {
		t.Errorf("RunnersCreated = %d, want 3", n)
	}
	clk.add(7*24*time.Hour + time.Minute)
	if status, body := create(project); status != http.StatusCreated {
		t.Errorf("after the window: %d %s", status, body)
	}
	group := map[string]any{"runner_type": "group_type", "group_id": g.ID, "tag_list": "docker"}
	for range 3 {
		create(group)
	}
	if status, body := create(group); status != http.StatusBadRequest || !strings.Contains(body, "ci registered group runners (3)") {
		t.Errorf("group cap: %d %s", status, body)
	}
}
