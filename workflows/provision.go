package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// DefaultReadyTimeout bounds the wait for an agent's ready signal.
const DefaultReadyTimeout = 10 * time.Minute

// invokeGrace is how long a serverless invocation may go on, idle, after
// the job it was made for finished: its gitlab-runner exits within
// seconds when it ran that job, and would wait for work otherwise.
const invokeGrace = 30 * time.Second

// ProvisionRunner turns "a job needs a runner" into a registered, running
// GitLab runner: record it, register it in GitLab (token straight into the
// secret backend), apply its machine with OpenTofu, wait for the agent's
// ready signal. Any failure is compensated in reverse order (destroy the
// machine, delete the GitLab runner, delete the token) and recorded, so
// nothing is left behind. A serverless runner is then kept until its job
// finishes or its deadline passes, whichever comes first, and torn down.
func ProvisionRunner(ctx workflow.Context, in contract.ProvisionRunnerInput) (contract.ProvisionRunnerResult, error) {
	res, err := provisionRunner(ctx, in)
	if in.Owner != "" {
		msg := contract.RunnerProvisioned{RunnerID: res.RunnerID, State: res.State, GitLabRunnerID: res.GitLabRunnerID, TokenRef: res.TokenRef, Kind: res.Kind, Cloud: res.Cloud}
		if res.Outcome == outcomeTagsMismatch {
			msg.Outcome, msg.Reason = res.Outcome, res.KindReason
		}
		if err != nil {
			msg.State, msg.Error = string(store.StateTerminated), err.Error()
		}
		// The owner may be gone (a drained pool): that must not fail the runner.
		_ = workflow.SignalExternalWorkflow(ctx, in.Owner, "", contract.SignalRunnerProvisioned, msg).Get(ctx, nil)
	}
	return res, err
}

// outcomeTagsMismatch is the outcome of a ProvisionRunner whose job no
// runner of the egg can take.
const outcomeTagsMismatch = "tags-mismatch"

func provisionRunner(ctx workflow.Context, in contract.ProvisionRunnerInput) (contract.ProvisionRunnerResult, error) {
	info := workflow.GetInfo(ctx)
	log := workflow.GetLogger(ctx)
	var a *activities.Activities

	runnerID := in.RunnerID
	if runnerID == "" {
		runnerID = contract.RunnerIDFor(in.Egg.Name, info.WorkflowExecution.ID)
	}
	cloud := in.Cloud
	if cloud == "" && len(in.Egg.Runner.Clouds) > 0 {
		cloud = in.Egg.Runner.Clouds[0]
	}
	if cloud == "" {
		return contract.ProvisionRunnerResult{}, temporal.NewNonRetryableApplicationError("egg has no cloud", activities.ErrTypeBadInput, nil)
	}
	kind, reason := contract.ChooseKind(in.Egg, in.Kind, cloud, in.Dormant)
	deadline := in.ServerlessDeadline
	if deadline <= 0 && kind == fly.RunnerServerless &&
		workflow.GetVersion(ctx, versionDeadlineFromEgg, workflow.DefaultVersion, 1) == 1 {
		// Since version 1 a serverless runner lives as long as the egg's
		// job timeout, not always the 60-minute maximum: its platform's
		// timeout and its GitLab runner's maximum_timeout follow.
		deadline = in.Egg.Runner.ServerlessDeadline()
	}
	if deadline <= 0 || deadline > fly.MaxServerlessRun {
		deadline = fly.MaxServerlessRun
	}
	readyTimeout := in.ReadyTimeout
	if readyTimeout <= 0 {
		readyTimeout = DefaultReadyTimeout
	}
	description := contract.RunnerDescription(in.Egg.Name, runnerID)
	res := contract.ProvisionRunnerResult{RunnerID: runnerID, Kind: kind, KindReason: reason, Cloud: cloud, Workspace: runnerID}
	status := contract.ProvisionStatus{RunnerID: runnerID, Step: "recording", Kind: kind, Cloud: cloud}
	if err := workflow.SetQueryHandler(ctx, contract.QueryRunnerStatus, func() (contract.ProvisionStatus, error) { return status, nil }); err != nil {
		return res, err
	}
	readyCh := workflow.GetSignalChannel(ctx, contract.SignalRunnerReady)
	jobCh := workflow.GetSignalChannel(ctx, contract.SignalJobStatus)
	started := workflow.Now(ctx)
	log.Info("provisioning runner", "runner", runnerID, "kind", kind, "reason", reason, "cloud", cloud)

	// 0. A job's tags are not in its webhook: read them from the Jobs API
	// and make nothing for a job this egg's runners could never take. Since
	// version 1 the status is read too: hooks come late and out of order,
	// and a job that is no longer pending (running on another runner, or
	// over) needs no runner.
	if in.Job != nil && in.Job.ProjectID != 0 {
		status.Step = "reading job tags"
		var tags []string
		if workflow.GetVersion(ctx, versionProvisionJobInfo, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			err := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobTags, activities.JobTagsInput{
				GitLab: in.Egg.GitLab, ProjectID: in.Job.ProjectID, JobID: in.Job.JobID,
			}).Get(ctx, &tags)
			if err != nil {
				return res, fmt.Errorf("read tags of job %d: %w", in.Job.JobID, err)
			}
		} else {
			var job activities.JobInfo
			err := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobInfo, activities.JobInfoInput{
				GitLab: in.Egg.GitLab, ProjectID: in.Job.ProjectID, JobID: in.Job.JobID,
			}).Get(ctx, &job)
			if err != nil {
				return res, fmt.Errorf("read job %d: %w", in.Job.JobID, err)
			}
			tags = job.Tags
			why := ""
			switch {
			case !job.NeedsRunner():
				why = "the job is " + job.Status + ", no longer pending"
			case endedMeanwhile(jobCh, in.Job.JobID):
				why = "the job ended while it was looked up"
			}
			if why != "" {
				log.Info("no runner for this job", "job", in.Job.JobID, "reason", why)
				res.JobTags = tags
				res.Outcome, res.KindReason, res.State = "job-not-pending", why, ""
				return res, nil
			}
		}
		res.JobTags = tags
		if ok, why := contract.TagsMatch(in.Egg.Runner, tags); !ok {
			log.Info("no runner for this job", "job", in.Job.JobID, "reason", why)
			res.Outcome, res.KindReason, res.State = outcomeTagsMismatch, why, ""
			return res, nil
		}
	}

	// 1. The record comes first: every later step, and every failure, is
	// recorded against it.
	rec := store.Runner{
		ID: runnerID, Egg: in.Egg.Name, Cloud: cloud, Kind: kind, GitLabHost: in.Egg.GitLab.Host,
		WorkflowID: info.WorkflowExecution.ID, Workspace: runnerID, Reason: reason,
	}
	if in.Job != nil {
		rec.JobID = in.Job.JobID
	}
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.RecordRunner, activities.RecordRunnerInput{Runner: rec}).Get(ctx, nil); err != nil {
		return res, fmt.Errorf("record runner %s: %w", runnerID, err)
	}

	// Compensations run in reverse order. Each is registered before its
	// step, because a step that fails may still have done its work (a
	// GitLab create whose answer was lost), and each is safe when there is
	// nothing to undo.
	var undo []func(workflow.Context) error
	fail := func(step string, cause error) (contract.ProvisionRunnerResult, error) {
		status.Step = "compensating"
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		why := fmt.Sprintf("%s failed: %v", step, cause)
		log.Warn("provisioning failed; compensating", "runner", runnerID, "step", step, "error", cause)
		_ = transition(dctx, runnerID, store.StateFailed, why)
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](dctx); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			// Left in state failed: UglyFox's reconciliation finishes the job.
			return res, fmt.Errorf("%s; compensation incomplete: %w", why, errors.Join(errs...))
		}
		_ = transition(dctx, runnerID, store.StateTerminated, "compensated after "+why)
		res.State = string(store.StateTerminated)
		return res, temporal.NewApplicationErrorWithCause(why, "ProvisionFailed", cause)
	}

	// 2. The GitLab runner, with its token written to the secret backend.
	undo = append(undo, func(c workflow.Context) error {
		return workflow.ExecuteActivity(secretsCtx(c), a.DeleteRunnerToken, activities.DeleteRunnerTokenInput{RunnerID: runnerID, TokenRef: res.TokenRef}).Get(c, nil)
	})
	undo = append(undo, func(c workflow.Context) error {
		return workflow.ExecuteActivity(gitlabCtx(c), a.DeleteGitLabRunner, activities.DeleteGitLabRunnerInput{
			GitLab: in.Egg.GitLab, GitLabRunnerID: res.GitLabRunnerID, Description: description,
		}).Get(c, nil)
	})
	status.Step = "registering in GitLab"
	create := activities.CreateGitLabRunnerInput{
		RunnerID: runnerID, Egg: in.Egg.Name, Cloud: cloud, GitLab: in.Egg.GitLab, Description: description,
		Tags: in.Egg.Runner.Tags, RunUntagged: in.Egg.Runner.RunUntagged, Paused: in.Dormant,
	}
	// Map order does not matter: the refs are sorted below.
	//workflowcheck:ignore
	for _, v := range in.Egg.Runner.Env {
		if !v.Secret.IsZero() {
			create.Secrets = append(create.Secrets, v.Secret)
		}
	}
	slices.Sort(create.Secrets)
	// A group's runner takes every project's jobs of the group; a runner
	// made for one job, that job's project's; any other runner (a pool's)
	// is enabled in every project the egg lists, paths resolved by the
	// activity.
	switch {
	case in.Egg.Group != nil:
		create.GroupID = in.Egg.Group.ID
	case in.Job != nil && in.Job.ProjectID != 0:
		create.ProjectID, create.ProjectPath = in.Job.ProjectID, in.Job.ProjectPath
	default:
		create.Projects = in.Egg.Projects
	}
	if kind == fly.RunnerServerless {
		create.MaximumTimeout = deadline
	}
	var created activities.CreateGitLabRunnerResult
	if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.CreateGitLabRunner, create).Get(ctx, &created); err != nil {
		return fail("register runner in GitLab", err)
	}
	res.GitLabRunnerID, res.TokenRef = created.GitLabRunnerID, created.TokenRef

	// Agents report ready through MotherGoose's API, which checks their
	// token against the runner's record: the record names the token
	// before the machine exists, and the invocation of a serverless runner
	// is this workflow's activity.
	agentsReport := workflow.GetVersion(ctx, "agents-report-through-api", workflow.DefaultVersion, 1) == 1
	if agentsReport {
		if err := transitionWith(ctx, activities.TransitionInput{
			RunnerID: runnerID, To: store.StateRegistering, Reason: "registered in GitLab; applying the machine, then waiting for the agent",
			GitLabRunnerID: res.GitLabRunnerID, TokenRef: res.TokenRef, Workspace: runnerID,
		}); err != nil {
			return fail("record registering", err)
		}
	}

	// 3. The machine, made by OpenTofu. It starts running even for a
	// dormant runner: the agent must prove the token works before the
	// machine is put to sleep.
	undo = append(undo, func(c workflow.Context) error {
		return workflow.ExecuteActivity(tofuCtx(c), a.DestroyMachine, activities.DestroyMachineInput{RunnerID: runnerID, Workspace: runnerID}).Get(c, nil)
	})
	status.Step = "applying machine"
	apply := activities.ApplyMachineInput{
		RunnerID: runnerID, Egg: in.Egg, Cloud: cloud, Kind: kind, Running: true, Provider: in.Provider,
		TokenRef: res.TokenRef, ReadyWorkflowID: info.WorkflowExecution.ID,
	}
	if kind == fly.RunnerServerless {
		apply.MaxRunMinutes = int(deadline / time.Minute)
	} else {
		// A VM made for one job takes no other before its teardown.
		apply.OneJob = in.Job != nil || in.OneJob
	}
	// A cloud that refuses for capacity or quota hands over to the next.
	var applied activities.ApplyMachineResult
	if err := applyMachine(ctx, in, &apply, &res, &status, &applied); err != nil {
		return fail("apply machine", err)
	}
	if !agentsReport {
		if err := transitionWith(ctx, activities.TransitionInput{
			RunnerID: runnerID, To: store.StateRegistering, Reason: "machine applied; waiting for the agent",
			GitLabRunnerID: res.GitLabRunnerID, TokenRef: res.TokenRef, Workspace: runnerID,
		}); err != nil {
			return fail("record registering", err)
		}
	}

	// 3b. A serverless runner runs when invoked, as its platform runs
	// work: the invocation lasts its job, and this workflow owns its
	// deadline, cancellation and cleanup.
	var invoked workflow.Future
	cancelInvoke := func() {}
	if agentsReport && kind == fly.RunnerServerless {
		var invCtx workflow.Context
		invCtx, cancelInvoke = workflow.WithCancel(ctx)
		invoked = workflow.ExecuteActivity(invokeCtx(invCtx, deadline), a.InvokeRunner, activities.InvokeRunnerInput{
			RunnerID: runnerID, Cloud: apply.Cloud, Provider: apply.Provider, TokenRef: res.TokenRef, Outputs: applied.Outputs,
		})
	}
	invokeDone, invokeErr := false, error(nil)
	var invokeRes activities.InvokeRunnerResult
	onInvoked := func(f workflow.Future) {
		invokeDone = true
		invokeErr = f.Get(ctx, &invokeRes)
	}

	// 4. The agent's ready signal, or a timeout.
	status.Step = "waiting for ready signal"
	ready := false
	onReady := func(r contract.RunnerReady) {
		if r.RunnerID == runnerID {
			ready = true
		} else {
			log.Warn("ready signal for another runner ignored", "runner", r.RunnerID)
		}
	}
	// The agent often signals while the apply is still running: take a
	// buffered signal without starting a timer that would be cancelled in
	// the same workflow task.
	for !ready {
		var r contract.RunnerReady
		if !readyCh.ReceiveAsync(&r) {
			break
		}
		onReady(r)
	}
	if !ready {
		timedOut := false
		waitCtx, cancelWait := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(waitCtx, readyTimeout), func(workflow.Future) { timedOut = true })
		sel.AddReceive(readyCh, func(c workflow.ReceiveChannel, _ bool) {
			var r contract.RunnerReady
			c.Receive(ctx, &r)
			onReady(r)
		})
		if invoked != nil {
			sel.AddFuture(invoked, onInvoked)
		}
		for !ready && !timedOut && !invokeDone {
			sel.Select(ctx)
		}
		cancelWait()
	}
	if !ready {
		cancelInvoke()
		if invokeDone {
			if invokeErr == nil {
				invokeErr = fmt.Errorf("the runner ended before it was ready: %s", invokeRes.Error)
			}
			return fail("invoke runner", invokeErr)
		}
		return fail("wait for ready signal", fmt.Errorf("no ready signal within %s", readyTimeout))
	}

	// 5. In service: Apex, or put to sleep as a Nadir runner.
	if in.Dormant {
		status.Step = "stopping (dormant)"
		apply.Running = false
		if err := workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, apply).Get(ctx, nil); err != nil {
			return fail("stop machine", err)
		}
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateDormant, Reason: "ready; stopped as a Nadir runner", Heartbeat: true}); err != nil {
			return fail("record dormant", err)
		}
		res.State = string(store.StateDormant)
	} else {
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateActive, Reason: "agent ready", Heartbeat: true}); err != nil {
			return fail("record active", err)
		}
		res.State = string(store.StateActive)
	}
	status.Step = res.State
	log.Info("runner in service", "runner", runnerID, "state", res.State, "after", workflow.Now(ctx).Sub(started))
	if kind != fly.RunnerServerless && in.Job == nil {
		return res, nil // a pool's runner: it lives on
	}
	if kind != fly.RunnerServerless {
		deadline = in.JobDeadline
		if deadline <= 0 {
			deadline = contract.DefaultJobDeadline
		}
	}

	// 6. A runner made for one job (and every serverless runner) lives until
	// the job finishes or its deadline passes, whichever comes first.
	status.Step = "serving its job"
	onJob := func(s contract.JobStatus) {
		// The runner's own agent reports the job GitLab gave it, which
		// need not be the job it was made for.
		if s.Finished() && (in.Job == nil || s.JobID == in.Job.JobID || (s.RunnerID == runnerID && s.RunnerID != "")) {
			res.Outcome = "job-finished"
		}
	}
	if invoked != nil {
		// The invocation's end is the runner's: gitlab-runner ran its job
		// (or none came within its wait), and the answer says which.
		if !invokeDone {
			lifeCtx, cancelLife := workflow.WithCancel(ctx)
			sel := workflow.NewSelector(ctx)
			deadlinePassed := false
			remaining := deadline - workflow.Now(ctx).Sub(started)
			sel.AddFuture(workflow.NewTimer(lifeCtx, max(remaining, time.Second)), func(workflow.Future) { deadlinePassed = true })
			sel.AddFuture(invoked, onInvoked)
			// The job it was made for can end without it (another runner
			// took it, or it was canceled): the invocation would only wait
			// for work. Unless its own agent reports a job of its own, it
			// is given invokeGrace to end by itself, then cancelled.
			served, busy, idleSince, graceOver := false, false, 0, false
			sel.AddReceive(jobCh, func(c workflow.ReceiveChannel, _ bool) {
				var s contract.JobStatus
				c.Receive(ctx, &s)
				wasIdle := served && !busy
				if s.RunnerID == runnerID && s.RunnerID != "" {
					busy = !s.Finished()
				}
				served = served || (in.Job != nil && s.JobID == in.Job.JobID && s.Finished())
				if served && !busy && !wasIdle &&
					workflow.GetVersion(ctx, "invocation-ends-with-its-job", workflow.DefaultVersion, 1) == 1 {
					// Each idle spell gets its own grace.
					idleSince++
					spell := idleSince
					sel.AddFuture(workflow.NewTimer(lifeCtx, invokeGrace), func(workflow.Future) {
						graceOver = graceOver || (spell == idleSince && !busy)
					})
				}
			})
			for !invokeDone && !deadlinePassed && !graceOver {
				sel.Select(ctx)
			}
			cancelLife()
			if !invokeDone {
				// The deadline, or a job served elsewhere: cancel the
				// invocation and wait for its cleanup (the request
				// aborted, the task stopped).
				cancelInvoke()
				_ = invoked.Get(ctx, &invokeRes)
				res.Outcome = "deadline"
				if !deadlinePassed {
					res.Outcome = "job-finished"
				}
			}
		}
		if res.Outcome == "" {
			switch {
			case invokeErr != nil:
				res.Outcome = "invocation-failed"
				log.Warn("invocation failed", "runner", runnerID, "error", invokeErr)
			case len(invokeRes.Jobs) > 0:
				res.Outcome = "job-finished"
			default:
				res.Outcome = "no-job"
			}
		}
	}
	for res.Outcome == "" {
		var s contract.JobStatus
		if !jobCh.ReceiveAsync(&s) {
			break
		}
		onJob(s)
	}
	if res.Outcome == "" {
		remaining := deadline - workflow.Now(ctx).Sub(started)
		lifeCtx, cancelLife := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(lifeCtx, max(remaining, time.Second)), func(workflow.Future) { res.Outcome = "deadline" })
		sel.AddReceive(jobCh, func(c workflow.ReceiveChannel, _ bool) {
			var s contract.JobStatus
			c.Receive(ctx, &s)
			onJob(s)
		})
		for res.Outcome == "" {
			sel.Select(ctx)
		}
		cancelLife()
	}
	status.Step = "tearing down"
	child := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: contract.DeprovisionWorkflowID(runnerID)})
	var dres contract.DeprovisionRunnerResult
	err := workflow.ExecuteChildWorkflow(child, contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
		RunnerID: runnerID, GitLab: in.Egg.GitLab, Reason: "one-job runner: " + res.Outcome, Actor: contract.ActorMotherGoose,
	}).Get(ctx, &dres)
	if err != nil {
		return res, fmt.Errorf("tear down runner %s: %w", runnerID, err)
	}
	res.State = string(store.StateTerminated)
	status.Step = res.State
	return res, nil
}

// versionDeadlineFromEgg marks runs whose serverless runner's deadline is
// the egg's job timeout (fly.Runner.ServerlessDeadline) when the input
// names none.
const versionDeadlineFromEgg = "serverless-deadline-from-egg"

// versionProvisionJobInfo marks runs that read the job's status with its
// tags (JobInfo) and make nothing for a job no longer pending.
const versionProvisionJobInfo = "provision-job-info"

// endedMeanwhile takes the job-status signals already received and tells
// whether one says the job ended. Only finished statuses matter later, so
// the others taken here are not missed.
func endedMeanwhile(ch workflow.ReceiveChannel, jobID int64) bool {
	ended := false
	for {
		var s contract.JobStatus
		if !ch.ReceiveAsync(&s) {
			return ended
		}
		ended = ended || (s.Finished() && s.JobID == jobID)
	}
}

func transition(ctx workflow.Context, runnerID string, to store.RunnerState, reason string) error {
	return transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: to, Reason: reason})
}

func transitionWith(ctx workflow.Context, in activities.TransitionInput) error {
	var a *activities.Activities
	if in.Actor == "" {
		in.Actor = contract.ActorMotherGoose
	}
	return workflow.ExecuteLocalActivity(storeCtx(ctx), a.TransitionRunner, in).Get(ctx, nil)
}
