package workflows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

const poolID = "pool/web"

type poolEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu         sync.Mutex
	calls      []string
	demoteBusy bool
	jobTags    []string
	// jobStatus is what the Jobs API says of every job (pending when "");
	// jobInfoDelay is how long it takes to say it.
	jobStatus    string
	jobInfoDelay time.Duration
}

func (e *poolEnv) record(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, s)
}

func (e *poolEnv) count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func poolEgg() fly.Egg {
	e := testEgg(fly.RunnerVM)
	e.Runner.MaxConcurrent = 3
	e.Apex = fly.Pool{Min: 0, Max: 3, IdleTimeout: fly.Duration(10 * time.Minute)}
	e.Nadir = fly.Pool{Min: 0, Max: 2, IdleTimeout: fly.Duration(24 * time.Hour)}
	return e
}

// newPoolEnv mocks every activity to succeed. Machines "boot" instantly:
// applying a running machine makes its agent signal ready to whoever the
// apply names, as the real agent does.
func newPoolEnv(t *testing.T) *poolEnv {
	var s testsuite.WorkflowTestSuite
	e := &poolEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment(), jobTags: []string{"docker"}}
	e.RegisterWorkflow(Pool)
	e.RegisterWorkflow(ProvisionRunner)
	e.RegisterWorkflow(DeprovisionRunner)
	var a *activities.Activities
	e.RegisterActivity(a)
	// JobTags is what runs before versionPoolJobOrder call.
	e.OnActivity(a.JobTags, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.JobTagsInput) ([]string, error) {
		e.record("tags")
		return e.jobTags, nil
	}).AfterFn(func() time.Duration { return e.jobInfoDelay })
	e.OnActivity(a.JobInfo, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.JobInfoInput) (activities.JobInfo, error) {
		e.record("tags")
		e.mu.Lock()
		defer e.mu.Unlock()
		status := e.jobStatus
		if status == "" {
			status = "pending"
		}
		return activities.JobInfo{Status: status, Tags: e.jobTags}, nil
	}).AfterFn(func() time.Duration { return e.jobInfoDelay })
	e.OnActivity(a.RecordRunner, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.CreateGitLabRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateGitLabRunnerInput) (activities.CreateGitLabRunnerResult, error) {
		e.record(fmt.Sprintf("create:%s:%d", in.RunnerID, len(in.Projects)))
		// web-pN gets GitLab runner 100N.
		n, _ := strconv.Atoi(in.RunnerID[strings.LastIndex(in.RunnerID, "p")+1:])
		return activities.CreateGitLabRunnerResult{GitLabRunnerID: 1000 + int64(n), TokenRef: "local://runners/" + in.RunnerID + "/token"}, nil
	})
	// The egg's shared runner: GitLab runner 1000 + the count of its
	// projects, its token the egg's.
	e.OnActivity(a.EnsureEggRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EnsureEggRunnerInput) (contract.EggRunner, error) {
		e.record(fmt.Sprintf("join:%d", len(in.Runner.Shape.Projects)))
		key := in.Runner.Shape.Key()
		return contract.EggRunner{GitLabRunnerID: 1000 + int64(len(in.Runner.Shape.Projects)), TokenRef: "local://runners/" + contract.EggRunnerSecretName(in.Runner.Egg, key) + "/token", ShapeKey: key}, nil
	})
	e.OnActivity(a.AssignRunnerProjects, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AssignRunnerProjectsInput) ([]int64, error) {
		e.record(fmt.Sprintf("assign:%d:%d", in.GitLabRunnerID, len(in.Projects)))
		return nil, nil
	})
	e.OnActivity(a.ApplyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ApplyMachineInput) (activities.ApplyMachineResult, error) {
		if in.Running {
			e.record("boot:" + in.RunnerID)
			e.RegisterDelayedCallback(func() {
				e.SignalWorkflowByID(in.ReadyWorkflowID, contract.SignalRunnerReady, contract.RunnerReady{RunnerID: in.RunnerID})
			}, time.Second)
		} else {
			e.record("sleep:" + in.RunnerID)
		}
		return activities.ApplyMachineResult{Workspace: in.RunnerID}, nil
	})
	e.OnActivity(a.TransitionRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.TransitionInput) (store.Runner, error) {
		return store.Runner{ID: in.RunnerID, State: in.To}, nil
	})
	e.OnActivity(a.GetRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (store.Runner, error) {
		return store.Runner{ID: id, Egg: "web", State: store.StateActive, Workspace: id}, nil
	})
	e.OnActivity(a.DestroyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DestroyMachineInput) error {
		e.record("destroy:" + in.RunnerID)
		return nil
	})
	e.OnActivity(a.DeleteGitLabRunner, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.DeleteRunnerToken, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.MintAgentCredential, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AgentCredentialInput) (string, error) {
		return "local://runners/" + in.RunnerID + "/agent", nil
	})
	e.OnActivity(a.RevokeAgentCredential, mock.Anything, mock.Anything).Return(nil)
	e.OnActivity(a.PromoteRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PowerInput) error {
		e.record("promote:" + in.Machine.RunnerID)
		e.RegisterDelayedCallback(func() {
			e.SignalWorkflowByID(in.Machine.ReadyWorkflowID, contract.SignalRunnerReady, contract.RunnerReady{RunnerID: in.Machine.RunnerID})
		}, time.Second)
		return nil
	})
	// A serverless invocation waits for work until it is cancelled (its
	// job ended) or its gitlab-runner's wait runs out.
	e.OnActivity(a.InvokeRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.InvokeRunnerInput) (activities.InvokeRunnerResult, error) {
		e.record("invoke-ended:" + in.RunnerID)
		return activities.InvokeRunnerResult{Via: "http"}, nil
	}).After(50 * time.Minute)
	e.OnActivity(a.DemoteRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.PowerInput) (activities.DemoteResult, error) {
		if e.demoteBusy {
			e.record("busy:" + in.Machine.RunnerID)
			return activities.DemoteResult{Busy: true}, nil
		}
		e.record("demote:" + in.Machine.RunnerID)
		return activities.DemoteResult{Demoted: true}, nil
	})
	e.SetStartWorkflowOptions(startOpts(poolID))
	return e
}

func (e *poolEnv) demand(at time.Duration, jobID int64) {
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalDemand, contract.Demand{Job: contract.JobRef{Host: "gitlab.example.com", ProjectID: 7, JobID: jobID}})
	}, at)
}

func (e *poolEnv) finish(at time.Duration, jobID int64) {
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: "success"})
	}, at)
}

// queryAt queries the pool's status at a point in workflow time.
func (e *poolEnv) queryAt(t *testing.T, at time.Duration, check func(contract.PoolStatus)) {
	e.RegisterDelayedCallback(func() {
		v, err := e.QueryWorkflow(contract.QueryPoolStatus)
		if err != nil {
			t.Errorf("query at %s: %v", at, err)
			return
		}
		var s contract.PoolStatus
		if err := v.Get(&s); err != nil {
			t.Error(err)
			return
		}
		check(s)
	}, at)
}

// stopAt ends the test run: pools never end by themselves.
func (e *poolEnv) stopAt(at time.Duration) {
	e.RegisterDelayedCallback(func() { e.CancelWorkflow() }, at)
}

func runPool(e *poolEnv, egg fly.Egg) {
	e.ExecuteWorkflow(Pool, contract.PoolInput{Egg: egg, Tick: 30 * time.Second})
}

// A job with no runner gets a new one; idle past its timeout it sleeps in
// Nadir; the next job promotes it, which is faster than a cold provision.
func TestPoolProvisionDemotePromote(t *testing.T) {
	e := newPoolEnv(t)
	e.demand(time.Second, 1)
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolApex] != 1 || s.Stats.Served[contract.ServedByProvision] != 1 {
			t.Errorf("after first job: %+v", s)
		}
	})
	e.finish(2*time.Minute, 1)
	e.queryAt(t, 15*time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolNadir] != 1 || s.Stats.Demotions != 1 || s.CPU[contract.PoolNadir] != 2 || s.Memory[contract.PoolNadir] != 4*fly.GiB {
			t.Errorf("after idle timeout: %+v", s)
		}
	})
	e.demand(20*time.Minute, 2)
	e.queryAt(t, 21*time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolApex] != 1 || s.Stats.Served[contract.ServedByPromotion] != 1 || s.Stats.Promotions != 1 {
			t.Errorf("after promotion: %+v", s)
		}
		if s.Stats.DemandToRunner[contract.ServedByPromotion] <= 0 || s.Stats.DemandToRunner[contract.ServedByProvision] <= 0 {
			t.Errorf("demand-to-runner times missing: %+v", s.Stats)
		}
	})
	e.stopAt(30 * time.Minute)
	runPool(e, poolEgg())
	if got := e.count("boot:"); got != 1 {
		t.Errorf("machines booted = %d, want 1 (promotion resumes, it does not make a new one)", got)
	}
	if e.count("promote:web-p1") != 1 || e.count("demote:web-p1") != 1 || e.count("tags") != 2 {
		t.Errorf("calls = %v", e.calls)
	}
}

// GitLab, not the pool, hands jobs to runners: an agent's report that its
// runner runs a job makes that runner the job's holder (taking it off
// another runner's slot, or counting it served from Apex when the runner
// took it before its demand came), and a report that comes after the job
// ended holds nothing.
func TestPoolAgentReportsHoldJobs(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Apex.Min = 2
	agentSays := func(at time.Duration, jobID int64, status, runner string) {
		e.RegisterDelayedCallback(func() {
			e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: status, RunnerID: runner})
		}, at)
	}
	holding := func(s contract.PoolStatus) map[string][]int64 {
		out := map[string][]int64{}
		for _, r := range s.Runners {
			out[r.ID] = r.Jobs
		}
		return out
	}
	// Job 1 runs on web-p2 before its demand arrives.
	agentSays(time.Minute, 1, "running", "web-p2")
	e.demand(time.Minute+time.Second, 1)
	e.queryAt(t, 2*time.Minute, func(s contract.PoolStatus) {
		if h := holding(s); !slices.Equal(h["web-p2"], []int64{1}) || len(h["web-p1"]) != 0 || s.Stats.Served[contract.ServedByApex] != 1 || len(s.WaitingJobs) != 0 {
			t.Errorf("job taken before its demand: %v %+v", h, s.Stats.Served)
		}
	})
	// Job 2's demand gives it web-p1's slot; GitLab gives it to web-p2.
	e.demand(3*time.Minute, 2)
	agentSays(3*time.Minute+10*time.Second, 2, "running", "web-p2")
	e.queryAt(t, 4*time.Minute, func(s contract.PoolStatus) {
		if h := holding(s); !slices.Equal(h["web-p2"], []int64{1, 2}) || len(h["web-p1"]) != 0 || s.Stats.Served[contract.ServedByApex] != 2 {
			t.Errorf("job moved to the runner that runs it: %v %+v", h, s.Stats.Served)
		}
	})
	e.finish(5*time.Minute, 1)
	e.finish(5*time.Minute, 2)
	agentSays(6*time.Minute, 2, "running", "web-p1") // late and wrong
	e.queryAt(t, 7*time.Minute, func(s contract.PoolStatus) {
		if h := holding(s); len(h["web-p1"])+len(h["web-p2"]) != 0 || s.Stats.JobsFinished != 2 {
			t.Errorf("after the jobs ended: %v %+v", h, s.Stats)
		}
	})
	e.stopAt(8 * time.Minute)
	runPool(e, egg)
}

// Nadir is filled to its minimum before any job arrives.
func TestPoolKeepsNadirMinimum(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Nadir.Min = 2
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolNadir] != 2 || len(s.Runners) != 2 {
			t.Errorf("nadir minimum not kept: %+v", s.Counts)
		}
	})
	e.stopAt(2 * time.Minute)
	runPool(e, egg)
	if e.count("sleep:") != 2 {
		t.Errorf("calls = %v", e.calls)
	}
}

// Never beyond the maximum: extra jobs wait in order and are served as
// runners free up.
func TestPoolLimitsAndOrder(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Nadir.Max = 0
	for i := int64(1); i <= 6; i++ {
		e.demand(time.Duration(i)*time.Second, i)
	}
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 3 || s.Waiting != 3 {
			t.Errorf("limit not kept: %d runners, %d waiting", len(s.Runners), s.Waiting)
		}
	})
	e.finish(2*time.Minute, 2)
	e.queryAt(t, 3*time.Minute, func(s contract.PoolStatus) {
		if s.Waiting != 2 {
			t.Errorf("waiting = %d after one finished", s.Waiting)
		}
		// The freed runner took job 4, the oldest waiting one.
		found := false
		for _, r := range s.Runners {
			for _, j := range r.Jobs {
				found = found || j == 4
			}
		}
		if !found {
			t.Errorf("job 4 not served first: %+v", s.Runners)
		}
	})
	e.stopAt(4 * time.Minute)
	runPool(e, egg)
}

// A burst of 500 job signals: every job is served exactly once, in order,
// with at most max_concurrent runners.
func TestPoolBurstOf500(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Runner.MaxConcurrent, egg.Apex.Max, egg.Nadir.Max = 10, 10, 0
	e.RegisterDelayedCallback(func() {
		for i := int64(1); i <= 500; i++ {
			e.SignalWorkflow(contract.SignalDemand, contract.Demand{Job: contract.JobRef{JobID: i, Tags: []string{"docker"}}})
		}
		// Duplicates change nothing.
		for i := int64(1); i <= 50; i++ {
			e.SignalWorkflow(contract.SignalDemand, contract.Demand{Job: contract.JobRef{JobID: i, Tags: []string{"docker"}}})
		}
	}, time.Second)
	for i := int64(1); i <= 500; i++ {
		e.finish(time.Minute+time.Duration(i)*time.Second, i)
	}
	e.queryAt(t, 30*time.Second, func(s contract.PoolStatus) {
		if len(s.Runners) != 10 || s.Waiting != 490 {
			t.Errorf("burst: %d runners, %d waiting", len(s.Runners), s.Waiting)
		}
	})
	e.queryAt(t, 20*time.Minute, func(s contract.PoolStatus) {
		served := 0
		for _, n := range s.Stats.Served {
			served += n
		}
		if s.Waiting != 0 || s.Stats.JobsFinished != 500 || served != 500 {
			t.Errorf("after burst: waiting %d, finished %d, served %d", s.Waiting, s.Stats.JobsFinished, served)
		}
	})
	e.stopAt(21 * time.Minute)
	runPool(e, egg)
	if got := e.count("boot:"); got != 10 {
		t.Errorf("machines booted = %d, want 10", got)
	}
}

// Demotion is race-free: a runner GitLab gave a job meanwhile stays Apex.
func TestPoolDemotionOfBusyRunnerKeepsIt(t *testing.T) {
	e := newPoolEnv(t)
	e.demoteBusy = true
	e.demand(time.Second, 1)
	e.finish(2*time.Minute, 1)
	e.queryAt(t, 15*time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolApex] != 1 || s.Stats.Demotions != 0 {
			t.Errorf("busy runner demoted: %+v", s)
		}
	})
	e.stopAt(16 * time.Minute)
	runPool(e, poolEgg())
	if e.count("busy:") == 0 || e.count("sleep:") != 0 {
		t.Errorf("calls = %v", e.calls)
	}
}

// Idle Apex runners go away instead when Nadir is full (here: none allowed).
func TestPoolRetiresWhenNadirFull(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Nadir.Max = 0
	e.demand(time.Second, 1)
	e.finish(2*time.Minute, 1)
	e.queryAt(t, 15*time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 0 || s.Stats.Retired != 1 {
			t.Errorf("idle runner not retired: %+v", s)
		}
	})
	e.stopAt(16 * time.Minute)
	runPool(e, egg)
	if e.count("destroy:web-p1") != 1 {
		t.Errorf("calls = %v", e.calls)
	}
}

func TestPoolIgnoresJobsItsRunnersCannotTake(t *testing.T) {
	e := newPoolEnv(t)
	e.jobTags = []string{"gpu"}
	e.demand(time.Second, 1)
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 0 || s.Waiting != 0 {
			t.Errorf("foreign job served: %+v", s)
		}
		// The status says why, for whoever waits for the job.
		if len(s.Ignored) != 1 || s.Ignored[0].JobID != 1 || !strings.Contains(s.Ignored[0].Reason, "lack the job's tags gpu") {
			t.Errorf("ignored = %+v", s.Ignored)
		}
	})
	e.stopAt(2 * time.Minute)
	runPool(e, poolEgg())
}

func TestPoolScaleUpdate(t *testing.T) {
	e := newPoolEnv(t)
	e.RegisterDelayedCallback(func() {
		bad := 5
		e.UpdateWorkflow(contract.UpdatePoolScale, "bad", &testsuite.TestUpdateCallback{
			OnAccept: func() { t.Error("apex_min above apex_max accepted") },
			OnReject: func(err error) {
				if !strings.Contains(err.Error(), "apex_min (5) is above apex_max (3)") {
					t.Errorf("reject = %v", err)
				}
			},
			OnComplete: func(any, error) {},
		}, contract.PoolScale{ApexMin: &bad})
		two := 2
		e.UpdateWorkflow(contract.UpdatePoolScale, "good", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) {
				if err != nil {
					t.Error(err)
				}
			},
		}, contract.PoolScale{ApexMin: &two})
	}, time.Second)
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if s.Limits.ApexMin != 2 || s.Counts[contract.PoolApex] != 2 {
			t.Errorf("apex minimum not applied: %+v %+v", s.Limits, s.Counts)
		}
	})
	e.stopAt(2 * time.Minute)
	runPool(e, poolEgg())
}

func TestPoolDrain(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Nadir.Min = 2
	e.RegisterDelayedCallback(func() {
		e.UpdateWorkflow(contract.UpdatePoolDrain, "drain", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(v any, err error) {
				if err != nil || v.(int) != 2 {
					t.Errorf("drain = %v, %v", v, err)
				}
			},
		})
	}, time.Minute)
	e.queryAt(t, 5*time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 0 || s.Stats.Retired != 2 || !s.Draining {
			t.Errorf("not drained: %+v", s)
		}
	})
	// Scaling resumes it: Nadir is filled again.
	e.RegisterDelayedCallback(func() {
		e.UpdateWorkflow(contract.UpdatePoolScale, "resume", &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) { t.Errorf("rejected: %v", err) },
			OnComplete: func(any, error) {},
		}, contract.PoolScale{})
	}, 6*time.Minute)
	e.queryAt(t, 8*time.Minute, func(s contract.PoolStatus) {
		if s.Draining || s.Counts[contract.PoolNadir] != 2 {
			t.Errorf("not resumed: %+v", s.Counts)
		}
	})
	e.stopAt(9 * time.Minute)
	runPool(e, egg)
}

// Continue-as-new carries every runner and every waiting job.
func TestPoolContinueAsNewCarriesState(t *testing.T) {
	old := maxPoolEvents
	maxPoolEvents = 0
	defer func() { maxPoolEvents = old }()
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Nadir.Max = 0
	state := &contract.PoolState{
		Egg: egg, Seq: 3,
		Runners: []*contract.PoolRunner{
			{ID: "web-p1", State: contract.PoolApex, Kind: fly.RunnerVM, Jobs: []int64{11}},
			{ID: "web-p2", State: contract.PoolApex, Kind: fly.RunnerVM, Jobs: []int64{12}},
			{ID: "web-p3", State: contract.PoolApex, Kind: fly.RunnerVM, Jobs: []int64{13}},
		},
		Waiting: []contract.Waiting{{Job: contract.JobRef{JobID: 14}}},
		Known:   []int64{11, 12, 13, 14},
	}
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalDemand, contract.Demand{Job: contract.JobRef{JobID: 15, Tags: []string{"docker"}}})
	}, time.Second)
	e.ExecuteWorkflow(Pool, contract.PoolInput{Egg: egg, State: state, Tick: time.Hour})
	var can *workflow.ContinueAsNewError
	if err := e.GetWorkflowError(); !errors.As(err, &can) {
		t.Fatalf("want continue-as-new, got %v", err)
	}
	var next contract.PoolInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	st := next.State
	if st == nil || len(st.Runners) != 3 || st.Seq != 3 || st.Stats.Runs != 1 {
		t.Fatalf("runners not carried: %+v", st)
	}
	var waiting []string
	for _, w := range st.Waiting {
		waiting = append(waiting, fmt.Sprint(w.Job.JobID))
	}
	if strings.Join(waiting, ",") != "14,15" {
		t.Errorf("waiting = %v, want 14,15 in order", waiting)
	}
}

func (e *poolEnv) action(at time.Duration, a contract.RunnerAction) {
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(contract.SignalRunnerAction, a) }, at)
}

// Recycling replaces first: the old runner goes only once the new one is
// ready, and a busy one only once its job ends.
func TestPoolRecycleReplacesFirst(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Apex.Min = 1
	e.demand(time.Minute, 1)
	e.action(2*time.Minute, contract.RunnerAction{RunnerID: "web-p1", Action: contract.ActionRecycle, Policy: "old", Reason: "older than 24h"})
	e.queryAt(t, 3*time.Minute, func(s contract.PoolStatus) {
		// p1 is busy: it stays; its replacement p2 is up.
		if len(s.Runners) != 2 || s.Stats.Recycled != 1 {
			t.Errorf("after recycle request: %+v", s.Runners)
		}
	})
	e.finish(4*time.Minute, 1)
	e.queryAt(t, 6*time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 1 || s.Runners[0].ID != "web-p2" || s.Runners[0].State != contract.PoolApex {
			t.Errorf("after the job: %+v", s.Runners)
		}
	})
	e.stopAt(7 * time.Minute)
	runPool(e, egg)
	if e.count("destroy:web-p1") != 1 || e.count("destroy:web-p2") != 0 {
		t.Errorf("calls = %v", e.calls)
	}
}

// Terminate is immediate, even for a busy runner, and its job is served again.
func TestPoolTerminateRequeuesJob(t *testing.T) {
	e := newPoolEnv(t)
	e.demand(time.Second, 1)
	e.action(time.Minute, contract.RunnerAction{RunnerID: "web-p1", Action: contract.ActionTerminate, Policy: "heartbeat", Reason: "silent for 5m"})
	e.action(time.Minute, contract.RunnerAction{RunnerID: "web-p9", Action: contract.ActionTerminate, Reason: "a runner the pool lost track of"})
	e.queryAt(t, 3*time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 1 || s.Runners[0].ID != "web-p2" || len(s.Runners[0].Jobs) != 1 {
			t.Errorf("after terminate: %+v", s.Runners)
		}
	})
	e.stopAt(4 * time.Minute)
	runPool(e, poolEgg())
	if e.count("destroy:web-p1") != 1 || e.count("destroy:web-p9") != 1 {
		t.Errorf("calls = %v", e.calls)
	}
}

// A demote request leaves a busy runner alone.
func TestPoolDemoteActionSparesBusy(t *testing.T) {
	e := newPoolEnv(t)
	e.demand(time.Second, 1)
	e.action(time.Minute, contract.RunnerAction{RunnerID: "web-p1", Action: contract.ActionDemote, Policy: "idle"})
	e.finish(2*time.Minute, 1)
	e.action(3*time.Minute, contract.RunnerAction{RunnerID: "web-p1", Action: contract.ActionDemote, Policy: "idle"})
	e.queryAt(t, 4*time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolNadir] != 1 || s.Stats.Demotions != 1 {
			t.Errorf("after demote: %+v", s.Counts)
		}
	})
	e.stopAt(5 * time.Minute)
	runPool(e, poolEgg())
}

// Resource caps hold as well as counts: with Apex capped at 4 vCPU, two
// 2-vCPU runners serve and the third job waits.
func TestPoolResourceCaps(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Apex.MaxCPU = 4
	for i := int64(1); i <= 3; i++ {
		e.demand(time.Duration(i)*time.Second, i)
	}
	e.queryAt(t, time.Minute, func(s contract.PoolStatus) {
		if len(s.Runners) != 2 || s.Waiting != 1 || s.CPU[contract.PoolApex] != 4 {
			t.Errorf("caps not kept: %d runners, %d waiting, %v vCPU", len(s.Runners), s.Waiting, s.CPU)
		}
	})
	e.stopAt(2 * time.Minute)
	runPool(e, egg)
}
