package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/workflowservice/v1"
)

// BenchmarkHistoryEventsPerJob measures the Temporal history events each
// served job costs, for each start path, on the local provider through
// real webhooks, workflows, OpenTofu and agents: a serverless egg's gate
// (one runner per job, made and torn down), and a pooled egg's job served
// by an idle Apex runner, by a promoted Nadir runner (demoted again after
// it), and by a cold runner (made for it, retired after it). Each path
// serves one job first (starting its gate or pool, making its minimums),
// then the events of every workflow of the egg (its gate or pool, the
// runner workflows, the teardowns and the EggRunner of its shared GitLab
// runner; timers included) are counted over
// historyJobs further jobs, one after another. It reports events per job
// for each path and the GitLab runners created (POST /user/runners) per
// 1,000 jobs.
func BenchmarkHistoryEventsPerJob(b *testing.B) {
	const historyJobs = 3
	for b.Loop() {
		s := Start(b, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
			b.Fatal(err)
		}
		pooled := func(name string) (fly.Egg, gitlabtest.Project) {
			e, p := s.projectEgg(name, fly.RunnerVM)
			e.Runner.MaxConcurrent = 2
			e.Apex = fly.Pool{Max: 2, IdleTimeout: fly.Duration(time.Second)}
			return e, p
		}
		serverless, serverlessP := s.projectEgg("evserverless", fly.RunnerServerless)
		apex, apexP := pooled("evapex")
		apex.Apex.Min, apex.Apex.IdleTimeout = 1, fly.Duration(time.Hour)
		nadir, nadirP := pooled("evnadir")
		nadir.Nadir = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
		cold, coldP := pooled("evcold")
		a := s.StartAPI(jobsSecret, serverless, apex, nadir, cold)
		for _, p := range []gitlabtest.Project{serverlessP, apexP, nadirP, coldP} {
			s.hookProject(a, p)
		}
		live := []store.RunnerState{store.StateProvisioning, store.StateRegistering, store.StateActive, store.StateDormant, store.StateDraining, store.StateTerminating}
		settled := map[string]func() bool{
			// Every runner torn down.
			"serverless": func() bool { return s.liveRunners(ctx, serverless.Name, live) == 0 },
			"cold":       func() bool { return s.liveRunners(ctx, cold.Name, live) == 0 },
			// The Apex runner idle again.
			"apex": func() bool {
				st, err := s.PoolStatus(ctx, apex.Name)
				return err == nil && st.Counts[contract.PoolApex] == 1 && len(st.Runners) == 1 && len(st.Runners[0].Jobs) == 0
			},
			// Every runner back in Nadir.
			"promotion": func() bool {
				st, err := s.PoolStatus(ctx, nadir.Name)
				return err == nil && st.Counts[contract.PoolNadir] >= 1 && len(st.Runners) == st.Counts[contract.PoolNadir]
			},
		}
		type path struct {
			name string
			egg  fly.Egg
			p    gitlabtest.Project
		}
		for _, pt := range []path{{"serverless", serverless, serverlessP}, {"apex", apex, apexP}, {"promotion", nadir, nadirP}, {"cold", cold, coldP}} {
			var jobs []int64
			run := func() {
				pl, err := s.GitLab.CreatePipeline(pt.p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "counted", Tags: []string{"docker"}, Script: []string{"true"}}}})
				if err != nil {
					b.Fatal(err)
				}
				jobs = append(jobs, s.GitLab.PipelineJobs(pl.ID)[0].ID)
				s.waitPipeline(ctx, pl.ID)
				for !settled[pt.name]() {
					if ctx.Err() != nil {
						b.Fatalf("%s: never settled after job %d", pt.name, jobs[len(jobs)-1])
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			run() // starts the gate or pool, makes the minimums
			created := s.GitLab.CountRequests(http.MethodPost, "/user/runners")
			before := s.eggHistory(ctx, pt.egg.Name, jobs)
			for range historyJobs {
				run()
			}
			after := s.eggHistory(ctx, pt.egg.Name, jobs)
			b.ReportMetric(float64(after-before)/historyJobs, pt.name+"-events/job")
			// GitLab runners created (POST /user/runners) per 1,000 jobs.
			b.ReportMetric(1000*float64(s.GitLab.CountRequests(http.MethodPost, "/user/runners")-created)/historyJobs, pt.name+"-gitlab-runners/1000jobs")
		}
		cancel()
	}
}

// liveRunners counts an egg's runners in the given states.
func (s *Stack) liveRunners(ctx context.Context, egg string, states []store.RunnerState) int {
	rs, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: egg, States: states})
	if err != nil {
		return -1
	}
	return len(rs)
}

// eggHistory sums the history events of every workflow of an egg: its
// gate or pool, its pool's runner workflows, its teardowns, its shared
// runners' EggRunner workflows (their ensure updates), and the runner
// workflows of the given jobs (a gate's, named after the job).
func (s *Stack) eggHistory(ctx context.Context, egg string, jobs []int64) int64 {
	s.T.Helper()
	mine := func(id string) bool {
		switch {
		case id == contract.GateWorkflowID(egg), id == contract.PoolWorkflowID(egg),
			strings.HasPrefix(id, contract.PoolWorkflowID(egg)+"/"),
			strings.HasPrefix(id, contract.EggRunnerWorkflowID(egg, "")),
			strings.HasPrefix(id, contract.DeprovisionWorkflowID(egg+"-")):
			return true
		}
		for _, j := range jobs {
			if id == contract.RunnerWorkflowID(s.Host(), j) {
				return true
			}
		}
		return false
	}
	var total int64
	var token []byte
	for {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.Namespace, PageSize: 1000, NextPageToken: token})
		if err != nil {
			s.T.Fatalf("list workflows: %v", err)
		}
		for _, ex := range resp.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			if !mine(id) {
				continue
			}
			d, err := s.Client.DescribeWorkflow(ctx, id, ex.GetExecution().GetRunId())
			if err != nil {
				s.T.Fatalf("describe %s: %v", id, err)
			}
			total += int64(d.HistoryLength)
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return total
		}
	}
}
