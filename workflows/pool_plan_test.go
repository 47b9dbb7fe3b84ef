package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
)

var planNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// planRun is a run with every versioned behaviour of today's pools.
var planRun = PoolRun{Cloud: fly.CloudLocal, JobOrder: true, AssignProjects: true, Warm: true, HoldJobs: true}

// planState is a pool of egg web (max_concurrent 3, Apex 0..3, Nadir
// 0..2) holding the given runners.
func planState(runners ...*contract.PoolRunner) contract.PoolState {
	st := contract.PoolState{Egg: poolEgg(), Runners: runners, Seq: int64(len(runners))}
	st.Stats.Served = map[string]int{}
	st.Stats.DemandToRunner = map[string]time.Duration{}
	return st
}

// apex, nadir and making are runners of the pool, numbered as it
// numbers them, with the egg's size.
func planRunner(n int64, state string, jobs ...int64) *contract.PoolRunner {
	return &contract.PoolRunner{
		ID: contract.PoolRunnerID("web", n), State: state, Kind: fly.RunnerVM, GitLabRunnerID: 100 + n,
		CPU: 2, Memory: 4 * fly.GiB, Jobs: jobs, CreatedAt: planNow.Add(-time.Hour), Since: planNow.Add(-time.Hour),
		IdleSince: planNow.Add(-time.Minute), Projects: contract.ProjectsKey(poolEgg()),
	}
}

func apex(n int64, jobs ...int64) *contract.PoolRunner {
	r := planRunner(n, contract.PoolApex, jobs...)
	if len(jobs) > 0 {
		r.IdleSince = time.Time{}
	}
	return r
}

func nadir(n int64) *contract.PoolRunner { return planRunner(n, contract.PoolNadir) }

func demand(job int64) DemandReceived {
	return DemandReceived{Demand: contract.Demand{Job: contract.JobRef{JobID: job, Tags: []string{"docker"}}, At: planNow}}
}

func status(job int64, s, runner string) JobStatusReceived {
	return JobStatusReceived{Status: contract.JobStatus{JobID: job, Status: s, RunnerID: runner}}
}

// plan applies events in order, each followed by Settle as the workflow
// does, and returns the final state and every action, rendered as
// kind:runner (provision:web-p1~dormant for Nadir).
func plan(t *testing.T, st contract.PoolState, run PoolRun, events ...PoolEvent) (contract.PoolState, []string) {
	t.Helper()
	var acts []string
	apply := func(ev PoolEvent) {
		before, _ := json.Marshal(st)
		p := PlanPool(st, ev, planNow, run)
		after, _ := json.Marshal(st)
		if string(before) != string(after) {
			t.Fatalf("PlanPool(%T) changed the state it was given", ev)
		}
		for _, a := range p.Actions {
			s := string(a.Kind) + ":" + a.RunnerID
			if a.Dormant {
				s += "~dormant"
			}
			if a.Kind == PoolRecord {
				s += "=" + string(a.To)
			}
			if a.Kind == PoolReadJob {
				s += fmt.Sprint(a.Demand.Job.JobID)
			}
			acts = append(acts, s)
		}
		st = p.State
	}
	for _, ev := range events {
		apply(ev)
		if _, ok := ev.(Settle); !ok {
			apply(Settle{})
		}
	}
	return st, acts
}

// jobsOf renders who holds which job: "web-p1[7] web-p2[]".
func jobsOf(st contract.PoolState) string {
	var parts []string
	for _, r := range st.Runners {
		parts = append(parts, fmt.Sprintf("%s:%s%v", r.ID, r.State, r.Jobs))
	}
	return strings.Join(parts, " ")
}

// Webhooks and agent reports come in any order: a job's pending, running
// and finished, in each of their six orders, leave no job waiting, no
// runner holding it, and a runner made or woken only when the pending
// came first.
func TestPlanPoolJobEventOrders(t *testing.T) {
	const job = 7
	events := map[string]PoolEvent{
		"pending": demand(job),
		// The runner's own agent reports it (web-p1 when there is one).
		"running":  status(job, "running", contract.PoolRunnerID("web", 1)),
		"finished": status(job, "success", ""),
	}
	orders := [][]string{
		{"pending", "running", "finished"}, {"pending", "finished", "running"},
		{"running", "pending", "finished"}, {"running", "finished", "pending"},
		{"finished", "pending", "running"}, {"finished", "running", "pending"},
	}
	for _, tc := range []struct {
		name   string
		pool   func() contract.PoolState
		served string // the actions when the pending comes first
	}{
		{"idle Apex runner", func() contract.PoolState { return planState(apex(1)) }, ""},
		{"Nadir runner", func() contract.PoolState { return planState(nadir(1)) }, "promote:web-p1"},
		{"empty pool", func() contract.PoolState { return planState() }, "provision:web-p1"},
	} {
		for _, order := range orders {
			t.Run(tc.name+"/"+strings.Join(order, ","), func(t *testing.T) {
				var evs []PoolEvent
				for _, o := range order {
					evs = append(evs, events[o])
				}
				st, acts := plan(t, tc.pool(), planRun, evs...)
				want := ""
				if order[0] == "pending" {
					want = tc.served
				}
				if got := strings.Join(acts, " "); got != want {
					t.Errorf("actions = %q, want %q", got, want)
				}
				if len(st.Waiting) != 0 {
					t.Errorf("job still waiting: %v", st.Waiting)
				}
				if h := runnerWithJob(&st, job); h != nil {
					t.Errorf("%s still holds the job: %s", h.ID, jobsOf(st))
				}
				if !containsJob(st.Done, job) {
					t.Errorf("job not remembered as done")
				}
			})
		}
	}
}

func containsJob(list []int64, id int64) bool {
	for _, x := range list {
		if x == id {
			return true
		}
	}
	return false
}

func TestPlanPool(t *testing.T) {
	withEgg := func(st contract.PoolState, mutate func(*fly.Egg)) contract.PoolState {
		mutate(&st.Egg)
		return st
	}
	idleFor := func(r *contract.PoolRunner, d time.Duration) *contract.PoolRunner {
		r.IdleSince = planNow.Add(-d)
		return r
	}
	for _, tc := range []struct {
		name   string
		st     contract.PoolState
		run    PoolRun
		events []PoolEvent
		// acts is every action, space-separated; jobs what runners hold
		// at the end (jobsOf); waiting the jobs left in line.
		acts    string
		jobs    string
		waiting []int64
	}{
		{name: "Apex slot first", st: planState(nadir(1), apex(2)), events: []PoolEvent{demand(7)},
			jobs: "web-p1:nadir[] web-p2:apex[7]"},
		{name: "then a Nadir runner", st: planState(nadir(1), apex(2, 5)), events: []PoolEvent{demand(7)},
			acts: "promote:web-p1", jobs: "web-p1:promoting[7] web-p2:apex[5]"},
		{name: "then a new runner", st: planState(apex(1, 5)), events: []PoolEvent{demand(7)},
			acts: "provision:web-p2", jobs: "web-p1:apex[5] web-p2:provisioning[7]"},
		{name: "a runner being made takes the next job", st: planState(), events: []PoolEvent{demand(7), demand(8)},
			acts: "provision:web-p1 provision:web-p2", jobs: "web-p1:provisioning[7] web-p2:provisioning[8]"},
		{name: "apex_max bounds Apex", st: withEgg(planState(apex(1, 5), apex(2, 6)), func(e *fly.Egg) { e.Apex.Max = 2 }),
			events: []PoolEvent{demand(7)}, jobs: "web-p1:apex[5] web-p2:apex[6]", waiting: []int64{7}},
		{name: "max_concurrent bounds runners", st: withEgg(planState(apex(1, 5), nadir(2)), func(e *fly.Egg) { e.Runner.MaxConcurrent, e.Nadir.Max = 1, 0 }),
			events: []PoolEvent{demand(7)}, jobs: "web-p1:apex[5] web-p2:nadir[]", waiting: []int64{7}},
		{name: "the vCPU cap bounds Apex", st: withEgg(planState(apex(1, 5)), func(e *fly.Egg) { e.Apex.MaxCPU = 3 }),
			events: []PoolEvent{demand(7)}, jobs: "web-p1:apex[5]", waiting: []int64{7}},
		{name: "the memory cap bounds Nadir's minimum", st: withEgg(planState(), func(e *fly.Egg) { e.Nadir.Min, e.Nadir.MaxMemory = 2, 4*fly.GiB }),
			events: []PoolEvent{Settle{}}, acts: "provision:web-p1~dormant", jobs: "web-p1:provisioning[]"},
		{name: "jobs wait in order", st: withEgg(planState(apex(1, 5)), func(e *fly.Egg) { e.Apex.Max = 1 }),
			events: []PoolEvent{demand(9), demand(7), demand(8), status(5, "success", "")},
			jobs:   "web-p1:apex[9]", waiting: []int64{7, 8}},
		{name: "a repeated demand counts once", st: planState(), events: []PoolEvent{demand(7), demand(7)},
			acts: "provision:web-p1", jobs: "web-p1:provisioning[7]"},
		{name: "tags read when the hook has none", st: planState(apex(1)),
			events: []PoolEvent{DemandReceived{Demand: contract.Demand{Job: contract.JobRef{JobID: 7, ProjectID: 3}, At: planNow}},
				JobLookedUp{Demand: contract.Demand{Job: contract.JobRef{JobID: 7, ProjectID: 3}, At: planNow}, Job: activities.JobInfo{Status: "pending", Tags: []string{"docker"}}}},
			acts: "read-job:7", jobs: "web-p1:apex[7]"},
		{name: "a job no longer pending is dropped", st: planState(),
			events: []PoolEvent{JobLookedUp{Demand: contract.Demand{Job: contract.JobRef{JobID: 7, ProjectID: 3}}, Job: activities.JobInfo{Status: "running", Tags: []string{"docker"}}}},
			jobs:   ""},
		{name: "foreign tags are ignored", st: planState(),
			events: []PoolEvent{DemandReceived{Demand: contract.Demand{Job: contract.JobRef{JobID: 7, Tags: []string{"gpu"}}}}}, jobs: ""},
		{name: "Apex minimum", st: withEgg(planState(), func(e *fly.Egg) { e.Apex.Min = 2 }), events: []PoolEvent{Settle{}},
			acts: "provision:web-p1 provision:web-p2", jobs: "web-p1:provisioning[] web-p2:provisioning[]"},
		{name: "Nadir minimum", st: withEgg(planState(nadir(1)), func(e *fly.Egg) { e.Nadir.Min = 2 }), events: []PoolEvent{Settle{}},
			acts: "provision:web-p2~dormant", jobs: "web-p1:nadir[] web-p2:provisioning[]"},
		{name: "no Nadir for serverless", st: withEgg(planState(), func(e *fly.Egg) { e.Nadir.Min, e.Runner.Type = 2, fly.RunnerServerless }), events: []PoolEvent{Settle{}}},
		{name: "idle Apex demoted", st: planState(idleFor(apex(1), time.Hour)), events: []PoolEvent{TickElapsed{}},
			acts: "demote:web-p1", jobs: "web-p1:demoting[]"},
		{name: "idle Apex kept at apex_min", st: withEgg(planState(idleFor(apex(1), time.Hour)), func(e *fly.Egg) { e.Apex.Min = 1 }),
			events: []PoolEvent{TickElapsed{}}, jobs: "web-p1:apex[]"},
		{name: "idle Apex retired when Nadir is full", st: planState(idleFor(apex(1), time.Hour), nadir(2), nadir(3)),
			events: []PoolEvent{TickElapsed{}}, acts: "retire:web-p1", jobs: "web-p1:retiring[] web-p2:nadir[] web-p3:nadir[]"},
		{name: "a demotion that finds a job keeps the runner", st: planState(planRunner(1, contract.PoolDemoting)),
			events: []PoolEvent{DemoteEnded{RunnerID: "web-p1", Busy: true}}, jobs: "web-p1:apex[]"},
		{name: "a demotion done is recorded, and demand waiting promotes it back", st: planState(planRunner(1, contract.PoolDemoting, 7)),
			events: []PoolEvent{DemoteEnded{RunnerID: "web-p1"}}, acts: "record:web-p1=dormant promote:web-p1", jobs: "web-p1:promoting[7]"},
		{name: "a failed promotion retires, and its job gets a new runner", st: planState(planRunner(1, contract.PoolPromoting, 7)),
			events: []PoolEvent{PromoteFailed{RunnerID: "web-p1", Err: "boom"}}, acts: "retire:web-p1 provision:web-p2", jobs: "web-p1:retiring[] web-p2:provisioning[7]"},
		{name: "a failed promotion at the limit requeues", st: withEgg(planState(planRunner(1, contract.PoolPromoting, 7)), func(e *fly.Egg) { e.Apex.Max = 0 }),
			events: []PoolEvent{PromoteFailed{RunnerID: "web-p1", Err: "boom"}}, acts: "retire:web-p1", jobs: "web-p1:retiring[]", waiting: []int64{7}},
		{name: "ready after promotion", st: planState(planRunner(1, contract.PoolPromoting, 7)),
			events: []PoolEvent{ReadyReported{Ready: contract.RunnerReady{RunnerID: "web-p1"}}}, acts: "record:web-p1=active", jobs: "web-p1:apex[7]"},
		{name: "provisioned dormant with demand is promoted", st: planState(planRunner(1, contract.PoolProvisioning, 7)),
			events: []PoolEvent{ProvisionReported{Report: contract.RunnerProvisioned{RunnerID: "web-p1", State: "dormant", Kind: fly.RunnerVM, GitLabRunnerID: 101}}},
			acts:   "promote:web-p1", jobs: "web-p1:promoting[7]"},
		{name: "failed provisioning requeues", st: withEgg(planState(planRunner(1, contract.PoolProvisioning, 7)), func(e *fly.Egg) { e.Apex.Max = 0 }),
			events:  []PoolEvent{ProvisionReported{Report: contract.RunnerProvisioned{RunnerID: "web-p1", State: "terminated", Error: "boom"}}},
			waiting: []int64{7}},
		{name: "a retired runner is forgotten", st: planState(planRunner(1, contract.PoolRetiring)),
			events: []PoolEvent{RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}}}},
		{name: "drain retires Apex and Nadir and serves nothing", st: withEgg(planState(apex(1), nadir(2), planRunner(3, contract.PoolProvisioning)), func(e *fly.Egg) { e.Apex.Min = 2 }),
			events: []PoolEvent{DrainRequested{}, demand(7), TickElapsed{}}, acts: "retire:web-p1 retire:web-p2",
			jobs: "web-p1:retiring[] web-p2:retiring[] web-p3:provisioning[]", waiting: []int64{7}},
		{name: "scaling a drained pool resumes it", st: planState(),
			events: []PoolEvent{DrainRequested{}, demand(7), ScaleRequested{Scale: contract.PoolScale{Reset: true}}},
			acts:   "provision:web-p1", jobs: "web-p1:provisioning[7]"},
		{name: "a scale override bounds Apex", st: planState(apex(1, 5)),
			events: []PoolEvent{ScaleRequested{Scale: contract.PoolScale{ApexMax: intp(1)}}, demand(7)}, jobs: "web-p1:apex[5]", waiting: []int64{7}},
		{name: "recycle makes the replacement first", st: planState(apex(1, 5)),
			events: []PoolEvent{RunnerActionReceived{Action: contract.RunnerAction{RunnerID: "web-p1", Action: contract.ActionRecycle, Policy: "age", Reason: "older than 7d"}},
				status(5, "success", ""), ProvisionReported{Report: contract.RunnerProvisioned{RunnerID: "web-p2", State: "active", Kind: fly.RunnerVM, GitLabRunnerID: 102}}},
			acts: "provision:web-p2 retire:web-p1", jobs: "web-p1:retiring[] web-p2:apex[]"},
		{name: "terminate of a runner not held tears it down", st: planState(),
			events: []PoolEvent{RunnerActionReceived{Action: contract.RunnerAction{RunnerID: "web-p9", Action: contract.ActionTerminate}}}, acts: "tear-down:web-p9"},
		{name: "an announcement wakes Nadir ahead of its jobs", st: withEgg(planState(nadir(1)), func(e *fly.Egg) { e.Apex.WarmFor = fly.Duration(time.Minute) }),
			events: []PoolEvent{WarmReceived{Warm: contract.Warm{Key: "push/1", Jobs: 1}}}, acts: "promote:web-p1", jobs: "web-p1:promoting[]"},
		{name: "announcements are ignored before versionPoolWarm", st: withEgg(planState(nadir(1)), func(e *fly.Egg) { e.Apex.WarmFor = fly.Duration(time.Minute) }),
			run: PoolRun{Cloud: fly.CloudLocal}, events: []PoolEvent{WarmReceived{Warm: contract.Warm{Key: "push/1", Jobs: 1}}}, jobs: "web-p1:nadir[]"},
		{name: "a new project list enables runners in it", st: planState(apex(1)),
			events: []PoolEvent{SpecChanged{Egg: func() fly.Egg {
				e := poolEgg()
				e.Projects = append(e.Projects, fly.ProjectRef{ID: 8, Path: "acme/api"})
				return e
			}()}},
			acts: "assign:web-p1", jobs: "web-p1:apex[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := tc.run
			if run == (PoolRun{}) {
				run = planRun
			}
			st, acts := plan(t, tc.st, run, tc.events...)
			if got := strings.Join(acts, " "); got != tc.acts {
				t.Errorf("actions = %q, want %q", got, tc.acts)
			}
			if got := jobsOf(st); got != tc.jobs {
				t.Errorf("runners = %q, want %q", got, tc.jobs)
			}
			var waiting []int64
			for _, w := range st.Waiting {
				waiting = append(waiting, w.Job.JobID)
			}
			if fmt.Sprint(waiting) != fmt.Sprint(tc.waiting) {
				t.Errorf("waiting = %v, want %v", waiting, tc.waiting)
			}
		})
	}
}

func intp(n int) *int { return &n }

// HoldJobsMatters is what decides when the workflow asks for the hold
// version: only when an agent reports running a job another runner (or
// none) holds.
func TestHoldJobsMatters(t *testing.T) {
	st := planState(apex(1, 7), apex(2))
	for _, tc := range []struct {
		s    contract.JobStatus
		want bool
	}{
		{contract.JobStatus{JobID: 7, Status: "running", RunnerID: "web-p2"}, true},
		{contract.JobStatus{JobID: 7, Status: "running", RunnerID: "web-p1"}, false},
		{contract.JobStatus{JobID: 8, Status: "running", RunnerID: "web-p2"}, true},
		{contract.JobStatus{JobID: 8, Status: "running", RunnerID: "other-9"}, false},
		{contract.JobStatus{JobID: 8, Status: "running"}, false},
		{contract.JobStatus{JobID: 8, Status: "success", RunnerID: "web-p2"}, false},
	} {
		if got := HoldJobsMatters(&st, tc.s); got != tc.want {
			t.Errorf("HoldJobsMatters(%+v) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestValidatePoolScale(t *testing.T) {
	st := planState()
	for _, tc := range []struct {
		s    contract.PoolScale
		want string
	}{
		{contract.PoolScale{ApexMax: intp(2)}, ""},
		{contract.PoolScale{ApexMax: intp(-1)}, "apex_max must be from 0 to 1000"},
		{contract.PoolScale{ApexMin: intp(3), ApexMax: intp(2)}, "apex_min (3) is above apex_max (2)"},
		{contract.PoolScale{NadirMin: intp(3)}, "nadir_min (3) is above nadir_max (2)"},
		{contract.PoolScale{ApexMax: intp(4)}, "apex_max (4) is above the egg's max_concurrent (3)"},
	} {
		err := ValidatePoolScale(&st, tc.s)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("ValidatePoolScale(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

// LAST JOB of `gosling pool status`: a promoted runner's is the job it
// ran, a later job replaces it, another runner's job is not it, and a
// runner torn down leaves the pool's list with its record (a runner made
// after it starts with none).
func TestPlanPoolLastJob(t *testing.T) {
	lastJobs := func(st contract.PoolState) string {
		var parts []string
		for _, r := range st.Runners {
			parts = append(parts, fmt.Sprintf("%s:%d", r.ID, r.LastJob))
		}
		return strings.Join(parts, " ")
	}
	st, _ := plan(t, planState(nadir(1), apex(2, 5)), planRun, demand(7), status(7, "running", "web-p1"), status(7, "success", "web-p1"))
	if got := lastJobs(st); got != "web-p1:7 web-p2:0" {
		t.Errorf("after the promoted runner ran job 7: %s", got)
	}
	st, _ = plan(t, st, planRun, status(5, "success", "web-p2"), demand(9), status(9, "running", "web-p1"))
	if got := lastJobs(st); got != "web-p1:9 web-p2:5" {
		t.Errorf("after jobs 5 and 9: %s", got)
	}
	st, _ = plan(t, st, planRun, status(9, "success", "web-p1"), RetireReported{Report: contract.RunnerRetired{RunnerID: "web-p1"}})
	if got := lastJobs(st); strings.Contains(got, "web-p1") {
		t.Errorf("a retired runner is still listed: %s", got)
	}
	st, _ = plan(t, st, planRun, demand(10), demand(11))
	for _, r := range st.Runners {
		if r.ID != "web-p2" && r.LastJob != 0 {
			t.Errorf("a runner made after the teardown shows last job %d: %s", r.LastJob, lastJobs(st))
		}
	}
}
