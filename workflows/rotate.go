package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// RotateRunnerTokens gives every runner in service (active or dormant),
// optionally of some eggs only, a new GitLab token, a few runners at a
// time. For each runner: reset the token in GitLab and write it to the
// runner's secret in one activity (the token never enters history), tell
// the live agent to re-read it and wait for it to confirm that GitLab
// accepts it (a dormant runner reads it when resumed; the worker then
// checks the stored token itself), and append an audit record.
//
// GitLab invalidates the old token at the reset, so a write that fails is
// retried, resetting again, until one lands. A runner that still fails is
// reported with whether its stored token works (TokenWorks): a failed reset
// leaves the old token working; only a reset whose write never landed
// leaves the runner without one, and says so.
func RotateRunnerTokens(ctx workflow.Context, in contract.RotateRunnerTokensInput) (contract.RotateRunnerTokensResult, error) {
	var a *activities.Activities
	res := contract.RotateRunnerTokensResult{Runners: []contract.RunnerRotation{}}
	if in.Actor == "" {
		in.Actor = contract.ActorMotherGoose
	}
	pageSize := in.PageSize
	if pageSize <= 0 {
		pageSize = contract.DefaultPrunePage
	}
	var targets []activities.RotationTarget
	settings := map[string]fly.GitLab{}
	for after := ""; ; {
		var page activities.RotationTargets
		if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.ListRotationTargets,
			activities.RotationTargetsInput{Eggs: in.Eggs, After: after, Limit: pageSize}).Get(ctx, &page); err != nil {
			return res, fmt.Errorf("read runners in service after %q: %w", after, err)
		}
		targets = append(targets, page.Targets...)
		for _, egg := range workflow.DeterministicKeys(page.GitLab) {
			settings[egg] = page.GitLab[egg]
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	workflow.GetLogger(ctx).Info("rotating runner tokens", "runners", len(targets), "eggs", strings.Join(in.Eggs, ","))
	// Agents of running cloud VMs confirm their new token through
	// MotherGoose (SignalTokenConfirmed); remember what they confirmed.
	confirmed := map[string]string{}
	confirmations := workflow.GetSignalChannel(ctx, contract.SignalTokenConfirmed)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var c contract.TokenConfirmed
			confirmations.Receive(ctx, &c)
			confirmed[c.RunnerID] = c.Version
		}
	})
	rc := rotation{in: in, confirmed: confirmed}
	if workflow.GetVersion(ctx, versionSharedTokenRotation, workflow.DefaultVersion, 1) == 1 {
		rc.shared = map[string]*sharedReset{}
	}

	// A few workers take the runners in order: bounded parallelism, and the
	// result keeps the store's order whatever finishes first.
	res.Runners = make([]contract.RunnerRotation, len(targets))
	workers := in.Parallelism
	if workers <= 0 {
		workers = contract.DefaultRotateParallelism
	}
	workers = min(workers, len(targets))
	next := 0
	wg := workflow.NewWaitGroup(ctx)
	for range workers {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			for next < len(targets) {
				i := next
				next++
				g, ok := settings[targets[i].Egg]
				res.Runners[i] = rc.rotateRunner(ctx, targets[i], g, ok)
			}
		})
	}
	wg.Wait(ctx)
	if workflow.GetVersion(ctx, versionIdleSharedTokens, workflow.DefaultVersion, 1) == 1 {
		if rc.shared == nil {
			rc.shared = map[string]*sharedReset{}
		}
		res.Runners = append(res.Runners, rc.rotateIdleSharedTokens(ctx)...)
	}
	for _, r := range res.Runners {
		switch r.Outcome {
		case contract.RotationRotated:
			res.Rotated++
		case contract.RotationFailed:
			res.Failed++
		default:
			res.Skipped++
		}
	}
	for _, ref := range workflow.DeterministicKeys(rc.shared) {
		if r := rc.shared[ref]; r.done && r.err == nil && r.tok.Version != "" {
			res.SharedTokens = append(res.SharedTokens, contract.SharedTokenReset{TokenRef: ref, Version: r.tok.Version, ExpiresAt: r.tok.ExpiresAt})
		}
	}
	return res, nil
}

// versionIdleSharedTokens marks rotations that, after the machines, reset
// the shared runner tokens of the eggs that no machine's rotation reset
// (an egg without live machines, or whose machines were skipped).
const versionIdleSharedTokens = "rotate-idle-shared-tokens"

// rotateIdleSharedTokens resets the shared runner tokens of the rotation's
// eggs (their EggRunner workflows') that no machine reset, checks each
// stored token with GitLab and audits it: machines that start later read
// the new token. The outcomes are named by the token's secret name
// (contract.EggRunnerSecretName).
func (rc rotation) rotateIdleSharedTokens(ctx workflow.Context) []contract.RunnerRotation {
	var a *activities.Activities
	var shared activities.SharedRunners
	if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.ListSharedRunners,
		activities.SharedRunnersInput{Eggs: rc.in.Eggs}).Get(ctx, &shared); err != nil {
		out := contract.RunnerRotation{Egg: strings.Join(rc.in.Eggs, ","), Outcome: contract.RotationFailed,
			Detail: "list the eggs' shared runners: " + failureText(err)}
		return []contract.RunnerRotation{out}
	}
	var outs []contract.RunnerRotation
	for _, r := range shared.Runners {
		if _, done := rc.shared[r.TokenRef]; done {
			continue // reset for its machines
		}
		name := contract.EggRunnerSecretName(r.Egg, r.ShapeKey)
		out := contract.RunnerRotation{RunnerID: name, Egg: r.Egg, State: "shared"}
		tok, err := rc.resetToken(ctx, activities.RotateTokenInput{
			RunnerID: name, GitLab: r.GitLab, GitLabRunnerID: r.GitLabRunnerID, TokenRef: r.TokenRef, Shared: true,
		})
		t := activities.RotationTarget{RunnerID: name, Egg: r.Egg, GitLabRunnerID: r.GitLabRunnerID, TokenRef: r.TokenRef}
		switch {
		case err != nil:
			out.Outcome, out.Detail = contract.RotationFailed, "rotate: "+failureText(err)
		case tok.Skipped != "":
			out.Outcome, out.Detail = contract.RotationSkipped, tok.Skipped
		default:
			out.TokenVersion = tok.Version
			works, checkErr := verifyStored(ctx, t, r.GitLab, tok.Version)
			switch {
			case checkErr != nil:
				out.Outcome = contract.RotationFailed
				out.Detail = fmt.Sprintf("version %s is stored but could not be checked with GitLab: %s", tok.Version, failureText(checkErr))
			case !works:
				out.Outcome, out.TokenWorks = contract.RotationFailed, ptr(false)
				out.Detail = fmt.Sprintf("GitLab refuses the stored version %s: rotate the egg again", tok.Version)
			default:
				out.Outcome, out.VerifiedBy, out.TokenWorks = contract.RotationRotated, contract.VerifiedByGitLab, ptr(true)
				out.Detail = "no live machine holds this shared token; machines started from now on read the new one"
			}
		}
		auditRotation(ctx, rc.in, &out)
		outs = append(outs, out)
	}
	return outs
}

// rotationSkip says why a runner is left alone, or "" to rotate it. A
// running cloud VM's agent cannot be told from a worker (see
// internal/agent), and resetting its token would cut it off; a stopped one
// reads its token when it boots. A cloud serverless runner lives for one
// job: the next one gets a new token.
func rotationSkip(t activities.RotationTarget, hasGitLab bool) string {
	switch {
	case !hasGitLab:
		return fmt.Sprintf("egg %s has no stored configuration: nothing was changed", t.Egg)
	case t.GitLabRunnerID == 0:
		return "the runner is not registered in GitLab"
	case t.Cloud == fly.CloudLocal:
		return ""
	case t.Kind == fly.RunnerServerless:
		return "a serverless runner lives for one job; the next one gets a new token"
	case t.State != store.StateDormant:
		return fmt.Sprintf("the agent of a running %s VM cannot be told of a new token from a worker; its token is left unchanged", t.Cloud)
	}
	return ""
}

// rotation is one rotation's settings and the token versions agents
// confirmed so far.
type rotation struct {
	in        contract.RotateRunnerTokensInput
	confirmed map[string]string
	// shared holds the reset of each egg's shared runner token (by token
	// reference) since versionSharedTokenRotation: nil before it.
	shared map[string]*sharedReset
}

// versionSharedTokenRotation marks rotations that reset the token of an
// egg's shared GitLab runner once and give the new version to every live
// machine of it.
const versionSharedTokenRotation = "shared-token-rotation"

// sharedReset is the one reset of a shared runner token in a rotation:
// the first of its machines resets it, the others wait for the outcome.
type sharedReset struct {
	done bool
	tok  activities.RotateTokenResult
	err  error
}

// resetToken resets a runner's token in GitLab and stores the new one
// (RotateRunnerToken); a shared token is reset once per rotation, for its
// first machine, and its other machines take that reset's outcome.
func (rc rotation) resetToken(ctx workflow.Context, in activities.RotateTokenInput) (activities.RotateTokenResult, error) {
	var a *activities.Activities
	reset := func() (activities.RotateTokenResult, error) {
		var tok activities.RotateTokenResult
		err := workflow.ExecuteActivity(rotateTokenCtx(ctx), a.RotateRunnerToken, in).Get(ctx, &tok)
		return tok, err
	}
	if rc.shared == nil || !contract.IsEggRunnerToken(in.TokenRef) {
		return reset()
	}
	if r, ok := rc.shared[in.TokenRef]; ok {
		if err := workflow.Await(ctx, func() bool { return r.done }); err != nil {
			return activities.RotateTokenResult{}, err
		}
		return r.tok, r.err
	}
	r := &sharedReset{}
	rc.shared[in.TokenRef] = r
	r.tok, r.err = reset()
	r.done = true
	return r.tok, r.err
}

// confirmVersion is the version of the change that rotates running cloud
// VMs, whose agents confirm the new token through their heartbeat.
const confirmVersion = 1

func (rc rotation) rotateRunner(ctx workflow.Context, t activities.RotationTarget, gl fly.GitLab, hasGitLab bool) contract.RunnerRotation {
	in := rc.in
	out := contract.RunnerRotation{RunnerID: t.RunnerID, Egg: t.Egg, Cloud: t.Cloud, State: string(t.State)}
	why := rotationSkip(t, hasGitLab)
	viaHeartbeat := false
	if why != "" && runningCloudVM(t, hasGitLab) &&
		workflow.GetVersion(ctx, "rotate-running-cloud-vms", workflow.DefaultVersion, confirmVersion) >= confirmVersion {
		why, viaHeartbeat = "", true
	}
	if why != "" {
		out.Outcome, out.Detail = contract.RotationSkipped, why
		auditRotation(ctx, in, &out)
		return out
	}
	rc.rotateToken(ctx, t, gl, &out, viaHeartbeat)
	auditRotation(ctx, in, &out)
	return out
}

// runningCloudVM tells a running VM on a cloud, whose agent learns of a
// new token through its heartbeat.
func runningCloudVM(t activities.RotationTarget, hasGitLab bool) bool {
	return hasGitLab && t.GitLabRunnerID != 0 && t.Cloud != fly.CloudLocal && t.Kind != fly.RunnerServerless && t.State == store.StateActive
}

// rotateToken resets, stores, tells and verifies, recording the outcome.
// With viaHeartbeat, the runner is a running cloud VM: its agent reads the
// new version for its next heartbeat, and the rotation waits for
// MotherGoose to confirm it (SignalTokenConfirmed).
func (rc rotation) rotateToken(ctx workflow.Context, t activities.RotationTarget, gl fly.GitLab, out *contract.RunnerRotation, viaHeartbeat bool) {
	var a *activities.Activities
	states := activities.RotationStates
	switch {
	case viaHeartbeat:
		states = []store.RunnerState{store.StateActive}
	case t.Cloud != fly.CloudLocal:
		states = []store.RunnerState{store.StateDormant} // a promoted VM would keep its old token
	}
	tok, err := rc.resetToken(ctx, activities.RotateTokenInput{
		RunnerID: t.RunnerID, GitLab: gl, GitLabRunnerID: t.GitLabRunnerID, TokenRef: t.TokenRef, States: states,
	})
	if err != nil {
		out.Outcome = contract.RotationFailed
		works, checkErr := verifyStored(ctx, t, gl, "")
		switch {
		case checkErr != nil:
			out.Detail = fmt.Sprintf("rotate: %s; the stored token could not be checked: %s", failureText(err), failureText(checkErr))
		case works:
			out.TokenWorks = ptr(true)
			out.Detail = fmt.Sprintf("rotate: %s; the stored token still works", failureText(err))
		default:
			out.TokenWorks = ptr(false)
			out.Detail = fmt.Sprintf("rotate: %s; GitLab refuses the stored token: the runner has no working token until it is rotated again", failureText(err))
		}
		return
	}
	if tok.Skipped != "" {
		out.Outcome, out.Detail = contract.RotationSkipped, tok.Skipped
		return
	}
	out.TokenVersion = tok.Version

	var agentErr error
	switch {
	case viaHeartbeat:
		wait := rc.in.ConfirmTimeout
		if wait <= 0 {
			wait = contract.DefaultConfirmTimeout
		}
		ok, err := workflow.AwaitWithTimeout(ctx, wait, func() bool { return rc.confirmed[t.RunnerID] == tok.Version })
		switch {
		case err != nil:
			agentErr = err
		case !ok:
			agentErr = fmt.Errorf("no heartbeat with version %s within %s", tok.Version, wait)
		default:
			out.Agent = activities.AgentConfirmed
		}
	case t.Cloud == fly.CloudLocal:
		var rl activities.ReloadAgentResult
		agentErr = workflow.ExecuteActivity(reloadAgentCtx(ctx), a.ReloadRunnerAgent, activities.ReloadAgentInput{
			RunnerID: t.RunnerID, Cloud: t.Cloud, Version: tok.Version,
		}).Get(ctx, &rl)
		out.Agent = rl.Outcome
		if agentErr == nil && rl.Outcome == activities.AgentConfirmed {
			out.Outcome, out.VerifiedBy, out.TokenWorks = contract.RotationRotated, contract.VerifiedByAgent, ptr(true)
			return
		}
	default:
		out.Agent = activities.AgentDeferred // a stopped VM reads its token at boot
	}
	works, checkErr := verifyStored(ctx, t, gl, tok.Version)
	switch {
	case checkErr != nil:
		out.Outcome = contract.RotationFailed
		out.Detail = fmt.Sprintf("version %s is stored but could not be checked with GitLab: %s", tok.Version, failureText(checkErr))
	case !works:
		out.Outcome, out.TokenWorks = contract.RotationFailed, ptr(false)
		out.Detail = fmt.Sprintf("GitLab refuses the stored version %s: rotate the runner again", tok.Version)
	case agentErr != nil:
		// The stored token works, but the live runner may still hold the old
		// one, which GitLab no longer accepts.
		out.Outcome, out.VerifiedBy, out.TokenWorks = contract.RotationFailed, contract.VerifiedByGitLab, ptr(true)
		out.Agent = "unconfirmed"
		out.Detail = fmt.Sprintf("version %s is stored and GitLab accepts it, but the runner's agent did not confirm it: %s; restart the agent", tok.Version, failureText(agentErr))
	default:
		out.Outcome, out.VerifiedBy, out.TokenWorks = contract.RotationRotated, contract.VerifiedByGitLab, ptr(true)
	}
}

// verifyStored checks a stored version (or the current one) with GitLab.
func verifyStored(ctx workflow.Context, t activities.RotationTarget, gl fly.GitLab, version string) (bool, error) {
	var a *activities.Activities
	var v activities.VerifyTokenResult
	err := workflow.ExecuteActivity(gitlabCtx(ctx), a.VerifyRunnerToken, activities.VerifyTokenInput{
		RunnerID: t.RunnerID, GitLab: gl, TokenRef: t.TokenRef, Version: version,
	}).Get(ctx, &v)
	return v.Valid, err
}

// auditRotation appends the runner's audit record; a record that cannot be
// written is noted in the outcome.
func auditRotation(ctx workflow.Context, in contract.RotateRunnerTokensInput, out *contract.RunnerRotation) {
	var a *activities.Activities
	rec := activities.RotationAudit{
		At: workflow.Now(ctx).UTC(), Actor: in.Actor, Egg: out.Egg, RunnerID: out.RunnerID, Reason: in.Reason,
		Outcome: out.Outcome, Version: out.TokenVersion, VerifiedBy: out.VerifiedBy, Agent: out.Agent,
		TokenWorks: out.TokenWorks, Detail: out.Detail,
	}
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.AuditRotation, rec).Get(ctx, nil); err != nil {
		out.Detail = strings.TrimPrefix(out.Detail+"; audit record not written: "+failureText(err), "; ")
	}
}

// failureText is an activity failure's own message, without the SDK's
// wrapping (activity type, event IDs).
func failureText(err error) string {
	var parts []string
	var app *temporal.ApplicationError
	for e := err; errors.As(e, &app); e = app.Unwrap() {
		parts = append(parts, app.Message())
	}
	if len(parts) == 0 {
		var to *temporal.TimeoutError
		if errors.As(err, &to) {
			return "timed out (" + to.TimeoutType().String() + ")"
		}
		return err.Error()
	}
	return strings.Join(parts, ": ")
}

func ptr[T any](v T) *T { return &v }

func rotateTokenCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// No heartbeat timeout: an attempt the server gave up on while its
		// worker still runs could store its token after a later attempt's
		// reset. The start-to-close deadline is the activity's context
		// deadline too, so a timed-out attempt's write is abandoned.
		StartToCloseTimeout: 3 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts:        10,
			NonRetryableErrorTypes: []string{activities.ErrTypeGitLabRejected, activities.ErrTypeBadInput},
		},
	})
}

func reloadAgentCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrTypeBadInput},
		},
	})
}
