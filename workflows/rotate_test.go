package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// rotateFake plays the store, GitLab, the secret backend and the agents of
// a rotation: per runner, what each step answers.
type rotateFake struct {
	targets []activities.RotationTarget
	// shared are the eggs' shared runners their EggRunner workflows hold.
	shared  []activities.SharedRunnerTarget
	gitlab  map[string]fly.GitLab
	listErr error
	// reset answers attempt n (from 1) of RotateRunnerToken; nil: success.
	reset func(runnerID string, attempt int) (activities.RotateTokenResult, error)
	// reload answers ReloadRunnerAgent; nil: confirmed.
	reload func(runnerID string) (activities.ReloadAgentResult, error)
	// valid says whether GitLab accepts a stored version ("" the current).
	valid    func(runnerID, version string) bool
	auditErr error
	// during, when set, arranges callbacks (signals) in the test environment.
	during func(e *testsuite.TestWorkflowEnvironment)

	mu        sync.Mutex
	calls     []string
	attempts  map[string]int
	resets    []activities.RotateTokenInput
	audits    []activities.RotationAudit
	inFlight  int
	maxFlight int
}

func (f *rotateFake) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *rotateFake) callsOf(runnerID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if step, id, ok := strings.Cut(c, ":"); ok && id == runnerID {
			out = append(out, step)
		}
	}
	return strings.Join(out, ",")
}

func localTarget(id string, state store.RunnerState) activities.RotationTarget {
	return activities.RotationTarget{RunnerID: id, Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: state,
		GitLabRunnerID: 100, TokenRef: "local://runners/" + id + "/token"}
}

func runRotate(t *testing.T, f *rotateFake, in contract.RotateRunnerTokensInput) (contract.RotateRunnerTokensResult, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflow(RotateRunnerTokens)
	var a *activities.Activities
	e.RegisterActivity(a)
	if f.gitlab == nil {
		f.gitlab = map[string]fly.GitLab{"web": {Host: "gitlab.example.com", Token: "local://gitlab/token"}}
	}
	f.attempts = map[string]int{}
	e.OnActivity(a.ListRotationTargets, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RotationTargetsInput) (activities.RotationTargets, error) {
		if f.listErr != nil {
			return activities.RotationTargets{}, f.listErr
		}
		out := activities.RotationTargets{GitLab: map[string]fly.GitLab{}}
		for _, tg := range f.targets {
			if tg.RunnerID <= in.After || (len(in.Eggs) > 0 && !slices.Contains(in.Eggs, tg.Egg)) {
				continue
			}
			if len(out.Targets) == in.Limit {
				out.Next = out.Targets[len(out.Targets)-1].RunnerID
				break
			}
			out.Targets = append(out.Targets, tg)
			if g, ok := f.gitlab[tg.Egg]; ok {
				out.GitLab[tg.Egg] = g
			}
		}
		return out, nil
	})
	e.OnActivity(a.ListSharedRunners, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.SharedRunnersInput) (activities.SharedRunners, error) {
		out := activities.SharedRunners{Runners: []activities.SharedRunnerTarget{}}
		for _, r := range f.shared {
			if len(in.Eggs) == 0 || slices.Contains(in.Eggs, r.Egg) {
				out.Runners = append(out.Runners, r)
			}
		}
		return out, nil
	})
	e.OnActivity(a.RotateRunnerToken, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RotateTokenInput) (activities.RotateTokenResult, error) {
		f.call("reset:" + in.RunnerID)
		f.mu.Lock()
		f.attempts[in.RunnerID]++
		n := f.attempts[in.RunnerID]
		f.resets = append(f.resets, in)
		f.inFlight++
		f.maxFlight = max(f.maxFlight, f.inFlight)
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.inFlight--
			f.mu.Unlock()
		}()
		time.Sleep(5 * time.Millisecond) // let the other workers' calls overlap
		if f.reset != nil {
			return f.reset(in.RunnerID, n)
		}
		return activities.RotateTokenResult{Version: "2"}, nil
	})
	e.OnActivity(a.ReloadRunnerAgent, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ReloadAgentInput) (activities.ReloadAgentResult, error) {
		f.call("reload:" + in.RunnerID)
		if f.reload != nil {
			return f.reload(in.RunnerID)
		}
		return activities.ReloadAgentResult{Outcome: activities.AgentConfirmed, Version: in.Version}, nil
	})
	e.OnActivity(a.VerifyRunnerToken, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.VerifyTokenInput) (activities.VerifyTokenResult, error) {
		f.call("verify" + in.Version + ":" + in.RunnerID)
		if f.valid != nil {
			return activities.VerifyTokenResult{Valid: f.valid(in.RunnerID, in.Version)}, nil
		}
		return activities.VerifyTokenResult{Valid: true}, nil
	})
	e.OnActivity(a.AuditRotation, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RotationAudit) error {
		f.call("audit:" + in.RunnerID)
		if f.auditErr != nil {
			return f.auditErr
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.audits = append(f.audits, in)
		return nil
	})
	if f.during != nil {
		f.during(e)
	}
	e.ExecuteWorkflow(RotateRunnerTokens, in)
	if !e.IsWorkflowCompleted() {
		t.Fatal("workflow did not complete")
	}
	var res contract.RotateRunnerTokensResult
	err := e.GetWorkflowError()
	if err == nil {
		if gerr := e.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, err
}

func byRunner(res contract.RotateRunnerTokensResult) map[string]contract.RunnerRotation {
	out := map[string]contract.RunnerRotation{}
	for _, r := range res.Runners {
		out[r.RunnerID] = r
	}
	return out
}

func works(r contract.RunnerRotation) string {
	if r.TokenWorks == nil {
		return "unknown"
	}
	if *r.TokenWorks {
		return "works"
	}
	return "broken"
}

// Every runner in service gets an outcome: local agents confirm, dormant
// ones are checked by the worker, runners whose agent cannot be told keep
// their token, and every runner has an audit record.
func TestRotateRunnerTokensOutcomes(t *testing.T) {
	cloudVM := func(id string, state store.RunnerState) activities.RotationTarget {
		return activities.RotationTarget{RunnerID: id, Egg: "web", Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: state, GitLabRunnerID: 7, TokenRef: "aws-sm://runners/" + id + "/token"}
	}
	f := &rotateFake{
		targets: []activities.RotationTarget{
			localTarget("a-active", store.StateActive),
			localTarget("b-dormant", store.StateDormant),
			cloudVM("c-aws-active", store.StateActive),
			cloudVM("d-aws-dormant", store.StateDormant),
			{RunnerID: "e-aws-serverless", Egg: "web", Cloud: fly.CloudAWS, Kind: fly.RunnerServerless, State: store.StateActive, GitLabRunnerID: 8},
			{RunnerID: "f-orphan", Egg: "gone", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateActive, GitLabRunnerID: 9},
			{RunnerID: "g-unregistered", Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateActive},
		},
		reload: func(id string) (activities.ReloadAgentResult, error) {
			if id == "b-dormant" {
				return activities.ReloadAgentResult{Outcome: activities.AgentDeferred}, nil
			}
			return activities.ReloadAgentResult{Outcome: activities.AgentConfirmed, Version: "2"}, nil
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{Actor: "alice", Reason: "quarterly", PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rotated != 3 || res.Failed != 1 || res.Skipped != 3 || len(res.Runners) != 7 {
		t.Fatalf("result = %+v", res)
	}
	for i, r := range res.Runners {
		if r.RunnerID != f.targets[i].RunnerID {
			t.Errorf("runner %d is %s, want the store's order", i, r.RunnerID)
		}
	}
	got := byRunner(res)
	for id, want := range map[string]string{
		"a-active":         "rotated agent confirmed works 2",
		"b-dormant":        "rotated gitlab deferred works 2",
		"c-aws-active":     "failed gitlab unconfirmed works 2",
		"d-aws-dormant":    "rotated gitlab deferred works 2",
		"e-aws-serverless": "skipped   unknown ",
		"f-orphan":         "skipped   unknown ",
		"g-unregistered":   "skipped   unknown ",
	} {
		r := got[id]
		if s := strings.Join([]string{r.Outcome, r.VerifiedBy, r.Agent, works(r), r.TokenVersion}, " "); s != want {
			t.Errorf("%s: %s, want %s (%s)", id, s, want, r.Detail)
		}
	}
	for id, want := range map[string]string{
		"a-active":      "reset,reload,audit",
		"b-dormant":     "reset,reload,verify2,audit",
		"c-aws-active":  "reset,verify2,audit",
		"d-aws-dormant": "reset,verify2,audit",
	} {
		if c := f.callsOf(id); c != want {
			t.Errorf("%s: calls %s, want %s", id, c, want)
		}
	}
	if !strings.Contains(got["c-aws-active"].Detail, "did not confirm") || !strings.Contains(got["f-orphan"].Detail, "no stored configuration") {
		t.Errorf("skip details: %q, %q", got["c-aws-active"].Detail, got["f-orphan"].Detail)
	}
	for _, in := range f.resets {
		want := activities.RotationStates
		switch in.RunnerID {
		case "d-aws-dormant":
			want = []store.RunnerState{store.StateDormant}
		case "c-aws-active":
			want = []store.RunnerState{store.StateActive}
		}
		if !slices.Equal(in.States, want) || in.GitLab.Host != "gitlab.example.com" || in.TokenRef == "" {
			t.Errorf("reset input = %+v", in)
		}
	}
	if len(f.audits) != 7 {
		t.Fatalf("%d audit records, want 7", len(f.audits))
	}
	for _, a := range f.audits {
		if a.Actor != "alice" || a.Reason != "quarterly" || a.Outcome != got[a.RunnerID].Outcome {
			t.Errorf("audit = %+v", a)
		}
	}
}

// A reset GitLab never answers leaves the old token, and says so.
func TestRotateRunnerTokensResetFails(t *testing.T) {
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive)},
		reset: func(string, int) (activities.RotateTokenResult, error) {
			return activities.RotateTokenResult{}, errors.New("reset token of runner 100: 502 Bad Gateway")
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runners[0]
	if r.Outcome != contract.RotationFailed || works(r) != "works" || !strings.Contains(r.Detail, "502 Bad Gateway") || !strings.Contains(r.Detail, "still works") {
		t.Fatalf("outcome = %+v", r)
	}
	if strings.Contains(r.Detail, "scheduledEventID") {
		t.Errorf("detail carries the SDK's wrapping: %s", r.Detail)
	}
	if f.attempts["r1"] < 2 {
		t.Errorf("%d reset attempts, want retries", f.attempts["r1"])
	}
	if c := f.callsOf("r1"); strings.Contains(c, "reload") || !strings.HasSuffix(c, "verify,audit") {
		t.Errorf("calls %s", c)
	}
	if len(f.audits) != 1 || f.audits[0].Outcome != contract.RotationFailed || f.audits[0].Actor != contract.ActorMotherGoose {
		t.Errorf("audits = %+v", f.audits)
	}
}

// A token reset whose write never lands leaves the runner without a
// working token: the outcome and the audit record say so plainly.
func TestRotateRunnerTokensWriteNeverLands(t *testing.T) {
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive), localTarget("r2", store.StateActive)},
		reset: func(id string, _ int) (activities.RotateTokenResult, error) {
			if id == "r2" {
				return activities.RotateTokenResult{Version: "5"}, nil
			}
			return activities.RotateTokenResult{}, temporal.NewApplicationError("GitLab reset the token of runner r1 but writing the new one failed", activities.ErrTypeTokenNotStored)
		},
		valid: func(id, version string) bool { return id != "r1" },
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	got := byRunner(res)
	r := got["r1"]
	if r.Outcome != contract.RotationFailed || works(r) != "broken" || !strings.Contains(r.Detail, "no working token") || r.TokenVersion != "" {
		t.Fatalf("r1 = %+v", r)
	}
	if f.attempts["r1"] != 10 {
		t.Errorf("%d attempts to store r1's token, want the retry policy's 10", f.attempts["r1"])
	}
	if got["r2"].Outcome != contract.RotationRotated || res.Rotated != 1 || res.Failed != 1 {
		t.Errorf("result = %+v", res)
	}
	for _, a := range f.audits {
		if a.RunnerID == "r1" && (a.Outcome != contract.RotationFailed || a.TokenWorks == nil || *a.TokenWorks || !strings.Contains(a.Detail, "no working token")) {
			t.Errorf("r1 audit = %+v", a)
		}
	}
}

// A write that fails at first is retried until it lands.
func TestRotateRunnerTokensWriteLandsOnRetry(t *testing.T) {
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive)},
		reset: func(_ string, attempt int) (activities.RotateTokenResult, error) {
			if attempt < 3 {
				return activities.RotateTokenResult{}, temporal.NewApplicationError("not stored", activities.ErrTypeTokenNotStored)
			}
			return activities.RotateTokenResult{Version: "4"}, nil
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Runners[0]; r.Outcome != contract.RotationRotated || r.TokenVersion != "4" || r.VerifiedBy != contract.VerifiedByAgent || f.attempts["r1"] != 3 {
		t.Fatalf("outcome = %+v after %d attempts", r, f.attempts["r1"])
	}
}

// An agent that never confirms fails the runner even though the stored
// token works: the live runner may still hold the old one.
func TestRotateRunnerTokensAgentSilent(t *testing.T) {
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive)},
		reload: func(string) (activities.ReloadAgentResult, error) {
			return activities.ReloadAgentResult{}, errors.New("the agent of runner r1 did not confirm version 2 within 45s")
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Runners[0]
	if r.Outcome != contract.RotationFailed || r.Agent != "unconfirmed" || works(r) != "works" || r.TokenVersion != "2" || !strings.Contains(r.Detail, "did not confirm") {
		t.Fatalf("outcome = %+v", r)
	}
	if c := f.callsOf("r1"); c != "reset,reload,reload,reload,verify2,audit" {
		t.Errorf("calls %s", c)
	}
}

// A stored version GitLab refuses (another reset got in between) is a
// failure without a working token.
func TestRotateRunnerTokensStoredVersionRefused(t *testing.T) {
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive)},
		reload: func(string) (activities.ReloadAgentResult, error) {
			return activities.ReloadAgentResult{Outcome: activities.AgentGone}, nil
		},
		valid: func(string, string) bool { return false },
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Runners[0]; r.Outcome != contract.RotationFailed || works(r) != "broken" || r.Agent != activities.AgentGone {
		t.Fatalf("outcome = %+v", r)
	}
}

// A runner that left service or GitLab meanwhile is skipped; an egg filter
// reaches the store read.
func TestRotateRunnerTokensSkippedByActivityAndFilter(t *testing.T) {
	other := localTarget("z-other", store.StateActive)
	other.Egg = "api"
	f := &rotateFake{
		targets: []activities.RotationTarget{localTarget("r1", store.StateActive), other},
		reset: func(string, int) (activities.RotateTokenResult, error) {
			return activities.RotateTokenResult{Skipped: "GitLab no longer knows runner 100"}, nil
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{Eggs: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runners) != 1 || res.Runners[0].Outcome != contract.RotationSkipped || res.Runners[0].Detail != "GitLab no longer knows runner 100" {
		t.Fatalf("result = %+v", res)
	}
	if c := f.callsOf("r1"); c != "reset,audit" {
		t.Errorf("calls %s", c)
	}
}

// Runners are rotated a few at a time, never more.
func TestRotateRunnerTokensBoundedParallelism(t *testing.T) {
	f := &rotateFake{}
	for _, id := range []string{"r01", "r02", "r03", "r04", "r05", "r06", "r07", "r08", "r09", "r10"} {
		f.targets = append(f.targets, localTarget(id, store.StateActive))
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rotated != 10 || len(f.audits) != 10 {
		t.Fatalf("result = %+v, %d audits", res, len(f.audits))
	}
	if f.maxFlight > contract.DefaultRotateParallelism {
		t.Errorf("%d resets at once, want at most %d", f.maxFlight, contract.DefaultRotateParallelism)
	}
}

// A store that cannot be read fails the workflow before anything changes;
// an audit record that cannot be written is noted in the outcome.
func TestRotateRunnerTokensStoreFailures(t *testing.T) {
	f := &rotateFake{listErr: temporal.NewNonRetryableApplicationError("database is closed", activities.ErrTypeBadInput, nil)}
	if _, err := runRotate(t, f, contract.RotateRunnerTokensInput{}); err == nil || !strings.Contains(err.Error(), "database is closed") {
		t.Fatalf("err = %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("calls %v", f.calls)
	}

	f = &rotateFake{
		targets:  []activities.RotationTarget{localTarget("r1", store.StateActive)},
		auditErr: temporal.NewNonRetryableApplicationError("audit log is full", activities.ErrTypeBadInput, nil),
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Runners[0]; r.Outcome != contract.RotationRotated || !strings.Contains(r.Detail, "audit record not written: audit log is full") {
		t.Fatalf("outcome = %+v", r)
	}
}

// A running cloud VM's agent picks up its new token through its heartbeat:
// MotherGoose signals the rotation when a beat proves the agent holds the
// new version, and only that version's confirmation counts.
func TestRotateRunnerTokensCloudVMConfirmsThroughHeartbeat(t *testing.T) {
	vm := func(id string) activities.RotationTarget {
		return activities.RotationTarget{RunnerID: id, Egg: "web", Cloud: fly.CloudYandex, Kind: fly.RunnerVM, State: store.StateActive, GitLabRunnerID: 7, TokenRef: "vault://runners/" + id + "/token"}
	}
	f := &rotateFake{targets: []activities.RotationTarget{vm("vm-a"), vm("vm-b")}}
	f.during = func(e *testsuite.TestWorkflowEnvironment) {
		e.RegisterDelayedCallback(func() {
			e.SignalWorkflow(contract.SignalTokenConfirmed, contract.TokenConfirmed{RunnerID: "vm-a", Version: "1"}) // an old version
			e.SignalWorkflow(contract.SignalTokenConfirmed, contract.TokenConfirmed{RunnerID: "vm-b", Version: "2"})
		}, time.Minute)
		e.RegisterDelayedCallback(func() {
			e.SignalWorkflow(contract.SignalTokenConfirmed, contract.TokenConfirmed{RunnerID: "vm-a", Version: "2"})
		}, 3*time.Minute)
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{ConfirmTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	got := byRunner(res)
	for _, id := range []string{"vm-a", "vm-b"} {
		r := got[id]
		if r.Outcome != contract.RotationRotated || r.Agent != activities.AgentConfirmed || r.VerifiedBy != contract.VerifiedByGitLab || works(r) != "works" {
			t.Errorf("%s: %+v", id, r)
		}
		if c := f.callsOf(id); c != "reset,verify2,audit" {
			t.Errorf("%s: calls %s", id, c)
		}
	}
	if res.Rotated != 2 {
		t.Errorf("result %+v", res)
	}

	// Without a confirmation within the timeout, the stored token is checked
	// and the runner is reported, not hung on.
	f = &rotateFake{targets: []activities.RotationTarget{vm("vm-c")}}
	res, err = runRotate(t, f, contract.RotateRunnerTokensInput{ConfirmTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Runners[0]; r.Outcome != contract.RotationFailed || r.Agent != "unconfirmed" || !strings.Contains(r.Detail, "no heartbeat with version 2 within 1m0s") {
		t.Errorf("unconfirmed: %+v", r)
	}
}

// Machines of an egg's shared GitLab runner share its token: it is reset
// once, for the first of them, and every machine's agent is given that
// version; a machine with a token of its own is reset on its own.
func TestRotateRunnerTokensResetsASharedTokenOnce(t *testing.T) {
	shared := "local://runners/" + contract.EggRunnerSecretName("web", "abc") + "/token"
	sharing := func(id string) activities.RotationTarget {
		tg := localTarget(id, store.StateActive)
		tg.TokenRef = shared
		return tg
	}
	f := &rotateFake{targets: []activities.RotationTarget{sharing("a"), sharing("b"), sharing("c"), localTarget("d-own", store.StateActive)}}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rotated != 4 || res.Failed != 0 {
		t.Fatalf("result = %+v", res)
	}
	resets := map[string]int{}
	for _, r := range f.resets {
		resets[r.TokenRef]++
	}
	if resets[shared] != 1 || resets["local://runners/d-own/token"] != 1 || len(f.resets) != 2 {
		t.Errorf("resets by token = %v, want the shared token and d-own's once each", resets)
	}
	for _, id := range []string{"a", "b", "c", "d-own"} {
		if got := f.callsOf(id); !strings.Contains(got, "reload") {
			t.Errorf("%s: calls %s, want its agent reloaded", id, got)
		}
	}
}

// An egg's shared token is reset even when no machine of the egg is live:
// the rotation finds it through the egg's EggRunner, resets it by itself,
// checks it with GitLab and audits it; a shared token its machines already
// reset is not reset again, and the result names every new shared version
// with its expiry.
func TestRotateRunnerTokensResetsAnIdleSharedToken(t *testing.T) {
	busy := "local://runners/" + contract.EggRunnerSecretName("web", "abc") + "/token"
	idle := "vault://runners/" + contract.EggRunnerSecretName("api", "def") + "/token"
	expires := time.Date(2030, 1, 15, 0, 0, 0, 0, time.UTC)
	machine := localTarget("a", store.StateActive)
	machine.TokenRef = busy
	f := &rotateFake{
		targets: []activities.RotationTarget{machine},
		shared: []activities.SharedRunnerTarget{
			{Egg: "api", ShapeKey: "def", GitLab: fly.GitLab{Host: "gitlab.example.com"}, GitLabRunnerID: 9, TokenRef: idle},
			{Egg: "web", ShapeKey: "abc", GitLab: fly.GitLab{Host: "gitlab.example.com"}, GitLabRunnerID: 100, TokenRef: busy},
		},
		reset: func(string, int) (activities.RotateTokenResult, error) {
			return activities.RotateTokenResult{Version: "2", ExpiresAt: &expires}, nil
		},
	}
	res, err := runRotate(t, f, contract.RotateRunnerTokensInput{Eggs: []string{"api", "web"}})
	if err != nil {
		t.Fatal(err)
	}
	name := contract.EggRunnerSecretName("api", "def")
	got := byRunner(res)
	if r := got[name]; r.Outcome != contract.RotationRotated || r.Egg != "api" || r.TokenVersion != "2" || works(r) != "works" {
		t.Errorf("idle shared token: %+v", r)
	}
	if c := f.callsOf(name); c != "reset,verify2,audit" {
		t.Errorf("idle shared token: calls %s, want reset,verify2,audit", c)
	}
	if res.Rotated != 2 || res.Failed != 0 || len(f.resets) != 2 {
		t.Errorf("result %+v after %d resets, want a and the idle token once each", res, len(f.resets))
	}
	for _, r := range f.resets {
		if r.TokenRef == idle && (!r.Shared || r.GitLabRunnerID != 9) {
			t.Errorf("idle reset %+v, want a shared reset of GitLab runner 9", r)
		}
	}
	want := []contract.SharedTokenReset{{TokenRef: busy, Version: "2", ExpiresAt: &expires}, {TokenRef: idle, Version: "2", ExpiresAt: &expires}}
	if len(res.SharedTokens) != 2 || res.SharedTokens[0].TokenRef != want[0].TokenRef || res.SharedTokens[1].TokenRef != want[1].TokenRef ||
		!res.SharedTokens[1].ExpiresAt.Equal(expires) {
		t.Errorf("shared tokens %+v, want %+v", res.SharedTokens, want)
	}
}
