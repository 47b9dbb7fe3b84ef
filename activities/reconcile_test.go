package activities

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"encoding/json"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
)

func TestParseRunnerDescription(t *testing.T) {
	for in, want := range map[string]string{
		"gosling/web/web-p3":         "web web-p3",
		"gosling/web/web-3f2a9c01de": "web web-3f2a9c01de",
		"gosling/web/":               "",
		"gosling//web-p3":            "",
		"gosling/web/a/b":            "",
		"my laptop runner":           "",
		"gosling/web":                "",
	} {
		egg, id, ok := ParseRunnerDescription(in)
		got := ""
		if ok {
			got = egg + " " + id
		}
		if got != want {
			t.Errorf("ParseRunnerDescription(%q) = %q, want %q", in, got, want)
		}
	}
}

// surveyEnv is a store, a GitLab test server and a state directory, with
// the activities over them (no Temporal, no OpenTofu runs).
type surveyEnv struct {
	acts *Activities
	gl   *gitlabtest.Server
	st   store.Store
	egg  fly.Egg
	proj int64
}

func newSurveyEnv(t *testing.T) *surveyEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	p := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	local, err := secretstore.OpenLocal(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	if _, err := res.Put(ctx, "local://gitlab/token", gl.Token()); err != nil {
		t.Fatal(err)
	}
	ex, err := tofu.New("/bin/true", filepath.Join(dir, "tofu"))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(gl.URL(), "http://")
	egg := fly.Egg{Name: "web", GitLab: fly.GitLab{Host: host, Insecure: true, Token: "local://gitlab/token"}, Apex: fly.Pool{Min: 1}}
	spec, _ := json.Marshal(egg)
	if err := st.PutEggConfig(ctx, store.EggConfig{Name: "web", Version: "v1", Spec: spec, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	acts := &Activities{Store: st, Secrets: res, Tofu: ex, TokenRef: LocalTokenRef,
		GitLabOptions: []gitlab.Option{gitlab.WithRetry(1, time.Millisecond, 10*time.Millisecond)}}
	return &surveyEnv{acts: acts, gl: gl, st: st, egg: egg, proj: p.ID}
}

// runner makes a runner as far as asked: a store row in a state, a GitLab
// runner, a workspace.
func (e *surveyEnv) runner(t *testing.T, id string, state store.RunnerState, withGitLab, withWorkspace bool, age time.Duration) {
	t.Helper()
	var glID int64
	if withGitLab {
		glID = e.gl.AddRunner(gitlabtest.Runner{ProjectID: e.proj, Description: "gosling/web/" + id}).ID
	}
	if state != "" {
		at := time.Now().Add(-age)
		r := &store.Runner{ID: id, Egg: "web", Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: state, GitLabRunnerID: glID, CreatedAt: at, UpdatedAt: at}
		if err := e.st.CreateRunner(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if withWorkspace {
		if err := os.MkdirAll(e.acts.Tofu.WorkspaceDir(id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSurveyRunners(t *testing.T) {
	e := newSurveyEnv(t)
	e.runner(t, "web-ok", store.StateActive, true, true, time.Hour)
	e.runner(t, "web-nomachine", store.StateActive, true, false, time.Hour)
	e.runner(t, "web-nogitlab", store.StateDormant, false, true, time.Hour)
	e.runner(t, "web-nothing", store.StateActive, false, false, time.Hour)
	e.runner(t, "web-failed-nothing", store.StateFailed, false, false, time.Hour)
	e.runner(t, "web-failed-both", store.StateFailed, true, true, time.Hour)
	e.runner(t, "web-making", store.StateProvisioning, true, false, time.Minute)
	e.runner(t, "web-registering", store.StateRegistering, true, true, time.Minute)
	e.runner(t, "web-leaving", store.StateTerminating, true, false, time.Minute)
	e.runner(t, "web-stuck", store.StateTerminating, true, true, 2*StuckAfter)
	e.runner(t, "web-stray", "", false, true, 0)
	e.runner(t, "web-ghost", "", true, false, 0)
	// A terminated runner whose GitLab runner survived.
	e.runner(t, "web-done", store.StateFailed, true, false, time.Hour)
	if _, err := e.st.Transition(context.Background(), store.TransitionRequest{RunnerID: "web-done", To: store.StateTerminated, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	// Not Gosling's, and another egg on the same GitLab: left alone.
	e.gl.AddRunner(gitlabtest.Runner{ProjectID: e.proj, Description: "someone's laptop"})
	e.gl.AddRunner(gitlabtest.Runner{ProjectID: e.proj, Description: "gosling/other/other-p1"})

	sv, err := e.acts.SurveyRunners(context.Background(), SurveyInput{PageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range sv.Findings {
		got = append(got, f.RunnerID+":"+f.Kind)
	}
	want := "web-done:unowned web-failed-nothing:row-orphan web-ghost:unowned web-nogitlab:gitlab-gone web-nomachine:machine-gone web-nothing:row-orphan web-stray:unowned web-stuck:stuck"
	if strings.Join(got, " ") != want {
		t.Errorf("findings = %s\nwant       %s", strings.Join(got, " "), want)
	}
	if len(sv.Unreachable) != 0 {
		t.Errorf("unreachable = %v", sv.Unreachable)
	}
}

// A GitLab that cannot be listed proves nothing gone.
func TestSurveyUnreachableGitLab(t *testing.T) {
	e := newSurveyEnv(t)
	e.runner(t, "web-nogitlab", store.StateActive, false, true, time.Hour)
	e.runner(t, "web-stray", "", false, true, 0)
	e.gl.Close()
	sv, err := e.acts.SurveyRunners(context.Background(), SurveyInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sv.Unreachable) != 1 || len(sv.Findings) != 1 || sv.Findings[0].RunnerID != "web-stray" {
		t.Errorf("survey = %+v", sv)
	}
}

// A runner that picked up a job is unpaused again and reported busy,
// unless forced.
func TestPauseForRetire(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	idle := e.gl.AddRunner(gitlabtest.Runner{ProjectID: e.proj, Description: "gosling/web/web-idle"})
	busy := e.gl.AddRunner(gitlabtest.Runner{ProjectID: e.proj, Description: "gosling/web/web-busy"})
	job := e.gl.AddJob(e.proj, gitlabtest.JobSpec{Name: "build", Stage: "test", Ref: "main", Status: "pending"})
	e.gl.SetJobStatus(e.proj, job.ID, "running", busy.ID)

	chk, err := e.acts.PauseForRetire(ctx, RetireCheckInput{GitLab: e.egg.GitLab, GitLabRunnerID: idle.ID})
	if err != nil || chk.Busy {
		t.Fatalf("idle: %+v %v", chk, err)
	}
	if r, _ := e.gl.Runner(idle.ID); !r.Paused {
		t.Error("idle runner left unpaused")
	}
	chk, err = e.acts.PauseForRetire(ctx, RetireCheckInput{GitLab: e.egg.GitLab, GitLabRunnerID: busy.ID})
	if err != nil || !chk.Busy {
		t.Fatalf("busy: %+v %v", chk, err)
	}
	if r, _ := e.gl.Runner(busy.ID); r.Paused {
		t.Error("busy runner left paused")
	}
	chk, err = e.acts.PauseForRetire(ctx, RetireCheckInput{GitLab: e.egg.GitLab, GitLabRunnerID: busy.ID, Force: true})
	if err != nil || chk.Busy {
		t.Fatalf("forced: %+v %v", chk, err)
	}
	chk, err = e.acts.PauseForRetire(ctx, RetireCheckInput{GitLab: e.egg.GitLab, GitLabRunnerID: 999999})
	if err != nil || !chk.Gone {
		t.Fatalf("unknown runner: %+v %v", chk, err)
	}
}
