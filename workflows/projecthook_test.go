package workflows

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// projectHookRun runs AddProjectHook with the activity answering by
// attempt, and returns its result, how often the activity ran, the audit
// records the workflow wrote itself and its error.
func projectHookRun(t *testing.T, answer func(attempt int) (contract.ProjectHookResult, error)) (contract.ProjectHookResult, int, []activities.AuditEntry, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflow(AddProjectHook)
	var a *activities.Activities
	e.RegisterActivity(a)
	calls := 0
	e.OnActivity(a.AddProjectHook, mock.Anything, mock.Anything).Return(func(_ context.Context, in contract.ProjectHookInput) (contract.ProjectHookResult, error) {
		calls++
		if in.Egg.Name != "flight" || in.ProjectID != 42 || in.URL != "https://gosling.example.com/webhooks/gitlab" {
			t.Errorf("activity input %+v", in)
		}
		return answer(calls)
	})
	var audits []activities.AuditEntry
	e.OnActivity(a.AppendAudits, mock.Anything, mock.Anything).Return(func(_ context.Context, in []activities.AuditEntry) error {
		audits = append(audits, in...)
		return nil
	})
	e.ExecuteWorkflow(AddProjectHook, contract.ProjectHookInput{
		Egg: fly.Egg{Name: "flight"}, ProjectID: 42, Path: "flightjs/new", URL: "https://gosling.example.com/webhooks/gitlab",
	})
	if !e.IsWorkflowCompleted() {
		t.Fatal("AddProjectHook did not complete")
	}
	var res contract.ProjectHookResult
	err := e.GetWorkflowError()
	if err == nil {
		if gerr := e.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	return res, calls, audits, err
}

func TestAddProjectHook(t *testing.T) {
	t.Run("added after GitLab's transient failures", func(t *testing.T) {
		res, calls, audits, err := projectHookRun(t, func(n int) (contract.ProjectHookResult, error) {
			if n < 3 {
				return contract.ProjectHookResult{}, errors.New("gitlab: POST /projects/42/hooks: 502 Bad Gateway")
			}
			return contract.ProjectHookResult{HookID: 7}, nil
		})
		if err != nil || res.HookID != 7 || calls != 3 || len(audits) != 0 {
			t.Errorf("result %+v, error %v, %d calls, audits %+v", res, err, calls, audits)
		}
	})
	t.Run("GitLab refuses: one call, audited, failed", func(t *testing.T) {
		_, calls, audits, err := projectHookRun(t, func(int) (contract.ProjectHookResult, error) {
			return contract.ProjectHookResult{}, temporal.NewNonRetryableApplicationError("gitlab: POST /projects/42/hooks: 422 Invalid url given", activities.ErrTypeGitLabRejected, nil)
		})
		if err == nil || calls != 1 {
			t.Fatalf("error %v after %d calls, want a failure after one", err, calls)
		}
		if len(audits) != 1 || audits[0].Action != contract.AuditProjectHookFailed || audits[0].Egg != "flight" ||
			!strings.Contains(audits[0].Reason, "422 Invalid url given") || !strings.Contains(audits[0].Reason, "flightjs/new (ID 42)") {
			t.Errorf("audits %+v", audits)
		}
	})
	t.Run("GitLab down: retried, then audited", func(t *testing.T) {
		_, calls, audits, err := projectHookRun(t, func(int) (contract.ProjectHookResult, error) {
			return contract.ProjectHookResult{}, errors.New("dial tcp: connection refused")
		})
		if err == nil || calls != int(projectHookRetry.MaximumAttempts) || len(audits) != 1 {
			t.Errorf("error %v, %d calls, audits %+v", err, calls, audits)
		}
	})
}
