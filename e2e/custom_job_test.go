package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// nestCI is the Nest repository's .gitlab-ci.yml that the README gives
// for custom jobs.
const nestCI = `gosling-job:
  tags: [gosling-admin]
  rules:
    - if: $GOSLING_JOB
  script: ['eval "$GOSLING_JOB_SCRIPT"']
`

// A custom job runs on its Temporal Schedule, by the cron's own tick: a
// runner is made for it (the platform egg's, with the job's tags,
// registered for the Nest project only, holding the elevated token), a
// pipeline of the Nest project runs its script on that runner through the
// gitlab-runner stand-in, and the runner is destroyed after. A job whose
// script fails shows as a failed run, audited, and its runner is destroyed
// too.
func TestCustomJobRunsOnItsSchedule(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	nestProject := s.GitLab.AddProject("acme/nest", s.Group.ID)
	s.GitLab.PutFile(nestProject.ID, ".gitlab-ci.yml", []byte(nestCI))
	platform := s.Egg("platform", fly.RunnerVM)
	platform.Runner.Tags = []string{"gosling-admin", "docker"}
	platform.Apex = fly.Pool{Max: 2, IdleTimeout: fly.Duration(time.Hour)}
	sum := sha256.Sum256([]byte(s.GitLab.Token()))
	// The script proves the elevated token is the Nest project's API
	// token without printing it.
	// gitlab-runner expands $VAR in pipeline variables; the script's own
	// shell variables must reach eval untouched.
	script := `echo "custom job $GOSLING_JOB on $CI_PROJECT_PATH"; n=3; echo "shell variable n=$n"; ` +
		`test "$(printf %s "$GOSLING_ELEVATED_TOKEN" | sha256sum | cut -c1-16)" = "` + hex.EncodeToString(sum[:])[:16] + `" && echo "the elevated token is there"`
	job := func(name, cron, script string) fly.Job {
		return fly.Job{Name: name, Kind: fly.JobCustom, Schedule: cron, Timezone: "UTC", Enabled: true, File: "Jobs/" + name + ".fly",
			Timeout: fly.Duration(5 * time.Minute), Params: map[string]any{"script": script},
			Runner: fly.JobRunner{Tags: []string{"gosling-admin"}, Elevated: true}}
	}
	nest := &fly.Nest{
		Eggs: []fly.Egg{platform},
		Jobs: []fly.Job{
			job("prune-registry", "* * * * *", script),
			job("broken", "0 4 * * 0", `echo "about to fail"; exit 3`),
		},
		MotherGoose: fly.MotherGoose{
			Nest:      fly.NestSource{Project: nestProject.PathWithNamespace, Ref: "main"},
			Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
		},
	}
	s.ApplyNestWithSchedules(ctx, nest, nil)

	ended := func(name string, runs int) mothergoose.JobSchedule {
		t.Helper()
		var js mothergoose.JobSchedule
		waitFor(t, ctx, name+" run ended", func() bool {
			var err error
			js, err = mothergoose.DescribeJobSchedule(ctx, s.Client, name)
			return err == nil && js.Runs >= runs && js.LastStatus != "" && js.LastStatus != "running"
		})
		return js
	}
	// The every-minute cron fires by itself; then the schedule is paused
	// so that no second run overlaps the checks.
	js := ended("prune-registry", 1)
	if err := mothergoose.PauseJobSchedule(ctx, s.Client, "prune-registry", true, "checked"); err != nil {
		t.Fatal(err)
	}
	if js.LastStatus != "completed" {
		t.Fatalf("prune-registry ended %s", js.LastStatus)
	}
	writeHistory(t, s, "custom_job", js.LastWorkflowID+"/"+fly.JobCustom, "")

	// The pipeline ran in the Nest project, on the job's runner.
	pipelines := func() []gitlabtest.Pipeline {
		var out []gitlabtest.Pipeline
		for id := int64(1); id < 100; id++ {
			if p, ok := s.GitLab.Pipeline(id); ok && p.ProjectID == nestProject.ID {
				out = append(out, p)
			}
		}
		return out
	}
	ps := pipelines()
	if len(ps) != 1 || ps[0].Status != "success" || ps[0].Source != "api" {
		t.Fatalf("Nest pipelines: %+v", ps)
	}
	jobs := s.GitLab.PipelineJobs(ps[0].ID)
	if len(jobs) != 1 {
		t.Fatalf("pipeline jobs: %+v", jobs)
	}
	tr := string(s.GitLab.Trace(jobs[0].ID))
	for _, want := range []string{"custom job prune-registry on acme/nest", "shell variable n=3", "the elevated token is there", "STAND-IN"} {
		if !strings.Contains(tr, want) {
			t.Errorf("the job's log lacks %q:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, s.GitLab.Token()) {
		t.Error("the elevated token is in the job's log")
	}
	custom := contract.CustomRunnerEggOf + "prune-registry"
	rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: custom})
	if len(rs) != 1 {
		t.Fatalf("runners of %s: %+v", custom, rs)
	}
	if jobs[0].RunnerID == 0 || jobs[0].RunnerID != rs[0].GitLabRunnerID {
		t.Errorf("the job ran on GitLab runner %d, not on the job's runner %s (%d)", jobs[0].RunnerID, rs[0].ID, rs[0].GitLabRunnerID)
	}
	if r, ok := s.GitLab.Runner(rs[0].GitLabRunnerID); ok && (r.Type != "project_type" || len(r.ProjectIDs) != 1 || r.ProjectIDs[0] != nestProject.ID) {
		t.Errorf("the job's runner is not the Nest project's alone: %+v", r)
	}
	waitFor(t, ctx, "the job's runner destroyed", func() bool {
		r, err := s.Store.GetRunner(ctx, rs[0].ID)
		return err == nil && r.State == store.StateTerminated
	})

	// A failing script: the run fails with the pipeline's status, and its
	// runner is destroyed all the same.
	if err := mothergoose.TriggerJobSchedule(ctx, s.Client, "broken"); err != nil {
		t.Fatal(err)
	}
	if js := ended("broken", 1); js.LastStatus != "failed" {
		t.Fatalf("broken ended %s", js.LastStatus)
	}
	waitFor(t, ctx, "the failed job's runner destroyed", func() bool {
		rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: contract.CustomRunnerEggOf + "broken"})
		return len(rs) == 1 && rs[0].State == store.StateTerminated
	})
	if ps := pipelines(); len(ps) != 2 || ps[1].Status != "failed" {
		t.Errorf("Nest pipelines after the failing job: %+v", ps)
	}

	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]string{}
	for _, r := range recs {
		if r.Action == contract.AuditJobRun {
			outcomes[r.Actor] = r.Reason
		}
	}
	for name, want := range map[string]string{"prune-registry": "pipeline ", "broken": contract.JobFailed} {
		if o := outcomes[contract.JobActor(name)]; !strings.HasPrefix(o, want) && !strings.Contains(o, want) {
			t.Errorf("audit of %s: %q, want %q (all: %v)", name, o, want, outcomes)
		}
	}
}
