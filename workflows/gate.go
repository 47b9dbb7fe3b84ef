package workflows

import (
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// DefaultGateTick is how often a gate looks for slots held too long.
const DefaultGateTick = time.Minute

// slotGrace is how long past a runner's longest life (its serverless
// deadline and ready timeout) a gate waits for the runner workflow's word
// before it frees the slot all the same.
const slotGrace = 30 * time.Minute

// Gate is the admission workflow of one serverless egg: it bounds the
// egg's runners at once by the egg's max_concurrent, as a pool does for
// VMs. Every pending job of the egg comes to it as demand (signal-with-
// start, so the first job starts it); while fewer than max_concurrent of
// the egg's runner workflows run, the next job in line gets its
// ProvisionRunner, started as a child with the job's own workflow ID
// (contract.RunnerWorkflowID(host, job)), so a job whose runner workflow
// exists (a late or repeated hook, a runner made before the gate) gets no
// second one. Jobs beyond the bound wait in order. The runner workflow
// tells the gate when it ends (SignalRunnerProvisioned, as it tells a
// pool), which frees the slot; a job that runs elsewhere or ends while it
// waits leaves the line; a job's final status is passed on to its runner
// workflow. The gate waits only for each child's start, remembers recent
// jobs (Known, Done) and continues as new at quiet moments, like Pool.
//
// Why not the Pool workflow: a pool's runners are long-lived and shared by
// jobs, and it owns their lifecycle (promote, demote, recycle); a
// serverless runner is one job's, lives and ends with it, and keeps the
// job's workflow ID so GitLab's retries join it. The gate only counts and
// orders; ProvisionRunner does the rest, as before.
func Gate(ctx workflow.Context, in contract.GateInput) error {
	g := newGate(ctx, in)
	return g.run()
}

type gate struct {
	ctx   workflow.Context
	in    contract.GateInput
	st    *contract.GateState
	id    string
	cloud string
	loop  *runLoop
}

func newGate(ctx workflow.Context, in contract.GateInput) *gate {
	st := in.State
	if st == nil {
		st = &contract.GateState{Egg: in.Egg, Since: workflow.Now(ctx)}
	}
	st.Stats.Runs++
	cloud := in.Cloud
	if cloud == "" && len(st.Egg.Runner.Clouds) > 0 {
		cloud = st.Egg.Runner.Clouds[0]
	}
	tick := in.Tick
	if tick <= 0 {
		tick = DefaultGateTick
	}
	return &gate{ctx: ctx, in: in, st: st, id: workflow.GetInfo(ctx).WorkflowExecution.ID, cloud: cloud, loop: newRunLoop(ctx, tick)}
}

// slots is how many runner workflows may run at once.
func (g *gate) slots() int { return max(1, g.st.Egg.Runner.MaxConcurrent) }

func (g *gate) run() error {
	ctx := g.ctx
	log := workflow.GetLogger(ctx)
	if err := workflow.SetQueryHandler(ctx, contract.QueryGateStatus, func() (contract.GateStatus, error) { return g.status(), nil }); err != nil {
		return err
	}
	l := g.loop
	onSignal(l, contract.SignalDemand, g.onDemand)
	onSignal(l, contract.SignalJobStatus, g.onJobStatus)
	onSignal(l, contract.SignalRunnerProvisioned, g.onEnded)
	onSignal(l, contract.SignalGateSpec, func(e fly.Egg) {
		g.st.Egg = e
		log.Info("egg spec updated", "version", e.Version, "max_concurrent", e.Runner.MaxConcurrent)
	})
	return l.run(loopHooks{
		settle:     g.serve,
		tickWanted: func() bool { return len(g.st.Running) > 0 },
		onTick:     g.expire,
		cancelled: func() {
			log.Info("gate cancelled", "running", len(g.st.Running), "waiting", len(g.st.Waiting))
		},
		continueAsNew: func() error {
			next := g.in
			next.State = g.st
			return workflow.NewContinueAsNewError(ctx, Gate, next)
		},
	})
}

// rememberJob adds a job ID to a bounded list of recent jobs.
func rememberJob(list []int64, jobID int64) []int64 {
	if slices.Contains(list, jobID) {
		return list
	}
	list = append(list, jobID)
	if len(list) > knownJobs {
		list = list[len(list)-knownJobs:]
	}
	return list
}

func (g *gate) onDemand(d contract.Demand) {
	log := workflow.GetLogger(g.ctx)
	id := d.Job.JobID
	if slices.Contains(g.st.Known, id) {
		return // GitLab retried, or a duplicate webhook got this far
	}
	g.st.Known = rememberJob(g.st.Known, id)
	if slices.Contains(g.st.Done, id) {
		log.Info("demand dropped: the job is running or over already", "job", id)
		g.st.Stats.Dropped++
		return
	}
	if d.At.IsZero() {
		d.At = workflow.Now(g.ctx)
	}
	if d.Job.Host == "" {
		d.Job.Host = g.st.Egg.GitLab.Host
	}
	g.st.Waiting = append(g.st.Waiting, contract.Waiting(d))
	g.st.Stats.Admitted++
}

func (g *gate) onJobStatus(s contract.JobStatus) {
	if !s.Finished() && s.Status != "running" {
		return
	}
	// Running (on whatever runner) or over: the job waits no more, and a
	// demand that comes after this is late.
	g.st.Done = rememberJob(g.st.Done, s.JobID)
	before := len(g.st.Waiting)
	g.st.Waiting = slices.DeleteFunc(g.st.Waiting, func(w contract.Waiting) bool { return w.Job.JobID == s.JobID })
	if len(g.st.Waiting) < before {
		workflow.GetLogger(g.ctx).Info("job left the line", "job", s.JobID, "status", s.Status)
		g.st.Stats.Dropped++
		return
	}
	if !s.Finished() {
		return
	}
	// The runner workflow ends with its job: tell it. A job the gate does
	// not hold may have a runner workflow made before the gate started;
	// those live at most a runner's longest life.
	wfID := ""
	if i := g.slot(s.JobID); i >= 0 {
		wfID = g.st.Running[i].WorkflowID
	} else if !slices.Contains(g.st.Known, s.JobID) && workflow.Now(g.ctx).Sub(g.st.Since) < g.slotLife() {
		wfID = contract.RunnerWorkflowID(g.st.Egg.GitLab.Host, s.JobID)
	}
	if wfID == "" {
		return
	}
	ctx := g.ctx
	f := workflow.SignalExternalWorkflow(ctx, wfID, "", contract.SignalJobStatus, s)
	g.loop.await(f, func(f workflow.Future) {
		// Not found: it ended already, or never was.
		_ = f.Get(ctx, nil)
	})
}

func (g *gate) slot(jobID int64) int {
	return slices.IndexFunc(g.st.Running, func(s contract.GateSlot) bool { return s.Job.JobID == jobID })
}

// onEnded frees the slot of a runner workflow that ended.
func (g *gate) onEnded(m contract.RunnerProvisioned) {
	i := slices.IndexFunc(g.st.Running, func(s contract.GateSlot) bool { return s.RunnerID == m.RunnerID })
	if i < 0 {
		return
	}
	if m.Error != "" {
		workflow.GetLogger(g.ctx).Warn("runner workflow failed", "runner", m.RunnerID, "job", g.st.Running[i].Job.JobID, "error", m.Error)
	}
	if m.Reason != "" {
		g.st.Ignored = append(g.st.Ignored, contract.IgnoredJob{JobID: g.st.Running[i].Job.JobID,
			Reason: "no runner of egg " + g.st.Egg.Name + " can take it: " + m.Reason, At: workflow.Now(g.ctx)})
		if n := len(g.st.Ignored); n > contract.MaxIgnoredJobs {
			g.st.Ignored = slices.Clone(g.st.Ignored[n-contract.MaxIgnoredJobs:])
		}
	}
	g.st.Running = slices.Delete(g.st.Running, i, i+1)
	g.st.Stats.Ended++
}

// slotLife is the longest a runner workflow of this gate can live: its
// ready timeout and serverless deadline, with grace.
func (g *gate) slotLife() time.Duration {
	deadline := g.in.ServerlessDeadline
	if deadline <= 0 || deadline > fly.MaxServerlessRun {
		deadline = fly.MaxServerlessRun
	}
	ready := g.in.ReadyTimeout
	if ready <= 0 {
		ready = DefaultReadyTimeout
	}
	return deadline + ready + slotGrace
}

// expire frees slots whose runner workflow never said it ended (it was
// terminated from outside, say): a runner cannot live that long.
func (g *gate) expire() {
	now := workflow.Now(g.ctx)
	life := g.slotLife()
	g.st.Running = slices.DeleteFunc(g.st.Running, func(s contract.GateSlot) bool {
		if now.Sub(s.Started) < life {
			return false
		}
		workflow.GetLogger(g.ctx).Warn("slot freed: its runner workflow outlived any runner without a word", "job", s.Job.JobID, "workflow", s.WorkflowID)
		g.st.Stats.Expired++
		return true
	})
}

// serve starts runner workflows for the jobs in line, in order, while
// slots are free.
func (g *gate) serve() {
	for len(g.st.Waiting) > 0 && len(g.st.Running) < g.slots() {
		w := g.st.Waiting[0]
		g.st.Waiting = g.st.Waiting[1:]
		g.start(w)
	}
}

// start starts a job's ProvisionRunner as an abandoned child under the
// job's own workflow ID; the gate waits only for the start.
func (g *gate) start(w contract.Waiting) {
	ctx := g.ctx
	now := workflow.Now(ctx)
	job := w.Job
	wfID := contract.RunnerWorkflowID(job.Host, job.JobID)
	s := contract.GateSlot{Job: job, WorkflowID: wfID, RunnerID: contract.RunnerIDFor(g.st.Egg.Name, wfID), Asked: w.At, Started: now}
	g.st.Running = append(g.st.Running, s)
	g.st.Stats.Started++
	if wait := now.Sub(w.At); wait > time.Second {
		g.st.Stats.Queued++
		g.st.Stats.QueuedFor += wait
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            wfID,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	})
	child := workflow.ExecuteChildWorkflow(cctx, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{
		RunnerID: s.RunnerID, Egg: g.st.Egg, Job: &job, Cloud: g.cloud, Provider: g.in.Provider, Providers: g.in.Providers,
		ReadyTimeout: g.in.ReadyTimeout, ServerlessDeadline: g.in.ServerlessDeadline, Owner: g.id,
	})
	g.loop.await(child.GetChildWorkflowExecution(), func(f workflow.Future) {
		err := f.Get(ctx, nil)
		if err == nil {
			return
		}
		log := workflow.GetLogger(ctx)
		if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
			log.Info("the job has a runner workflow already", "job", job.JobID, "workflow", wfID)
		} else {
			log.Error("start ProvisionRunner", "job", job.JobID, "workflow", wfID, "error", err)
		}
		if i := slices.IndexFunc(g.st.Running, func(x contract.GateSlot) bool { return x.WorkflowID == wfID }); i >= 0 {
			g.st.Running = slices.Delete(g.st.Running, i, i+1)
		}
		g.st.Done = rememberJob(g.st.Done, job.JobID)
		g.st.Stats.Dropped++
	})
}

func (g *gate) status() contract.GateStatus {
	return contract.GateStatus{
		Egg: g.st.Egg.Name, MaxConcurrent: g.slots(), Running: slices.Clone(g.st.Running), Waiting: slices.Clone(g.st.Waiting),
		Stats: g.st.Stats, HistoryLength: workflow.GetInfo(g.ctx).GetCurrentHistoryLength(), Ignored: slices.Clone(g.st.Ignored),
	}
}
