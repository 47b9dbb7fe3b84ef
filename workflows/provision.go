package workflows

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/log"
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
		msg := contract.RunnerProvisioned{RunnerID: res.RunnerID, State: res.State, GitLabRunnerID: res.GitLabRunnerID, TokenRef: res.TokenRef, Kind: res.Kind, Cloud: res.Cloud, Refusals: res.Refusals}
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

// provisionRunner is ProvisionRunner's saga: each step registers its
// compensation as it goes, and a failed step has every compensation
// registered so far run in reverse order.
func provisionRunner(ctx workflow.Context, in contract.ProvisionRunnerInput) (contract.ProvisionRunnerResult, error) {
	p, err := newProvisioning(ctx, in)
	if err != nil {
		return p.res, err
	}
	if done, err := p.checkJob(); done || err != nil {
		return p.res, err
	}
	if err := p.recordRunner(); err != nil {
		return p.res, err
	}
	for _, step := range []func() error{p.mintAgentCredential, p.registerInGitLab, p.applyMachine, p.waitForReady, p.enterService} {
		if err := step(); err != nil {
			return p.compensate(err)
		}
	}
	if p.kind != fly.RunnerServerless && in.Job == nil {
		return p.res, nil // a pool's runner: it lives on
	}
	p.serveItsJob()
	return p.tearDown()
}

// saga holds the compensations of the steps done so far.
type saga struct {
	compensations []func(workflow.Context) error
}

// onFailure registers a step's compensation. A step registers it before
// its call: a call that fails may still have done its work (a GitLab
// create whose answer was lost), so each compensation is safe when there
// is nothing to undo.
func (s *saga) onFailure(c func(workflow.Context) error) {
	s.compensations = append(s.compensations, c)
}

// compensate runs every compensation, the last registered first, and
// returns what failed.
func (s *saga) compensate(ctx workflow.Context) error {
	var errs []error
	for i := len(s.compensations) - 1; i >= 0; i-- {
		if err := s.compensations[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stepFailed is the error of a provisioning step: which step, and why.
type stepFailed struct {
	step string
	err  error
}

func (e *stepFailed) Error() string { return fmt.Sprintf("%s failed: %v", e.step, e.err) }
func (e *stepFailed) Unwrap() error { return e.err }

// failed wraps a step's error; nil stays nil.
func failed(step string, err error) error {
	if err == nil {
		return nil
	}
	return &stepFailed{step: step, err: err}
}

// provisioning is one ProvisionRunner run: its input, the choices made
// from it, what the steps made so far and the saga that undoes them.
type provisioning struct {
	ctx        workflow.Context
	in         contract.ProvisionRunnerInput
	log        log.Logger
	workflowID string
	runnerID   string
	cloud      string
	kind       string
	// place is the placement the machine is asked for first.
	place        fallbackPlacement
	reason       string
	description  string
	deadline     time.Duration
	readyTimeout time.Duration
	started      time.Time
	readyCh      workflow.ReceiveChannel
	jobCh        workflow.ReceiveChannel
	// agentsReport is set for runs where agents report through
	// MotherGoose's API (the record names the token before the machine
	// exists, and a serverless runner is invoked by this workflow).
	agentsReport bool
	apply        activities.ApplyMachineInput
	applied      activities.ApplyMachineResult
	inv          invocation
	res          contract.ProvisionRunnerResult
	status       contract.ProvisionStatus
	saga         saga
}

// invocation is a serverless runner's run, an activity of this workflow.
type invocation struct {
	future workflow.Future // nil when the runner is not invoked
	cancel func()
	done   bool
	err    error
	res    activities.InvokeRunnerResult
}

func (p *provisioning) onInvoked(f workflow.Future) {
	p.inv.done = true
	p.inv.err = f.Get(p.ctx, &p.inv.res)
}

func newProvisioning(ctx workflow.Context, in contract.ProvisionRunnerInput) (*provisioning, error) {
	info := workflow.GetInfo(ctx)
	p := &provisioning{ctx: ctx, in: in, log: workflow.GetLogger(ctx), workflowID: info.WorkflowExecution.ID, inv: invocation{cancel: func() {}}}
	p.runnerID = in.RunnerID
	if p.runnerID == "" {
		p.runnerID = contract.RunnerIDFor(in.Egg.Name, p.workflowID)
	}
	p.cloud = in.Cloud
	if p.cloud == "" && len(in.Egg.Runner.Clouds) > 0 {
		p.cloud = in.Egg.Runner.Clouds[0]
	}
	if p.cloud == "" {
		return p, temporal.NewNonRetryableApplicationError("egg has no cloud", activities.ErrTypeBadInput, nil)
	}
	// The first placement: the egg's capacity on its first cloud, unless
	// the pool avoids it after a recent refusal.
	p.place = firstPlacement(in)
	p.cloud = p.place.Cloud
	p.kind, p.reason = contract.ChooseKind(in.Egg, in.Kind, p.cloud, in.Dormant)
	p.deadline = in.ServerlessDeadline
	if p.deadline <= 0 && p.kind == fly.RunnerServerless &&
		workflow.GetVersion(ctx, versionDeadlineFromEgg, workflow.DefaultVersion, 1) == 1 {
		// Since version 1 a serverless runner lives as long as the egg's
		// job timeout, not always the 60-minute maximum: its platform's
		// timeout and its GitLab runner's maximum_timeout follow.
		p.deadline = in.Egg.Runner.ServerlessDeadline()
	}
	if p.deadline <= 0 || p.deadline > fly.MaxServerlessRun {
		p.deadline = fly.MaxServerlessRun
	}
	p.readyTimeout = in.ReadyTimeout
	if p.readyTimeout <= 0 {
		p.readyTimeout = DefaultReadyTimeout
	}
	p.description = contract.RunnerDescription(in.Egg.Name, p.runnerID)
	p.res = contract.ProvisionRunnerResult{RunnerID: p.runnerID, Kind: p.kind, KindReason: p.reason, Cloud: p.cloud, Workspace: p.runnerID}
	p.status = contract.ProvisionStatus{RunnerID: p.runnerID, Step: "recording", Kind: p.kind, Cloud: p.cloud}
	if err := workflow.SetQueryHandler(ctx, contract.QueryRunnerStatus, func() (contract.ProvisionStatus, error) { return p.status, nil }); err != nil {
		return p, err
	}
	p.readyCh = workflow.GetSignalChannel(ctx, contract.SignalRunnerReady)
	p.jobCh = workflow.GetSignalChannel(ctx, contract.SignalJobStatus)
	p.started = workflow.Now(ctx)
	p.log.Info("provisioning runner", "runner", p.runnerID, "kind", p.kind, "reason", p.reason, "cloud", p.cloud)
	return p, nil
}

// checkJob reads the tags of the job the runner is for from the Jobs API
// (webhooks carry none) and says done when nothing is to be made: for a
// job this egg's runners could never take, or (since versionProvisionJobInfo,
// which reads the status too) one no longer pending, running elsewhere or
// over, as hooks come late and out of order.
func (p *provisioning) checkJob() (done bool, err error) {
	ctx, in := p.ctx, p.in
	if in.Job == nil || in.Job.ProjectID == 0 {
		return false, nil
	}
	var a *activities.Activities
	p.status.Step = "reading job tags"
	var tags []string
	if workflow.GetVersion(ctx, versionProvisionJobInfo, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		err := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobTags, activities.JobTagsInput{
			GitLab: in.Egg.GitLab, ProjectID: in.Job.ProjectID, JobID: in.Job.JobID,
		}).Get(ctx, &tags)
		if err != nil {
			return true, fmt.Errorf("read tags of job %d: %w", in.Job.JobID, err)
		}
	} else {
		var job activities.JobInfo
		jin := activities.JobInfoInput{GitLab: in.Egg.GitLab, ProjectID: in.Job.ProjectID, JobID: in.Job.JobID}
		var f workflow.Future
		if workflow.GetVersion(ctx, versionAgentCredential, workflow.DefaultVersion, 1) == 1 {
			f = workflow.ExecuteLocalActivity(localGitLabCtx(ctx), a.JobInfo, jin)
		} else {
			f = workflow.ExecuteActivity(gitlabCtx(ctx), a.JobInfo, jin)
		}
		err := f.Get(ctx, &job)
		if err != nil {
			return true, fmt.Errorf("read job %d: %w", in.Job.JobID, err)
		}
		tags = job.Tags
		why := ""
		switch {
		case !job.NeedsRunner():
			why = "the job is " + job.Status + ", no longer pending"
		case endedMeanwhile(p.jobCh, in.Job.JobID):
			why = "the job ended while it was looked up"
		}
		if why != "" {
			p.log.Info("no runner for this job", "job", in.Job.JobID, "reason", why)
			p.res.JobTags = tags
			p.res.Outcome, p.res.KindReason, p.res.State = "job-not-pending", why, ""
			return true, nil
		}
	}
	p.res.JobTags = tags
	if ok, why := contract.TagsMatch(in.Egg.Runner, tags); !ok {
		p.log.Info("no runner for this job", "job", in.Job.JobID, "reason", why)
		p.res.Outcome, p.res.KindReason, p.res.State = outcomeTagsMismatch, why, ""
		return true, nil
	}
	return false, nil
}

// recordRunner writes the runner's record first: every later step, and
// every failure, is recorded against it. Nothing is made yet, so there is
// nothing to compensate.
func (p *provisioning) recordRunner() error {
	var a *activities.Activities
	rec := store.Runner{
		ID: p.runnerID, Egg: p.in.Egg.Name, Cloud: p.cloud, Kind: p.kind, GitLabHost: p.in.Egg.GitLab.Host,
		WorkflowID: p.workflowID, Workspace: p.runnerID, Reason: p.reason,
	}
	if p.in.Job != nil {
		rec.JobID = p.in.Job.JobID
	}
	if err := workflow.ExecuteLocalActivity(storeCtx(p.ctx), a.RecordRunner, activities.RecordRunnerInput{Runner: rec}).Get(p.ctx, nil); err != nil {
		return fmt.Errorf("record runner %s: %w", p.runnerID, err)
	}
	return nil
}

// versionAgentCredential marks ProvisionRunner runs that mint the
// machine's own agent credential before anything else is made and read
// their job as a local activity (fewer history events per job; one change
// ID, so one version marker, for both), and DeprovisionRunner runs that
// revoke the credential.
const versionAgentCredential = "agent-credential"

// mintAgentCredential gives the machine its own agent credential, in the
// secret backend and named by the runner's record: what its agent reports
// to MotherGoose with. Compensation: revoke it.
func (p *provisioning) mintAgentCredential() error {
	if workflow.GetVersion(p.ctx, versionAgentCredential, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil
	}
	var a *activities.Activities
	p.saga.onFailure(func(c workflow.Context) error {
		return workflow.ExecuteLocalActivity(localSecretsCtx(c), a.RevokeAgentCredential, p.runnerID).Get(c, nil)
	})
	p.status.Step = "minting the agent credential"
	err := workflow.ExecuteLocalActivity(localSecretsCtx(p.ctx), a.MintAgentCredential, activities.AgentCredentialInput{
		RunnerID: p.runnerID, Cloud: p.cloud,
	}).Get(p.ctx, nil)
	return failed("mint agent credential", err)
}

// registerInGitLab creates the GitLab runner, its token written straight
// to the secret backend. Compensation: delete the GitLab runner, then the
// token.
func (p *provisioning) registerInGitLab() error {
	ctx, in := p.ctx, p.in
	var a *activities.Activities
	if workflow.GetVersion(ctx, versionEggRunner, workflow.DefaultVersion, 1) == 1 {
		return p.joinEggRunner()
	}
	p.saga.onFailure(func(c workflow.Context) error {
		return workflow.ExecuteActivity(secretsCtx(c), a.DeleteRunnerToken, activities.DeleteRunnerTokenInput{RunnerID: p.runnerID, TokenRef: p.res.TokenRef}).Get(c, nil)
	})
	p.saga.onFailure(func(c workflow.Context) error {
		return workflow.ExecuteActivity(gitlabCtx(c), a.DeleteGitLabRunner, activities.DeleteGitLabRunnerInput{
			GitLab: in.Egg.GitLab, GitLabRunnerID: p.res.GitLabRunnerID, Description: p.description,
		}).Get(c, nil)
	})
	p.status.Step = "registering in GitLab"
	create := activities.CreateGitLabRunnerInput{
		RunnerID: p.runnerID, Egg: in.Egg.Name, Cloud: p.cloud, GitLab: in.Egg.GitLab, Description: p.description,
		Tags: in.Egg.Runner.Tags, RunUntagged: in.Egg.Runner.RunUntagged, Paused: in.Dormant,
	}
	create.Secrets = runnerSecrets(in.Egg)
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
	if p.kind == fly.RunnerServerless {
		create.MaximumTimeout = p.deadline
	}
	var created activities.CreateGitLabRunnerResult
	if err := workflow.ExecuteActivity(gitlabCtx(ctx), a.CreateGitLabRunner, create).Get(ctx, &created); err != nil {
		return failed("register runner in GitLab", err)
	}
	p.res.GitLabRunnerID, p.res.TokenRef = created.GitLabRunnerID, created.TokenRef
	// Agents report ready through MotherGoose's API, which checks their
	// token against the runner's record: the record names the token
	// before the machine exists, and the invocation of a serverless runner
	// is this workflow's activity.
	p.agentsReport = workflow.GetVersion(ctx, "agents-report-through-api", workflow.DefaultVersion, 1) == 1
	if p.agentsReport {
		return failed("record registering", p.recordRegistering("registered in GitLab; applying the machine, then waiting for the agent"))
	}
	return nil
}

// versionEggRunner marks ProvisionRunner runs whose machine joins the
// egg's shared GitLab runner (EggRunner) instead of creating its own, and
// DeprovisionRunner runs that leave a shared runner and its token alone.
const versionEggRunner = "egg-runner"

// joinEggRunner gives the machine the egg's shared GitLab runner of its
// shape (made by the first machine that asks, see EggRunner): the machine
// runs gitlab-runner with its token and a system_id of its own, one runner
// manager of it. Nothing is made for this machine alone, so there is
// nothing to compensate; the record names the shared runner and token.
func (p *provisioning) joinEggRunner() error {
	var a *activities.Activities
	p.status.Step = "joining the egg's GitLab runner"
	ensure := activities.EnsureEggRunnerInput{
		Runner:  eggRunnerInput(p.in.Egg, p.in.Job, p.kind, p.cloud, p.deadline),
		Secrets: runnerSecrets(p.in.Egg),
	}
	var shared contract.EggRunner
	if err := workflow.ExecuteActivity(gitlabCtx(p.ctx), a.EnsureEggRunner, ensure).Get(p.ctx, &shared); err != nil {
		return failed("join the egg's GitLab runner", err)
	}
	p.res.GitLabRunnerID, p.res.TokenRef = shared.GitLabRunnerID, shared.TokenRef
	p.agentsReport = true
	return failed("record registering", p.recordRegistering("joined the egg's GitLab runner; applying the machine, then waiting for the agent"))
}

// runnerSecrets are the secrets of an egg's runner environment, sorted.
func runnerSecrets(egg fly.Egg) []fly.SecretRef {
	var refs []fly.SecretRef
	// Map order does not matter: the refs are sorted below.
	//workflowcheck:ignore
	for _, v := range egg.Runner.Env {
		if !v.Secret.IsZero() {
			refs = append(refs, v.Secret)
		}
	}
	slices.Sort(refs)
	return refs
}

func (p *provisioning) recordRegistering(reason string) error {
	return transitionWith(p.ctx, activities.TransitionInput{
		RunnerID: p.runnerID, To: store.StateRegistering, Reason: reason,
		GitLabRunnerID: p.res.GitLabRunnerID, TokenRef: p.res.TokenRef, Workspace: p.runnerID,
	})
}

// applyMachine makes the machine with OpenTofu, falling back to the egg's
// next cloud when one refuses for capacity or quota, and starts a
// serverless runner's invocation. The machine starts running even for a
// dormant runner: the agent must prove the token works before the machine
// is put to sleep. Compensation: destroy the machine.
func (p *provisioning) applyMachine() error {
	ctx, in := p.ctx, p.in
	var a *activities.Activities
	p.saga.onFailure(func(c workflow.Context) error {
		return workflow.ExecuteActivity(tofuCtx(c), a.DestroyMachine, activities.DestroyMachineInput{RunnerID: p.runnerID, Workspace: p.runnerID}).Get(c, nil)
	})
	p.status.Step = "applying machine"
	p.apply = activities.ApplyMachineInput{
		RunnerID: p.runnerID, Egg: in.Egg, Cloud: p.cloud, Kind: p.kind, Running: true, Provider: p.place.provider,
		Capacity: p.place.CapacityType(), Zone: p.place.Zone, TokenRef: p.res.TokenRef, ReadyWorkflowID: p.workflowID,
	}
	p.res.Capacity, p.res.Zone = p.apply.Capacity, p.apply.Zone
	if p.kind == fly.RunnerServerless {
		p.apply.MaxRunMinutes = int(p.deadline / time.Minute)
	} else {
		// A VM made for one job takes no other before its teardown.
		p.apply.OneJob = in.Job != nil || in.OneJob
	}
	if err := applyMachine(ctx, in, &p.apply, &p.res, &p.status, &p.applied); err != nil {
		return failed("apply machine", err)
	}
	if !p.agentsReport {
		if err := p.recordRegistering("machine applied; waiting for the agent"); err != nil {
			return failed("record registering", err)
		}
	}
	// A serverless runner runs when invoked, as its platform runs work:
	// the invocation lasts its job, and this workflow owns its deadline,
	// cancellation and cleanup.
	if p.agentsReport && p.kind == fly.RunnerServerless {
		var invCtx workflow.Context
		invCtx, p.inv.cancel = workflow.WithCancel(ctx)
		p.inv.future = workflow.ExecuteActivity(invokeCtx(invCtx, p.deadline), a.InvokeRunner, activities.InvokeRunnerInput{
			RunnerID: p.runnerID, Cloud: p.apply.Cloud, Provider: p.apply.Provider, TokenRef: p.res.TokenRef, Outputs: p.applied.Outputs,
		})
	}
	return nil
}

// waitForReady waits for the agent's ready signal, at most the ready
// timeout, and no longer than the invocation of a serverless runner.
func (p *provisioning) waitForReady() error {
	ctx := p.ctx
	p.status.Step = "waiting for ready signal"
	ready := false
	onReady := func(r contract.RunnerReady) {
		if r.RunnerID == p.runnerID {
			ready = true
		} else {
			p.log.Warn("ready signal for another runner ignored", "runner", r.RunnerID)
		}
	}
	// The agent often signals while the apply is still running: take a
	// buffered signal without starting a timer that would be cancelled in
	// the same workflow task.
	for !ready {
		var r contract.RunnerReady
		if !p.readyCh.ReceiveAsync(&r) {
			break
		}
		onReady(r)
	}
	if !ready {
		timedOut := false
		waitCtx, cancelWait := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(waitCtx, p.readyTimeout), func(workflow.Future) { timedOut = true })
		sel.AddReceive(p.readyCh, func(c workflow.ReceiveChannel, _ bool) {
			var r contract.RunnerReady
			c.Receive(ctx, &r)
			onReady(r)
		})
		if p.inv.future != nil {
			sel.AddFuture(p.inv.future, p.onInvoked)
		}
		for !ready && !timedOut && !p.inv.done {
			sel.Select(ctx)
		}
		cancelWait()
	}
	if ready {
		return nil
	}
	p.inv.cancel()
	if p.inv.done {
		err := p.inv.err
		if err == nil {
			err = fmt.Errorf("the runner ended before it was ready: %s", p.inv.res.Error)
		}
		return failed("invoke runner", err)
	}
	return failed("wait for ready signal", fmt.Errorf("no ready signal within %s", p.readyTimeout))
}

// enterService records the runner active, or stops it and records it
// dormant for Nadir.
func (p *provisioning) enterService() error {
	ctx := p.ctx
	var a *activities.Activities
	if p.in.Dormant {
		p.status.Step = "stopping (dormant)"
		p.apply.Running = false
		if err := workflow.ExecuteActivity(tofuCtx(ctx), a.ApplyMachine, p.apply).Get(ctx, nil); err != nil {
			return failed("stop machine", err)
		}
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: p.runnerID, To: store.StateDormant, Reason: "ready; stopped as a Nadir runner", Heartbeat: true}); err != nil {
			return failed("record dormant", err)
		}
		p.res.State = string(store.StateDormant)
	} else {
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: p.runnerID, To: store.StateActive, Reason: "agent ready", Heartbeat: true}); err != nil {
			return failed("record active", err)
		}
		p.res.State = string(store.StateActive)
	}
	p.status.Step = p.res.State
	p.log.Info("runner in service", "runner", p.runnerID, "state", p.res.State, "after", workflow.Now(ctx).Sub(p.started))
	return nil
}

// compensate undoes what the steps made after one failed, and records
// the runner terminated (or failed, when a compensation failed too, for
// UglyFox's reconciliation to finish).
func (p *provisioning) compensate(err error) (contract.ProvisionRunnerResult, error) {
	var sf *stepFailed
	if !errors.As(err, &sf) {
		sf = &stepFailed{step: "provisioning", err: err}
	}
	p.status.Step = "compensating"
	dctx, cancel := workflow.NewDisconnectedContext(p.ctx)
	defer cancel()
	why := sf.Error()
	p.log.Warn("provisioning failed; compensating", "runner", p.runnerID, "step", sf.step, "error", sf.err)
	_ = transition(dctx, p.runnerID, store.StateFailed, why)
	if cerr := p.saga.compensate(dctx); cerr != nil {
		// Left in state failed: UglyFox's reconciliation finishes the job.
		return p.res, fmt.Errorf("%s; compensation incomplete: %w", why, cerr)
	}
	_ = transition(dctx, p.runnerID, store.StateTerminated, "compensated after "+why)
	p.res.State = string(store.StateTerminated)
	return p.res, temporal.NewApplicationErrorWithCause(why, "ProvisionFailed", sf.err)
}

// serveItsJob keeps a runner made for one job (and every serverless
// runner) until the job finishes or its deadline passes, whichever comes
// first, and sets the outcome.
func (p *provisioning) serveItsJob() {
	ctx, in := p.ctx, p.in
	deadline := p.deadline
	if p.kind != fly.RunnerServerless {
		deadline = in.JobDeadline
		if deadline <= 0 {
			deadline = contract.DefaultJobDeadline
		}
	}
	p.status.Step = "serving its job"
	if p.inv.future != nil {
		p.awaitInvocation(deadline)
	}
	onJob := func(s contract.JobStatus) {
		// The runner's own agent reports the job GitLab gave it, which
		// need not be the job it was made for.
		if s.Finished() && (in.Job == nil || s.JobID == in.Job.JobID || (s.RunnerID == p.runnerID && s.RunnerID != "")) {
			p.res.Outcome = "job-finished"
		}
	}
	for p.res.Outcome == "" {
		var s contract.JobStatus
		if !p.jobCh.ReceiveAsync(&s) {
			break
		}
		onJob(s)
	}
	if p.res.Outcome == "" {
		remaining := deadline - workflow.Now(ctx).Sub(p.started)
		lifeCtx, cancelLife := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		sel.AddFuture(workflow.NewTimer(lifeCtx, max(remaining, time.Second)), func(workflow.Future) { p.res.Outcome = "deadline" })
		sel.AddReceive(p.jobCh, func(c workflow.ReceiveChannel, _ bool) {
			var s contract.JobStatus
			c.Receive(ctx, &s)
			onJob(s)
		})
		for p.res.Outcome == "" {
			sel.Select(ctx)
		}
		cancelLife()
	}
}

// awaitInvocation waits for a serverless runner's invocation to end: its
// end is the runner's (gitlab-runner ran its job, or none came within its
// wait), and its answer says which. The job it was made for can end
// without it (another runner took it, or it was canceled): unless its own
// agent reports a job of its own, it is then given invokeGrace to end by
// itself, and cancelled.
func (p *provisioning) awaitInvocation(deadline time.Duration) {
	ctx, in := p.ctx, p.in
	if !p.inv.done {
		lifeCtx, cancelLife := workflow.WithCancel(ctx)
		sel := workflow.NewSelector(ctx)
		deadlinePassed := false
		remaining := deadline - workflow.Now(ctx).Sub(p.started)
		sel.AddFuture(workflow.NewTimer(lifeCtx, max(remaining, time.Second)), func(workflow.Future) { deadlinePassed = true })
		sel.AddFuture(p.inv.future, p.onInvoked)
		served, busy, idleSince, graceOver := false, false, 0, false
		sel.AddReceive(p.jobCh, func(c workflow.ReceiveChannel, _ bool) {
			var s contract.JobStatus
			c.Receive(ctx, &s)
			wasIdle := served && !busy
			if s.RunnerID == p.runnerID && s.RunnerID != "" {
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
		for !p.inv.done && !deadlinePassed && !graceOver {
			sel.Select(ctx)
		}
		cancelLife()
		if !p.inv.done {
			// The deadline, or a job served elsewhere: cancel the
			// invocation and wait for its cleanup (the request aborted,
			// the task stopped).
			p.inv.cancel()
			_ = p.inv.future.Get(ctx, &p.inv.res)
			p.res.Outcome = "deadline"
			if !deadlinePassed {
				p.res.Outcome = "job-finished"
			}
		}
	}
	if p.res.Outcome == "" {
		switch {
		case p.inv.err != nil:
			p.res.Outcome = "invocation-failed"
			p.log.Warn("invocation failed", "runner", p.runnerID, "error", p.inv.err)
		case len(p.inv.res.Jobs) > 0:
			p.res.Outcome = "job-finished"
		default:
			p.res.Outcome = "no-job"
		}
	}
}

// tearDown tears a one-job runner down with DeprovisionRunner, as a child.
func (p *provisioning) tearDown() (contract.ProvisionRunnerResult, error) {
	ctx := p.ctx
	p.status.Step = "tearing down"
	child := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: contract.DeprovisionWorkflowID(p.runnerID)})
	var dres contract.DeprovisionRunnerResult
	err := workflow.ExecuteChildWorkflow(child, contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
		RunnerID: p.runnerID, GitLab: p.in.Egg.GitLab, Reason: "one-job runner: " + p.res.Outcome, Actor: contract.ActorMotherGoose,
	}).Get(ctx, &dres)
	if err != nil {
		return p.res, fmt.Errorf("tear down runner %s: %w", p.runnerID, err)
	}
	p.res.State = string(store.StateTerminated)
	p.status.Step = p.res.State
	return p.res, nil
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
