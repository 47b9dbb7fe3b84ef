package mothergoose

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// A runner's time is priced by its state: running from the machine's
// making until its end, stopped in Nadir, nothing while it is only being
// provisioned.
func TestRunnerTimes(t *testing.T) {
	t0 := time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)
	r := &store.Runner{ID: "web-p1", CreatedAt: t0}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	hist := []store.Transition{
		{To: store.StateRegistering, At: at(30)},
		{To: store.StateActive, At: at(40)},
		{To: store.StateDormant, At: at(100)},
		{To: store.StateActive, At: at(400)},
		{To: store.StateTerminating, At: at(460)},
		{To: store.StateTerminated, At: at(470)},
	}
	running, stopped := runnerTimes(r, hist, at(10000))
	if running != 140*time.Second || stopped != 300*time.Second {
		t.Errorf("running %s, stopped %s; want 2m20s and 5m0s", running, stopped)
	}
	running, stopped = runnerTimes(r, hist[:3], at(160))
	if running != 70*time.Second || stopped != 60*time.Second {
		t.Errorf("a live runner until now: running %s, stopped %s", running, stopped)
	}
}

// The agent's reports give a job its queue time and its machine time at
// the runner's price; the runner's end shares its idle cost among its
// jobs, so the jobs' costs add up to what the machine cost.
func TestJobQueueTimeAndCost(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	egg := e.egg("web")
	egg.Runner.Type, egg.Runner.CPU, egg.Runner.Memory, egg.Runner.Disk, egg.Runner.JobsPerRunner = fly.RunnerVM, 2, 4*fly.GiB, 10*fly.GiB, 2
	nest := &fly.Nest{Eggs: []fly.Egg{egg}}
	nest.MotherGoose.Cost = fly.Cost{Currency: "EUR", Prices: []fly.Price{
		{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand, VCPUHour: 0.036, MemoryGiBHour: 0.0045, DiskGiBHour: 0.00036},
	}}
	e.mg.nest.Store(nest)
	running := (2*0.036 + 4*0.0045 + 10*0.00036) / 3600

	const token = "gsa-web-p1"
	if _, err := e.mg.Secrets().Put(ctx, "local://runners/web-p1/agent", token); err != nil {
		t.Fatal(err)
	}
	created := time.Now().UTC()
	r := &store.Runner{ID: "web-p1", Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateProvisioning,
		GitLabHost: e.host, TokenRef: "local://runners/web-p1", AgentRef: "local://runners/web-p1/agent", CreatedAt: created, UpdatedAt: created}
	if err := e.st.CreateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, to := range []store.RunnerState{store.StateRegistering, store.StateActive} {
		if _, err := e.st.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, To: to, Reason: "test", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	agent, err := e.mg.agents.AuthenticateAgent(ctx, r.ID, token)
	if err != nil {
		t.Fatal(err)
	}
	// Job 1's pending hook came; job 2's came after its runner started it.
	// The jobs take a tenth of a second and less; the machine runs longer.
	active := time.Now().UTC().Truncate(time.Millisecond)
	queued := active.Add(-42 * time.Second)
	if _, err := e.st.RecordJob(ctx, store.JobRecord{GitLabHost: e.host, JobID: 1, ProjectID: 7, ProjectPath: "acme/web", Egg: "web", Status: "pending", QueuedAt: &queued}); err != nil {
		t.Fatal(err)
	}
	report := func(job int64, status string, at time.Time) {
		t.Helper()
		if err := e.mg.agents.RunnerJob(ctx, agent, agentapi.JobReport{JobID: job, Status: status, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	start1, end1 := active, active.Add(100*time.Millisecond)
	report(1, agentapi.JobRunning, start1)
	report(1, agentapi.JobRunning, start1.Add(time.Second)) // a retried report
	report(1, agentapi.JobSuccess, end1)
	report(1, agentapi.JobSuccess, end1)
	j1, err := e.st.GetJob(ctx, e.host, 1)
	if err != nil {
		t.Fatal(err)
	}
	if j1.QueueSeconds != 42 || j1.RunnerID != r.ID || !near(j1.MachineSeconds, 0.05) || !near(j1.Cost, 0.05*running) || j1.Status != "success" {
		t.Errorf("job 1 = %+v: want 42 s queued, 0.1 s on a runner of 2 slots (0.05 machine-seconds)", j1)
	}

	start2 := active.Add(20 * time.Millisecond)
	report(2, agentapi.JobRunning, start2)
	queued2 := start2.Add(-8 * time.Second)
	if _, err := e.st.RecordJob(ctx, store.JobRecord{GitLabHost: e.host, JobID: 2, ProjectID: 7, ProjectPath: "acme/web", Egg: "web", Status: "pending", QueuedAt: &queued2}); err != nil {
		t.Fatal(err)
	}
	j2, _ := e.st.GetJob(ctx, e.host, 2)
	if err := e.mg.noteQueueTime(ctx, *j2); err != nil {
		t.Fatal(err)
	}
	report(2, agentapi.JobFailed, start2.Add(30*time.Millisecond))
	if j2, _ = e.st.GetJob(ctx, e.host, 2); j2.QueueSeconds != 8 || !near(j2.MachineSeconds, 0.015) {
		t.Errorf("job 2 = %+v: want 8 s queued, 0.015 machine-seconds", j2)
	}
	if n := metricValue(t, e.metrics, "gosling_job_machine_seconds_total", "egg", "web", "project", "acme/web"); !near(n, 0.065) {
		t.Errorf("machine seconds counted %v, want 0.065", n)
	}
	time.Sleep(300 * time.Millisecond) // the machine runs on, idle

	for _, to := range []store.RunnerState{store.StateDormant, store.StateTerminating, store.StateTerminated} {
		if _, err := e.st.Transition(ctx, store.TransitionRequest{RunnerID: r.ID, To: to, Reason: "test", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := e.mg.ops.SettleRunner(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Priced || rc.Jobs != 2 || rc.Running < 300*time.Millisecond || rc.Idle <= 0 || !near(rc.Direct, j1.Cost+j2.Cost) || !near(rc.Total, rc.Running.Seconds()*running+rc.Stopped.Seconds()*rc.StoppedRate) {
		t.Fatalf("settlement %+v", rc)
	}
	j1, _ = e.st.GetJob(ctx, e.host, 1)
	j2, _ = e.st.GetJob(ctx, e.host, 2)
	if !near(j1.IdleCost, rc.Share) || !near(j2.IdleCost, rc.Share) || !near(j1.Cost+j1.IdleCost+j2.Cost+j2.IdleCost, rc.Total) {
		t.Errorf("jobs' costs %v+%v and %v+%v do not add up to the machine's %v", j1.Cost, j1.IdleCost, j2.Cost, j2.IdleCost, rc.Total)
	}
	idle := metricValue(t, e.metrics, "gosling_job_cost_total", "egg", "web", "project", "acme/web", "part", "idle")
	run := metricValue(t, e.metrics, "gosling_job_cost_total", "egg", "web", "project", "acme/web", "part", "run")
	if !near(idle, rc.Idle) || !near(run, rc.Direct) {
		t.Errorf("counted run %v idle %v, want %v and %v", run, idle, rc.Direct, rc.Idle)
	}
	// Settling again counts nothing new.
	if _, err := e.mg.ops.SettleRunner(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if again := metricValue(t, e.metrics, "gosling_job_cost_total", "egg", "web", "project", "acme/web", "part", "idle"); !near(again, idle) {
		t.Errorf("a second settlement counted %v more", again-idle)
	}
	if recs := e.audits(AuditCostSettled); len(recs) != 1 || !strings.Contains(recs[0].Reason, "2 jobs") || recs[0].RunnerID != r.ID {
		t.Errorf("cost-settled audits %+v", recs)
	}
}
