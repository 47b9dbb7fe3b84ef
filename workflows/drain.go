package workflows

import (
	"fmt"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// DrainRunner drains a runner that no pool owns: it is paused in GitLab
// first, so it takes no new job (a machine of the egg's shared runner has
// its gitlab-runner stopped taking jobs instead: drainSharedMachine), then
// recorded draining, then audited. The
// other order could record a drain GitLab never heard of. A runner
// draining already is left as it is; one in a state that cannot drain
// fails with a non-retryable error of type activities.ErrTypeIllegalState.
func DrainRunner(ctx workflow.Context, in contract.DrainRunnerInput) (contract.DrainRunnerResult, error) {
	var a *activities.Activities
	res := contract.DrainRunnerResult{RunnerID: in.RunnerID}
	var r store.Runner
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.GetRunner, in.RunnerID).Get(ctx, &r); err != nil {
		return res, fmt.Errorf("read runner %s: %w", in.RunnerID, err)
	}
	res.State = string(r.State)
	if r.State == store.StateDraining {
		res.Already = true
		return res, nil
	}
	if !store.CanTransition(r.State, store.StateDraining) {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("runner %s is %s: only active and dormant runners can be drained", r.ID, r.State), activities.ErrTypeIllegalState, nil)
	}
	if r.GitLabRunnerID != 0 {
		if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.PauseGitLabRunner, activities.PauseGitLabRunnerInput{
			GitLab: in.GitLab, GitLabRunnerID: r.GitLabRunnerID, TokenRef: r.TokenRef,
		}).Get(ctx, nil); err != nil {
			return res, fmt.Errorf("pause GitLab runner %d: %w", r.GitLabRunnerID, err)
		}
	}
	drainSharedMachine(ctx, r)
	if err := transitionWith(ctx, activities.TransitionInput{RunnerID: r.ID, To: store.StateDraining, Reason: in.Reason, Actor: in.Actor}); err != nil {
		return res, err
	}
	res.State = string(store.StateDraining)
	err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.AppendAudits, []activities.AuditEntry{{
		At: workflow.Now(ctx), Actor: in.Actor, Action: "drain", Egg: r.Egg, RunnerID: r.ID, Reason: in.Reason,
	}}).Get(ctx, nil)
	return res, err
}
