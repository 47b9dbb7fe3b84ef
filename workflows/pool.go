package workflows

import (
	"errors"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"
)

// DefaultPoolTick is how often a pool looks at idle runners.
const DefaultPoolTick = 15 * time.Second

// knownJobs bounds how many recent job IDs a pool remembers for
// deduplication.
const knownJobs = 2000

// Pool is the long-lived workflow of one egg: it keeps the egg's Apex
// (active) and Nadir (dormant) runners and serves demand from them.
//
// What to do is decided by PlanPool, a pure function of the pool's state
// and what happened; this workflow only carries its actions out (starts
// activities and child workflows) and feeds their outcomes back in as
// events. Runners are made and torn down by ProvisionRunner and
// DeprovisionRunner, which report back by signal, so the pool can continue
// as new at any quiet moment without losing a runner or a waiting job.
func Pool(ctx workflow.Context, in contract.PoolInput) error {
	p := newPool(ctx, in)
	return p.run()
}

type pool struct {
	ctx  workflow.Context
	in   contract.PoolInput
	st   *contract.PoolState
	id   string
	loop *runLoop
	// pr is what the planner knows of this run: its cloud and versions.
	pr PoolRun
	// published is what the pool last put in its memo.
	published *contract.PoolFigures
}

// versionPoolRunnerProjects marks pool runs that enable their project
// runners in the projects an egg gains (AssignRunnerProjects).
const versionPoolRunnerProjects = "pool-runner-projects"

// versionPoolJobOrder marks pool runs that remember jobs that need no
// runner any more (contract.PoolState.Done), read a demanded job's status
// with its tags (JobInfo) and drop demand for a job no longer pending.
const versionPoolJobOrder = "pool-job-order"

// versionPoolHoldJobs marks pool runs in which an agent's report of a job
// it runs makes its runner the job's holder (PoolRun.HoldJobs).
const versionPoolHoldJobs = "pool-agent-reports-hold-jobs"

func newPool(ctx workflow.Context, in contract.PoolInput) *pool {
	st := in.State
	if st == nil {
		st = &contract.PoolState{Egg: in.Egg}
	}
	if st.Stats.Served == nil {
		st.Stats.Served = map[string]int{}
	}
	if st.Stats.DemandToRunner == nil {
		st.Stats.DemandToRunner = map[string]time.Duration{}
	}
	st.Stats.Runs++
	cloud := in.Cloud
	if cloud == "" && len(st.Egg.Runner.Clouds) > 0 {
		cloud = st.Egg.Runner.Clouds[0]
	}
	tick := in.Tick
	if tick <= 0 {
		tick = DefaultPoolTick
	}
	p := &pool{ctx: ctx, in: in, st: st, id: workflow.GetInfo(ctx).WorkflowExecution.ID, loop: newRunLoop(ctx, tick)}
	p.pr.Cloud = cloud
	p.pr.JobOrder = workflow.GetVersion(ctx, versionPoolJobOrder, workflow.DefaultVersion, 1) >= 1
	p.pr.AssignProjects = workflow.GetVersion(ctx, versionPoolRunnerProjects, workflow.DefaultVersion, 1) >= 1
	p.pr.Warm = workflow.GetVersion(ctx, versionPoolWarm, workflow.DefaultVersion, 1) >= 1
	return p
}

// limits are the egg's pool limits with any temporary overrides.
func (p *pool) limits() contract.PoolLimits { return PoolLimitsOf(p.st) }

func (p *pool) run() error {
	if err := p.registerHandlers(); err != nil {
		return err
	}
	l := p.loop
	onSignal(l, contract.SignalDemand, func(d contract.Demand) { p.plan(DemandReceived{Demand: d}) })
	onSignal(l, contract.SignalJobStatus, func(s contract.JobStatus) { p.plan(JobStatusReceived{Status: s}) })
	onSignal(l, contract.SignalRunnerProvisioned, func(m contract.RunnerProvisioned) { p.plan(ProvisionReported{Report: m}) })
	onSignal(l, contract.SignalRunnerRetired, func(m contract.RunnerRetired) { p.plan(RetireReported{Report: m}) })
	onSignal(l, contract.SignalRunnerReady, func(m contract.RunnerReady) { p.plan(ReadyReported{Ready: m}) })
	onSignal(l, contract.SignalPoolSpec, func(e fly.Egg) { p.plan(SpecChanged{Egg: e}) })
	onSignal(l, contract.SignalRunnerAction, func(a contract.RunnerAction) { p.plan(RunnerActionReceived{Action: a}) })
	onSignal(l, contract.SignalPoolWarm, func(w contract.Warm) { p.plan(WarmReceived{Warm: w}) })
	onSignal(l, contract.SignalRunnerInterrupted, func(m contract.RunnerInterrupted) { p.plan(InterruptReported{Report: m}) })
	return l.run(loopHooks{
		settle:     func() { p.plan(Settle{}) },
		tickWanted: func() bool { return true },
		onTick:     func() { p.plan(TickElapsed{}) },
		batchDone:  p.publish,
		cancelled: func() {
			// Cancelling a pool stops it; its runners live on and a new
			// pool for the egg finds them through the store.
			workflow.GetLogger(p.ctx).Info("pool cancelled", "runners", len(p.st.Runners))
		},
		continueAsNew: func() error {
			next := p.in
			next.State = p.st
			return workflow.NewContinueAsNewError(p.ctx, Pool, next)
		},
	})
}

// plan has PlanPool decide on an event, takes its next state and carries
// out its actions in order. It returns the plan.
func (p *pool) plan(ev PoolEvent) PoolPlan {
	run := p.pr
	if s, ok := ev.(JobStatusReceived); ok && HoldJobsMatters(p.st, s.Status) {
		run.HoldJobs = workflow.GetVersion(p.ctx, versionPoolHoldJobs, workflow.DefaultVersion, 1) == 1
	}
	plan := PlanPool(*p.st, ev, workflow.Now(p.ctx), run)
	*p.st = plan.State
	log := workflow.GetLogger(p.ctx)
	for _, n := range plan.Notes {
		if n.Warn {
			log.Warn(n.Msg, n.Args...)
		} else {
			log.Info(n.Msg, n.Args...)
		}
	}
	for _, a := range plan.Actions {
		p.carryOut(a)
	}
	return plan
}

// carryOut starts what an action asks for; outcomes come back through the
// loop as events.
func (p *pool) carryOut(act PoolAction) {
	ctx := p.ctx
	var a *activities.Activities
	log := workflow.GetLogger(ctx)
	switch act.Kind {
	case PoolReadJob:
		d := act.Demand
		if !p.pr.JobOrder {
			f := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobTags, activities.JobTagsInput{GitLab: p.st.Egg.GitLab, ProjectID: d.Job.ProjectID, JobID: d.Job.JobID})
			p.loop.await(f, func(f workflow.Future) {
				ev := JobLookedUp{Demand: d, TagsOnly: true}
				if err := f.Get(ctx, &ev.Job.Tags); err != nil {
					ev.Err = err.Error()
				}
				p.plan(ev)
			})
			return
		}
		f := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobInfo, activities.JobInfoInput{GitLab: p.st.Egg.GitLab, ProjectID: d.Job.ProjectID, JobID: d.Job.JobID})
		p.loop.await(f, func(f workflow.Future) {
			ev := JobLookedUp{Demand: d}
			if err := f.Get(ctx, &ev.Job); err != nil {
				ev.Err = err.Error()
			}
			p.plan(ev)
		})
	case PoolProvision:
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID:        p.id + "/runner/" + act.RunnerID,
			ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		})
		child := workflow.ExecuteChildWorkflow(cctx, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{
			RunnerID: act.RunnerID, Egg: p.st.Egg, Cloud: p.pr.Cloud, Provider: p.in.Provider, Providers: p.in.Providers, Dormant: act.Dormant, Owner: p.id,
			Avoid: act.Avoid,
		})
		// The pool learns the outcome by signal; it only waits for the
		// start, so a continue-as-new never loses a runner being made.
		p.loop.await(child.GetChildWorkflowExecution(), func(f workflow.Future) {
			if err := f.Get(ctx, nil); err != nil {
				log.Error("start ProvisionRunner", "runner", act.RunnerID, "error", err)
				p.plan(ProvisionNotStarted{RunnerID: act.RunnerID})
			}
		})
	case PoolPromote:
		f := workflow.ExecuteActivity(tofuCtx(ctx), a.PromoteRunner, p.machine(act.RunnerID))
		p.loop.await(f, func(f workflow.Future) {
			if err := f.Get(ctx, nil); err != nil {
				p.plan(PromoteFailed{RunnerID: act.RunnerID, Err: err.Error()})
			}
		})
	case PoolDemote:
		f := workflow.ExecuteActivity(tofuCtx(ctx), a.DemoteRunner, p.machine(act.RunnerID))
		p.loop.await(f, func(f workflow.Future) {
			var res activities.DemoteResult
			ev := DemoteEnded{RunnerID: act.RunnerID}
			if err := f.Get(ctx, &res); err != nil {
				ev.Err = err.Error()
			}
			ev.Busy = res.Busy
			p.plan(ev)
		})
	case PoolRetire:
		p.deprovision(act.RunnerID, act.Reason, p.id)
	case PoolTearDown:
		p.deprovision(act.RunnerID, act.Reason, "")
	case PoolRecord:
		_ = transition(ctx, act.RunnerID, act.To, act.Reason)
	case PoolAssign:
		r := p.runner(act.RunnerID)
		if r == nil {
			return
		}
		f := workflow.ExecuteActivity(gitlabCtx(ctx), a.AssignRunnerProjects, activities.AssignRunnerProjectsInput{
			GitLab: p.st.Egg.GitLab, GitLabRunnerID: r.GitLabRunnerID, Projects: p.st.Egg.Projects,
		})
		p.loop.await(f, func(f workflow.Future) {
			if err := f.Get(ctx, nil); err != nil {
				log.Warn("assign runner to the egg's projects", "runner", act.RunnerID, "error", err)
				p.plan(AssignFailed{RunnerID: act.RunnerID, Projects: act.Projects})
			}
		})
	case PoolRetryJob:
		f := workflow.ExecuteActivity(gitlabCtx(ctx), a.RetryInterruptedJob, activities.RetryJobInput{
			GitLab: p.st.Egg.GitLab, Egg: p.st.Egg.Name, RunnerID: act.RunnerID, Job: act.Job,
		})
		p.loop.await(f, func(f workflow.Future) {
			ev := JobRetryEnded{JobID: act.Job.JobID}
			if err := f.Get(ctx, &ev.Result); err != nil {
				ev.Err = err.Error()
			}
			p.plan(ev)
		})
	default:
		log.Error("unknown pool action", "action", act.Kind)
	}
}

// publish puts the pool's figures in its memo when they changed since the
// last time (and once at the start of each run), so a metrics scrape reads
// every pool in one visibility list (contract.MemoPoolFigures).
func (p *pool) publish() {
	if workflow.GetVersion(p.ctx, "pool-publishes-figures", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	f := p.figures()
	if p.published != nil && sameFigures(*p.published, f) {
		return
	}
	if err := workflow.UpsertMemo(p.ctx, map[string]any{contract.MemoPoolFigures: f}); err != nil {
		workflow.GetLogger(p.ctx).Warn("publish pool figures", "error", err)
		return
	}
	p.published = &f
}

func sameFigures(a, b contract.PoolFigures) bool {
	return a.Egg == b.Egg && a.Waiting == b.Waiting && a.Promotions == b.Promotions && a.Demotions == b.Demotions &&
		sameMap(a.Counts, b.Counts) && sameMap(a.Served, b.Served) && sameMap(a.DemandToRunner, b.DemandToRunner)
}

// sameMap compares two maps, visiting keys in a deterministic order.
func sameMap[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for _, k := range workflow.DeterministicKeys(a) {
		if v, ok := b[k]; !ok || v != a[k] {
			return false
		}
	}
	return true
}

// cloneMap copies a map, visiting keys in a deterministic order.
func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for _, k := range workflow.DeterministicKeys(m) {
		out[k] = m[k]
	}
	return out
}

func (p *pool) figures() contract.PoolFigures {
	f := contract.PoolFigures{
		Egg: p.st.Egg.Name, Counts: map[string]int{}, Waiting: len(p.st.Waiting),
		Promotions: p.st.Stats.Promotions, Demotions: p.st.Stats.Demotions,
		Served: cloneMap(p.st.Stats.Served), DemandToRunner: cloneMap(p.st.Stats.DemandToRunner),
	}
	for _, r := range p.st.Runners {
		f.Counts[r.State]++
	}
	return f
}

func (p *pool) registerHandlers() error {
	ctx := p.ctx
	if err := workflow.SetQueryHandler(ctx, contract.QueryPoolStatus, func() (contract.PoolStatus, error) { return p.status(), nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdatePoolScale, func(ctx workflow.Context, s contract.PoolScale) (contract.PoolLimits, error) {
		p.plan(ScaleRequested{Scale: s})
		return p.limits(), nil
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, s contract.PoolScale) error {
		return ValidatePoolScale(p.st, s)
	}})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdatePoolDrain, func(ctx workflow.Context) (int, error) {
		n := 0
		for _, a := range p.plan(DrainRequested{}).Actions {
			if a.Kind == PoolRetire {
				n++
			}
		}
		return n, nil
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context) error {
		if p.st.Draining {
			return errors.New("the pool is already draining")
		}
		return nil
	}})
}

func (p *pool) runner(id string) *contract.PoolRunner {
	for _, r := range p.st.Runners {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// machine is what PromoteRunner and DemoteRunner need of a runner.
func (p *pool) machine(runnerID string) activities.PowerInput {
	r := p.runner(runnerID)
	if r == nil {
		r = &contract.PoolRunner{ID: runnerID}
	}
	cloud, provider := p.pr.Cloud, p.in.Provider
	if r.Cloud != "" && r.Cloud != p.pr.Cloud {
		// Made on a later cloud of the egg: the first one refused it.
		cloud = r.Cloud
		if pr, ok := p.in.Providers[r.Cloud]; ok {
			provider = pr
		}
	}
	return activities.PowerInput{
		GitLabRunnerID: r.GitLabRunnerID,
		Machine: activities.ApplyMachineInput{
			RunnerID: r.ID, Egg: p.st.Egg, Cloud: cloud, Kind: r.Kind, Provider: provider,
			TokenRef: r.TokenRef, ReadyWorkflowID: p.id,
		},
	}
}

// deprovision starts DeprovisionRunner for a runner; owner, when set, is
// told how it ended. The pool waits only for the start.
func (p *pool) deprovision(runnerID, why, owner string) {
	ctx := p.ctx
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        contract.DeprovisionWorkflowID(runnerID),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	child := workflow.ExecuteChildWorkflow(cctx, contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
		RunnerID: runnerID, GitLab: p.st.Egg.GitLab, Reason: why, Actor: contract.ActorPool, Owner: owner,
	})
	p.loop.await(child.GetChildWorkflowExecution(), func(f workflow.Future) {
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("start DeprovisionRunner", "runner", runnerID, "error", err)
		}
	})
}

// --- status -------------------------------------------------------------

func (p *pool) status() contract.PoolStatus {
	s := contract.PoolStatus{
		Egg: p.st.Egg.Name, Limits: p.limits(), Counts: map[string]int{}, Waiting: len(p.st.Waiting),
		Draining: p.st.Draining, CPU: map[string]float64{}, Memory: map[string]fly.Size{}, Stats: p.st.Stats,
		HistoryLength: workflow.GetInfo(p.ctx).GetCurrentHistoryLength(), Expected: slices.Clone(p.st.Expected),
		Ignored: slices.Clone(p.st.Ignored), Refused: slices.Clone(p.st.Refused),
		Interrupted: slices.Clone(p.st.Interrupted),
	}
	for _, r := range p.st.Runners {
		s.Counts[r.State]++
		s.Runners = append(s.Runners, *r)
		pool := contract.PoolApex
		if r.State == contract.PoolNadir || r.State == contract.PoolDemoting {
			pool = contract.PoolNadir
		}
		s.CPU[pool] += r.CPU
		s.Memory[pool] += r.Memory
	}
	for _, w := range p.st.Waiting {
		s.WaitingJobs = append(s.WaitingJobs, w.Job.JobID)
	}
	return s
}
