package e2e

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// sharedRunnerJobs is how many jobs each egg of
// TestSharedRunnerUnderCreationCap runs: about two minutes on two shared
// cores (60 each took 82 s, 200 each six minutes).
const sharedRunnerJobs = 100

// TestSharedRunnerUnderCreationCap runs sharedRunnerJobs jobs on a
// serverless egg and as many on a pooled egg, through real webhooks,
// workflows, OpenTofu, agents and gitlab-runners, with the GitLab test
// server capping runner creation at 5 per project (GitLab.com's rule, with
// a low number): every job runs, each egg has one GitLab runner, made
// once, with a runner manager per machine, and its token is rotated in
// the middle of the suite without failing a job. Afterwards GitLab's
// stale-manager clean-up (the test server's clock moved a week on) drops
// the managers of the machines that are gone.
func TestSharedRunnerUnderCreationCap(t *testing.T) {
	var skew atomic.Int64 // how far the test server's clock is ahead
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s := Start(t, Options{GitLab: []gitlabtest.Option{
		gitlabtest.WithRunnerCreationCap(5, gitlabtest.DefaultRunnerCreationWindow), gitlabtest.WithClock(clock),
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	serverless, serverlessP := s.projectEgg("capserverless", fly.RunnerServerless)
	serverless.Runner.MaxConcurrent = 4
	pooled, pooledP := s.projectEgg("cappooled", fly.RunnerVM)
	pooled.Apex = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
	a := s.StartAPI(jobsSecret, serverless, pooled)
	s.hookProject(a, serverlessP)
	s.hookProject(a, pooledP)

	// Pipelines of ten jobs, both eggs at once; a rotation of both eggs'
	// tokens once half of them finished.
	const perPipeline = 10
	var (
		mu       sync.Mutex
		finished []gitlabtest.Job
	)
	half := make(chan struct{})
	var halfOnce sync.Once
	var wg sync.WaitGroup
	for _, p := range []gitlabtest.Project{serverlessP, pooledP} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range sharedRunnerJobs / perPipeline {
				specs := make([]gitlabtest.JobSpec, perPipeline)
				for i := range specs {
					specs[i] = gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}, Script: []string{"echo ok"}}
				}
				pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: specs})
				if err != nil {
					t.Error(err)
					return
				}
				_, jobs := s.waitPipeline(ctx, pl.ID)
				mu.Lock()
				finished = append(finished, jobs...)
				if len(finished) >= sharedRunnerJobs {
					halfOnce.Do(func() { close(half) })
				}
				mu.Unlock()
			}
		}()
	}
	var rotated contract.RotateRunnerTokensResult
	select {
	case <-half:
		run, err := s.Client.ExecuteWorkflow(ctx, contract.RotateStartOptions(), contract.WorkflowRotateRunnerTokens,
			contract.RotateRunnerTokensInput{Eggs: []string{serverless.Name, pooled.Name}, Reason: "mid-suite rotation"})
		if err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, &rotated); err != nil {
			t.Fatalf("rotation: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("half the jobs never finished")
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if rotated.Failed != 0 || rotated.Rotated == 0 {
		t.Errorf("mid-suite rotation: %+v", rotated)
	}
	if len(finished) != 2*sharedRunnerJobs {
		t.Fatalf("%d jobs finished, want %d", len(finished), 2*sharedRunnerJobs)
	}
	for _, j := range finished {
		if j.Status != "success" {
			t.Errorf("job %d: %s (%s)", j.ID, j.Status, j.FailureReason)
		}
	}

	// One GitLab runner per egg, none per machine, and GitLab's cap never
	// reached.
	shared := map[string]gitlabtest.Runner{}
	for _, r := range s.GitLab.Runners() {
		egg, _, ok := strings.Cut(strings.TrimPrefix(r.Description, contract.EggRunnerDescriptionPrefix), "/")
		if !strings.HasPrefix(r.Description, contract.EggRunnerDescriptionPrefix) || !ok {
			t.Errorf("GitLab runner %d (%s) is not an egg's shared runner", r.ID, r.Description)
			continue
		}
		if prev, dup := shared[egg]; dup {
			t.Errorf("egg %s has GitLab runners %d and %d", egg, prev.ID, r.ID)
		}
		shared[egg] = r
	}
	for _, p := range []gitlabtest.Project{serverlessP, pooledP} {
		if n := s.GitLab.RunnersCreated(p.ID, false); n != 1 {
			t.Errorf("project %s: %d runners created, want 1", p.PathWithNamespace, n)
		}
	}
	// A runner manager per machine: every machine's gitlab-runner sent
	// its own system_id.
	for _, egg := range []fly.Egg{serverless, pooled} {
		r, ok := shared[egg.Name]
		if !ok {
			t.Fatalf("egg %s has no shared GitLab runner", egg.Name)
		}
		machines, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: egg.Name})
		if err != nil {
			t.Fatal(err)
		}
		// One manager per machine: its agent checks the token with the
		// system_id its gitlab-runner then sends (run-single reads it
		// beside config.toml too); the worker's own token checks are one
		// more manager.
		var managers []gitlabtest.RunnerManager
		for _, m := range s.GitLab.Managers(r.ID) {
			if m.SystemID != activities.TokenCheckSystemID {
				managers = append(managers, m)
			}
		}
		t.Logf("egg %s: GitLab runner %d, %d machines, %d managers", egg.Name, r.ID, len(machines), len(managers))
		if len(managers) != len(machines) || len(managers) < 2 {
			t.Errorf("egg %s: %d runner managers for %d machines, want one each", egg.Name, len(managers), len(machines))
		}
		for _, m := range managers {
			if m.SystemID == gitlabtest.LegacySystemID {
				t.Errorf("egg %s: a machine sent no system_id", egg.Name)
			}
		}
	}
	serverlessMachines, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: serverless.Name})
	if len(serverlessMachines) < sharedRunnerJobs {
		t.Errorf("%d serverless machines for %d jobs", len(serverlessMachines), sharedRunnerJobs)
	}
	writeHistory(t, s, "provision_egg_runner", serverlessMachines[0].WorkflowID, "")
	key := strings.TrimPrefix(shared[serverless.Name].Description, contract.EggRunnerDescriptionPrefix+serverless.Name+"/")
	writeHistory(t, s, "egg_runner", contract.EggRunnerWorkflowID(serverless.Name, key), "")

	// A week on, GitLab drops the managers of the machines that are gone;
	// the pool's live machines make contact again.
	skew.Store(int64(8 * 24 * time.Hour))
	if n := s.GitLab.CleanUpStaleManagers(); n < sharedRunnerJobs {
		t.Errorf("clean-up deleted %d managers", n)
	}
	if ms := s.GitLab.Managers(shared[serverless.Name].ID); len(ms) != 0 {
		t.Errorf("serverless egg: %d managers left after the clean-up, its machines are gone", len(ms))
	}
	live, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: pooled.Name, States: []store.RunnerState{store.StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	for len(s.GitLab.Managers(shared[pooled.Name].ID)) < len(live) {
		select {
		case <-ctx.Done():
			t.Fatalf("the pool's %d live machines never made contact again", len(live))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
