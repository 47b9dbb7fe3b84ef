package cli

import (
	"errors"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// gosling dev gives the Nest project the .gitlab-ci.yml custom jobs run,
// with the job's tags, and keeps one that is there.
func TestDevNestCIConfig(t *testing.T) {
	gl := gitlabtest.New()
	defer gl.Close()
	n := &fly.Nest{
		Jobs: []fly.Job{
			{Name: "rotate", Kind: fly.JobSecretRotation},
			{Name: "prune", Kind: fly.JobCustom, Runner: fly.JobRunner{Tags: []string{"gosling-admin", "linux"}}},
		},
		MotherGoose: fly.MotherGoose{Nest: fly.NestSource{Project: "platform/nest", Host: "gitlab.com", Token: "vault://ci/nest"}},
	}
	// The Nest repository is read on the test server with the eggs' token.
	if d := devNest(n, "127.0.0.1:8929", true, t.TempDir()); d.MotherGoose.Nest.Host != "" || !d.MotherGoose.Nest.Token.IsZero() || d.MotherGoose.Nest.Project != "platform/nest" {
		t.Errorf("dev Nest source: %+v", d.MotherGoose.Nest)
	}
	loadTestProjects(gl, n)
	p, ok := gl.ProjectByPath("platform/nest")
	if !ok {
		t.Fatal("no Nest project")
	}
	b, ok := gl.File(p.ID, "", gitlabtest.CIConfigPath)
	if !ok {
		t.Fatal("no .gitlab-ci.yml in the Nest project")
	}
	cfg, err := gitlabtest.ParseCIConfig(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(cfg.Jobs) != 1 || cfg.Jobs[0].Name != "gosling-job" || len(cfg.Jobs[0].Tags) != 2 || cfg.Jobs[0].Tags[0] != "gosling-admin" ||
		len(cfg.Jobs[0].Script) != 1 || cfg.Jobs[0].Script[0] != `eval "$GOSLING_JOB_SCRIPT"` ||
		len(cfg.Jobs[0].Rules) != 1 || cfg.Jobs[0].Rules[0].If != "$GOSLING_JOB" {
		t.Errorf("the Nest's CI config: %+v", cfg.Jobs)
	}
	// A push, or any pipeline without GOSLING_JOB, gets no stray job.
	if _, err := gl.CreatePipelineFromCIConfig(p.ID, "main", nil); !errors.Is(err, gitlabtest.ErrFilteredByRules) {
		t.Errorf("a pipeline without GOSLING_JOB: %v", err)
	}
	if _, err := gl.CreatePipelineFromCIConfig(p.ID, "main", []gitlabtest.Variable{{Key: "GOSLING_JOB", Value: "prune"}}); err != nil {
		t.Errorf("a custom job's pipeline: %v", err)
	}

	gl.PutFile(p.ID, gitlabtest.CIConfigPath, []byte("own:\n  script: [echo mine]\n"))
	loadTestProjects(gl, n)
	if b, _ := gl.File(p.ID, "", gitlabtest.CIConfigPath); string(b) != "own:\n  script: [echo mine]\n" {
		t.Errorf("a Nest's own .gitlab-ci.yml was replaced: %s", b)
	}
}
