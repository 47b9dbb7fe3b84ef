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
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"
)

// DefaultPoolTick is how often a pool looks at idle runners.
const DefaultPoolTick = 15 * time.Second

// maxPoolHistory and maxPoolEvents make a pool continue as new well before
// the server would suggest it, so replaying its history stays fast: after
// that many history events, or that many signals, timers and results
// handled in one run. Tests lower them.
var (
	maxPoolHistory = 4000
	maxPoolEvents  = 1000
)

// knownJobs bounds how many recent job IDs a pool remembers for
// deduplication.
const knownJobs = 2000

// Pool is the long-lived workflow of one egg: it keeps the egg's Apex
// (active) and Nadir (dormant) runners and serves demand from them.
//
// A demand is served by an Apex runner with a free slot, else by promoting
// a Nadir runner, else by provisioning a new one, never beyond the egg's
// limits; what cannot be served yet waits in order. An Apex runner idle past
// its idle timeout is demoted to Nadir (or retired when Nadir is full); Nadir
// is kept at its minimum ahead of demand. Runners are made and torn down by
// ProvisionRunner and DeprovisionRunner, which report back by signal, so
// the pool can continue as new at any quiet moment without losing a runner
// or a waiting job.
func Pool(ctx workflow.Context, in contract.PoolInput) error {
	p := newPool(ctx, in)
	return p.run()
}

type pool struct {
	ctx   workflow.Context
	in    contract.PoolInput
	st    *contract.PoolState
	id    string
	cloud string
	tick  time.Duration
	// inFlight counts activities and child starts whose outcome this run
	// must see before it may continue as new.
	inFlight int
	// handled counts what this run has handled (see maxPoolEvents).
	handled int
	sel     workflow.Selector
	// published is what the pool last put in its memo.
	published *contract.PoolFigures
	// jobOrder is set for runs that allow for late and unordered job
	// events (versionPoolJobOrder).
	jobOrder bool
	// assignProjects is set for runs that keep their runners enabled in
	// every project of the egg (versionPoolRunnerProjects).
	assignProjects bool
	// warm is set for runs that promote Nadir runners ahead of announced
	// jobs (versionPoolWarm).
	warm bool
}

// versionPoolRunnerProjects marks pool runs that enable their project
// runners in the projects an egg gains (AssignRunnerProjects).
const versionPoolRunnerProjects = "pool-runner-projects"

// versionPoolJobOrder marks pool runs that remember jobs that need no
// runner any more (contract.PoolState.Done), read a demanded job's status
// with its tags (JobInfo) and drop demand for a job no longer pending.
const versionPoolJobOrder = "pool-job-order"

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
	p := &pool{ctx: ctx, in: in, st: st, id: workflow.GetInfo(ctx).WorkflowExecution.ID, cloud: cloud, tick: tick}
	p.jobOrder = workflow.GetVersion(ctx, versionPoolJobOrder, workflow.DefaultVersion, 1) >= 1
	p.assignProjects = workflow.GetVersion(ctx, versionPoolRunnerProjects, workflow.DefaultVersion, 1) >= 1
	p.warm = workflow.GetVersion(ctx, versionPoolWarm, workflow.DefaultVersion, 1) >= 1
	return p
}

// limits are the egg's pool limits with any temporary overrides.
func (p *pool) limits() contract.PoolLimits {
	e := p.st.Egg
	l := contract.PoolLimits{ApexMin: e.Apex.Min, ApexMax: e.Apex.Max, NadirMin: e.Nadir.Min, NadirMax: e.Nadir.Max}
	if o := p.st.Overrides; o != nil {
		l = *o
	}
	if l.ApexMax > e.Runner.MaxConcurrent {
		l.ApexMax = e.Runner.MaxConcurrent
	}
	return l
}

func (p *pool) run() error {
	ctx := p.ctx
	log := workflow.GetLogger(ctx)
	if err := p.registerHandlers(); err != nil {
		return err
	}
	demandCh := workflow.GetSignalChannel(ctx, contract.SignalDemand)
	jobCh := workflow.GetSignalChannel(ctx, contract.SignalJobStatus)
	provisionedCh := workflow.GetSignalChannel(ctx, contract.SignalRunnerProvisioned)
	retiredCh := workflow.GetSignalChannel(ctx, contract.SignalRunnerRetired)
	readyCh := workflow.GetSignalChannel(ctx, contract.SignalRunnerReady)
	specCh := workflow.GetSignalChannel(ctx, contract.SignalPoolSpec)
	actionCh := workflow.GetSignalChannel(ctx, contract.SignalRunnerAction)
	warmCh := workflow.GetSignalChannel(ctx, contract.SignalPoolWarm)

	p.sel = workflow.NewSelector(ctx)
	p.sel.AddReceive(demandCh, func(c workflow.ReceiveChannel, _ bool) {
		var d contract.Demand
		c.Receive(ctx, &d)
		p.onDemand(d)
	})
	p.sel.AddReceive(jobCh, func(c workflow.ReceiveChannel, _ bool) {
		var s contract.JobStatus
		c.Receive(ctx, &s)
		p.onJobStatus(s)
	})
	p.sel.AddReceive(provisionedCh, func(c workflow.ReceiveChannel, _ bool) {
		var m contract.RunnerProvisioned
		c.Receive(ctx, &m)
		p.onProvisioned(m)
	})
	p.sel.AddReceive(retiredCh, func(c workflow.ReceiveChannel, _ bool) {
		var m contract.RunnerRetired
		c.Receive(ctx, &m)
		p.onRetired(m)
	})
	p.sel.AddReceive(readyCh, func(c workflow.ReceiveChannel, _ bool) {
		var m contract.RunnerReady
		c.Receive(ctx, &m)
		p.onReady(m)
	})
	p.sel.AddReceive(specCh, func(c workflow.ReceiveChannel, _ bool) {
		var e fly.Egg
		c.Receive(ctx, &e)
		p.st.Egg = e
		log.Info("egg spec updated; it applies to future runners", "version", e.Version)
		p.assignAll()
	})
	p.sel.AddReceive(actionCh, func(c workflow.ReceiveChannel, _ bool) {
		var a contract.RunnerAction
		c.Receive(ctx, &a)
		p.onAction(a)
	})
	p.sel.AddReceive(warmCh, func(c workflow.ReceiveChannel, _ bool) {
		var w contract.Warm
		c.Receive(ctx, &w)
		p.onWarm(w)
	})
	ticking := false
	for {
		if !ticking {
			ticking = true
			p.sel.AddFuture(workflow.NewTimer(ctx, p.tick), func(workflow.Future) {
				ticking = false
				p.scale()
			})
		}
		p.serve()
		p.scale()
		p.sel.Select(ctx)
		p.handled++
		// Take whatever else is already there before deciding anything.
		for p.sel.HasPending() && ctx.Err() == nil {
			p.sel.Select(ctx)
			p.handled++
		}
		p.publish()
		if err := ctx.Err(); err != nil {
			// Cancelling a pool stops it; its runners live on and a new
			// pool for the egg finds them through the store.
			log.Info("pool cancelled", "runners", len(p.st.Runners))
			return err
		}
		if p.shouldContinueAsNew() {
			if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
				return err
			}
			if p.inFlight == 0 && !p.sel.HasPending() {
				next := p.in
				next.State = p.st
				return workflow.NewContinueAsNewError(ctx, Pool, next)
			}
		}
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

func (p *pool) shouldContinueAsNew() bool {
	info := workflow.GetInfo(p.ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() > maxPoolHistory || p.handled > maxPoolEvents
}

func (p *pool) registerHandlers() error {
	ctx := p.ctx
	if err := workflow.SetQueryHandler(ctx, contract.QueryPoolStatus, func() (contract.PoolStatus, error) { return p.status(), nil }); err != nil {
		return err
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdatePoolScale, func(ctx workflow.Context, s contract.PoolScale) (contract.PoolLimits, error) {
		// Scaling a drained pool resumes it.
		p.st.Draining = false
		if s.Reset {
			p.st.Overrides = nil
			return p.limits(), nil
		}
		l := p.limits()
		set := func(dst *int, v *int) {
			if v != nil {
				*dst = *v
			}
		}
		set(&l.ApexMin, s.ApexMin)
		set(&l.ApexMax, s.ApexMax)
		set(&l.NadirMin, s.NadirMin)
		set(&l.NadirMax, s.NadirMax)
		p.st.Overrides = &l
		return p.limits(), nil
	}, workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, s contract.PoolScale) error {
		l := p.limits()
		for _, f := range []struct {
			v    *int
			dst  *int
			name string
		}{{s.ApexMin, &l.ApexMin, "apex_min"}, {s.ApexMax, &l.ApexMax, "apex_max"}, {s.NadirMin, &l.NadirMin, "nadir_min"}, {s.NadirMax, &l.NadirMax, "nadir_max"}} {
			if f.v == nil {
				continue
			}
			if *f.v < 0 || *f.v > 1000 {
				return fmt.Errorf("%s must be from 0 to 1000", f.name)
			}
			*f.dst = *f.v
		}
		if l.ApexMin > l.ApexMax {
			return fmt.Errorf("apex_min (%d) is above apex_max (%d)", l.ApexMin, l.ApexMax)
		}
		if l.NadirMin > l.NadirMax {
			return fmt.Errorf("nadir_min (%d) is above nadir_max (%d)", l.NadirMin, l.NadirMax)
		}
		if l.ApexMax > p.st.Egg.Runner.MaxConcurrent {
			return fmt.Errorf("apex_max (%d) is above the egg's max_concurrent (%d)", l.ApexMax, p.st.Egg.Runner.MaxConcurrent)
		}
		if l.NadirMax > 0 && p.st.Egg.Runner.Type == fly.RunnerServerless {
			return errors.New("serverless runners cannot be dormant: nadir_max must be 0")
		}
		return nil
	}})
	if err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, contract.UpdatePoolDrain, func(ctx workflow.Context) (int, error) {
		p.st.Draining = true
		n := 0
		for _, r := range p.st.Runners {
			if r.State == contract.PoolApex || r.State == contract.PoolNadir {
				p.retire(r, "pool drained")
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

// --- demand and jobs ---------------------------------------------------

func (p *pool) known(jobID int64) bool {
	return slices.Contains(p.st.Known, jobID)
}

func (p *pool) remember(jobID int64) {
	p.st.Known = append(p.st.Known, jobID)
	if len(p.st.Known) > knownJobs {
		p.st.Known = p.st.Known[len(p.st.Known)-knownJobs:]
	}
}

// done tells whether a job needs no runner any more.
func (p *pool) done(jobID int64) bool {
	return p.jobOrder && slices.Contains(p.st.Done, jobID)
}

// markDone remembers that a job needs no runner any more, and takes it out
// of the queue.
func (p *pool) markDone(jobID int64) {
	if !p.jobOrder {
		return
	}
	p.st.Waiting = slices.DeleteFunc(p.st.Waiting, func(w contract.Waiting) bool { return w.Job.JobID == jobID })
	if slices.Contains(p.st.Done, jobID) {
		return
	}
	p.st.Done = append(p.st.Done, jobID)
	if len(p.st.Done) > knownJobs {
		p.st.Done = p.st.Done[len(p.st.Done)-knownJobs:]
	}
}

func (p *pool) onDemand(d contract.Demand) {
	if p.known(d.Job.JobID) {
		return // GitLab retried, or a duplicate webhook got this far
	}
	p.remember(d.Job.JobID)
	log := workflow.GetLogger(p.ctx)
	if p.done(d.Job.JobID) {
		log.Info("demand dropped: the job is running or over already", "job", d.Job.JobID)
		return
	}
	if d.At.IsZero() {
		d.At = workflow.Now(p.ctx)
	}
	if d.Job.Tags != nil || d.Job.ProjectID == 0 {
		p.admit(d, d.Job.Tags)
		return
	}
	// Job webhooks carry no tags: read them from the Jobs API first.
	ctx := p.ctx
	var a *activities.Activities
	p.inFlight++
	if !p.jobOrder {
		f := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobTags, activities.JobTagsInput{GitLab: p.st.Egg.GitLab, ProjectID: d.Job.ProjectID, JobID: d.Job.JobID})
		p.sel.AddFuture(f, func(f workflow.Future) {
			p.inFlight--
			var tags []string
			if err := f.Get(ctx, &tags); err != nil {
				log.Warn("cannot read job tags; job ignored", "job", d.Job.JobID, "error", err)
				return
			}
			p.admit(d, tags)
		})
		return
	}
	f := workflow.ExecuteActivity(gitlabCtx(ctx), a.JobInfo, activities.JobInfoInput{GitLab: p.st.Egg.GitLab, ProjectID: d.Job.ProjectID, JobID: d.Job.JobID})
	p.sel.AddFuture(f, func(f workflow.Future) {
		p.inFlight--
		var job activities.JobInfo
		if err := f.Get(ctx, &job); err != nil {
			log.Warn("cannot read the job; job ignored", "job", d.Job.JobID, "error", err)
			return
		}
		if !job.NeedsRunner() {
			// Hooks come late: the job has a runner, or is over.
			log.Info("demand dropped: the job is no longer pending", "job", d.Job.JobID, "status", job.Status)
			p.markDone(d.Job.JobID)
			return
		}
		p.admit(d, job.Tags)
	})
}

// admit puts a job in line if this egg's runners can take it and it still
// needs a runner.
func (p *pool) admit(d contract.Demand, tags []string) {
	if p.done(d.Job.JobID) {
		workflow.GetLogger(p.ctx).Info("demand dropped: the job ended while it was looked up", "job", d.Job.JobID)
		return
	}
	if ok, why := contract.TagsMatch(p.st.Egg.Runner, tags); !ok {
		workflow.GetLogger(p.ctx).Info("job ignored: no runner of this egg can take it", "job", d.Job.JobID, "reason", why)
		p.st.Ignored = append(p.st.Ignored, contract.IgnoredJob{JobID: d.Job.JobID, Reason: "no runner of egg " + p.st.Egg.Name + " can take it: " + why, At: workflow.Now(p.ctx)})
		if n := len(p.st.Ignored); n > contract.MaxIgnoredJobs {
			p.st.Ignored = slices.Clone(p.st.Ignored[n-contract.MaxIgnoredJobs:])
		}
		return
	}
	d.Job.Tags = tags
	p.st.Waiting = append(p.st.Waiting, contract.Waiting(d))
	p.arrived(d.Job.JobID)
}

func (p *pool) onJobStatus(s contract.JobStatus) {
	r := p.runnerWithJob(s.JobID)
	if s.Status == "running" && s.RunnerID != "" {
		r = p.heldBy(s, r)
	}
	if !s.Finished() {
		if s.Status == "running" {
			// A runner has the job: it waits no more, and a demand that
			// comes after this is late.
			p.markDone(s.JobID)
		}
		if r != nil && s.Status == "running" {
			r.LastJob, r.LastJobAt = s.JobID, workflow.Now(p.ctx)
		}
		return
	}
	p.markDone(s.JobID)
	if !slices.Contains(p.st.Ended, s.JobID) {
		p.st.Ended = append(p.st.Ended, s.JobID)
		if len(p.st.Ended) > knownJobs {
			p.st.Ended = p.st.Ended[len(p.st.Ended)-knownJobs:]
		}
	}
	// A job that ends while it waits needs no runner any more.
	p.st.Waiting = slices.DeleteFunc(p.st.Waiting, func(w contract.Waiting) bool { return w.Job.JobID == s.JobID })
	if r == nil {
		return
	}
	r.Jobs = slices.DeleteFunc(r.Jobs, func(id int64) bool { return id == s.JobID })
	r.LastJob, r.LastJobAt = s.JobID, workflow.Now(p.ctx)
	if len(r.Jobs) == 0 {
		r.IdleSince = workflow.Now(p.ctx)
	}
	p.st.Stats.JobsFinished++
}

// heldBy makes the pool runner whose agent reports a job running the
// job's holder (GitLab, not the pool, chose it): the job leaves the line
// and any other runner's slot, and a job an Apex runner took before its
// demand arrived counts as served from Apex and settles what was
// announced. It returns the runner that
// holds the job now (held, the one that did, when the reporter is not
// this pool's).
func (p *pool) heldBy(s contract.JobStatus, held *contract.PoolRunner) *contract.PoolRunner {
	holder := p.runner(s.RunnerID)
	if holder == nil || holder == held || slices.Contains(p.st.Ended, s.JobID) ||
		workflow.GetVersion(p.ctx, "pool-agent-reports-hold-jobs", workflow.DefaultVersion, 1) != 1 {
		return held
	}
	if held != nil {
		held.Jobs = slices.DeleteFunc(held.Jobs, func(id int64) bool { return id == s.JobID })
		if len(held.Jobs) == 0 {
			held.IdleSince = workflow.Now(p.ctx)
		}
	} else {
		since, waited := workflow.Now(p.ctx), false
		for _, w := range p.st.Waiting {
			if w.Job.JobID == s.JobID {
				since, waited = w.At, true
			}
		}
		if holder.State == contract.PoolApex {
			p.served(contract.ServedByApex, since)
		}
		if !waited {
			p.arrived(s.JobID) // what a push announced has come
		}
	}
	p.st.Waiting = slices.DeleteFunc(p.st.Waiting, func(w contract.Waiting) bool { return w.Job.JobID == s.JobID })
	holder.Jobs = append(holder.Jobs, s.JobID)
	holder.IdleSince, holder.WarmUntil = time.Time{}, time.Time{}
	return holder
}

func (p *pool) runnerWithJob(jobID int64) *contract.PoolRunner {
	for _, r := range p.st.Runners {
		if slices.Contains(r.Jobs, jobID) {
			return r
		}
	}
	return nil
}

// serve gives waiting jobs, in order, a slot: an idle Apex slot first, then
// a promoted Nadir runner, then a new runner.
func (p *pool) serve() {
	if p.st.Draining {
		return
	}
	// Jobs put back in line by a runner that failed or left may have
	// ended meanwhile.
	p.st.Waiting = slices.DeleteFunc(p.st.Waiting, func(w contract.Waiting) bool { return p.done(w.Job.JobID) })
	slots := max(1, p.st.Egg.Runner.JobsPerRunner)
	for len(p.st.Waiting) > 0 {
		w := p.st.Waiting[0]
		var target *contract.PoolRunner
		path := ""
		for _, r := range p.st.Runners {
			if (r.State == contract.PoolApex || r.State == contract.PoolProvisioning || r.State == contract.PoolPromoting) && len(r.Jobs) < slots && r.Recycle == "" {
				target = r
				path = contract.ServedByApex
				if r.State == contract.PoolProvisioning {
					path = contract.ServedByProvision
				} else if r.State == contract.PoolPromoting {
					path = contract.ServedByPromotion
				}
				break
			}
		}
		if target == nil && p.count(contract.PoolApex, contract.PoolPromoting)+p.countProvisioning(false) < p.limits().ApexMax && p.fits(false) {
			for _, r := range p.st.Runners {
				if r.State == contract.PoolNadir && r.Recycle == "" {
					target, path = r, contract.ServedByPromotion
					r.ServedBy, r.Since = path, w.At
					p.promote(r)
					break
				}
			}
			if target == nil && p.total() < p.st.Egg.Runner.MaxConcurrent+p.limits().NadirMax {
				target, path = p.provision(false), contract.ServedByProvision
			}
		}
		if target == nil {
			return // wait for capacity
		}
		target.Jobs = append(target.Jobs, w.Job.JobID)
		target.IdleSince, target.WarmUntil = time.Time{}, time.Time{}
		p.st.Waiting = p.st.Waiting[1:]
		if target.State == contract.PoolApex {
			p.served(path, w.At)
		} else if target.ServedBy == "" {
			// Counted when the runner is ready: provisioning and promotion take time.
			target.ServedBy, target.Since = path, w.At
		}
	}
}

func (p *pool) served(path string, since time.Time) {
	p.st.Stats.Served[path]++
	p.st.Stats.DemandToRunner[path] += workflow.Now(p.ctx).Sub(since)
}

// count counts runners in the given states.
func (p *pool) count(states ...string) int {
	n := 0
	for _, r := range p.st.Runners {
		if slices.Contains(states, r.State) {
			n++
		}
	}
	return n
}

// fits says whether one more runner of the egg stays within the Apex (or,
// dormant, the Nadir) pool's vCPU and memory caps.
func (p *pool) fits(dormant bool) bool {
	e := p.st.Egg
	lim := e.Apex
	if dormant {
		lim = e.Nadir
	}
	if lim.MaxCPU <= 0 && lim.MaxMemory <= 0 {
		return true
	}
	cpu, mem := e.Runner.CPU, e.Runner.Memory
	for _, r := range p.st.Runners {
		inNadir := r.State == contract.PoolNadir || r.State == contract.PoolDemoting || (r.State == contract.PoolProvisioning && r.Dormant)
		if r.State == contract.PoolRetiring || inNadir != dormant {
			continue
		}
		cpu += r.CPU
		mem += r.Memory
	}
	return (lim.MaxCPU <= 0 || cpu <= lim.MaxCPU) && (lim.MaxMemory <= 0 || mem <= lim.MaxMemory)
}

// total counts runners that exist or are being made (not being retired).
func (p *pool) total() int { return len(p.st.Runners) - p.count(contract.PoolRetiring) }

// --- scaling ----------------------------------------------------------

// scale applies the idle timeouts and the minimums.
func (p *pool) scale() {
	if p.st.Draining {
		return
	}
	p.retireRecycled()
	now := workflow.Now(p.ctx)
	l := p.limits()
	e := p.st.Egg
	// Idle Apex runners go to sleep, or away when Nadir is full.
	for _, r := range p.st.Runners {
		if r.State != contract.PoolApex || len(r.Jobs) > 0 || r.IdleSince.IsZero() {
			continue
		}
		if now.Sub(r.IdleSince) < e.Apex.IdleTimeout.D() || p.count(contract.PoolApex) <= l.ApexMin || !r.WarmUntil.IsZero() {
			continue // a warmed runner waits for its jobs (coolDown)
		}
		p.sleep(r, fmt.Sprintf("idle Apex runner past %s", e.Apex.IdleTimeout))
	}
	// Nadir runners asleep too long are retired, down to the minimum.
	for _, r := range p.st.Runners {
		if r.State == contract.PoolNadir && now.Sub(r.Since) >= e.Nadir.IdleTimeout.D() && p.count(contract.PoolNadir) > l.NadirMin {
			p.retire(r, fmt.Sprintf("dormant past %s", e.Nadir.IdleTimeout))
		}
	}
	// Minimums, never beyond the maximums.
	for p.count(contract.PoolApex, contract.PoolPromoting)+p.countProvisioning(false) < l.ApexMin && p.total() < e.Runner.MaxConcurrent+l.NadirMax && p.fits(false) {
		p.provision(false)
	}
	if e.Runner.Type != fly.RunnerServerless {
		for p.count(contract.PoolNadir, contract.PoolDemoting)+p.countProvisioning(true)+p.warmIdle() < l.NadirMin && p.total() < e.Runner.MaxConcurrent+l.NadirMax && p.fits(true) {
			p.provision(true)
		}
	}
	p.coolDown()
	p.warmUp()
}

// countProvisioning counts runners being made dormant (true) or active.
func (p *pool) countProvisioning(dormant bool) int {
	n := 0
	for _, r := range p.st.Runners {
		if r.State == contract.PoolProvisioning && r.Dormant == dormant {
			n++
		}
	}
	return n
}

// provision starts a ProvisionRunner for a new runner of this pool.
func (p *pool) provision(dormant bool) *contract.PoolRunner {
	ctx := p.ctx
	p.st.Seq++
	now := workflow.Now(ctx)
	r := &contract.PoolRunner{
		ID: contract.PoolRunnerID(p.st.Egg.Name, p.st.Seq), State: contract.PoolProvisioning, CPU: p.st.Egg.Runner.CPU, Memory: p.st.Egg.Runner.Memory,
		CreatedAt: now, Since: now, Dormant: dormant,
	}
	if p.assignProjects {
		// ProvisionRunner enables it in every project of this spec.
		r.Projects = contract.ProjectsKey(p.st.Egg)
	}
	p.st.Runners = append(p.st.Runners, r)
	p.st.Stats.Provisioned++
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:        p.id + "/runner/" + r.ID,
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
	})
	child := workflow.ExecuteChildWorkflow(cctx, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: r.ID, Egg: p.st.Egg, Cloud: p.cloud, Provider: p.in.Provider, Providers: p.in.Providers, Dormant: dormant, Owner: p.id,
	})
	// The pool learns the outcome by signal; it only waits for the start,
	// so a continue-as-new never loses a runner being made.
	p.inFlight++
	p.sel.AddFuture(child.GetChildWorkflowExecution(), func(f workflow.Future) {
		p.inFlight--
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("start ProvisionRunner", "runner", r.ID, "error", err)
			p.drop(r)
		}
	})
	return r
}

// assignAll enables every runner of the pool in the projects the egg
// gained since it was made.
func (p *pool) assignAll() {
	for _, r := range p.st.Runners {
		p.assign(r)
	}
}

// assign enables a runner in the egg's projects when the egg's list of
// projects changed since the runner was assigned: a bucket's runners take
// every project's jobs. Runners not registered yet are assigned when they
// are (onProvisioned); retiring ones are left alone.
func (p *pool) assign(r *contract.PoolRunner) {
	key := contract.ProjectsKey(p.st.Egg)
	if !p.assignProjects || key == "" || r.Projects == key || r.GitLabRunnerID == 0 ||
		r.State == contract.PoolProvisioning || r.State == contract.PoolRetiring {
		return
	}
	ctx := p.ctx
	var a *activities.Activities
	r.Projects = key
	p.inFlight++
	f := workflow.ExecuteActivity(gitlabCtx(ctx), a.AssignRunnerProjects, activities.AssignRunnerProjectsInput{
		GitLab: p.st.Egg.GitLab, GitLabRunnerID: r.GitLabRunnerID, Projects: p.st.Egg.Projects,
	})
	p.sel.AddFuture(f, func(f workflow.Future) {
		p.inFlight--
		if err := f.Get(ctx, nil); err != nil {
			// Asked again at the next change of the egg's projects.
			workflow.GetLogger(ctx).Warn("runner not enabled in every project of the egg", "runner", r.ID, "error", err)
			if r.Projects == key {
				r.Projects = ""
			}
		}
	})
}

func (p *pool) onProvisioned(m contract.RunnerProvisioned) {
	r := p.runner(m.RunnerID)
	if r == nil {
		return
	}
	defer p.assign(r)
	if m.Cloud != "" && m.Cloud != p.cloud {
		r.Cloud = m.Cloud
	}
	switch m.State {
	case string(store.StateActive):
		r.State, r.Kind, r.GitLabRunnerID, r.TokenRef = contract.PoolApex, m.Kind, m.GitLabRunnerID, m.TokenRef
		p.becameApex(r)
	case string(store.StateDormant):
		r.State, r.Kind, r.GitLabRunnerID, r.TokenRef = contract.PoolNadir, m.Kind, m.GitLabRunnerID, m.TokenRef
		if len(r.Jobs) > 0 {
			p.promote(r) // demand came while it was being made
		} else {
			r.Since = workflow.Now(p.ctx)
		}
	default:
		workflow.GetLogger(p.ctx).Warn("runner provisioning failed", "runner", m.RunnerID, "error", m.Error)
		p.st.Stats.Failed++
		p.drop(r)
	}
}

// becameApex counts the demand a runner now serves and marks it idle if it has none.
func (p *pool) becameApex(r *contract.PoolRunner) {
	now := workflow.Now(p.ctx)
	if len(r.Jobs) > 0 && r.ServedBy != "" {
		p.served(r.ServedBy, r.Since)
	} else if len(r.Jobs) == 0 {
		r.IdleSince = now
	}
	r.ServedBy, r.Dormant, r.Since = "", false, now
}

// drop forgets a runner and puts the jobs it was reserved for back in line.
func (p *pool) drop(r *contract.PoolRunner) {
	var back []contract.Waiting
	for _, id := range r.Jobs {
		back = append(back, contract.Waiting{Job: contract.JobRef{JobID: id}, At: r.Since})
	}
	p.st.Waiting = append(back, p.st.Waiting...)
	p.st.Runners = slices.DeleteFunc(p.st.Runners, func(x *contract.PoolRunner) bool { return x == r })
}

func (p *pool) runner(id string) *contract.PoolRunner {
	for _, r := range p.st.Runners {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func (p *pool) machine(r *contract.PoolRunner) activities.PowerInput {
	cloud, provider := p.cloud, p.in.Provider
	if r.Cloud != "" && r.Cloud != p.cloud {
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

// promote resumes a Nadir runner; it is Apex once its agent reports ready.
func (p *pool) promote(r *contract.PoolRunner) {
	ctx := p.ctx
	var a *activities.Activities
	r.State = contract.PoolPromoting
	if r.ServedBy == "" && len(r.Jobs) > 0 {
		r.ServedBy = contract.ServedByPromotion
	}
	p.st.Stats.Promotions++
	p.inFlight++
	f := workflow.ExecuteActivity(tofuCtx(ctx), a.PromoteRunner, p.machine(r))
	p.sel.AddFuture(f, func(f workflow.Future) {
		p.inFlight--
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Error("promotion failed; retiring the runner", "runner", r.ID, "error", err)
			p.retire(r, "promotion failed: "+err.Error())
		}
	})
}

func (p *pool) onReady(m contract.RunnerReady) {
	r := p.runner(m.RunnerID)
	if r == nil || r.State != contract.PoolPromoting {
		return
	}
	_ = transition(p.ctx, r.ID, store.StateActive, "promoted from Nadir")
	r.State = contract.PoolApex
	p.becameApex(r)
}

// sleep demotes an idle Apex runner to Nadir when Nadir has room (in count
// and resources), and retires it otherwise.
func (p *pool) sleep(r *contract.PoolRunner, why string) {
	if r.Kind == fly.RunnerVM && p.count(contract.PoolNadir, contract.PoolDemoting) < p.limits().NadirMax && p.fits(true) {
		p.demote(r)
		return
	}
	p.retire(r, why+"; Nadir full")
}

// demote puts an idle Apex runner to sleep, race-free (see DemoteRunner).
func (p *pool) demote(r *contract.PoolRunner) {
	ctx := p.ctx
	var a *activities.Activities
	r.State = contract.PoolDemoting
	p.inFlight++
	f := workflow.ExecuteActivity(tofuCtx(ctx), a.DemoteRunner, p.machine(r))
	p.sel.AddFuture(f, func(f workflow.Future) {
		p.inFlight--
		var res activities.DemoteResult
		if err := f.Get(ctx, &res); err != nil {
			workflow.GetLogger(ctx).Error("demotion failed; retiring the runner", "runner", r.ID, "error", err)
			p.retire(r, "demotion failed: "+err.Error())
			return
		}
		if res.Busy {
			r.State, r.IdleSince = contract.PoolApex, time.Time{}
			return
		}
		_ = transition(ctx, r.ID, store.StateDormant, "idle past the Apex idle timeout")
		r.State, r.Since = contract.PoolNadir, workflow.Now(ctx)
		p.st.Stats.Demotions++
		if len(r.Jobs) > 0 {
			p.promote(r)
		}
	})
}

// retire tears a runner down with DeprovisionRunner.
func (p *pool) retire(r *contract.PoolRunner, why string) {
	ctx := p.ctx
	r.State = contract.PoolRetiring
	var back []contract.Waiting
	for _, id := range r.Jobs {
		back = append(back, contract.Waiting{Job: contract.JobRef{JobID: id}, At: workflow.Now(ctx)})
	}
	r.Jobs = nil
	p.st.Waiting = append(back, p.st.Waiting...)
	p.deprovision(r.ID, why, p.id)
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
	p.inFlight++
	p.sel.AddFuture(child.GetChildWorkflowExecution(), func(f workflow.Future) {
		p.inFlight--
		if err := f.Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("start DeprovisionRunner", "runner", runnerID, "error", err)
		}
	})
}

func (p *pool) onRetired(m contract.RunnerRetired) {
	r := p.runner(m.RunnerID)
	if r == nil {
		return
	}
	if m.Error != "" {
		// Left in state failed in the store; UglyFox's reconciliation finishes it.
		workflow.GetLogger(p.ctx).Warn("runner teardown failed", "runner", m.RunnerID, "error", m.Error)
	}
	p.st.Stats.Retired++
	p.st.Runners = slices.DeleteFunc(p.st.Runners, func(x *contract.PoolRunner) bool { return x == r })
}

// onAction acts on a policy's request about one of this pool's runners.
func (p *pool) onAction(a contract.RunnerAction) {
	log := workflow.GetLogger(p.ctx)
	why := a.Reason
	if a.Policy != "" {
		why = a.Policy + ": " + why
	}
	r := p.runner(a.RunnerID)
	if r == nil && a.Action == contract.ActionTerminate {
		// Not (or no longer) held here, say after a lost signal: tear it
		// down all the same, so nothing is left behind.
		p.deprovision(a.RunnerID, why, "")
		return
	}
	if r == nil || r.State == contract.PoolRetiring {
		log.Info("runner action for a runner this pool does not hold", "runner", a.RunnerID, "action", a.Action)
		return
	}
	switch a.Action {
	case contract.ActionTerminate:
		p.retire(r, why)
	case contract.ActionDemote:
		if r.State == contract.PoolApex && len(r.Jobs) == 0 && p.count(contract.PoolApex) > p.limits().ApexMin {
			p.sleep(r, why)
		}
	case contract.ActionDrain:
		r.Recycle = why
	case contract.ActionRecycle:
		if r.Recycle == "" {
			r.Recycle = why
			p.st.Stats.Recycled++
			// The replacement comes first, within the egg's maximum; at
			// the maximum the minimums bring one back after the retirement.
			if p.total() < p.st.Egg.Runner.MaxConcurrent+p.limits().NadirMax {
				r.Replacement = p.provision(r.State == contract.PoolNadir || r.State == contract.PoolDemoting).ID
			}
		}
	default:
		log.Warn("unknown runner action", "runner", a.RunnerID, "action", a.Action)
	}
}

// retireRecycled retires runners marked for recycling once they hold no job
// and their replacement is ready (or failed).
func (p *pool) retireRecycled() {
	for _, r := range p.st.Runners {
		if r.Recycle == "" || len(r.Jobs) > 0 || (r.State != contract.PoolApex && r.State != contract.PoolNadir) {
			continue
		}
		if n := p.runner(r.Replacement); n != nil && n.State == contract.PoolProvisioning {
			continue
		}
		p.retire(r, r.Recycle)
	}
}

// --- status -------------------------------------------------------------

func (p *pool) status() contract.PoolStatus {
	s := contract.PoolStatus{
		Egg: p.st.Egg.Name, Limits: p.limits(), Counts: map[string]int{}, Waiting: len(p.st.Waiting),
		Draining: p.st.Draining, CPU: map[string]float64{}, Memory: map[string]fly.Size{}, Stats: p.st.Stats,
		HistoryLength: workflow.GetInfo(p.ctx).GetCurrentHistoryLength(), Expected: slices.Clone(p.st.Expected),
		Ignored: slices.Clone(p.st.Ignored),
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
