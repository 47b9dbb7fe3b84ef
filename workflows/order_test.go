package workflows

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
)

func permutations(xs []string) [][]string {
	if len(xs) <= 1 {
		return [][]string{slices.Clone(xs)}
	}
	var out [][]string
	for i := range xs {
		rest := append(slices.Clone(xs[:i]), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{xs[i]}, p...))
		}
	}
	return out
}

var statusRank = map[string]int{"pending": 1, "running": 2, "success": 3}

// lookups are the answers the Jobs API may give when the job is looked up
// after the deliveries before the pending one: never behind them (GitLab's
// own state moves on before it sends a hook).
func lookups(delivered []string) []string {
	least := 1
	for _, s := range delivered {
		least = max(least, statusRank[s])
	}
	var out []string
	for _, s := range []string{"pending", "running", "success"} {
		if statusRank[s] >= least {
			out = append(out, s)
		}
	}
	return out
}

// TestPoolJobEventOrders: every order of one job's pending (demand),
// running and success, whatever the Jobs API says when the pool looks the
// job up, and however long it takes to say it: the pool ends with the job
// neither waiting nor holding a runner's slot, and makes no runner for a
// job that was running or over before its demand was served.
func TestPoolJobEventOrders(t *testing.T) {
	for _, order := range permutations([]string{"pending", "running", "success"}) {
		before := order[:slices.Index(order, "pending")]
		for _, lookup := range lookups(before) {
			for _, delay := range []time.Duration{0, 5 * time.Second} {
				name := fmt.Sprintf("%s/lookup-%s/delay-%s", strings.Join(order, "-"), lookup, delay)
				t.Run(name, func(t *testing.T) {
					e := newPoolEnv(t)
					e.jobStatus, e.jobInfoDelay = lookup, delay
					const jobID = 77
					for i, status := range order {
						at := time.Duration(i+1) * 2 * time.Second
						if status == "pending" {
							e.demand(at, jobID)
							continue
						}
						e.RegisterDelayedCallback(func() {
							e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: status})
						}, at)
					}
					// Whether a runner may be made at all: only while the job
					// still looked pending, before GitLab said it ended.
					mayProvision := len(before) == 0 && lookup == "pending"
					e.queryAt(t, 5*time.Minute, func(s contract.PoolStatus) {
						if s.Waiting != 0 {
							t.Errorf("the job still waits: %+v", s)
						}
						for _, r := range s.Runners {
							if slices.Contains(r.Jobs, jobID) {
								t.Errorf("runner %s holds a slot for the finished job", r.ID)
							}
						}
						if !mayProvision && s.Stats.Provisioned != 0 {
							t.Errorf("a runner was made for a job that needed none: %+v", s.Stats)
						}
					})
					e.stopAt(6 * time.Minute)
					runPool(e, poolEgg())
				})
			}
		}
	}
}

// TestProvisionJobEventOrders: a serverless runner's workflow is started
// by the job's pending (signal-with-start) and hears the statuses that come
// after it, in their order; statuses before the pending reach no workflow.
// Whatever the order and whatever the Jobs API says at the lookup, the
// workflow ends, and every GitLab runner it made is removed again: none for
// a job that was running or over when it was looked up.
func TestProvisionJobEventOrders(t *testing.T) {
	for _, order := range permutations([]string{"pending", "running", "success"}) {
		at := slices.Index(order, "pending")
		for _, lookup := range lookups(order[:at]) {
			for _, delay := range []time.Duration{0, 5 * time.Second} {
				name := fmt.Sprintf("%s/lookup-%s/delay-%s", strings.Join(order, "-"), lookup, delay)
				t.Run(name, func(t *testing.T) {
					e := newEnv(t, nil)
					e.setJobStatus(lookup)
					e.infoDelay = delay
					const jobID = 1001
					e.RegisterDelayedCallback(func() {
						e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: "pending"})
					}, 0)
					for i, status := range order[at+1:] {
						e.RegisterDelayedCallback(func() {
							e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: status})
						}, time.Duration(i+1)*2*time.Second)
					}
					id := contract.RunnerIDFor("web", wfID)
					e.signalReady(30*time.Second, id)
					start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{Host: "gitlab.example.com", ProjectID: 7, JobID: jobID}})
					if !e.IsWorkflowCompleted() || e.GetWorkflowError() != nil {
						t.Fatalf("workflow: %v", e.GetWorkflowError())
					}
					var res contract.ProvisionRunnerResult
					if err := e.GetWorkflowResult(&res); err != nil {
						t.Fatal(err)
					}
					calls := e.calls.String()
					// The machine joins the egg's shared runner at most
					// once; no GitLab runner is made or removed for it.
					joined := strings.Count(calls, "gitlab-join")
					if created, deleted := strings.Count(calls, "gitlab-create"), strings.Count(calls, "gitlab-delete"); joined > 1 || created != 0 || deleted != 0 {
						t.Errorf("joined %d, %d GitLab runners made, %d removed: %s", joined, created, deleted, calls)
					}
					if lookup != "pending" && (joined != 0 || res.Outcome != "job-not-pending" || strings.Contains(calls, "record")) {
						t.Errorf("the job was %s at the lookup, yet: %+v, calls %s", lookup, res, calls)
					}
					if res.Outcome != "job-not-pending" && (res.Outcome != "job-finished" || res.State != "terminated") {
						t.Errorf("result %+v", res)
					}
				})
			}
		}
	}
}

// TestPoolAssignsRunnersToNewProjects: a bucket's pooled runners are made
// for every project it lists; when the list grows, each runner in service
// is enabled in the new projects, once; a runner still being made when the
// list changes is enabled once it is registered; an unchanged list (a Nest
// applied again) asks GitLab nothing.
func TestPoolAssignsRunnersToNewProjects(t *testing.T) {
	e := newPoolEnv(t)
	egg := poolEgg()
	egg.Kind = fly.KindBucket
	egg.Projects = []fly.ProjectRef{{ID: 7}, {Path: "acme/api"}}
	egg.Apex.Min = 1
	egg.Version = "v1"
	spec := func(at time.Duration, version string, projects ...fly.ProjectRef) {
		e.RegisterDelayedCallback(func() {
			next := egg
			next.Version, next.Projects = version, projects
			e.SignalWorkflow(contract.SignalPoolSpec, next)
		}, at)
	}
	spec(time.Minute, "v2", egg.Projects...)
	three := append(slices.Clone(egg.Projects), fly.ProjectRef{Path: "acme/docs"})
	spec(2*time.Minute, "v3", three...)
	// A second runner is being made (the minimum goes up) when the list
	// changes again.
	e.RegisterDelayedCallback(func() {
		next := egg
		next.Version, next.Projects, next.Apex.Min = "v4", three, 2
		e.SignalWorkflow(contract.SignalPoolSpec, next)
	}, 3*time.Minute)
	four := append(slices.Clone(three), fly.ProjectRef{ID: 9})
	e.RegisterDelayedCallback(func() {
		next := egg
		next.Version, next.Projects, next.Apex.Min = "v5", four, 2
		e.SignalWorkflow(contract.SignalPoolSpec, next)
	}, 3*time.Minute+100*time.Millisecond)
	e.stopAt(10 * time.Minute)
	runPool(e, egg)
	e.mu.Lock()
	got := strings.Join(e.calls, ",")
	e.mu.Unlock()
	// The first machine joins the shared runner of the two projects'
	// shape (1002), enabled in the third when the list grows; the second
	// joins the runner of the three projects' shape (1003); both runners
	// are enabled in the fourth.
	want := []string{"join:2", "assign:1002:3", "join:3", "assign:1002:4", "assign:1003:4"}
	var seen []string
	for _, c := range strings.Split(got, ",") {
		if strings.HasPrefix(c, "create:") || strings.HasPrefix(c, "assign:") || strings.HasPrefix(c, "join:") {
			seen = append(seen, c)
		}
	}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Errorf("calls %v, want %v", seen, want)
	}
}
