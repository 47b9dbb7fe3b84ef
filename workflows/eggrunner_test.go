package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// eggRunnerEnv runs EggRunner with its activities mocked: creation takes
// ten seconds and fails while refuse is set (as GitLab.com refuses past its
// cap); the retire check answers check.
type eggRunnerEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu      sync.Mutex
	calls   []string
	refuse  bool
	check   activities.EggRunnerRetireCheck
	results map[string]contract.EggRunner
	errs    map[string]error
	// life, when set, is how long GitLab lets a created token live;
	// created is when the last one was made.
	life    time.Duration
	created time.Time
}

func newEggRunnerEnv(t *testing.T) *eggRunnerEnv {
	var s testsuite.WorkflowTestSuite
	e := &eggRunnerEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment(), results: map[string]contract.EggRunner{}, errs: map[string]error{}}
	e.RegisterWorkflow(EggRunner)
	var a *activities.Activities
	e.RegisterActivity(a)
	e.OnActivity(a.CreateGitLabRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateGitLabRunnerInput) (activities.CreateGitLabRunnerResult, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls = append(e.calls, "create:"+in.Description)
		if e.refuse {
			return activities.CreateGitLabRunnerResult{}, temporal.NewNonRetryableApplicationError("403 Forbidden: runner creation cap reached", activities.ErrTypeGitLabRejected, nil)
		}
		out := activities.CreateGitLabRunnerResult{GitLabRunnerID: 77, TokenRef: "local://runners/" + in.RunnerID + "/token"}
		if e.life > 0 {
			e.created = e.Now()
			at := e.created.Add(e.life)
			out.TokenExpiresAt = &at
		}
		return out, nil
	}).After(10 * time.Second)
	e.OnActivity(a.CheckEggRunnerRetired, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.EggRunnerInput) (activities.EggRunnerRetireCheck, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls = append(e.calls, "check")
		return e.check, nil
	})
	e.OnActivity(a.DeleteGitLabRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteGitLabRunnerInput) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls = append(e.calls, "delete-runner")
		return nil
	})
	e.OnActivity(a.DeleteRunnerToken, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteRunnerTokenInput) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls = append(e.calls, "delete-token:"+in.TokenRef)
		return nil
	})
	return e
}

// ensureAt sends an ensure update at a time and keeps its outcome by id.
func (e *eggRunnerEnv) ensureAt(t *testing.T, at time.Duration, id string) {
	e.RegisterDelayedCallback(func() {
		e.UpdateWorkflow(contract.UpdateEnsureEggRunner, id, &testsuite.TestUpdateCallback{
			OnAccept: func() {},
			OnReject: func(err error) { t.Errorf("%s rejected: %v", id, err) },
			OnComplete: func(v any, err error) {
				e.mu.Lock()
				defer e.mu.Unlock()
				if err != nil {
					e.errs[id] = err
					return
				}
				e.results[id] = v.(contract.EggRunner)
			},
		})
	}, at)
}

func (e *eggRunnerEnv) callString() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.calls, ",")
}

func eggRunnerIn() contract.EggRunnerInput {
	return contract.EggRunnerInput{
		Egg: "web", GitLab: fly.GitLab{Host: "gitlab.example.com"}, Cloud: fly.CloudLocal, RetireCheck: time.Hour,
		Shape: contract.RunnerShape{Tags: []string{"docker"}, Projects: []fly.ProjectRef{{ID: 7}}, LocalToken: true},
	}
}

// Provisionings asking at once (while the runner is being created) and
// later get the same runner, created once.
func TestEggRunnerCreatesOnce(t *testing.T) {
	e := newEggRunnerEnv(t)
	e.ensureAt(t, time.Second, "a")
	e.ensureAt(t, 2*time.Second, "b")
	e.ensureAt(t, time.Minute, "c")
	e.RegisterDelayedCallback(func() { e.CancelWorkflow() }, 10*time.Minute)
	e.ExecuteWorkflow(EggRunner, eggRunnerIn())
	key := eggRunnerIn().Shape.Key()
	if got, want := e.callString(), "create:"+contract.EggRunnerDescription("web", key); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	want := contract.EggRunner{GitLabRunnerID: 77, TokenRef: "local://runners/" + contract.EggRunnerSecretName("web", key) + "/token", ShapeKey: key}
	for _, id := range []string{"a", "b", "c"} {
		got := e.results[id]
		if got.TokenIssuedAt.IsZero() || got.TokenExpiresAt != nil {
			t.Errorf("%s: token issued %s, expires %v; want issued at its creation, never expiring", id, got.TokenIssuedAt, got.TokenExpiresAt)
		}
		got.TokenIssuedAt = time.Time{}
		if got != want || e.errs[id] != nil {
			t.Errorf("%s: %+v, %v; want %+v", id, e.results[id], e.errs[id], want)
		}
	}
	if !contract.IsEggRunnerToken(want.TokenRef) || contract.IsEggRunnerToken("local://runners/web-p1/token") {
		t.Error("IsEggRunnerToken does not tell the shared token from a machine's")
	}
}

// A refused creation (GitLab.com's cap) fails every call that waited for
// it, non-retryably; a later call tries again.
func TestEggRunnerRefusedCreation(t *testing.T) {
	e := newEggRunnerEnv(t)
	e.refuse = true
	e.ensureAt(t, time.Second, "a")
	e.ensureAt(t, 2*time.Second, "b")
	e.RegisterDelayedCallback(func() {
		e.mu.Lock()
		e.refuse = false
		e.mu.Unlock()
	}, time.Minute)
	e.ensureAt(t, 2*time.Minute, "c")
	e.RegisterDelayedCallback(func() { e.CancelWorkflow() }, 10*time.Minute)
	e.ExecuteWorkflow(EggRunner, eggRunnerIn())
	for _, id := range []string{"a", "b"} {
		var app *temporal.ApplicationError
		err := e.errs[id]
		if err == nil || !strings.Contains(err.Error(), "cap reached") {
			t.Errorf("%s: error %v", id, err)
		} else if !errors.As(err, &app) || !app.NonRetryable() {
			t.Errorf("%s: %v is retryable", id, err)
		}
	}
	if e.results["c"].GitLabRunnerID != 77 {
		t.Errorf("c: %+v, %v", e.results["c"], e.errs["c"])
	}
	if got := strings.Count(e.callString(), "create:"); got != 2 {
		t.Errorf("%d creations, want 2 (one refused, one later): %s", got, e.callString())
	}
}

// The runner is kept while its shape is the egg's or machines are on it,
// and deleted (runner, then token) once neither holds.
func TestEggRunnerRetires(t *testing.T) {
	e := newEggRunnerEnv(t)
	e.check = activities.EggRunnerRetireCheck{Superseded: true, Machines: 2}
	e.ensureAt(t, time.Second, "a")
	e.RegisterDelayedCallback(func() {
		e.mu.Lock()
		e.check.Machines = 0
		e.mu.Unlock()
	}, 90*time.Minute)
	e.ExecuteWorkflow(EggRunner, eggRunnerIn())
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	key := eggRunnerIn().Shape.Key()
	want := "create:" + contract.EggRunnerDescription("web", key) + ",check,check,delete-runner,delete-token:local://runners/" + contract.EggRunnerSecretName("web", key) + "/token"
	if got := e.callString(); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

// Equal shapes have equal keys whatever the order of their tags; any
// field GitLab fixes per runner changes the key.
func TestRunnerShapeKey(t *testing.T) {
	base := contract.RunnerShape{Tags: []string{"a", "b"}, Projects: []fly.ProjectRef{{ID: 7}}}
	same := contract.RunnerShape{Tags: []string{"b", "a"}, Projects: []fly.ProjectRef{{ID: 7}}}
	if base.Key() != same.Key() {
		t.Error("tag order changed the key")
	}
	for name, s := range map[string]contract.RunnerShape{
		"tags":         {Tags: []string{"a"}, Projects: base.Projects},
		"run_untagged": {Tags: base.Tags, Projects: base.Projects, RunUntagged: true},
		"timeout":      {Tags: base.Tags, Projects: base.Projects, MaximumTimeout: time.Hour},
		"group":        {Tags: base.Tags, GroupID: 3},
		"projects":     {Tags: base.Tags, Projects: []fly.ProjectRef{{ID: 7}, {ID: 8}}},
		"token home":   {Tags: base.Tags, Projects: base.Projects, LocalToken: true},
	} {
		if s.Key() == base.Key() {
			t.Errorf("%s: same key", name)
		}
	}
}

// A runner token GitLab lets expire (15 days here) is rotated once two
// thirds of its life have passed: the EggRunner starts RotateRunnerTokens
// of its egg, takes the new expiry from its result and rotates that token
// in turn; a rotation that did not reset the token is tried again after
// contract.TokenRotationRetry. RotateAhead sets the lead instead.
func TestEggRunnerRotatesExpiringToken(t *testing.T) {
	const life = 15 * 24 * time.Hour
	for _, tc := range []struct {
		name  string
		ahead time.Duration
		// want are the rotations' times, from the token's creation.
		want []time.Duration
	}{
		{"a third of its life", 0, []time.Duration{10 * 24 * time.Hour, 10*24*time.Hour + contract.TokenRotationRetry, 20*24*time.Hour + contract.TokenRotationRetry}},
		{"RotateAhead", 2 * 24 * time.Hour, []time.Duration{13 * 24 * time.Hour, 13*24*time.Hour + contract.TokenRotationRetry, 26*24*time.Hour + contract.TokenRotationRetry}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEggRunnerEnv(t)
			e.life = life
			var rotations []time.Duration
			var inputs []contract.RotateRunnerTokensInput
			e.RegisterWorkflowWithOptions(func(ctx workflow.Context, in contract.RotateRunnerTokensInput) (contract.RotateRunnerTokensResult, error) {
				rotations = append(rotations, workflow.Now(ctx).Sub(e.created).Round(time.Minute))
				inputs = append(inputs, in)
				if len(rotations) == 1 {
					return contract.RotateRunnerTokensResult{}, nil // another rotation held the token
				}
				at := workflow.Now(ctx).Add(life)
				ref := "local://runners/" + contract.EggRunnerSecretName("web", eggRunnerIn().Shape.Key()) + "/token"
				return contract.RotateRunnerTokensResult{SharedTokens: []contract.SharedTokenReset{
					{TokenRef: "local://runners/other/token", Version: "9"}, {TokenRef: ref, Version: "2", ExpiresAt: &at},
				}}, nil
			}, workflow.RegisterOptions{Name: contract.WorkflowRotateRunnerTokens})
			e.ensureAt(t, time.Second, "a")
			in := eggRunnerIn()
			in.RotateAhead = tc.ahead
			e.RegisterDelayedCallback(func() { e.CancelWorkflow() }, tc.want[len(tc.want)-1]+time.Hour)
			e.ExecuteWorkflow(EggRunner, in)
			if len(rotations) != len(tc.want) {
				t.Fatalf("rotations at %v, want %v", rotations, tc.want)
			}
			for i := range tc.want {
				if d := rotations[i] - tc.want[i]; d < -time.Minute || d > time.Minute {
					t.Errorf("rotation %d at %s, want %s", i, rotations[i], tc.want[i])
				}
				if in := inputs[i]; len(in.Eggs) != 1 || in.Eggs[0] != "web" || in.Actor != contract.ActorMotherGoose || !strings.Contains(in.Reason, "expires at") {
					t.Errorf("rotation %d input %+v", i, in)
				}
			}
			var st contract.EggRunnerStatus
			v, err := e.QueryWorkflow(contract.QueryEggRunner)
			if err == nil {
				err = v.Get(&st)
			}
			if err != nil || st.Runner == nil || st.Runner.TokenExpiresAt == nil || !st.Runner.TokenExpiresAt.After(e.created.Add(2*life)) {
				t.Errorf("status %+v, %v: want the last rotation's expiry", st.Runner, err)
			}
		})
	}
}
