package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/workflows"
)

// The jobs of these tests really run: GitLab's hooks (sent by the GitLab
// test server at each change, as GitLab sends them) reach the API, the
// workflows make runners, each runner's agent runs the gitlab-runner
// stand-in, which takes jobs through GitLab's runner API and runs their
// scripts; logs and statuses come back the same way.

const jobsSecret = "whsec-jobs-e2e"

// deployKey is a runner.env secret; jobs check it without printing it.
const deployKey = "dk-e2e-5ecret-0451-value"

// keyCheck is a script line that checks DEPLOY_KEY without printing it.
func keyCheck() string {
	sum := sha256.Sum256([]byte(deployKey))
	return `test "$(printf %s "$DEPLOY_KEY" | sha256sum | cut -c1-16)" = "` + hex.EncodeToString(sum[:])[:16] + `" && echo "the deploy key is there"`
}

// hookProject adds a project hook that sends job and pipeline events to
// the API, as `gosling deploy` does on a real GitLab.
func (s *Stack) hookProject(a *API, p gitlabtest.Project) {
	s.T.Helper()
	body := fmt.Sprintf(`{"url":%q,"token":%q,"job_events":true,"pipeline_events":true,"push_events":false}`, a.URL+"/webhooks/gitlab", jobsSecret)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v4/projects/%d/hooks", s.GitLab.URL(), p.ID), strings.NewReader(body))
	req.Header.Set("PRIVATE-TOKEN", s.GitLab.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		s.T.Fatalf("add hook: %v %v", err, resp)
	}
	resp.Body.Close()
}

// projectEgg is an egg of its own project in the test server.
func (s *Stack) projectEgg(name, kind string) (fly.Egg, gitlabtest.Project) {
	p := s.GitLab.AddProject("acme/"+name, s.Group.ID)
	egg := s.Egg(name, kind)
	egg.Projects = []fly.ProjectRef{{ID: p.ID, Path: p.PathWithNamespace}}
	egg.Runner.Env = map[string]fly.EnvValue{"DEPLOY_KEY": {Secret: "local://ci/deploy_key"}, "STAGE_NAME": {Value: "e2e"}}
	if kind == fly.RunnerVM {
		egg.Runner.MaxConcurrent = 2
		egg.Apex = fly.Pool{Min: 0, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
		egg.Nadir = fly.Pool{Min: 0, Max: 0, IdleTimeout: fly.Duration(time.Hour)}
	}
	return egg, p
}

// waitPipeline waits until a pipeline and all its jobs are finished.
func (s *Stack) waitPipeline(ctx context.Context, id int64) (gitlabtest.Pipeline, []gitlabtest.Job) {
	s.T.Helper()
	for {
		p, _ := s.GitLab.Pipeline(id)
		jobs := s.GitLab.PipelineJobs(id)
		done := p.FinishedAt != nil
		for _, j := range jobs {
			done = done && (j.FinishedAt != nil || j.Status == "skipped")
		}
		if done {
			return p, jobs
		}
		select {
		case <-ctx.Done():
			s.T.Fatalf("pipeline %d never finished: %s %+v", id, p.Status, jobs)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func threeJobs() []gitlabtest.JobSpec {
	tags := []string{"docker"}
	return []gitlabtest.JobSpec{
		{Name: "build", Stage: "build", Tags: tags, Script: []string{`echo "built in $STAGE_NAME"`}},
		{Name: "deploy", Stage: "test", Tags: tags, Script: []string{keyCheck()}},
		{Name: "lint", Stage: "test", Tags: tags, AllowFailure: true, Script: []string{"echo lint complains", "exit 3"}},
	}
}

// A pipeline of three jobs for a serverless egg (a runner per job, torn
// down after it) and for a pooled VM egg (Apex runners that stay) runs to
// completion with the right statuses and logs. A job that needs runner.env's
// DEPLOY_KEY, a secret URI the agent resolves, sees its value; the value is
// in no log of Gosling and in no file but gitlab-runner's config.toml on
// the live machine.
func TestPipelinesRunOnGoslingRunners(t *testing.T) {
	pipelinesOnGoslingRunners(t, "", "STAND-IN")
}

// The same pipelines on the real GitLab Runner (bin/gitlab-runner, 12.8):
// the serverless egg's runners run its run-single, which takes its
// settings as flags and environment, the pool's its run; each job fetches
// its commit from the GitLab test server.
func TestPipelinesRunOnRealGitLabRunner(t *testing.T) {
	pipelinesOnGoslingRunners(t, testbin.GitLabRunner(t), "Running with gitlab-runner 12.8.0")
}

// pipelinesOnGoslingRunners runs TestPipelinesRunOnGoslingRunners with the
// given gitlab-runner ("" for the stand-in), whose job logs say banner.
func pipelinesOnGoslingRunners(t *testing.T, gitlabRunner, banner string) {
	m := secretstore.NewMasker()
	logs := &lockedBuffer{}
	log := slog.New(secretstore.NewHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), m))
	s := Start(t, Options{Logger: log, GitLabRunner: gitlabRunner})
	s.Secrets.SetMasker(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	sls, slsProject := s.projectEgg("slsjobs", fly.RunnerServerless)
	vm, vmProject := s.projectEgg("vmjobs", fly.RunnerVM)
	a := s.StartAPI(jobsSecret, sls, vm)
	s.hookProject(a, slsProject)
	s.hookProject(a, vmProject)
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(vm.Name), "", "test over")
	})

	check := func(egg fly.Egg, p gitlabtest.Project) {
		t.Helper()
		pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Stages: []string{"build", "test"}, Jobs: threeJobs()})
		if err != nil {
			t.Fatal(err)
		}
		pl, jobs := s.waitPipeline(ctx, pl.ID)
		if pl.Status != "success" {
			t.Errorf("%s: pipeline %s", egg.Name, pl.Status)
		}
		want := map[string]struct{ status, log string }{
			"build": {"success", "built in e2e"}, "deploy": {"success", "the deploy key is there"}, "lint": {"failed", "lint complains"},
		}
		for _, j := range jobs {
			tr := string(s.GitLab.Trace(j.ID))
			if w := want[j.Name]; j.Status != w.status || !strings.Contains(tr, w.log) || !strings.Contains(tr, banner) {
				t.Errorf("%s: job %s %s, want %s with %q:\n%s", egg.Name, j.Name, j.Status, w.status, w.log, tr)
			}
			if j.RunnerID == 0 {
				t.Errorf("%s: job %s has no runner", egg.Name, j.Name)
			}
		}
	}
	check(sls, slsProject)
	check(vm, vmProject)

	// The serverless egg's runners are torn down; the pool's stay.
	waitFor(t, ctx, "the serverless runners torn down", func() bool {
		rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: sls.Name})
		done := len(rs) >= 3
		for _, r := range rs {
			done = done && r.State == store.StateTerminated
		}
		return done
	})
	// gitlab-runner takes jobs as soon as it runs, which can be before the
	// runner's record says active.
	waitFor(t, ctx, "the pool's runners in service", func() bool {
		rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: vm.Name, States: []store.RunnerState{store.StateActive}})
		return len(rs) >= 1
	})
	if rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: vm.Name}); len(rs) > 2 {
		t.Errorf("pool runners made: %d, want at most 2 (apex max)", len(rs))
	}

	// The secret's value: in no log and no file of Gosling.
	if !m.Contains(deployKey) {
		t.Error("the deploy key was never registered with the Masker")
	}
	var sources [][2]string
	for _, src := range readTree(t, s.StateDir) {
		if filepath.Base(src[0]) == "config.toml" && strings.HasPrefix(src[0], filepath.Join("tofu", "machines")) {
			if st, err := os.Stat(filepath.Join(s.StateDir, src[0])); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want mode 0600", src[0], st, err)
			}
			continue
		}
		sources = append(sources, src)
	}
	sources = append(sources, [2]string{"the stack's log", logs.String()})
	for _, src := range sources {
		if strings.Contains(src[1], deployKey) {
			t.Errorf("the deploy key leaks into %s", src[0])
		}
	}
}

// runningJob starts a one-job pipeline that sleeps and waits until a
// runner runs it.
func (s *Stack) runningJob(ctx context.Context, p gitlabtest.Project, name string, seconds int) gitlabtest.Job {
	s.T.Helper()
	pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
		Name: name, Tags: []string{"docker"}, Script: []string{"echo started", fmt.Sprintf("sleep %d", seconds), "echo finished " + name},
	}}})
	if err != nil {
		s.T.Fatal(err)
	}
	id := s.GitLab.PipelineJobs(pl.ID)[0].ID
	var j gitlabtest.Job
	waitFor(s.T.(*testing.T), ctx, "job "+name+" running", func() bool {
		j, _ = s.GitLab.Job(id)
		return j.RunnerID != 0 && (j.FinishedAt != nil || strings.Contains(string(s.GitLab.Trace(id)), "started"))
	})
	return j
}

// Scaling a pool down while its runner runs a job waits for the job: the
// runner's machine is destroyed only after gitlab-runner finished it (the
// agent stops gitlab-runner gracefully, SIGQUIT), so the job succeeds.
func TestScaleDownWaitsForRunningJob(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	egg, p := s.projectEgg("drainjobs", fly.RunnerVM)
	a := s.StartAPI(jobsSecret, egg)
	s.hookProject(a, p)
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(egg.Name), "", "test over")
	})

	j := s.runningJob(ctx, p, "slow", 5)
	rs, err := s.Store.ListRunners(ctx, store.RunnerFilter{GitLabHost: s.Host(), GitLabRunnerID: j.RunnerID})
	if err != nil || len(rs) != 1 {
		t.Fatalf("the job's runner: %v %v", rs, err)
	}
	runner := rs[0].ID
	if n, err := a.MotherGoose.Operations().DrainPool(ctx, egg.Name, "e2e"); err != nil || n != 1 {
		t.Fatalf("drain: %d %v", n, err)
	}
	waitState(t, ctx, s, runner, store.StateTerminated)
	j, _ = s.GitLab.Job(j.ID)
	if j.Status != "success" || !strings.Contains(string(s.GitLab.Trace(j.ID)), "finished slow") {
		t.Errorf("the job scale-down waited for: %s\n%s", j.Status, s.GitLab.Trace(j.ID))
	}
	// The GitLab runner is the egg's, shared: it outlives the machine.
	if gr, ok := s.GitLab.Runner(j.RunnerID); !ok || !strings.HasPrefix(gr.Description, contract.EggRunnerDescriptionPrefix) {
		t.Errorf("the job's GitLab runner %+v is not the egg's shared runner", gr)
	}
}

// A token rotation while a job runs does not interrupt it: the agent
// verifies the new token and gitlab-runner reloads it, the running job
// goes on with its job token, and the next job is taken with the new
// runner token by the same runner.
func TestRotationDuringJob(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	egg, p := s.projectEgg("rotjobs", fly.RunnerVM)
	egg.Apex.Max, egg.Runner.MaxConcurrent = 1, 1
	a := s.StartAPI(jobsSecret, egg)
	s.hookProject(a, p)
	t.Cleanup(func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(egg.Name), "", "test over")
	})

	j := s.runningJob(ctx, p, "during", 4)
	gr, _ := s.GitLab.Runner(j.RunnerID)
	oldToken := gr.Token
	run, err := s.Client.ExecuteWorkflow(ctx, contract.RotateStartOptions(), workflows.RotateRunnerTokens, contract.RotateRunnerTokensInput{Eggs: []string{egg.Name}, Actor: "e2e", Reason: "rotation during a job"})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.RotateRunnerTokensResult
	if err := run.Get(ctx, &res); err != nil || res.Rotated != 1 {
		t.Fatalf("rotation: %+v %v", res, err)
	}
	if gr, _ := s.GitLab.Runner(j.RunnerID); gr.Token == oldToken {
		t.Fatal("the runner's token did not change")
	}
	waitFor(t, ctx, "the job across the rotation", func() bool { j, _ = s.GitLab.Job(j.ID); return j.FinishedAt != nil })
	if j.Status != "success" || !strings.Contains(string(s.GitLab.Trace(j.ID)), "finished during") {
		t.Errorf("the job across the rotation: %s\n%s", j.Status, s.GitLab.Trace(j.ID))
	}
	next := s.runningJob(ctx, p, "after", 0)
	if next.RunnerID != j.RunnerID {
		t.Errorf("the next job ran on GitLab runner #%d, want #%d (the rotated one)", next.RunnerID, j.RunnerID)
	}
	waitFor(t, ctx, "the next job", func() bool { next, _ = s.GitLab.Job(next.ID); return next.FinishedAt != nil })
	if next.Status != "success" {
		t.Errorf("the next job: %s", next.Status)
	}
}

// BenchmarkJobStartPaths measures, on the local provider, the time from a
// job's pending Job Hook (sent by the GitLab test server when the pipeline
// is made) to the first line of the job's log that its runner sends back
// through the runner API, for each way a pool serves it: an idle Apex
// runner (already polling GitLab), a promoted Nadir runner, and a cold
// provision. It reports each path's mean and its ratio to the cold path.
func BenchmarkJobStartPaths(b *testing.B) {
	names := []string{"apex", "promotion", "cold"}
	var before [3]time.Duration
	b.Run("gosling", func(b *testing.B) {
		for b.Loop() {
			before = jobStartPaths(b, "")
			for i, d := range before {
				b.ReportMetric(ms(d)/jobStartRounds, names[i]+"-ms")
			}
			b.ReportMetric(float64(before[0])/float64(before[2]), "apex/cold")
			b.ReportMetric(float64(before[1])/float64(before[2]), "promotion/cold")
		}
	})
	// The same paths with the small agent binary (cmd/gosling-agent) as
	// the machines' agent: after/before for each path.
	b.Run("gosling-agent", func(b *testing.B) {
		for b.Loop() {
			after := jobStartPaths(b, testbin.GoslingAgent(b))
			for i, d := range after {
				b.ReportMetric(ms(d)/jobStartRounds, names[i]+"-ms")
				if before[i] > 0 {
					b.ReportMetric(float64(d)/float64(before[i]), names[i]+"-agent/gosling")
				}
			}
		}
	})
}

// jobStartRounds is how many jobs each start path of BenchmarkJobStartPaths
// times.
const jobStartRounds = 3

// jobStartPaths times, from a job's creation to its first trace line,
// each start path on the local provider with agentBinary as the machines'
// agent (gosling itself when empty): a job an Apex runner takes, one a
// Nadir runner promoted for it takes, and an egg's first job (a cold
// start). It returns the sums over jobStartRounds jobs of each.
func jobStartPaths(b *testing.B, agentBinary string) [3]time.Duration {
	const rounds = jobStartRounds
	s := Start(b, Options{AgentBinary: agentBinary})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		b.Fatal(err)
	}
	base := func(name string) (fly.Egg, gitlabtest.Project) {
		e, p := s.projectEgg(name, fly.RunnerVM)
		e.Runner.MaxConcurrent = 2
		e.Apex = fly.Pool{Max: 2, IdleTimeout: fly.Duration(time.Second)}
		return e, p
	}
	apex, apexP := base("apexstart")
	apex.Apex.Min, apex.Apex.IdleTimeout = 1, fly.Duration(time.Hour)
	nadir, nadirP := base("nadirstart")
	nadir.Nadir = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
	// A cold path is an egg's first job: one egg per round.
	eggs := []fly.Egg{apex, nadir}
	projects := []gitlabtest.Project{apexP, nadirP}
	for i := range rounds {
		e, p := base(fmt.Sprintf("coldstart%d", i))
		eggs, projects = append(eggs, e), append(projects, p)
	}
	a := s.StartAPI(jobsSecret, eggs...)
	for _, p := range projects {
		s.hookProject(a, p)
	}
	// The Apex and Nadir minimums are made ahead of the measured jobs;
	// the cold eggs' pools start with their job's hook.
	for _, e := range eggs[:2] {
		s.StartPool(ctx, e, 100*time.Millisecond)
	}
	firstLine := func(egg fly.Egg, p gitlabtest.Project, ready func(contract.PoolStatus) bool) time.Duration {
		if ready != nil {
			s.waitPool(ctx, egg.Name, "ready for a job", ready)
		}
		start := time.Now()
		pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "timed", Tags: []string{"docker"}, Script: []string{"true"}}}})
		if err != nil {
			b.Fatal(err)
		}
		id := s.GitLab.PipelineJobs(pl.ID)[0].ID
		for len(s.GitLab.Trace(id)) == 0 {
			if ctx.Err() != nil {
				b.Fatalf("%s: job %d never logged", egg.Name, id)
			}
			time.Sleep(2 * time.Millisecond)
		}
		took := time.Since(start)
		s.waitPipeline(ctx, pl.ID)
		return took
	}
	var sum [3]time.Duration
	for i := range rounds {
		sum[0] += firstLine(apex, apexP, func(st contract.PoolStatus) bool {
			return st.Counts[contract.PoolApex] >= 1
		})
		sum[1] += firstLine(nadir, nadirP, func(st contract.PoolStatus) bool {
			return st.Counts[contract.PoolApex] == 0 && st.Counts[contract.PoolNadir] >= 1 && len(st.Runners) == st.Counts[contract.PoolNadir]
		})
		sum[2] += firstLine(eggs[2+i], projects[2+i], nil)
	}
	return sum
}
