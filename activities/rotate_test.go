package activities

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// flakyPuts fails the first n writes of its backend.
type flakyPuts struct {
	secretstore.Backend
	mu    sync.Mutex
	fails int
	puts  int
}

func (f *flakyPuts) Put(ctx context.Context, u fly.SecretURI, v string) (string, error) {
	f.mu.Lock()
	f.puts++
	fail := f.puts <= f.fails
	f.mu.Unlock()
	if fail {
		return "", secretstore.ErrThrottled
	}
	return f.Backend.Put(ctx, u, v)
}

func rotateActivityEnv(e *surveyEnv) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(e.acts)
	return env
}

// rotationRunner makes an active runner with a stored token GitLab knows.
func (e *surveyEnv) rotationRunner(t *testing.T, id string) (glID int64, token string) {
	t.Helper()
	e.runner(t, id, store.StateActive, true, false, 0)
	r, err := e.st.GetRunner(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	gr, _ := e.gl.Runner(r.GitLabRunnerID)
	if _, err := e.acts.Secrets.Put(context.Background(), LocalTokenRef(id), gr.Token); err != nil {
		t.Fatal(err)
	}
	return r.GitLabRunnerID, gr.Token
}

func TestRotateListTargets(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	e.runner(t, "web-a", store.StateActive, true, false, 0)
	e.runner(t, "web-b", store.StateDormant, true, false, 0)
	e.runner(t, "web-c", store.StateTerminated, false, false, 0)
	e.runner(t, "web-d", store.StateDraining, true, false, 0)
	if err := e.st.CreateRunner(ctx, &store.Runner{ID: "api-a", Egg: "api", State: store.StateActive}); err != nil {
		t.Fatal(err)
	}
	page, err := e.acts.ListRotationTargets(ctx, RotationTargetsInput{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tg := range page.Targets {
		ids = append(ids, tg.RunnerID)
	}
	if strings.Join(ids, ",") != "api-a,web-a,web-b" || page.Next != "" {
		t.Errorf("targets = %v, next %q", ids, page.Next)
	}
	if _, ok := page.GitLab["api"]; ok || page.GitLab["web"].Host != e.egg.GitLab.Host {
		t.Errorf("GitLab settings = %+v", page.GitLab)
	}
	page, err = e.acts.ListRotationTargets(ctx, RotationTargetsInput{Eggs: []string{"web"}, Limit: 1})
	if err != nil || len(page.Targets) != 1 || page.Targets[0].RunnerID != "web-a" || page.Next != "web-a" {
		t.Fatalf("first page of web = %+v, %v", page, err)
	}
	page, err = e.acts.ListRotationTargets(ctx, RotationTargetsInput{Eggs: []string{"web", "db"}, After: "web-a", Limit: 10})
	if err != nil || len(page.Targets) != 1 || page.Targets[0].RunnerID != "web-b" || page.Targets[0].State != store.StateDormant {
		t.Fatalf("next page = %+v, %v", page, err)
	}
}

// flaky puts the stack's secrets behind a backend whose first n writes fail.
func (e *surveyEnv) flaky(t *testing.T, n int) *flakyPuts {
	t.Helper()
	ctx := context.Background()
	local, err := secretstore.OpenLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []fly.SecretRef{"local://gitlab/token", LocalTokenRef("web-a")} {
		v, err := e.acts.Secrets.Resolve(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := ref.Parse()
		if _, err := local.Put(ctx, u, v); err != nil {
			t.Fatal(err)
		}
	}
	f := &flakyPuts{Backend: local, fails: n}
	e.acts.Secrets.Register(f)
	return f
}

// The reset and the write happen in one activity; a write that fails at
// first is retried within the attempt, and the stored token is GitLab's.
func TestRotateRunnerTokenRetriesTheWrite(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	glID, oldToken := e.rotationRunner(t, "web-a")
	f := e.flaky(t, 2)
	env := rotateActivityEnv(e)
	v, err := env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: "web-a", GitLab: e.egg.GitLab, GitLabRunnerID: glID, States: RotationStates})
	var res RotateTokenResult
	if err != nil || v.Get(&res) != nil || res.Version != "2" || res.Skipped != "" || f.puts != 3 {
		t.Fatalf("rotate: %+v %v after %d writes", res, err, f.puts)
	}
	stored, err := e.acts.Secrets.Resolve(ctx, LocalTokenRef("web-a"))
	if gr, _ := e.gl.Runner(glID); err != nil || stored == oldToken || stored != gr.Token {
		t.Fatalf("stored token is not GitLab's new one (%v)", err)
	}
	for version, want := range map[string]bool{"": true, "2": true, "1": false} {
		v, err := env.ExecuteActivity(e.acts.VerifyRunnerToken, VerifyTokenInput{RunnerID: "web-a", GitLab: e.egg.GitLab, Version: version})
		var vr VerifyTokenResult
		if err != nil || v.Get(&vr) != nil || vr.Valid != want {
			t.Errorf("verify version %q: %+v %v, want valid=%t", version, vr, err, want)
		}
	}
}

// A write that never lands fails the attempt with ErrTypeTokenNotStored,
// for the workflow to retry; the error names the URI, never the token.
func TestRotateRunnerTokenWriteNeverLands(t *testing.T) {
	e := newSurveyEnv(t)
	glID, oldToken := e.rotationRunner(t, "web-a")
	f := e.flaky(t, 1000)
	env := rotateActivityEnv(e)
	_, err := env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: "web-a", GitLab: e.egg.GitLab, GitLabRunnerID: glID, States: RotationStates})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeTokenNotStored || app.NonRetryable() || f.puts != storeAttempts {
		t.Fatalf("err = %v after %d writes", err, f.puts)
	}
	gr, _ := e.gl.Runner(glID)
	if strings.Contains(err.Error(), gr.Token) || strings.Contains(err.Error(), oldToken) || !strings.Contains(err.Error(), string(LocalTokenRef("web-a"))) {
		t.Errorf("error %q names a token, or not the URI", err)
	}
	v, err := env.ExecuteActivity(e.acts.VerifyRunnerToken, VerifyTokenInput{RunnerID: "web-a", GitLab: e.egg.GitLab})
	var vr VerifyTokenResult
	if err != nil || v.Get(&vr) != nil || vr.Valid {
		t.Errorf("the old stored token should be refused now: %+v %v", vr, err)
	}
}

func TestRotateRunnerTokenSkips(t *testing.T) {
	e := newSurveyEnv(t)
	env := rotateActivityEnv(e)
	e.runner(t, "web-gone", store.StateTerminating, true, false, 0)
	v, err := env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: "web-gone", GitLab: e.egg.GitLab, GitLabRunnerID: 1, States: RotationStates})
	var res RotateTokenResult
	if err != nil || v.Get(&res) != nil || !strings.Contains(res.Skipped, "terminating") {
		t.Fatalf("terminating runner: %+v %v", res, err)
	}
	glID, _ := e.rotationRunner(t, "web-deleted")
	e.gl.DeleteRunnerBehindBack(glID)
	v, err = env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: "web-deleted", GitLab: e.egg.GitLab, GitLabRunnerID: glID, States: RotationStates})
	if err != nil || v.Get(&res) != nil || !strings.Contains(res.Skipped, "GitLab no longer knows") {
		t.Fatalf("runner deleted in GitLab: %+v %v", res, err)
	}
}

func TestRotateReloadAgentOutcomes(t *testing.T) {
	e := newSurveyEnv(t)
	env := rotateActivityEnv(e)
	_, err := env.ExecuteActivity(e.acts.ReloadRunnerAgent, ReloadAgentInput{RunnerID: "web-a", Cloud: fly.CloudAWS, Version: "2"})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeBadInput || !app.NonRetryable() {
		t.Errorf("cloud agent: %v", err)
	}
	v, err := env.ExecuteActivity(e.acts.ReloadRunnerAgent, ReloadAgentInput{RunnerID: "web-a", Cloud: fly.CloudLocal, Version: "2"})
	var res ReloadAgentResult
	if err != nil || v.Get(&res) != nil || res.Outcome != AgentGone {
		t.Errorf("no agent process: %+v %v", res, err)
	}
}

func TestRotateAuditRecord(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	works := true
	if err := e.acts.AuditRotation(ctx, RotationAudit{Actor: "alice", Egg: "web", RunnerID: "web-a", Reason: "quarterly",
		Outcome: "rotated", Version: "3", VerifiedBy: "agent", Agent: AgentConfirmed, TokenWorks: &works}); err != nil {
		t.Fatal(err)
	}
	recs, err := e.st.ListAudit(ctx, store.AuditFilter{RunnerID: "web-a"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit = %+v, %v", recs, err)
	}
	r := recs[0]
	if r.Action != AuditActionRotateToken || r.Actor != "alice" || r.Reason != "quarterly" || r.At.IsZero() ||
		string(r.After) != `{"outcome":"rotated","token_version":"3","verified_by":"agent","agent":"confirmed","token_works":true}` {
		t.Errorf("record = %+v (after %s)", r, r.After)
	}
}

// An egg's shared token is reset with no machine in the store (Shared):
// GitLab's new token is stored, its expiry returned; a machine's own token
// is refused as a shared one.
func TestRotateSharedTokenWithoutMachines(t *testing.T) {
	e := newSurveyEnv(t)
	ctx := context.Background()
	env := rotateActivityEnv(e)
	e.gl.SetRunnerTokenExpiration(time.Hour)
	gr := e.gl.AddRunner(gitlabtest.Runner{Description: contract.EggRunnerDescription("web", "k1"), Tags: []string{"docker"}})
	name := contract.EggRunnerSecretName("web", "k1")
	ref := LocalTokenRef(name)
	if _, err := e.acts.Secrets.Put(ctx, ref, gr.Token); err != nil {
		t.Fatal(err)
	}
	v, err := env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: name, GitLab: e.egg.GitLab, GitLabRunnerID: gr.ID, TokenRef: string(ref), Shared: true})
	var res RotateTokenResult
	if err != nil || v.Get(&res) != nil || res.Version != "2" || res.Skipped != "" {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	now, _ := e.gl.Runner(gr.ID)
	stored, err := e.acts.Secrets.Resolve(ctx, ref)
	if err != nil || stored == gr.Token || stored != now.Token {
		t.Fatalf("stored token is not GitLab's new one (%v)", err)
	}
	if res.ExpiresAt == nil || now.TokenExpiresAt == nil || !res.ExpiresAt.Equal(*now.TokenExpiresAt) {
		t.Errorf("expiry %v, GitLab's %v", res.ExpiresAt, now.TokenExpiresAt)
	}
	_, err = env.ExecuteActivity(e.acts.RotateRunnerToken, RotateTokenInput{RunnerID: "web-a", GitLab: e.egg.GitLab, GitLabRunnerID: gr.ID, TokenRef: string(LocalTokenRef("web-a")), Shared: true})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeBadInput {
		t.Errorf("a machine's token reset as shared: %v", err)
	}
}
