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
)

// PoolEvent is something a pool learns: a signal, an update, a timer, an
// activity's or a child's outcome, or Settle, the look the pool takes at
// itself once it has taken in everything that came.
type PoolEvent interface{ poolEvent() }

// DemandReceived is a job asking for a runner (contract.SignalDemand).
type DemandReceived struct{ Demand contract.Demand }

// JobLookedUp is the Jobs API's answer about a demanded job: its tags,
// and since versionPoolJobOrder its status (TagsOnly is set for runs
// before it). Err is set when the job could not be read.
type JobLookedUp struct {
	Demand   contract.Demand
	Job      activities.JobInfo
	TagsOnly bool
	Err      string
}

// JobStatusReceived is a job's status (contract.SignalJobStatus), from a
// webhook or a runner's agent.
type JobStatusReceived struct{ Status contract.JobStatus }

// ProvisionReported is a ProvisionRunner's word about the runner it made
// (contract.SignalRunnerProvisioned).
type ProvisionReported struct{ Report contract.RunnerProvisioned }

// RetireReported is a DeprovisionRunner's word (contract.SignalRunnerRetired).
type RetireReported struct{ Report contract.RunnerRetired }

// ReadyReported is an agent's ready signal (contract.SignalRunnerReady).
type ReadyReported struct{ Ready contract.RunnerReady }

// SpecChanged is a new spec of the pool's egg (contract.SignalPoolSpec).
type SpecChanged struct{ Egg fly.Egg }

// RunnerActionReceived is a policy's request about one of the pool's
// runners (contract.SignalRunnerAction).
type RunnerActionReceived struct{ Action contract.RunnerAction }

// WarmReceived is an announcement of jobs to come (contract.SignalPoolWarm).
type WarmReceived struct{ Warm contract.Warm }

// TickElapsed is the pool's timer: time to look at idle runners.
type TickElapsed struct{}

// Settle follows every batch of events: serve the jobs in line, then apply
// the idle timeouts and minimums.
type Settle struct{}

// PromoteFailed is a PromoteRunner activity that failed.
type PromoteFailed struct {
	RunnerID string
	Err      string
}

// DemoteEnded is a DemoteRunner activity's outcome: Busy when the runner
// took a job meanwhile and stays Apex, Err when it failed.
type DemoteEnded struct {
	RunnerID string
	Busy     bool
	Err      string
}

// ProvisionNotStarted is a ProvisionRunner child that could not be started.
type ProvisionNotStarted struct{ RunnerID string }

// AssignFailed is an AssignRunnerProjects activity that failed for the
// egg's list of projects Projects (contract.ProjectsKey).
type AssignFailed struct {
	RunnerID string
	Projects string
}

// ScaleRequested is contract.UpdatePoolScale, validated (ValidatePoolScale).
type ScaleRequested struct{ Scale contract.PoolScale }

// DrainRequested is contract.UpdatePoolDrain: retire every runner in service.
type DrainRequested struct{}

// InterruptReported is an agent's word, through MotherGoose, that its
// machine is being taken away (contract.SignalRunnerInterrupted).
type InterruptReported struct{ Report contract.RunnerInterrupted }

// JobRetryEnded is a RetryInterruptedJob activity's outcome; Err is set
// when it failed.
type JobRetryEnded struct {
	JobID  int64
	Result activities.RetryJobResult
	Err    string
}

func (DemandReceived) poolEvent()       {}
func (JobLookedUp) poolEvent()          {}
func (JobStatusReceived) poolEvent()    {}
func (ProvisionReported) poolEvent()    {}
func (RetireReported) poolEvent()       {}
func (ReadyReported) poolEvent()        {}
func (SpecChanged) poolEvent()          {}
func (RunnerActionReceived) poolEvent() {}
func (WarmReceived) poolEvent()         {}
func (TickElapsed) poolEvent()          {}
func (Settle) poolEvent()               {}
func (PromoteFailed) poolEvent()        {}
func (DemoteEnded) poolEvent()          {}
func (ProvisionNotStarted) poolEvent()  {}
func (AssignFailed) poolEvent()         {}
func (ScaleRequested) poolEvent()       {}
func (DrainRequested) poolEvent()       {}
func (InterruptReported) poolEvent()    {}
func (JobRetryEnded) poolEvent()        {}

// PoolActionKind names what a PoolAction asks the workflow to do.
type PoolActionKind string

// The actions a pool plan holds, each carried out by the Pool workflow.
const (
	// PoolReadJob reads a demanded job's tags (and status) from the Jobs
	// API (JobTags or JobInfo); the answer comes back as JobLookedUp.
	PoolReadJob PoolActionKind = "read-job"
	// PoolProvision starts ProvisionRunner for a new runner, already in
	// the state as provisioning; its start failing is ProvisionNotStarted.
	PoolProvision PoolActionKind = "provision"
	// PoolPromote starts a Nadir runner (PromoteRunner); failing, it is
	// PromoteFailed.
	PoolPromote PoolActionKind = "promote"
	// PoolDemote stops an idle Apex runner (DemoteRunner), race-free; the
	// outcome is DemoteEnded.
	PoolDemote PoolActionKind = "demote"
	// PoolRetire tears a runner down (DeprovisionRunner) and has the pool
	// told when it is gone.
	PoolRetire PoolActionKind = "retire"
	// PoolTearDown tears down a runner the pool does not hold, telling no one.
	PoolTearDown PoolActionKind = "tear-down"
	// PoolRecord records a runner's new state in the store.
	PoolRecord PoolActionKind = "record"
	// PoolAssign enables a runner in every project of the egg; failing,
	// it is AssignFailed.
	PoolAssign PoolActionKind = "assign"
	// PoolRetryJob retries a job an interrupted runner did not finish
	// (RetryInterruptedJob), once the runner is gone; the outcome comes
	// back as JobRetryEnded.
	PoolRetryJob PoolActionKind = "retry-job"
)

// PoolAction is one thing a plan asks the Pool workflow to do, in order.
type PoolAction struct {
	Kind     PoolActionKind
	RunnerID string
	// Dormant is set on a PoolProvision for Nadir.
	Dormant bool
	// Reason says why, for PoolRetire, PoolTearDown and PoolRecord.
	Reason string
	// To is the state a PoolRecord records.
	To store.RunnerState
	// Demand is the job a PoolReadJob reads.
	Demand contract.Demand
	// Projects is the egg's list of projects a PoolAssign enables the
	// runner in (contract.ProjectsKey).
	Projects string
	// Job is the job a PoolRetryJob retries.
	Job contract.JobRef
	// Avoid are the placements a PoolProvision leaves alone: they refused
	// a machine within the egg's capacity_cooldown
	// (contract.ProvisionRunnerInput.Avoid).
	Avoid []fly.Placement
}

// PoolNote is a line for the workflow's log: why a plan did what it did.
type PoolNote struct {
	Warn bool
	Msg  string
	Args []any
}

// PoolRun is what a plan needs to know of the run it is made for: the
// pool's first cloud, and which versioned behaviours the run has (each
// decided by workflow.GetVersion in the workflow, never here).
type PoolRun struct {
	Cloud string
	// JobOrder: versionPoolJobOrder. AssignProjects:
	// versionPoolRunnerProjects. Warm: versionPoolWarm. HoldJobs:
	// versionPoolHoldJobs, needed only where HoldJobsMatters says so.
	JobOrder       bool
	AssignProjects bool
	Warm           bool
	HoldJobs       bool
}

// PoolPlan is what PlanPool decided: the pool's next state, the actions
// that carry it out and why.
type PoolPlan struct {
	State   contract.PoolState
	Actions []PoolAction
	Notes   []PoolNote
}

// PlanPool decides what a pool does about one event at time now. It is a
// pure function of its arguments: st is not changed (the plan holds the
// next state), and nothing is done, only asked for, so a test can read
// every decision without Temporal.
//
// A demand is served by an Apex runner with a free slot (or one being
// made or promoted), else by promoting a Nadir runner, else by
// provisioning one, never beyond the egg's limits (ApexMax, max_concurrent
// plus nadir_max, the vCPU and memory caps); what cannot be served waits
// in order. An Apex runner idle past its idle timeout is demoted to Nadir
// while Nadir has room, or retired; a Nadir runner dormant past its idle
// timeout is retired down to Nadir's minimum; both minimums are kept;
// runners are promoted ahead of announced jobs and sent back when none
// came. A draining pool serves nothing and keeps no minimum.
//
// Actions come in the order the workflow must issue them: the recorded
// histories of Pool depend on it.
func PlanPool(st contract.PoolState, ev PoolEvent, now time.Time, run PoolRun) PoolPlan {
	p := &planner{st: clonePoolState(st), now: now, run: run}
	switch ev := ev.(type) {
	case DemandReceived:
		p.demand(ev.Demand)
	case JobLookedUp:
		p.lookedUp(ev)
	case JobStatusReceived:
		p.jobStatus(ev.Status)
	case ProvisionReported:
		p.provisioned(ev.Report)
	case RetireReported:
		p.retired(ev.Report)
	case ReadyReported:
		p.ready(ev.Ready)
	case SpecChanged:
		p.st.Egg = ev.Egg
		p.note(false, "egg spec updated; it applies to future runners", "version", ev.Egg.Version)
		for _, r := range p.st.Runners {
			p.assign(r)
		}
	case RunnerActionReceived:
		p.action(ev.Action)
	case WarmReceived:
		p.onWarm(ev.Warm)
	case TickElapsed:
		p.scale()
	case Settle:
		p.serve()
		p.scale()
	case PromoteFailed:
		p.note(true, "promotion failed; retiring the runner", "runner", ev.RunnerID, "error", ev.Err)
		p.retireID(ev.RunnerID, "promotion failed: "+ev.Err)
	case DemoteEnded:
		p.demoted(ev)
	case ProvisionNotStarted:
		if r := p.runner(ev.RunnerID); r != nil {
			p.drop(r)
		}
	case AssignFailed:
		// Asked again at the next change of the egg's projects.
		p.note(true, "runner not enabled in every project of the egg", "runner", ev.RunnerID)
		if r := p.runner(ev.RunnerID); r != nil && r.Projects == ev.Projects {
			r.Projects = ""
		}
	case ScaleRequested:
		applyPoolScale(p.st, ev.Scale)
	case InterruptReported:
		p.interrupted(ev.Report)
	case JobRetryEnded:
		p.retryEnded(ev)
	case DrainRequested:
		p.st.Draining = true
		for _, r := range p.st.Runners {
			if r.State == contract.PoolApex || r.State == contract.PoolNadir {
				p.retire(r, "pool drained")
			}
		}
	default:
		panic(fmt.Sprintf("PlanPool: unknown event %T", ev))
	}
	return PoolPlan{State: *p.st, Actions: p.acts, Notes: p.notes}
}

// HoldJobsMatters tells whether planning a job status needs to know
// PoolRun.HoldJobs: when an agent reports running a job that another
// runner of the pool (or none) holds. The workflow asks
// workflow.GetVersion only then, as it always has.
func HoldJobsMatters(st *contract.PoolState, s contract.JobStatus) bool {
	if s.Status != "running" || s.RunnerID == "" || slices.Contains(st.Ended, s.JobID) {
		return false
	}
	holder := findRunner(st, s.RunnerID)
	return holder != nil && holder != runnerWithJob(st, s.JobID)
}

// PoolLimitsOf is an egg's pool limits with any overrides, ApexMax never
// above max_concurrent.
func PoolLimitsOf(st *contract.PoolState) contract.PoolLimits {
	e := st.Egg
	l := contract.PoolLimits{ApexMin: e.Apex.Min, ApexMax: e.Apex.Max, NadirMin: e.Nadir.Min, NadirMax: e.Nadir.Max}
	if o := st.Overrides; o != nil {
		l = *o
	}
	if l.ApexMax > e.Runner.MaxConcurrent {
		l.ApexMax = e.Runner.MaxConcurrent
	}
	return l
}

// ValidatePoolScale refuses a scale request whose limits are out of range
// (0 to 1000), inverted, above the egg's max_concurrent, or give a
// serverless egg a Nadir.
func ValidatePoolScale(st *contract.PoolState, s contract.PoolScale) error {
	l := PoolLimitsOf(st)
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
	if l.ApexMax > st.Egg.Runner.MaxConcurrent {
		return fmt.Errorf("apex_max (%d) is above the egg's max_concurrent (%d)", l.ApexMax, st.Egg.Runner.MaxConcurrent)
	}
	if l.NadirMax > 0 && st.Egg.Runner.Type == fly.RunnerServerless {
		return errors.New("serverless runners cannot be dormant: nadir_max must be 0")
	}
	return nil
}

// applyPoolScale sets the pool's overrides; scaling a drained pool resumes it.
func applyPoolScale(st *contract.PoolState, s contract.PoolScale) {
	st.Draining = false
	if s.Reset {
		st.Overrides = nil
		return
	}
	l := PoolLimitsOf(st)
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&l.ApexMin, s.ApexMin)
	set(&l.ApexMax, s.ApexMax)
	set(&l.NadirMin, s.NadirMin)
	set(&l.NadirMax, s.NadirMax)
	st.Overrides = &l
}

// clonePoolState copies a pool's state deeply enough that planning on the
// copy leaves the original as it was.
func clonePoolState(st contract.PoolState) *contract.PoolState {
	c := st
	if st.Overrides != nil {
		o := *st.Overrides
		c.Overrides = &o
	}
	c.Runners = make([]*contract.PoolRunner, len(st.Runners))
	for i, r := range st.Runners {
		x := *r
		x.Jobs = slices.Clone(r.Jobs)
		c.Runners[i] = &x
	}
	c.Waiting = slices.Clone(st.Waiting)
	c.Known = slices.Clone(st.Known)
	c.Done = slices.Clone(st.Done)
	c.Ended = slices.Clone(st.Ended)
	c.Ignored = slices.Clone(st.Ignored)
	c.Refused = slices.Clone(st.Refused)
	c.Interrupted = slices.Clone(st.Interrupted)
	c.Expected = slices.Clone(st.Expected)
	for i := range c.Expected {
		c.Expected[i].JobIDs = slices.Clone(c.Expected[i].JobIDs)
	}
	c.Stats.Served = cloneMap(st.Stats.Served)
	c.Stats.DemandToRunner = cloneMap(st.Stats.DemandToRunner)
	return &c
}

func findRunner(st *contract.PoolState, id string) *contract.PoolRunner {
	for _, r := range st.Runners {
		if r.ID == id {
			return r
		}
	}
	return nil
}

func runnerWithJob(st *contract.PoolState, jobID int64) *contract.PoolRunner {
	for _, r := range st.Runners {
		if slices.Contains(r.Jobs, jobID) {
			return r
		}
	}
	return nil
}

// planner holds one PlanPool call's working copy and what it decided.
type planner struct {
	st    *contract.PoolState
	now   time.Time
	run   PoolRun
	acts  []PoolAction
	notes []PoolNote
}

func (p *planner) act(a PoolAction) { p.acts = append(p.acts, a) }

func (p *planner) note(warn bool, msg string, args ...any) {
	p.notes = append(p.notes, PoolNote{Warn: warn, Msg: msg, Args: args})
}

func (p *planner) limits() contract.PoolLimits { return PoolLimitsOf(p.st) }

func (p *planner) runner(id string) *contract.PoolRunner { return findRunner(p.st, id) }

// --- demand and jobs ---------------------------------------------------

func (p *planner) known(jobID int64) bool { return slices.Contains(p.st.Known, jobID) }

func (p *planner) remember(jobID int64) {
	p.st.Known = append(p.st.Known, jobID)
	if len(p.st.Known) > knownJobs {
		p.st.Known = p.st.Known[len(p.st.Known)-knownJobs:]
	}
}

// done tells whether a job needs no runner any more.
func (p *planner) done(jobID int64) bool {
	return p.run.JobOrder && slices.Contains(p.st.Done, jobID)
}

// markDone remembers that a job needs no runner any more, and takes it out
// of the queue.
func (p *planner) markDone(jobID int64) {
	if !p.run.JobOrder {
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

func (p *planner) demand(d contract.Demand) {
	if p.known(d.Job.JobID) {
		return // GitLab retried, or a duplicate webhook got this far
	}
	p.remember(d.Job.JobID)
	if p.done(d.Job.JobID) {
		p.note(false, "demand dropped: the job is running or over already", "job", d.Job.JobID)
		return
	}
	if d.At.IsZero() {
		d.At = p.now
	}
	if d.Job.Tags != nil || d.Job.ProjectID == 0 {
		p.admit(d, d.Job.Tags)
		return
	}
	// Job webhooks carry no tags: read them from the Jobs API first.
	p.act(PoolAction{Kind: PoolReadJob, Demand: d})
}

func (p *planner) lookedUp(ev JobLookedUp) {
	d := ev.Demand
	if ev.TagsOnly {
		if ev.Err != "" {
			p.note(true, "cannot read job tags; job ignored", "job", d.Job.JobID, "error", ev.Err)
			return
		}
		p.admit(d, ev.Job.Tags)
		return
	}
	if ev.Err != "" {
		p.note(true, "cannot read the job; job ignored", "job", d.Job.JobID, "error", ev.Err)
		return
	}
	if !ev.Job.NeedsRunner() {
		// Hooks come late: the job has a runner, or is over.
		p.note(false, "demand dropped: the job is no longer pending", "job", d.Job.JobID, "status", ev.Job.Status)
		p.markDone(d.Job.JobID)
		return
	}
	p.admit(d, ev.Job.Tags)
}

// admit puts a job in line if this egg's runners can take it and it still
// needs a runner.
func (p *planner) admit(d contract.Demand, tags []string) {
	if p.done(d.Job.JobID) {
		p.note(false, "demand dropped: the job ended while it was looked up", "job", d.Job.JobID)
		return
	}
	if ok, why := contract.TagsMatch(p.st.Egg.Runner, tags); !ok {
		p.note(false, "job ignored: no runner of this egg can take it", "job", d.Job.JobID, "reason", why)
		p.st.Ignored = append(p.st.Ignored, contract.IgnoredJob{JobID: d.Job.JobID, Reason: "no runner of egg " + p.st.Egg.Name + " can take it: " + why, At: p.now})
		if n := len(p.st.Ignored); n > contract.MaxIgnoredJobs {
			p.st.Ignored = slices.Clone(p.st.Ignored[n-contract.MaxIgnoredJobs:])
		}
		return
	}
	d.Job.Tags = tags
	p.st.Waiting = append(p.st.Waiting, contract.Waiting(d))
	p.arrived(d.Job.JobID)
}

func (p *planner) jobStatus(s contract.JobStatus) {
	r := runnerWithJob(p.st, s.JobID)
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
			r.LastJob, r.LastJobAt = s.JobID, p.now
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
	r.LastJob, r.LastJobAt = s.JobID, p.now
	if len(r.Jobs) == 0 {
		r.IdleSince = p.now
	}
	p.st.Stats.JobsFinished++
}

// heldBy makes the pool runner whose agent reports a job running the
// job's holder (GitLab, not the pool, chose it): the job leaves the line
// and any other runner's slot, and a job an Apex runner took before its
// demand arrived counts as served from Apex and settles what was
// announced. It returns the runner that holds the job now (held, the one
// that did, when the reporter is not this pool's).
func (p *planner) heldBy(s contract.JobStatus, held *contract.PoolRunner) *contract.PoolRunner {
	if !HoldJobsMatters(p.st, s) || !p.run.HoldJobs {
		return held
	}
	holder := p.runner(s.RunnerID)
	if held != nil {
		held.Jobs = slices.DeleteFunc(held.Jobs, func(id int64) bool { return id == s.JobID })
		if len(held.Jobs) == 0 {
			held.IdleSince = p.now
		}
	} else {
		since, waited := p.now, false
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

// serve gives waiting jobs, in order, a slot: an idle Apex slot first, then
// a promoted Nadir runner, then a new runner.
func (p *planner) serve() {
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
		if target == nil && p.count(contract.PoolApex, contract.PoolPromoting)+p.countProvisioning(false) < p.limits().ApexMax && p.fits(false) && !p.allRefused() {
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

func (p *planner) served(path string, since time.Time) {
	p.st.Stats.Served[path]++
	p.st.Stats.DemandToRunner[path] += p.now.Sub(since)
}

// count counts runners in the given states.
func (p *planner) count(states ...string) int {
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
func (p *planner) fits(dormant bool) bool {
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
func (p *planner) total() int { return len(p.st.Runners) - p.count(contract.PoolRetiring) }

// countProvisioning counts runners being made dormant (true) or active.
func (p *planner) countProvisioning(dormant bool) int {
	n := 0
	for _, r := range p.st.Runners {
		if r.State == contract.PoolProvisioning && r.Dormant == dormant {
			n++
		}
	}
	return n
}

// --- scaling ----------------------------------------------------------

// scale applies the idle timeouts and the minimums.
func (p *planner) scale() {
	if p.st.Draining {
		return
	}
	p.retireRecycled()
	now := p.now
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
	for p.count(contract.PoolApex, contract.PoolPromoting)+p.countProvisioning(false) < l.ApexMin && p.total() < e.Runner.MaxConcurrent+l.NadirMax && p.fits(false) && !p.allRefused() {
		p.provision(false)
	}
	if e.Runner.Type != fly.RunnerServerless {
		for p.count(contract.PoolNadir, contract.PoolDemoting)+p.countProvisioning(true)+p.warmIdle() < l.NadirMin && p.total() < e.Runner.MaxConcurrent+l.NadirMax && p.fits(true) && !p.allRefused() {
			p.provision(true)
		}
	}
	p.coolDown()
	p.warmUp()
}

// provision adds a runner being made and asks for its ProvisionRunner.
func (p *planner) provision(dormant bool) *contract.PoolRunner {
	p.st.Seq++
	r := &contract.PoolRunner{
		ID: contract.PoolRunnerID(p.st.Egg.Name, p.st.Seq), State: contract.PoolProvisioning, CPU: p.st.Egg.Runner.CPU, Memory: p.st.Egg.Runner.Memory,
		CreatedAt: p.now, Since: p.now, Dormant: dormant,
	}
	if p.run.AssignProjects {
		// ProvisionRunner enables it in every project of this spec.
		r.Projects = contract.ProjectsKey(p.st.Egg)
	}
	p.st.Runners = append(p.st.Runners, r)
	p.st.Stats.Provisioned++
	p.act(PoolAction{Kind: PoolProvision, RunnerID: r.ID, Dormant: dormant, Avoid: p.avoided()})
	return r
}

// --- capacity refusals -------------------------------------------------

// refused remembers the placements that refused a runner's machine, each
// until now plus the egg's capacity_cooldown (none with a cool-down of
// zero); a later refusal of the same placement starts its cool-down
// again.
func (p *planner) refused(runnerID string, refusals []contract.CapacityRefusal) {
	cool := p.st.Egg.Runner.CooldownOrDefault().D()
	if cool <= 0 {
		return
	}
	for _, r := range refusals {
		pl := r.Placement
		pl.Capacity = pl.CapacityType()
		entry := contract.RefusedPlacement{Placement: pl, Class: r.Class, Message: r.Message, At: p.now, Until: p.now.Add(cool)}
		i := slices.IndexFunc(p.st.Refused, func(x contract.RefusedPlacement) bool { return x.Placement == pl })
		if i >= 0 {
			p.st.Refused[i] = entry
		} else {
			p.st.Refused = append(p.st.Refused, entry)
		}
		p.note(true, "placement refused a machine; left alone for its cool-down", "runner", runnerID, "placement", pl.String(), "class", r.Class, "until", entry.Until)
	}
}

// avoided are the placements still cooling down at now, in the order
// they were refused; it forgets those whose cool-down is over.
func (p *planner) avoided() []fly.Placement {
	p.st.Refused = slices.DeleteFunc(p.st.Refused, func(x contract.RefusedPlacement) bool { return !p.now.Before(x.Until) })
	if len(p.st.Refused) == 0 {
		p.st.Refused = nil
		return nil
	}
	out := make([]fly.Placement, 0, len(p.st.Refused))
	for _, x := range p.st.Refused {
		out = append(out, x.Placement)
	}
	return out
}

// allRefused tells whether every placement of the egg is cooling down
// after a refusal: then no runner is made until the first cool-down ends
// (the pool's tick looks again), and jobs wait in line.
func (p *planner) allRefused() bool {
	avoid := p.avoided()
	if len(avoid) == 0 || p.run.Cloud == "" {
		return false
	}
	for _, pl := range p.st.Egg.Runner.Placements(p.run.Cloud) {
		if !slices.Contains(avoid, pl) {
			return false
		}
	}
	return true
}

// assign enables a runner in the egg's projects when the egg's list of
// projects changed since the runner was assigned: a bucket's runners take
// every project's jobs. Runners not registered yet are assigned when they
// are (provisioned); retiring ones are left alone.
func (p *planner) assign(r *contract.PoolRunner) {
	key := contract.ProjectsKey(p.st.Egg)
	if !p.run.AssignProjects || key == "" || r.Projects == key || r.GitLabRunnerID == 0 ||
		r.State == contract.PoolProvisioning || r.State == contract.PoolRetiring {
		return
	}
	r.Projects = key
	p.act(PoolAction{Kind: PoolAssign, RunnerID: r.ID, Projects: key})
}

func (p *planner) provisioned(m contract.RunnerProvisioned) {
	p.refused(m.RunnerID, m.Refusals)
	r := p.runner(m.RunnerID)
	if r == nil {
		return
	}
	defer p.assign(r)
	if m.Cloud != "" && m.Cloud != p.run.Cloud {
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
			r.Since = p.now
		}
	default:
		p.note(true, "runner provisioning failed", "runner", m.RunnerID, "error", m.Error)
		p.st.Stats.Failed++
		p.drop(r)
	}
}

// becameApex counts the demand a runner now serves and marks it idle if it has none.
func (p *planner) becameApex(r *contract.PoolRunner) {
	if len(r.Jobs) > 0 && r.ServedBy != "" {
		p.served(r.ServedBy, r.Since)
	} else if len(r.Jobs) == 0 {
		r.IdleSince = p.now
	}
	r.ServedBy, r.Dormant, r.Since = "", false, p.now
}

// drop forgets a runner and puts the jobs it was reserved for back in line.
func (p *planner) drop(r *contract.PoolRunner) {
	var back []contract.Waiting
	for _, id := range r.Jobs {
		back = append(back, contract.Waiting{Job: contract.JobRef{JobID: id}, At: r.Since})
	}
	p.st.Waiting = append(back, p.st.Waiting...)
	p.st.Runners = slices.DeleteFunc(p.st.Runners, func(x *contract.PoolRunner) bool { return x == r })
}

// promote resumes a Nadir runner; it is Apex once its agent reports ready.
func (p *planner) promote(r *contract.PoolRunner) {
	r.State = contract.PoolPromoting
	if r.ServedBy == "" && len(r.Jobs) > 0 {
		r.ServedBy = contract.ServedByPromotion
	}
	p.st.Stats.Promotions++
	p.act(PoolAction{Kind: PoolPromote, RunnerID: r.ID})
}

func (p *planner) ready(m contract.RunnerReady) {
	r := p.runner(m.RunnerID)
	if r == nil || r.State != contract.PoolPromoting {
		return
	}
	p.act(PoolAction{Kind: PoolRecord, RunnerID: r.ID, To: store.StateActive, Reason: "promoted from Nadir"})
	r.State = contract.PoolApex
	p.becameApex(r)
}

// sleep demotes an idle Apex runner to Nadir when Nadir has room (in count
// and resources), and retires it otherwise.
func (p *planner) sleep(r *contract.PoolRunner, why string) {
	if r.Kind == fly.RunnerVM && p.count(contract.PoolNadir, contract.PoolDemoting) < p.limits().NadirMax && p.fits(true) {
		r.State = contract.PoolDemoting
		p.act(PoolAction{Kind: PoolDemote, RunnerID: r.ID})
		return
	}
	p.retire(r, why+"; Nadir full")
}

func (p *planner) demoted(ev DemoteEnded) {
	if ev.Err != "" {
		p.note(true, "demotion failed; retiring the runner", "runner", ev.RunnerID, "error", ev.Err)
		p.retireID(ev.RunnerID, "demotion failed: "+ev.Err)
		return
	}
	r := p.runner(ev.RunnerID)
	if ev.Busy {
		if r != nil {
			r.State, r.IdleSince = contract.PoolApex, time.Time{}
		}
		return
	}
	p.act(PoolAction{Kind: PoolRecord, RunnerID: ev.RunnerID, To: store.StateDormant, Reason: "idle past the Apex idle timeout"})
	if r == nil {
		return
	}
	r.State, r.Since = contract.PoolNadir, p.now
	p.st.Stats.Demotions++
	if len(r.Jobs) > 0 {
		p.promote(r)
	}
}

// retire tears a runner down with DeprovisionRunner, putting the jobs it
// was reserved for back in line.
func (p *planner) retire(r *contract.PoolRunner, why string) {
	r.State = contract.PoolRetiring
	var back []contract.Waiting
	for _, id := range r.Jobs {
		back = append(back, contract.Waiting{Job: contract.JobRef{JobID: id}, At: p.now})
	}
	r.Jobs = nil
	p.st.Waiting = append(back, p.st.Waiting...)
	p.act(PoolAction{Kind: PoolRetire, RunnerID: r.ID, Reason: why})
}

// retireID retires a runner by ID; one the pool no longer holds is torn
// down all the same, the pool told when it is gone.
func (p *planner) retireID(id, why string) {
	if r := p.runner(id); r != nil {
		p.retire(r, why)
		return
	}
	p.act(PoolAction{Kind: PoolRetire, RunnerID: id, Reason: why})
}

func (p *planner) retired(m contract.RunnerRetired) {
	r := p.runner(m.RunnerID)
	if r == nil {
		return
	}
	if m.Error != "" {
		// Left in state failed in the store; UglyFox's reconciliation finishes it.
		p.note(true, "runner teardown failed", "runner", m.RunnerID, "error", m.Error)
	}
	p.st.Stats.Retired++
	p.st.Runners = slices.DeleteFunc(p.st.Runners, func(x *contract.PoolRunner) bool { return x == r })
	p.retryInterrupted(r.ID)
}

// --- interruptions -----------------------------------------------------

// interrupted takes a runner whose machine its cloud is taking away: the
// jobs it was running are recorded (each retried once the runner is gone,
// retryInterrupted) and count as done for the pool, so their late
// webhooks make no runner; jobs it was only reserved for go back in line;
// and the runner is retired, taking no new job. A runner the pool does
// not hold, or one that is already being retired, only has its jobs
// recorded.
func (p *planner) interrupted(m contract.RunnerInterrupted) {
	r := p.runner(m.RunnerID)
	p.note(true, "runner interrupted: its cloud is taking the machine away", "runner", m.RunnerID, "source", m.Source, "jobs", len(m.Jobs))
	for _, j := range m.Jobs {
		if j.ProjectID == 0 && len(p.st.Egg.Projects) == 1 && p.st.Egg.Projects[0].ID != 0 {
			// No record of the job: the egg's one project is its.
			j.ProjectID = p.st.Egg.Projects[0].ID
		}
		if slices.ContainsFunc(p.st.Interrupted, func(x contract.InterruptedJob) bool { return x.Job.JobID == j.JobID }) {
			continue
		}
		p.st.Interrupted = append(p.st.Interrupted, contract.InterruptedJob{Job: j, RunnerID: m.RunnerID, At: p.now})
		if over := len(p.st.Interrupted) - contract.MaxInterruptedJobs; over > 0 {
			p.st.Interrupted = p.st.Interrupted[over:]
		}
		p.markDone(j.JobID)
		if r != nil {
			r.Jobs = slices.DeleteFunc(r.Jobs, func(id int64) bool { return id == j.JobID })
		}
	}
	if r == nil {
		p.retryInterrupted(m.RunnerID)
		return
	}
	if r.State != contract.PoolRetiring {
		p.retire(r, "interrupted: its cloud is taking the machine away ("+m.Source+")")
	}
}

// retryInterrupted asks, once, for the retry of each job the runner was
// running when it was interrupted: it is gone now.
func (p *planner) retryInterrupted(runnerID string) {
	for i := range p.st.Interrupted {
		x := &p.st.Interrupted[i]
		if x.RunnerID != runnerID || x.Retry != "" {
			continue
		}
		x.Retry = "asked"
		p.act(PoolAction{Kind: PoolRetryJob, RunnerID: runnerID, Job: x.Job})
	}
}

// retryEnded records what became of an interrupted job's retry. A failed
// retry is not asked again: GitLab refused it, or it kept failing.
func (p *planner) retryEnded(ev JobRetryEnded) {
	i := slices.IndexFunc(p.st.Interrupted, func(x contract.InterruptedJob) bool { return x.Job.JobID == ev.JobID })
	if i < 0 {
		return
	}
	x := &p.st.Interrupted[i]
	if ev.Err != "" {
		x.Retry, x.Error = "failed", ev.Err
		p.note(true, "retry of an interrupted job failed", "job", ev.JobID, "error", ev.Err)
		return
	}
	x.Retry, x.NewJobID = ev.Result.Outcome, ev.Result.NewJobID
	p.note(false, "interrupted job retried", "job", ev.JobID, "outcome", ev.Result.Outcome, "new_job", ev.Result.NewJobID)
}

// action acts on a policy's request about one of this pool's runners.
func (p *planner) action(a contract.RunnerAction) {
	why := a.Reason
	if a.Policy != "" {
		why = a.Policy + ": " + why
	}
	r := p.runner(a.RunnerID)
	if r == nil && a.Action == contract.ActionTerminate {
		// Not (or no longer) held here, say after a lost signal: tear it
		// down all the same, so nothing is left behind.
		p.act(PoolAction{Kind: PoolTearDown, RunnerID: a.RunnerID, Reason: why})
		return
	}
	if r == nil || r.State == contract.PoolRetiring {
		p.note(false, "runner action for a runner this pool does not hold", "runner", a.RunnerID, "action", a.Action)
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
		p.note(true, "unknown runner action", "runner", a.RunnerID, "action", a.Action)
	}
}

// retireRecycled retires runners marked for recycling once they hold no job
// and their replacement is ready (or failed).
func (p *planner) retireRecycled() {
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
