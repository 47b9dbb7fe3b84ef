package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// SelfManagementJob is one run of a job of Jobs/, as its Temporal Schedule
// starts it: the kind's workflow runs as a child (RotateRunnerTokens under
// its fixed ID, so a rotation started by hand and a scheduled one never
// overlap; NestUpdate, RunnerImageUpdate or CustomJob under this run's ID
// and the kind), the run is audited with its outcome (job-run, actor
// job/NAME), and a run whose work failed fails too, with the reason
// (ErrTypeJobFailed), so the Schedule's recent actions show it.
func SelfManagementJob(ctx workflow.Context, in contract.JobRunInput) (contract.JobRunResult, error) {
	job := in.Job
	res := contract.JobRunResult{Job: job.Name, Kind: job.Kind, Outcome: contract.JobSucceeded}
	info := workflow.GetInfo(ctx)
	res.WorkflowID = info.WorkflowExecution.ID + "/" + job.Kind
	timeout := job.Timeout.D()
	if timeout <= 0 {
		timeout = time.Hour
	}
	opts := workflow.ChildWorkflowOptions{
		WorkflowID: res.WorkflowID, TaskQueue: contract.TaskQueueMotherGoose,
		WorkflowExecutionTimeout: timeout,
		WaitForCancellation:      true,
	}
	var err error
	switch {
	case job.Kind == fly.JobSecretRotation && in.Rotation != nil:
		opts.WorkflowID = contract.RotateWorkflowID
		opts.WorkflowIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
		res.WorkflowID = opts.WorkflowID
		var out contract.RotateRunnerTokensResult
		err = workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), contract.WorkflowRotateRunnerTokens, *in.Rotation).Get(ctx, &out)
		if err == nil {
			res.Summary = fmt.Sprintf("%d runners rotated, %d failed, %d skipped", out.Rotated, out.Failed, out.Skipped)
			if out.Failed > 0 {
				err = errors.New(res.Summary + failedRunners(out))
			}
		}
	case job.Kind == fly.JobNestUpdate && in.NestUpdate != nil:
		var out contract.NestUpdateResult
		err = workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), contract.WorkflowNestUpdate, *in.NestUpdate).Get(ctx, &out)
		if err == nil {
			res.Summary = fmt.Sprintf("the Nest at %s (%s) is in force: %d eggs, %d pools", in.NestUpdate.Ref, short(out.Commit), out.Eggs, out.Pools)
			if out.Unchanged {
				res.Summary = fmt.Sprintf("the Nest at %s (%s) was in force already", in.NestUpdate.Ref, short(out.Commit))
			}
			if len(out.Warnings) > 0 {
				res.Summary += fmt.Sprintf("; %d warnings: %s", len(out.Warnings), strings.Join(out.Warnings, "; "))
			}
		}
	case job.Kind == fly.JobRunnerImageUpdate && in.ImageUpdate != nil:
		var out contract.RunnerImageUpdateResult
		err = workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), contract.WorkflowRunnerImageUpdate, *in.ImageUpdate).Get(ctx, &out)
		switch {
		case err != nil:
		case !out.Changed && out.Previous == "":
			res.Summary = fmt.Sprintf("%s is %s; recorded for the next runs", out.Image, out.Digest)
		case !out.Changed:
			res.Summary = fmt.Sprintf("%s is still %s", out.Image, out.Digest)
		default:
			res.Summary = fmt.Sprintf("%s moved from %s to %s; runners replaced: %v", out.Image, out.Previous, out.Digest, out.Rolled)
		}
	case job.Kind == fly.JobCustom && in.Custom != nil:
		var out contract.CustomJobResult
		err = workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), contract.WorkflowCustomJob, *in.Custom).Get(ctx, &out)
		if err == nil {
			res.Summary = fmt.Sprintf("pipeline %d %s on runner %s: %s", out.PipelineID, out.Status, out.RunnerID, out.WebURL)
		}
	default:
		err = fmt.Errorf("job %s of kind %s has no input of its kind: apply the Nest again", job.Name, job.Kind)
	}
	if err != nil {
		res.Outcome = contract.JobFailed
		res.Summary = strings.TrimPrefix(res.Summary+"; "+failureText(err), "; ")
	}
	var a *activities.Activities
	if aerr := workflow.ExecuteLocalActivity(storeCtx(ctx), a.AuditJobRun, activities.JobRunAudit{
		At: workflow.Now(ctx).UTC(), Job: job.Name, Kind: job.Kind, Outcome: res.Outcome, Summary: res.Summary,
		WorkflowID: info.WorkflowExecution.ID, RunID: info.WorkflowExecution.RunID,
	}).Get(ctx, nil); aerr != nil {
		workflow.GetLogger(ctx).Error("audit the job run", "error", aerr)
	}
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(res.Summary, contract.ErrTypeJobFailed, nil)
	}
	return res, nil
}

func failedRunners(out contract.RotateRunnerTokensResult) string {
	var parts []string
	for _, r := range out.Runners {
		if r.Outcome == contract.RotationFailed && len(parts) < 5 {
			parts = append(parts, r.RunnerID+": "+r.Detail)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// NestUpdate fetches the Nest repository at a ref through the GitLab API,
// validates it and, when it is valid, applies it and records its commit for
// every server (all in the UpdateNest activity, which runs MotherGoose's
// logic in the worker). An invalid Nest fails the workflow with its
// diagnostics (ErrTypeInvalidNest) and is audited; the Nest in force stays.
func NestUpdate(ctx workflow.Context, in contract.NestUpdateInput) (contract.NestUpdateResult, error) {
	var a *activities.Activities
	var res contract.NestUpdateResult
	if err := workflow.ExecuteActivity(nestCtx(ctx), a.UpdateNest, in).Get(ctx, &res); err != nil {
		return res, err
	}
	if res.Invalid {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the Nest at %s (%s) is invalid and was not applied; the Nest in force stays:\n%s", in.Ref, short(res.Commit), res.Diagnostics),
			contract.ErrTypeInvalidNest, nil)
	}
	return res, nil
}

// Sweep is one pass of an egg's pending-job sweep (see
// mothergoose.SweepEgg), as the egg's sweep Schedule starts it.
func Sweep(ctx workflow.Context, in contract.SweepInput) (contract.SweepResult, error) {
	var a *activities.Activities
	var res contract.SweepResult
	err := workflow.ExecuteActivity(sweepCtx(ctx), a.SweepEgg, in).Get(ctx, &res)
	return res, err
}
