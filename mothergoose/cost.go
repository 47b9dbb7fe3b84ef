package mothergoose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
)

// Queue time and cost, per job (recorded with the job) and per egg and
// project (gosling_job_cost_total, `gosling cost`).
//
// A job's queue time runs from when it was queued (its pending hook, or
// the Jobs API's created_at when the sweep found it) to when a Gosling
// runner started it, as the runner's agent reports: the agent sees
// gitlab-runner take the job, which then starts sending its trace.
//
// A machine costs its price (MG/config.fly cost block, by cloud, runner
// kind and capacity type) at the egg's shape: vCPUs, memory and disk
// while it runs (from the moment its machine is made, registering, until
// it is torn down), disk alone while it is stopped in Nadir. Each job is
// charged its own share of the running machine, its run time divided by
// the runner's job slots (runner.jobs_per_runner), when it ends; what the
// machine cost beyond its jobs' shares (idle Apex time, empty slots,
// provisioning, Nadir disk time) is shared equally among the jobs it ran
// when the runner ends, and counted for the egg alone when it ran none.

// AuditCostSettled records what a runner cost over its life and how its
// idle cost was shared.
const AuditCostSettled = "cost-settled"

// machineRates are what one of an egg's machines costs a second.
type machineRates struct {
	running, stopped float64
	slots            int
	priced           bool
}

// ratesOf prices a runner of an egg on a cloud, as the Nest in force says
// (the egg's shape; a runner made before a shape change is priced at the
// new one). Runners are bought on demand until the egg says otherwise.
func ratesOf(nest *fly.Nest, egg, cloud, kind string) machineRates {
	e, ok := nest.Egg(egg)
	if !ok {
		return machineRates{slots: 1}
	}
	out := machineRates{slots: max(e.Runner.JobsPerRunner, 1)}
	p, ok := nest.MotherGoose.Cost.PriceFor(cloud, kind, fly.CapacityOnDemand)
	if !ok {
		return out
	}
	out.running = p.Running(e.Runner.CPU, e.Runner.Memory, e.Runner.Disk)
	out.stopped = p.Stopped(e.Runner.Disk)
	out.priced = true
	return out
}

// recordRunnerJob records what a runner's agent reports of a job with the
// job: the runner and when it started the job, its queue time (observed
// in gosling_job_queue_seconds), and at its end, its run time and cost
// (gosling_job_cost_total, part run).
func (m *deps) recordRunnerJob(ctx context.Context, r *store.Runner, j agentapi.JobReport, at time.Time) error {
	// As the store keeps times, so a run time is the difference of what
	// it holds.
	at = at.UTC().Truncate(time.Microsecond)
	stored, err := m.store.GetJob(ctx, r.GitLabHost, j.JobID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		stored = nil
	case err != nil:
		return err
	}
	rec := store.JobRecord{GitLabHost: r.GitLabHost, JobID: j.JobID, Egg: r.Egg, RunnerID: r.ID, UpdatedAt: m.now()}
	if !j.Finished() {
		rec.RunnerStartedAt = &at
		merged, err := m.store.RecordJob(ctx, rec)
		if err != nil {
			return err
		}
		return m.noteQueueTime(ctx, merged)
	}
	rec.Status, rec.FinishedAt = j.Status, &at
	if stored != nil && stored.Cost == 0 {
		start := cmp.Or(stored.RunnerStartedAt, stored.StartedAt)
		if start != nil && at.After(*start) {
			rates := ratesOf(m.Nest(), r.Egg, r.Cloud, r.Kind)
			rec.MachineSeconds = at.Sub(*start).Seconds() / float64(rates.slots)
			rec.Cost = rec.MachineSeconds * rates.running
		}
	}
	merged, err := m.store.RecordJob(ctx, rec)
	if err != nil {
		return err
	}
	if rec.MachineSeconds > 0 && merged.MachineSeconds == rec.MachineSeconds {
		m.metrics.ObserveJobMachineSeconds(r.Egg, merged.ProjectPath, rec.MachineSeconds)
		m.metrics.ObserveJobCost(r.Egg, merged.ProjectPath, "run", rec.Cost)
	}
	return nil
}

// noteQueueTime records a job's queue time once both its ends are known
// (the pending hook and the runner's start may come in either order), and
// observes it.
func (m *deps) noteQueueTime(ctx context.Context, j store.JobRecord) error {
	if j.QueueSeconds != 0 || j.QueuedAt == nil || j.RunnerStartedAt == nil {
		return nil
	}
	// A job is never queued after it started; 1 ns stands for "known".
	q := max(j.RunnerStartedAt.Sub(*j.QueuedAt), time.Nanosecond)
	merged, err := m.store.RecordJob(ctx, store.JobRecord{GitLabHost: j.GitLabHost, JobID: j.JobID, QueueSeconds: q.Seconds(), UpdatedAt: m.now()})
	if err != nil {
		return err
	}
	if merged.QueueSeconds == q.Seconds() {
		m.metrics.ObserveJobQueue(cmp.Or(merged.Egg, j.Egg), q)
	}
	return nil
}

// RunnerCost is what a runner cost over its life, as SettleRunner found.
type RunnerCost struct {
	RunnerID string
	// Running and Stopped are the seconds its machine ran and was
	// stopped; Total what they cost, Direct what its jobs were charged,
	// Idle the rest, shared as Share by each of its Jobs.
	Running, Stopped    time.Duration
	Total, Direct, Idle float64
	Share               float64
	Jobs                int
	// Priced is false when the cost block has no price for the runner;
	// RunningRate and StoppedRate are its machine's price a second.
	Priced                   bool
	RunningRate, StoppedRate float64
}

// costStates are the runner states whose machine exists and runs
// (registering: the machine is made and boots).
var costStates = map[store.RunnerState]bool{
	store.StateRegistering: true, store.StateActive: true, store.StateDraining: true,
	store.StateTerminating: true, store.StateFailed: true,
}

// runnerTimes sums a runner's running and stopped time from its
// transitions, until its termination or until now.
func runnerTimes(r *store.Runner, hist []store.Transition, now time.Time) (running, stopped time.Duration) {
	state, since := store.StateProvisioning, r.CreatedAt
	add := func(until time.Time) {
		if !until.After(since) {
			return
		}
		switch {
		case costStates[state]:
			running += until.Sub(since)
		case state == store.StateDormant:
			stopped += until.Sub(since)
		}
	}
	hist = slices.Clone(hist)
	slices.SortStableFunc(hist, func(a, b store.Transition) int { return a.At.Compare(b.At) })
	for _, t := range hist {
		add(t.At)
		state, since = t.To, t.At
	}
	if state != store.StateTerminated {
		add(now)
	}
	return running, stopped
}

// SettleRunnerCost is SettleRunner for callers that need only whether it
// worked: activities.TransitionRunner, when a runner is terminated.
func (m *Operations) SettleRunnerCost(ctx context.Context, runnerID string) error {
	_, err := m.SettleRunner(ctx, runnerID)
	return err
}

// SettleRunner works out what a runner's machine cost over its life
// (its transitions give how long it ran and was stopped, the Nest's price
// table what that costs) and shares what its jobs were not charged
// directly equally among them, recorded with each job (IdleCost) and
// counted in gosling_job_cost_total{part="idle"}. Settling again gives
// the same shares and counts only what changed. It is called when a
// runner is terminated; the settlement is audited (cost-settled).
func (m *Operations) SettleRunner(ctx context.Context, runnerID string) (RunnerCost, error) {
	out := RunnerCost{RunnerID: runnerID}
	r, err := m.store.GetRunner(ctx, runnerID)
	if err != nil {
		return out, fmt.Errorf("settle the cost of runner %s: %w", runnerID, err)
	}
	hist, err := m.store.RunnerHistory(ctx, runnerID)
	if err != nil {
		return out, fmt.Errorf("settle the cost of runner %s: %w", runnerID, err)
	}
	rates := ratesOf(m.Nest(), r.Egg, r.Cloud, r.Kind)
	out.Running, out.Stopped = runnerTimes(r, hist, m.now())
	out.Priced, out.RunningRate, out.StoppedRate = rates.priced, rates.running, rates.stopped
	out.Total = out.Running.Seconds()*rates.running + out.Stopped.Seconds()*rates.stopped
	var jobs []store.JobRecord
	for before := int64(0); ; {
		page, err := m.store.ListJobs(ctx, store.JobFilter{RunnerID: r.ID, BeforeJobID: before, Limit: 500})
		if err != nil {
			return out, fmt.Errorf("settle the cost of runner %s: %w", runnerID, err)
		}
		jobs = append(jobs, page...)
		if len(page) < 500 {
			break
		}
		before = page[len(page)-1].JobID
	}
	for _, j := range jobs {
		out.Direct += j.Cost
	}
	out.Jobs = len(jobs)
	out.Idle = max(out.Total-out.Direct, 0)
	if out.Jobs == 0 {
		m.metrics.ObserveJobCost(r.Egg, "", "idle", out.Idle)
	} else {
		out.Share = out.Idle / float64(out.Jobs)
	}
	for _, j := range jobs {
		if out.Share == 0 || out.Share == j.IdleCost {
			continue
		}
		if _, err := m.store.RecordJob(ctx, store.JobRecord{GitLabHost: j.GitLabHost, JobID: j.JobID, IdleCost: out.Share, UpdatedAt: m.now()}); err != nil {
			return out, fmt.Errorf("settle the cost of runner %s: job %d: %w", runnerID, j.JobID, err)
		}
		m.metrics.ObserveJobCost(cmp.Or(j.Egg, r.Egg), j.ProjectPath, "idle", out.Share-j.IdleCost)
	}
	currency := m.Nest().MotherGoose.Cost.Unit()
	reason := fmt.Sprintf("machine ran %s and was stopped %s: %.6f %s; %d jobs charged %.6f directly; idle %.6f shared as %.6f each",
		out.Running.Round(time.Second), out.Stopped.Round(time.Second), out.Total, currency, out.Jobs, out.Direct, out.Idle, out.Share)
	if !rates.priced {
		reason = fmt.Sprintf("no price for %s runners on %s in the cost block: charged nothing (ran %s, stopped %s, %d jobs)",
			r.Kind, r.Cloud, out.Running.Round(time.Second), out.Stopped.Round(time.Second), out.Jobs)
	}
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: AuditCostSettled, Egg: r.Egg, RunnerID: r.ID,
		Reason: reason, Key: "cost-settled/" + r.ID})
	return out, nil
}

// Chargeback groupings.
const (
	CostByEgg     = "egg"
	CostByProject = "project"
)

// CostLine is one line of a chargeback: what the jobs of an egg, or of a
// project of it, cost.
type CostLine struct {
	Egg, Project                 string
	Jobs, QueuedJobs             int
	QueueSeconds, MachineSeconds float64
	RunCost, IdleCost            float64
}

// Total is the line's run and idle cost.
func (l CostLine) Total() float64 { return l.RunCost + l.IdleCost }

// costPage is how many job records one read of a chargeback takes.
const costPage = 500

// Chargeback totals the queue time and cost of the jobs Gosling's runners
// ran that finished at or after since, by egg or by project (by: CostByEgg
// or CostByProject; a project without a recorded path is named by its
// ID), most costly first. Idle shares count once their runner has ended.
func (m *Operations) Chargeback(ctx context.Context, since time.Time, by string) ([]CostLine, error) {
	if by != CostByEgg && by != CostByProject {
		return nil, errorf(KindInvalid, "bad request", "by must be %s or %s", CostByEgg, CostByProject)
	}
	lines := map[[2]string]*CostLine{}
	for before := int64(0); ; {
		page, err := m.store.ListJobs(ctx, store.JobFilter{FinishedSince: since, BeforeJobID: before, Limit: costPage})
		if err != nil {
			return nil, fmt.Errorf("chargeback: %w", err)
		}
		for _, j := range page {
			if j.RunnerID == "" {
				continue // not run by a Gosling runner
			}
			key := [2]string{j.Egg, ""}
			if by == CostByProject {
				key[1] = cmp.Or(j.ProjectPath, fmt.Sprintf("project %d", j.ProjectID))
			}
			l := lines[key]
			if l == nil {
				l = &CostLine{Egg: key[0], Project: key[1]}
				lines[key] = l
			}
			l.Jobs++
			if j.QueueSeconds > 0 {
				l.QueuedJobs++
				l.QueueSeconds += j.QueueSeconds
			}
			l.MachineSeconds += j.MachineSeconds
			l.RunCost += j.Cost
			l.IdleCost += j.IdleCost
		}
		if len(page) < costPage {
			break
		}
		before = page[len(page)-1].JobID
	}
	out := make([]CostLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, *l)
	}
	slices.SortFunc(out, func(a, b CostLine) int {
		return cmp.Or(cmp.Compare(b.Total(), a.Total()), cmp.Compare(a.Egg, b.Egg), cmp.Compare(a.Project, b.Project))
	})
	return out, nil
}

// PoolIdleCost is what a pool's idle runners cost an hour now.
type PoolIdleCost struct {
	Currency string
	PerHour  float64
	// ApexIdle and Nadir count the runners priced: Apex runners with no
	// job, and Nadir runners.
	ApexIdle, Nadir int
}

// IdleCostOf prices a pool's idle runners (each at its own size, the
// egg's disk) by the Nest's cost block; false when it prices none.
func (m *Operations) IdleCostOf(st contract.PoolStatus) (PoolIdleCost, bool) {
	nest := m.Nest()
	out := PoolIdleCost{Currency: nest.MotherGoose.Cost.Unit()}
	egg, ok := nest.Egg(st.Egg)
	if !ok {
		return out, false
	}
	priced := false
	for _, r := range st.Runners {
		cloud := r.Cloud
		if cloud == "" && len(egg.Runner.Clouds) > 0 {
			cloud = egg.Runner.Clouds[0]
		}
		p, ok := nest.MotherGoose.Cost.PriceFor(cmp.Or(cloud, fly.CloudLocal), r.Kind, fly.CapacityOnDemand)
		if !ok {
			continue
		}
		switch {
		case r.State == contract.PoolApex && len(r.Jobs) == 0:
			out.PerHour += p.Running(r.CPU, r.Memory, egg.Runner.Disk) * 3600
			out.ApexIdle++
			priced = true
		case r.State == contract.PoolNadir:
			out.PerHour += p.Stopped(egg.Runner.Disk) * 3600
			out.Nadir++
			priced = true
		}
	}
	return out, priced
}

// HitRate is the share of a pool's jobs served without a cold start (by an
// idle Apex runner or a promotion), 0 before its first.
func HitRate(stats contract.PoolStats) float64 {
	apex, promoted, cold := stats.Served[contract.ServedByApex], stats.Served[contract.ServedByPromotion], stats.Served[contract.ServedByProvision]
	if n := apex + promoted + cold; n > 0 {
		return float64(apex+promoted) / float64(n)
	}
	return 0
}
