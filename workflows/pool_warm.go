package workflows

import (
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"
)

// versionPoolWarm marks pool runs that act on SignalPoolWarm: they keep
// announced jobs (PoolState.Expected), promote Nadir runners ahead of
// them and send the unused ones back to Nadir after the egg's
// apex.warm_for.
const versionPoolWarm = "pool-warm"

// maxExpected bounds the announcements a pool keeps, and
// maxExpectedJobs the job IDs of one.
const (
	maxExpected     = 200
	maxExpectedJobs = 200
)

// onWarm keeps (or replaces, or withdraws) an announcement of jobs.
func (p *planner) onWarm(w contract.Warm) {
	warmFor := p.st.Egg.Apex.WarmFor.D()
	if !p.run.Warm || warmFor <= 0 || w.Key == "" {
		return
	}
	p.st.Expected = slices.DeleteFunc(p.st.Expected, func(e contract.Expected) bool {
		return e.Key == w.Key || (w.Commit != "" && e.Key == "commit/"+w.Commit)
	})
	var ids []int64
	if len(w.JobIDs) > 0 {
		for _, id := range w.JobIDs {
			if !p.known(id) && !slices.Contains(p.st.Done, id) && len(ids) < maxExpectedJobs {
				ids = append(ids, id)
			}
		}
		w.Jobs = len(ids)
	}
	if w.Jobs <= 0 {
		return
	}
	p.st.Expected = append(p.st.Expected, contract.Expected{
		Key: w.Key, Jobs: w.Jobs, JobIDs: ids, Until: p.now.Add(warmFor), Reason: w.Reason,
	})
	if len(p.st.Expected) > maxExpected {
		p.st.Expected = p.st.Expected[len(p.st.Expected)-maxExpected:]
	}
	p.note(false, "jobs announced", "key", w.Key, "jobs", w.Jobs, "reason", w.Reason)
}

// expected drops expired announcements and counts the jobs the others
// still expect; until is when the last of them expires.
func (p *planner) expected() (jobs int, until time.Time) {
	now := p.now
	p.st.Expected = slices.DeleteFunc(p.st.Expected, func(e contract.Expected) bool { return !now.Before(e.Until) })
	for _, e := range p.st.Expected {
		jobs += e.Jobs
		if e.Until.After(until) {
			until = e.Until
		}
	}
	return jobs, until
}

// arrived settles a job put in line against what was announced: the
// announcement that names it, or else the oldest one that names no jobs
// (a push's, a merge request's).
func (p *planner) arrived(jobID int64) {
	if !p.run.Warm || len(p.st.Expected) == 0 {
		return
	}
	i := slices.IndexFunc(p.st.Expected, func(e contract.Expected) bool { return slices.Contains(e.JobIDs, jobID) })
	if i >= 0 {
		e := &p.st.Expected[i]
		e.JobIDs = slices.DeleteFunc(e.JobIDs, func(id int64) bool { return id == jobID })
	} else if i = slices.IndexFunc(p.st.Expected, func(e contract.Expected) bool { return len(e.JobIDs) == 0 }); i < 0 {
		return
	}
	p.st.Expected[i].Jobs--
	if p.st.Expected[i].Jobs <= 0 {
		p.st.Expected = slices.Delete(p.st.Expected, i, i+1)
	}
}

// warmUp promotes Nadir runners until the free Apex slots (on runners in
// service, being promoted or being made) cover the jobs announced, within
// the Apex limits. The runners it promotes carry WarmUntil.
func (p *planner) warmUp() {
	if !p.run.Warm || p.st.Draining {
		return
	}
	want, until := p.expected()
	if want == 0 {
		return
	}
	slots := max(1, p.st.Egg.Runner.JobsPerRunner)
	free := -len(p.st.Waiting)
	for _, r := range p.st.Runners {
		active := r.State == contract.PoolApex || r.State == contract.PoolPromoting || (r.State == contract.PoolProvisioning && !r.Dormant)
		if active && r.Recycle == "" {
			free += slots - len(r.Jobs)
		}
	}
	for free < want && p.count(contract.PoolApex, contract.PoolPromoting)+p.countProvisioning(false) < p.limits().ApexMax && p.fits(false) {
		i := slices.IndexFunc(p.st.Runners, func(r *contract.PoolRunner) bool { return r.State == contract.PoolNadir && r.Recycle == "" })
		if i < 0 {
			return
		}
		r := p.st.Runners[i]
		r.WarmUntil = until
		p.st.Stats.Warmed++
		p.note(false, "promoting a Nadir runner ahead of announced jobs", "runner", r.ID, "expected", want)
		p.promote(r)
		free += slots
	}
}

// warmIdle counts runners promoted ahead of announced jobs that have none
// yet: they still count toward Nadir's minimum, as they go back there if
// no job comes, so Nadir is not refilled behind them.
func (p *planner) warmIdle() int {
	n := 0
	for _, r := range p.st.Runners {
		if !r.WarmUntil.IsZero() && len(r.Jobs) == 0 && (r.State == contract.PoolApex || r.State == contract.PoolPromoting) {
			n++
		}
	}
	return n
}

// coolDown sends warmed runners that got no job back to Nadir once their
// wait is over and nothing announced is still expected; while something
// is, their wait follows it.
func (p *planner) coolDown() {
	if !p.run.Warm {
		return
	}
	now := p.now
	want, until := p.expected()
	for _, r := range p.st.Runners {
		if r.WarmUntil.IsZero() || r.State != contract.PoolApex || len(r.Jobs) > 0 || now.Before(r.WarmUntil) {
			continue
		}
		if want > 0 {
			r.WarmUntil = until
			continue
		}
		r.WarmUntil = time.Time{}
		if p.count(contract.PoolApex) <= p.limits().ApexMin {
			continue
		}
		p.st.Stats.Cooled++
		p.sleep(r, "promoted for announced jobs that did not come within apex.warm_for")
	}
}
