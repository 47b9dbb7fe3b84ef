package workflows

import (
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// projectHookRetry retries GitLab's transient failures for about half an
// hour; GitLab's own errors of the request (4xx) are not retried.
var projectHookRetry = &temporal.RetryPolicy{
	InitialInterval:        5 * time.Second,
	BackoffCoefficient:     2,
	MaximumInterval:        5 * time.Minute,
	MaximumAttempts:        10,
	NonRetryableErrorTypes: []string{activities.ErrTypeBadInput, activities.ErrTypeGitLabRejected},
}

// AddProjectHook gives a project created in a bucket's group the bucket's
// project hook (mothergoose.AddProjectHook: job and pipeline events, the
// bucket's webhook secret, in.URL), unless the project has one to that URL,
// and audits the result (project-hook-add). When GitLab keeps refusing,
// the failure is audited (project-hook-failed) and the workflow fails
// with it; the egg's sweep adds missing hooks later.
func AddProjectHook(ctx workflow.Context, in contract.ProjectHookInput) (contract.ProjectHookResult, error) {
	var a *activities.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute, RetryPolicy: projectHookRetry})
	var res contract.ProjectHookResult
	err := workflow.ExecuteActivity(actx, a.AddProjectHook, in).Get(ctx, &res)
	if err == nil {
		return res, nil
	}
	audit := activities.AuditEntry{
		At: workflow.Now(ctx), Actor: contract.ActorMotherGoose, Action: contract.AuditProjectHookFailed, Egg: in.Egg.Name,
		Reason: fmt.Sprintf("project %s (ID %d) created in the group of bucket %s; its hook could not be added: %s", in.Path, in.ProjectID, in.Egg.Name, failureText(err)),
	}
	if aerr := workflow.ExecuteLocalActivity(storeCtx(ctx), a.AppendAudits, []activities.AuditEntry{audit}).Get(ctx, nil); aerr != nil {
		workflow.GetLogger(ctx).Warn("audit the failed project hook", "error", aerr)
	}
	return res, err
}
