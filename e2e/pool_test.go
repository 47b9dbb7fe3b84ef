package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/client"
)

// poolEgg is a VM egg with a Nadir of at least two stopped runners.
func (s *Stack) poolEgg(name string) fly.Egg {
	egg := s.Egg(name, fly.RunnerVM)
	egg.Runner.MaxConcurrent = 3
	egg.Apex = fly.Pool{Min: 0, Max: 3, IdleTimeout: fly.Duration(2 * time.Second)}
	egg.Nadir = fly.Pool{Min: 2, Max: 3, IdleTimeout: fly.Duration(time.Hour)}
	return egg
}

// StartPool starts an egg's pool workflow, looking at idle runners every tick.
func (s *Stack) StartPool(ctx context.Context, egg fly.Egg, tick time.Duration) client.WorkflowRun {
	s.T.Helper()
	id := contract.PoolWorkflowID(egg.Name)
	run, err := s.Client.SignalWithStartWorkflow(ctx, id, contract.SignalPoolSpec, egg, contract.StartOptions(id), contract.WorkflowPool,
		contract.PoolInput{Egg: egg, Cloud: fly.CloudLocal, Tick: tick})
	if err != nil {
		s.T.Fatal(err)
	}
	s.T.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), id, "", "test over")
	})
	return run
}

// PoolStatus queries an egg's pool.
func (s *Stack) PoolStatus(ctx context.Context, egg string) (contract.PoolStatus, error) {
	var st contract.PoolStatus
	v, err := s.Client.QueryWorkflow(ctx, contract.PoolWorkflowID(egg), "", contract.QueryPoolStatus)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// waitPool polls the pool's status until ok holds.
func (s *Stack) waitPool(ctx context.Context, egg, what string, ok func(contract.PoolStatus) bool) contract.PoolStatus {
	s.T.Helper()
	var st contract.PoolStatus
	var err error
	for {
		st, err = s.PoolStatus(ctx, egg)
		if err == nil && ok(st) {
			return st
		}
		select {
		case <-ctx.Done():
			s.T.Fatalf("pool %s: never %s (last: %+v, %v)", egg, what, st.Counts, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// With Nadir min 2, two stopped runner processes exist before any job; a
// job promotes one (its process resumes) faster than a cold provision in
// the same run; idle past its timeout it sleeps in Nadir again.
func TestPoolNadirPromotionOnLocalProvider(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg := s.poolEgg("pooled")
	run := s.StartPool(ctx, egg, 300*time.Millisecond)

	st := s.waitPool(ctx, egg.Name, "two Nadir runners", func(st contract.PoolStatus) bool { return st.Counts[contract.PoolNadir] == 2 })
	var nadir []string
	for _, r := range st.Runners {
		nadir = append(nadir, r.ID)
		if a := agent.Inspect(s.MachineDir(r.ID)); !a.Alive || !a.Stopped {
			t.Fatalf("Nadir runner %s: process %+v, want a stopped process", r.ID, a)
		}
		if sr, err := s.Store.GetRunner(ctx, r.ID); err != nil || sr.State != store.StateDormant {
			t.Fatalf("store: %+v, %v", sr, err)
		}
	}
	// Both machines share the egg's one GitLab runner.
	if n := len(s.GitLab.Runners()); n != 1 {
		t.Fatalf("GitLab runners = %d, want 1", n)
	}

	// A cold provision in the same run, for comparison; its own tag keeps
	// its gitlab-runner off the pool's job.
	coldStart := time.Now()
	coldEgg := s.Egg("cold", fly.RunnerVM)
	coldEgg.Runner.Tags = []string{"cold"}
	cold, _, err := s.ProvisionJob(ctx, coldEgg, []string{"cold"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitReached(t, ctx, s, contract.RunnerIDFor("cold", cold.GetID()), store.StateActive)
	coldTook := time.Since(coldStart)

	// A job promotes a Nadir runner. It runs until the test has seen the
	// promotion: done at once, the runner would be idle and asleep again
	// before the test looked.
	release := filepath.Join(t.TempDir(), "release")
	spec := gitlabJob()
	spec.Script = []string{"until [ -e " + release + " ]; do sleep 0.1; done"}
	job := s.GitLab.AddJob(s.Project.ID, spec)
	promoteStart := time.Now()
	if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(egg.Name), "", contract.SignalDemand, contract.Demand{
		Job: contract.JobRef{Host: s.Host(), ProjectID: s.Project.ID, ProjectPath: s.Project.PathWithNamespace, JobID: job.ID},
	}); err != nil {
		t.Fatal(err)
	}
	var promoted string
	st = s.waitPool(ctx, egg.Name, "serving the job", func(st contract.PoolStatus) bool {
		for _, r := range st.Runners {
			if r.State == contract.PoolApex && slices.Contains(r.Jobs, job.ID) {
				promoted = r.ID
				return true
			}
		}
		return false
	})
	promoteTook := time.Since(promoteStart)
	if !slices.Contains(nadir, promoted) || st.Stats.Served[contract.ServedByPromotion] != 1 {
		t.Fatalf("job served by %s (Nadir was %v), stats %+v", promoted, nadir, st.Stats)
	}
	if a := agent.Inspect(s.MachineDir(promoted)); !a.Alive || a.Stopped {
		t.Fatalf("promoted runner's process: %+v, want running", a)
	}
	// Which path is faster is BenchmarkPoolPaths' to measure: timings on a
	// shared machine are no test's business.
	t.Logf("demand to runner: promotion %s, cold provision %s", promoteTook, coldTook)

	// Nadir is refilled to its minimum; the job ends; idle past 2s, the
	// runner goes back to sleep.
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(egg.Name), "", contract.SignalJobStatus, contract.JobStatus{JobID: job.ID, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	// The promoted runner goes back to Nadir, and the Nadir runner made to
	// refill the pool while it served is ready too.
	st = s.waitPool(ctx, egg.Name, "back to Nadir, the pool full", func(st contract.PoolStatus) bool {
		for _, r := range st.Runners {
			if r.ID == promoted {
				return r.State == contract.PoolNadir && st.Counts[contract.PoolNadir] == 3
			}
		}
		return false
	})
	if a := agent.Inspect(s.MachineDir(promoted)); !a.Alive || !a.Stopped {
		t.Errorf("demoted runner's process: %+v, want stopped", a)
	}
	if st.Stats.Demotions != 1 || st.Counts[contract.PoolNadir] != 3 {
		t.Errorf("after demotion: %+v %+v", st.Counts, st.Stats)
	}

	// Through the REST API, as `gosling pool` does: status, a refused
	// scale, and a drain that tears every runner down.
	a := s.StartAPI("unused", egg)
	c, err := apiclient.New(a.URL, APIToken)
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := c.GetPool(ctx, egg.Name); err != nil || ps.Counts[contract.PoolNadir] != 3 {
		t.Fatalf("GET pool: %+v, %v", ps, err)
	}
	five := 5
	if _, err := c.ScalePool(ctx, egg.Name, contract.PoolScale{NadirMin: &five}); err == nil || !strings.Contains(err.Error(), "nadir_min (5) is above nadir_max (3)") {
		t.Errorf("scale above the maximum: %v", err)
	}
	retired, err := c.DrainPool(ctx, egg.Name)
	if err != nil || retired != 3 {
		t.Fatalf("drain = %d, %v", retired, err)
	}
	s.waitPool(ctx, egg.Name, "drained", func(st contract.PoolStatus) bool { return len(st.Runners) == 0 })
	writeHistory(t, s, "pool_nadir_promotion", run.GetID(), run.GetRunID())
	for _, r := range st.Runners {
		if a := agent.Inspect(s.MachineDir(r.ID)); a.Alive {
			t.Errorf("runner %s still has a process after the drain", r.ID)
		}
	}
}

func gitlabJob() gitlabtest.JobSpec {
	return gitlabtest.JobSpec{Name: "build", Stage: "test", Ref: "main", Tags: []string{"docker"}}
}
