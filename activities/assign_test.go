package activities

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"go.temporal.io/sdk/temporal"
)

// assignEnv is a GitLab test server whose API token belongs to a user who
// is no administrator (so a locked runner cannot be enabled elsewhere),
// with the activities over it.
func assignEnv(t *testing.T) (*Activities, *gitlabtest.Server, fly.GitLab) {
	t.Helper()
	ctx := context.Background()
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	gl.AddUser("glpat-bucket-owner")
	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	if _, err := res.Put(ctx, "local://gitlab/token", "glpat-bucket-owner"); err != nil {
		t.Fatal(err)
	}
	acts := &Activities{Secrets: res, TokenRef: func(id string) fly.SecretRef { return LocalTokenRef(id) }}
	return acts, gl, fly.GitLab{Host: strings.TrimPrefix(gl.URL(), "http://"), Insecure: true, Token: "local://gitlab/token"}
}

// A pooled runner of a bucket is registered in every project the bucket
// lists, by ID or path (a path GitLab does not resolve is skipped), locked
// once assigned; a retried create finds it and leaves it as it is; a grown
// bucket enables it in the new project.
func TestCreateGitLabRunnerForEveryProject(t *testing.T) {
	acts, gl, g := assignEnv(t)
	ctx := context.Background()
	acme := gl.AddGroup("acme", 0)
	b1, b2, b3, b4 := gl.AddProject("b1", acme.ID), gl.AddProject("b2", acme.ID), gl.AddProject("b3", acme.ID), gl.AddProject("b4", acme.ID)
	in := CreateGitLabRunnerInput{
		RunnerID: "trio-p1", Egg: "trio", Cloud: fly.CloudLocal, GitLab: g, Description: "gosling/trio/trio-p1", Tags: []string{"docker"},
		Projects: []fly.ProjectRef{{Path: "acme/b1"}, {ID: b2.ID}, {Path: "ACME/B3"}, {Path: "acme/gone"}},
	}
	res, err := acts.CreateGitLabRunner(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, want ...int64) {
		t.Helper()
		r, ok := gl.Runner(res.GitLabRunnerID)
		if !ok || r.Type != "project_type" || r.ProjectID != want[0] || !slices.Equal(r.ProjectIDs, want) || !r.Locked {
			t.Errorf("%s: runner %+v, want project runner in %v, locked", what, r, want)
		}
	}
	check("created", b1.ID, b2.ID, b3.ID)
	if len(gl.Runners()) != 1 {
		t.Fatalf("%d runners", len(gl.Runners()))
	}
	again, err := acts.CreateGitLabRunner(ctx, in)
	if err != nil || again.GitLabRunnerID != res.GitLabRunnerID || len(gl.Runners()) != 1 {
		t.Fatalf("retried create: %+v %v, %d runners", again, err, len(gl.Runners()))
	}
	check("retried", b1.ID, b2.ID, b3.ID)
	ids, err := acts.AssignRunnerProjects(ctx, AssignRunnerProjectsInput{GitLab: g, GitLabRunnerID: res.GitLabRunnerID, Projects: append(in.Projects, fly.ProjectRef{Path: "acme/b4"})})
	if err != nil || !slices.Equal(ids, []int64{b1.ID, b2.ID, b3.ID, b4.ID}) {
		t.Fatalf("assign: %v %v", ids, err)
	}
	check("grown", b1.ID, b2.ID, b3.ID, b4.ID)

	// An egg named by path alone gets a runner in that project.
	solo, err := acts.CreateGitLabRunner(ctx, CreateGitLabRunnerInput{RunnerID: "solo-p1", Egg: "solo", Cloud: fly.CloudLocal, GitLab: g,
		Description: "gosling/solo/solo-p1", Tags: []string{"docker"}, Projects: []fly.ProjectRef{{Path: "acme/b4"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := gl.Runner(solo.GitLabRunnerID); r.ProjectID != b4.ID || !slices.Equal(r.ProjectIDs, []int64{b4.ID}) || !r.Locked {
		t.Errorf("path-only egg's runner: %+v", r)
	}
	// Nothing resolves: refused for good, nothing made.
	_, err = acts.CreateGitLabRunner(ctx, CreateGitLabRunnerInput{RunnerID: "none-p1", Egg: "none", Cloud: fly.CloudLocal, GitLab: g,
		Description: "gosling/none/none-p1", Tags: []string{"docker"}, Projects: []fly.ProjectRef{{Path: "acme/gone"}}})
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || !ae.NonRetryable() {
		t.Errorf("no project resolves: %v, want a non-retryable error", err)
	}
	if len(gl.Runners()) != 2 {
		t.Errorf("%d runners, want 2", len(gl.Runners()))
	}
}
