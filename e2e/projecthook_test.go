package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
)

// TestProjectCreateGetsItsHook: a group hook's project_create for a project
// made in a bucket's group starts AddProjectHook on the worker, which gives
// the project the bucket's hook; the API answers with the workflow's ID
// before GitLab is written to.
func TestProjectCreateGetsItsHook(t *testing.T) {
	t.Parallel()
	const secret = "project-create-secret"
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bucket := s.Egg("acme", fly.RunnerVM)
	bucket.Kind, bucket.Projects, bucket.Group = fly.KindBucket, nil, &fly.GroupRef{ID: s.Group.ID}
	a := s.StartSweepAPI(secret, time.Hour, &fly.Nest{Eggs: []fly.Egg{bucket}})

	p := s.GitLab.AddProject("acme/new", s.Group.ID)
	body, _ := json.Marshal(map[string]any{
		"event_name": "project_create", "name": "new", "path": "new", "path_with_namespace": p.PathWithNamespace,
		"project_id": p.ID, "project_namespace_id": s.Group.ID, "project_visibility": "private",
	})
	hr := s.deliver(ctx, &API{URL: a.URL}, "Project Hook", secret, body)
	wfID := contract.ProjectHookWorkflowID(s.Host(), p.ID)
	if hr.WorkflowID != wfID {
		t.Fatalf("project_create answered %+v, want workflow %s", hr, wfID)
	}
	run := s.Client.GetWorkflow(ctx, wfID, "")
	var res contract.ProjectHookResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	hooks := s.GitLab.Hooks(p.ID)
	if len(hooks) != 1 || hooks[0].ID != res.HookID || hooks[0].URL != a.URL+"/webhooks/gitlab" || hooks[0].Token != secret || !hooks[0].JobEvents {
		t.Fatalf("result %+v, hooks of the new project %+v", res, hooks)
	}
	writeHistory(t, s, "add_project_hook", wfID, run.GetRunID())
}
