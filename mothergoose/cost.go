package mothergoose

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/workflows/contract"
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
func (m *MotherGoose) recordRunnerJob(ctx context.Context, r *store.Runner, j agentapi.JobReport, at time.Time) error {
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
func (m *MotherGoose) noteQueueTime(ctx context.Context, j store.JobRecord) error {
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
func (m *MotherGoose) SettleRunnerCost(ctx context.Context, runnerID string) error {
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
func (m *MotherGoose) SettleRunner(ctx context.Context, runnerID string) (RunnerCost, error) {
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
	currency := m.Nest().MotherGoose.Cost.Currency
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
