package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// EggRunner holds the one GitLab runner an egg's machines of one runner
// shape share (workflow ID contract.EggRunnerWorkflowID): every machine
// runs gitlab-runner with its token and its own system_id, so GitLab shows
// one runner with a manager per machine, and a job or a machine never
// costs a runner creation (GitLab.com caps them per project or group).
//
// The update contract.UpdateEnsureEggRunner returns the runner, created
// (CreateGitLabRunner, its token straight to the secret backend) by the
// first call; calls meanwhile wait for it, and a failed creation fails
// the calls waiting and lets the next one try again. Every RetireCheck the
// workflow asks whether the egg's runners took another shape (or the egg
// is gone) and no machine is left on the runner; then it deletes the
// GitLab runner and its token and ends (a later update starts it again).
func EggRunner(ctx workflow.Context, in contract.EggRunnerInput) (contract.EggRunnerStatus, error) {
	var a *activities.Activities
	key := in.Shape.Key()
	st := contract.EggRunnerStatus{Runner: in.Runner}
	if err := workflow.SetQueryHandler(ctx, contract.QueryEggRunner, func() (contract.EggRunnerStatus, error) { return st, nil }); err != nil {
		return st, err
	}
	// creating is set while a creation runs; failures counts the ones
	// that failed, so a call that waited for one returns its error.
	creating, failures := false, 0
	// tokens counts the tokens this run made, so a wait for the next
	// rotation learns of a new one.
	tokens := 0
	var createErr error
	ensure := func(ctx workflow.Context) (contract.EggRunner, error) {
		if creating {
			before := failures
			if err := workflow.Await(ctx, func() bool { return !creating }); err != nil {
				return contract.EggRunner{}, err
			}
			if st.Runner == nil && failures != before {
				return contract.EggRunner{}, createErr
			}
		}
		if st.Runner != nil {
			return *st.Runner, nil
		}
		creating = true
		defer func() { creating = false }()
		create := activities.CreateGitLabRunnerInput{
			RunnerID: contract.EggRunnerSecretName(in.Egg, key), Egg: in.Egg, Cloud: in.Cloud, GitLab: in.GitLab,
			Description: contract.EggRunnerDescription(in.Egg, key),
			Tags:        in.Shape.Tags, RunUntagged: in.Shape.RunUntagged, MaximumTimeout: in.Shape.MaximumTimeout,
			GroupID: in.Shape.GroupID, Projects: in.Shape.Projects,
		}
		var created activities.CreateGitLabRunnerResult
		if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.CreateGitLabRunner, create).Get(ctx, &created); err != nil {
			failures++
			createErr = fmt.Errorf("create the shared GitLab runner of egg %s: %w", in.Egg, err)
			var app *temporal.ApplicationError
			if errors.As(err, &app) && (app.Type() == activities.ErrTypeGitLabRejected || app.Type() == activities.ErrTypeBadInput) {
				// GitLab refused (GitLab.com's creation cap, a bad
				// project): callers must not retry it.
				createErr = temporal.NewNonRetryableApplicationError(createErr.Error(), app.Type(), err)
			}
			return contract.EggRunner{}, createErr
		}
		st.Runner = &contract.EggRunner{
			GitLabRunnerID: created.GitLabRunnerID, TokenRef: created.TokenRef, ShapeKey: key,
			TokenIssuedAt: workflow.Now(ctx).UTC(), TokenExpiresAt: created.TokenExpiresAt,
		}
		tokens++
		workflow.GetLogger(ctx).Info("shared GitLab runner created", "egg", in.Egg, "shape", key, "gitlab_runner", created.GitLabRunnerID)
		return *st.Runner, nil
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdateEnsureEggRunner, ensure, workflow.UpdateHandlerOptions{
		Validator: func() error {
			if st.Retiring {
				return errors.New("the shared runner is being retired: its shape is no longer the egg's")
			}
			return nil
		},
	}); err != nil {
		return st, err
	}

	every := in.RetireCheck
	if every <= 0 {
		every = contract.DefaultEggRunnerRetireCheck
	}
	rotateExpiring := workflow.GetVersion(ctx, versionRotateExpiringToken, workflow.DefaultVersion, 1) == 1
	nextCheck := workflow.Now(ctx).Add(every)
	for {
		if !rotateExpiring {
			if err := workflow.Sleep(ctx, every); err != nil {
				return st, err
			}
		} else {
			// The retire check keeps its period; a token due sooner, or a
			// new one (its due time unknown to this wait), wakes it earlier.
			wait := nextCheck.Sub(workflow.Now(ctx))
			if st.Runner != nil && !creating {
				wait = min(wait, rotateIfExpiring(ctx, in, &st))
			}
			seen := tokens
			if wait > 0 {
				if _, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return tokens != seen }); err != nil {
					return st, err
				}
			}
			if workflow.Now(ctx).Before(nextCheck) {
				continue
			}
			nextCheck = workflow.Now(ctx).Add(every)
		}
		if creating {
			continue
		}
		if st.Runner == nil {
			break // nothing made (its creation failed): a later call starts again
		}
		in.Runner = st.Runner
		var check activities.EggRunnerRetireCheck
		if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.CheckEggRunnerRetired, in).Get(ctx, &check); err != nil {
			workflow.GetLogger(ctx).Warn("retire check failed", "egg", in.Egg, "shape", key, "error", err)
			continue
		}
		if check.Superseded && check.Machines == 0 {
			st.Retiring = true
			break
		}
		if workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
			break
		}
	}
	// No update handler runs now (the validator refuses new ones while
	// retiring; a continue-as-new takes the runner along).
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return st, err
	}
	switch {
	case st.Runner == nil:
		return st, nil
	case !st.Retiring:
		in.Runner = st.Runner
		return st, workflow.NewContinueAsNewError(ctx, contract.WorkflowEggRunner, in)
	}
	return st, retireEggRunner(ctx, in, key)
}

// versionRotateExpiringToken marks EggRunner workflows that rotate their
// runner's token ahead of its token_expires_at.
const versionRotateExpiringToken = "rotate-expiring-token"

// rotateIfExpiring rotates the egg's tokens when the runner's token is due
// (contract.EggRunner.TokenRotateAt with in.RotateAhead) and returns how
// long to wait before the next look: until the next token is due, or
// contract.TokenRotationRetry after a rotation that did not reset it (one
// already running, GitLab unreachable). A token that never expires waits
// forever (the caller's own period bounds it).
//
// The rotation is RotateRunnerTokens of the egg, a child workflow with the
// rotations' fixed ID, so it never runs beside another rotation; it resets
// the shared token once, gives it to every live machine and audits it
// (with no live machine, the token alone).
func rotateIfExpiring(ctx workflow.Context, in contract.EggRunnerInput, st *contract.EggRunnerStatus) time.Duration {
	const forever = time.Duration(1<<63 - 1)
	at, ok := st.Runner.TokenRotateAt(in.RotateAhead)
	if !ok {
		return forever
	}
	if left := at.Sub(workflow.Now(ctx)); left > 0 {
		return left
	}
	expires := *st.Runner.TokenExpiresAt
	workflow.GetLogger(ctx).Info("rotating the shared runner's token ahead of its expiry", "egg", in.Egg, "expires", expires)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: contract.RotateWorkflowID, TaskQueue: contract.TaskQueueMotherGoose,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	var res contract.RotateRunnerTokensResult
	err := workflow.ExecuteChildWorkflow(cctx, contract.WorkflowRotateRunnerTokens, contract.RotateRunnerTokensInput{
		Eggs: []string{in.Egg}, Actor: contract.ActorMotherGoose,
		Reason: fmt.Sprintf("the shared runner's token expires at %s", expires.UTC().Format(time.RFC3339)),
	}).Get(ctx, &res)
	if err != nil {
		workflow.GetLogger(ctx).Warn("rotation of an expiring token failed", "egg", in.Egg, "error", err)
		return contract.TokenRotationRetry
	}
	for _, t := range res.SharedTokens {
		if t.TokenRef != st.Runner.TokenRef {
			continue
		}
		st.Runner.TokenIssuedAt, st.Runner.TokenExpiresAt = workflow.Now(ctx).UTC(), t.ExpiresAt
		next, ok := st.Runner.TokenRotateAt(in.RotateAhead)
		if !ok {
			return forever
		}
		if left := next.Sub(workflow.Now(ctx)); left > 0 {
			return left
		}
		return contract.TokenRotationRetry // a token due at once: not in a tight loop
	}
	workflow.GetLogger(ctx).Warn("the rotation did not reset the expiring token", "egg", in.Egg, "token_ref", st.Runner.TokenRef)
	return contract.TokenRotationRetry
}

// retireEggRunner deletes an egg's superseded shared runner from GitLab,
// then its token.
func retireEggRunner(ctx workflow.Context, in contract.EggRunnerInput, key string) error {
	var a *activities.Activities
	workflow.GetLogger(ctx).Info("retiring shared GitLab runner", "egg", in.Egg, "shape", key, "gitlab_runner", in.Runner.GitLabRunnerID)
	if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.DeleteGitLabRunner, activities.DeleteGitLabRunnerInput{
		GitLab: in.GitLab, GitLabRunnerID: in.Runner.GitLabRunnerID, Description: contract.EggRunnerDescription(in.Egg, key),
	}).Get(ctx, nil); err != nil {
		return fmt.Errorf("delete the shared GitLab runner of egg %s: %w", in.Egg, err)
	}
	ref := in.Runner.TokenRef
	if err := workflow.ExecuteActivity(secretsCtx(ctx), a.DeleteRunnerToken, activities.DeleteRunnerTokenInput{
		RunnerID: contract.EggRunnerSecretName(in.Egg, key), TokenRef: ref,
	}).Get(ctx, nil); err != nil {
		return fmt.Errorf("delete the shared runner token of egg %s: %w", in.Egg, err)
	}
	return nil
}

// eggRunnerInput is the EggRunner input for a provisioning: the egg's
// shape for the runner's kind and cloud.
func eggRunnerInput(egg fly.Egg, job *contract.JobRef, kind, cloud string, deadline time.Duration) contract.EggRunnerInput {
	var fallback *fly.ProjectRef
	if job != nil && job.ProjectID != 0 {
		fallback = &fly.ProjectRef{ID: job.ProjectID, Path: job.ProjectPath}
	}
	var maxTimeout time.Duration
	if kind == fly.RunnerServerless {
		maxTimeout = deadline
	}
	return contract.EggRunnerInput{
		Egg: egg.Name, GitLab: egg.GitLab, Cloud: cloud,
		Shape: contract.EggShape(egg, fallback, maxTimeout, cloud == fly.CloudLocal),
	}
}
