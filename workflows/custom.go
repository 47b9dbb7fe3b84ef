package workflows

import (
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// CustomJob runs a custom job's script on a runner made for it, through a
// pipeline of the Nest repository, so its log and status live in GitLab
// like any job's:
//
//  1. the dedicated runner is made (ProvisionRunner as a child): a VM
//     runner that takes this one job only, with the job's tags, registered for the Nest project only,
//     holding the elevated token in its environment when the job asks for
//     one;
//  2. a pipeline is triggered in the Nest project (POST
//     /projects/:id/pipeline) with GOSLING_JOB, GOSLING_JOB_SCRIPT and the
//     job's variables; the Nest's .gitlab-ci.yml runs the script;
//  3. the pipeline is polled until it ends, within the job's timeout;
//  4. the runner is torn down (DeprovisionRunner), whatever happened.
//
// A pipeline that does not succeed fails the workflow (ErrTypeJobFailed)
// with its status and URL.
func CustomJob(ctx workflow.Context, in contract.CustomJobInput) (contract.CustomJobResult, error) {
	var a *activities.Activities
	var res contract.CustomJobResult
	spec := in.Runner
	if len(spec.Projects) != 1 {
		return res, temporal.NewNonRetryableApplicationError("the dedicated runner names no Nest project", activities.ErrTypeBadInput, nil)
	}
	if spec.Projects[0].ID == 0 {
		var ref fly.ProjectRef
		if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.ResolveProject, activities.ProjectInput{GitLab: spec.GitLab, Ref: spec.Projects[0]}).Get(ctx, &ref); err != nil {
			return res, fmt.Errorf("find the Nest project %s: %w", spec.Projects[0], err)
		}
		spec.Projects = []fly.ProjectRef{ref}
	}
	provID := workflow.GetInfo(ctx).WorkflowExecution.ID + "/runner"
	res.RunnerID = contract.RunnerIDFor(spec.Name, provID)
	ready := in.ReadyTimeout
	if ready <= 0 {
		ready = DefaultReadyTimeout
	}
	var made contract.ProvisionRunnerResult
	err := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: provID, TaskQueue: contract.TaskQueueMotherGoose,
	}), contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: res.RunnerID, Egg: spec, Kind: fly.RunnerVM, Cloud: in.Cloud, Provider: in.Provider, ReadyTimeout: ready, OneJob: true,
	}).Get(ctx, &made)
	if err != nil {
		// ProvisionRunner undid what it made.
		return res, fmt.Errorf("make the job's runner: %w", err)
	}
	defer func() {
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		err := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(dctx, workflow.ChildWorkflowOptions{
			WorkflowID: contract.DeprovisionWorkflowID(res.RunnerID), TaskQueue: contract.TaskQueueMotherGoose,
		}), contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
			RunnerID: res.RunnerID, GitLab: spec.GitLab, Reason: "custom job " + in.Job + " done", Actor: contract.JobActor(in.Job),
		}).Get(dctx, nil)
		if err != nil {
			workflow.GetLogger(ctx).Error("tear the job's runner down", "runner", res.RunnerID, "error", err)
		}
	}()

	var p activities.Pipeline
	if err := workflow.ExecuteActivity(createOnceCtx(ctx), a.CreatePipeline, activities.PipelineInput{
		GitLab: spec.GitLab, ProjectID: spec.Projects[0].ID, Ref: in.Ref, Variables: in.Variables,
	}).Get(ctx, &p); err != nil {
		return res, fmt.Errorf("trigger the pipeline in %s: %w", spec.Projects[0], err)
	}
	res.PipelineID, res.Status, res.WebURL = p.ID, p.Status, p.WebURL
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	if err := workflow.ExecuteActivity(waitCtx(ctx, timeout), a.WaitPipeline, activities.WaitPipelineInput{
		GitLab: spec.GitLab, ProjectID: spec.Projects[0].ID, PipelineID: p.ID, Poll: in.Poll,
	}).Get(ctx, &p); err != nil {
		return res, fmt.Errorf("wait for pipeline %d: %w", res.PipelineID, err)
	}
	res.Status = p.Status
	if p.WebURL != "" {
		res.WebURL = p.WebURL
	}
	if p.Status != "success" {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipeline %d ended %s: %s", p.ID, p.Status, res.WebURL), contract.ErrTypeJobFailed, nil)
	}
	return res, nil
}
