package workflows

import (
	"fmt"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/workflow"
)

// DeprovisionRunner tears one runner down the way ProvisionRunner builds it
// up, in reverse: destroy the machine, delete its own GitLab runner and
// token (a machine of the egg's shared runner has none), revoke its agent
// credential, record it terminated. Every step is idempotent, so a
// repeated or resumed teardown is safe; a step that keeps failing leaves
// the runner in state failed with the reason, for UglyFox to finish.
func DeprovisionRunner(ctx workflow.Context, in contract.DeprovisionRunnerInput) (contract.DeprovisionRunnerResult, error) {
	res, err := deprovisionRunner(ctx, in)
	if in.Owner != "" {
		msg := contract.RunnerRetired{RunnerID: in.RunnerID}
		if err != nil {
			msg.Error = err.Error()
		}
		_ = workflow.SignalExternalWorkflow(ctx, in.Owner, "", contract.SignalRunnerRetired, msg).Get(ctx, nil)
	}
	return res, err
}

func deprovisionRunner(ctx workflow.Context, in contract.DeprovisionRunnerInput) (contract.DeprovisionRunnerResult, error) {
	var a *activities.Activities
	res := contract.DeprovisionRunnerResult{RunnerID: in.RunnerID}
	actor := in.Actor
	if actor == "" {
		actor = contract.ActorMotherGoose
	}
	var r store.Runner
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.GetRunner, in.RunnerID).Get(ctx, &r); err != nil {
		return res, fmt.Errorf("read runner %s: %w", in.RunnerID, err)
	}
	if r.State == store.StateTerminated {
		res.AlreadyGone = true
		return res, nil
	}
	if r.State != store.StateTerminating {
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: in.RunnerID, To: store.StateTerminating, Reason: in.Reason, Actor: actor}); err != nil {
			return res, err
		}
	}
	failed := func(step string, err error) (contract.DeprovisionRunnerResult, error) {
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		_ = transitionWith(dctx, activities.TransitionInput{RunnerID: in.RunnerID, To: store.StateFailed, Reason: fmt.Sprintf("teardown: %s failed: %v", step, err), Actor: actor})
		return res, fmt.Errorf("deprovision %s: %s: %w", in.RunnerID, step, err)
	}
	if in.Owner != "" {
		// The pool retires the machine: it stops taking jobs at once, not
		// at its destroy.
		drainSharedMachine(ctx, r)
	}
	ws := r.Workspace
	if ws == "" {
		ws = r.ID
	}
	if err := workflow.ExecuteActivity(tofuCtx(ctx), a.DestroyMachine, activities.DestroyMachineInput{RunnerID: r.ID, Workspace: ws}).Get(ctx, nil); err != nil {
		return failed("destroy machine", err)
	}
	// A machine of the egg's shared GitLab runner leaves the runner and its
	// token to the egg's other machines (its EggRunner retires them): it
	// only stops being one of the runner's managers, which GitLab cleans
	// up. Older runners had a GitLab runner of their own.
	if !contract.IsEggRunnerToken(r.TokenRef) {
		if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.DeleteGitLabRunner, activities.DeleteGitLabRunnerInput{
			GitLab: in.GitLab, GitLabRunnerID: r.GitLabRunnerID, Description: contract.RunnerDescription(r.Egg, r.ID),
		}).Get(ctx, nil); err != nil {
			return failed("delete GitLab runner", err)
		}
		if err := workflow.ExecuteActivity(secretsCtx(ctx), a.DeleteRunnerToken, activities.DeleteRunnerTokenInput{RunnerID: r.ID, TokenRef: r.TokenRef}).Get(ctx, nil); err != nil {
			return failed("delete token", err)
		}
	}
	if workflow.GetVersion(ctx, versionAgentCredential, workflow.DefaultVersion, 1) == 1 {
		if err := workflow.ExecuteLocalActivity(localSecretsCtx(ctx), a.RevokeAgentCredential, r.ID).Get(ctx, nil); err != nil {
			return failed("revoke agent credential", err)
		}
	}
	if err := transitionWith(ctx, activities.TransitionInput{RunnerID: in.RunnerID, To: store.StateTerminated, Reason: in.Reason, Actor: actor}); err != nil {
		return res, err
	}
	return res, nil
}

// versionDrainSharedMachine marks teardowns and drains that stop a machine
// of the egg's shared GitLab runner taking jobs before anything else.
const versionDrainSharedMachine = "drain-shared-machine"

// drainSharedMachine stops the gitlab-runner of a machine of the egg's
// shared runner taking new jobs at once (DrainMachine: the agent's
// graceful stop), since pausing the shared runner in GitLab would stop
// every machine of the egg. A machine with a GitLab runner of its own was
// paused in GitLab instead. A drain that fails is logged: the teardown
// that follows stops gitlab-runner all the same.
func drainSharedMachine(ctx workflow.Context, r store.Runner) {
	if !contract.IsEggRunnerToken(r.TokenRef) ||
		workflow.GetVersion(ctx, versionDrainSharedMachine, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	var a *activities.Activities
	var res activities.DrainMachineResult
	if err := workflow.ExecuteActivity(drainMachineCtx(ctx), a.DrainMachine, activities.DrainMachineInput{
		RunnerID: r.ID, Cloud: r.Cloud,
	}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("drain the machine's gitlab-runner", "runner", r.ID, "error", err)
		return
	}
	workflow.GetLogger(ctx).Info("machine drained", "runner", r.ID, "outcome", res.Outcome)
}
