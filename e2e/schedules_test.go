package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/rift/mirror/mirrortest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
	"go.temporal.io/sdk/client"
)

// The jobs of Jobs/ run on Temporal Schedules that follow the Nest: made on
// application, updated and deleted with it (others' schedules untouched),
// paused and triggered by hand; each run is audited, and a failed run shows
// as failed with its reason.
func TestJobSchedulesFollowTheNest(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	up := mirrortest.Start(t, "", "")
	up.Push(t, &http.Client{}, "", "", "gitlab-org/runner", "v18", []byte("layer one"))
	image := strings.TrimPrefix(up.URL, "http://") + "/gitlab-org/runner:v18"

	web := s.Egg("web", fly.RunnerServerless)
	mk := func(name, kind, cron string, params map[string]any) fly.Job {
		return fly.Job{Name: name, Kind: kind, Schedule: cron, Timezone: "UTC", Enabled: true, File: "Jobs/" + name + ".fly",
			Timeout: fly.Duration(10 * time.Minute), Params: params}
	}
	nestA := &fly.Nest{
		Eggs: []fly.Egg{web},
		Jobs: []fly.Job{
			mk("image", fly.JobRunnerImageUpdate, "0 4 * * 0", map[string]any{"image": image}),
			mk("nest-update", fly.JobNestUpdate, "@hourly", map[string]any{"ref": "main"}),
			mk("rotate", fly.JobSecretRotation, "0 3 * * 1", map[string]any{"grace_period": "1m"}),
		},
		MotherGoose: fly.MotherGoose{
			Nest:      fly.NestSource{Project: "acme/nest", Ref: "main"},
			Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
			Sweep:     fly.Sweep{Enabled: true, Interval: fly.Duration(time.Hour)},
		},
	}
	// The Nest repository stands in as a fetcher: main is valid, broken is not.
	fetch := func(_ context.Context, ref string) (*fly.Nest, string, error) {
		if ref == "broken" {
			return nil, "badc0ffee0", &mothergoose.InvalidNestError{Commit: "badc0ffee0", Diagnostics: "Eggs/web/config.fly:3,5-9: Unknown value"}
		}
		return nestA, "c0ffee0123456789", nil
	}
	foreign, err := s.Client.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID: contract.ScheduleIDJobPrefix + "not-ours", Spec: client.ScheduleSpec{CronExpressions: []string{"@daily"}}, Paused: true,
		Action: &client.ScheduleWorkflowAction{ID: "x", Workflow: contract.WorkflowSweep, TaskQueue: "elsewhere"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = foreign.Delete(context.Background()) }()

	mg := s.ApplyNestWithSchedules(ctx, nestA, fetch)

	list := func() map[string]mothergoose.JobSchedule {
		t.Helper()
		js, err := mothergoose.ListJobSchedules(ctx, s.Client)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]mothergoose.JobSchedule{}
		for _, j := range js {
			out[j.Name] = j
		}
		return out
	}
	var got map[string]mothergoose.JobSchedule
	waitFor(t, ctx, "the job schedules listed", func() bool { got = list(); return len(got) == 4 })
	if r := got["rotate"]; r.Kind != fly.JobSecretRotation || r.Schedule != "0 3 * * 1" || r.NextRun == nil || r.Paused {
		t.Errorf("rotate schedule %+v", r)
	}

	// Each run on demand: trigger, then wait for its end.
	run := func(name, want string) mothergoose.JobSchedule {
		t.Helper()
		before := list()[name].Runs
		if err := mothergoose.TriggerJobSchedule(ctx, s.Client, name); err != nil {
			t.Fatal(err)
		}
		var js mothergoose.JobSchedule
		waitFor(t, ctx, name+" run ended", func() bool {
			js, err = mothergoose.DescribeJobSchedule(ctx, s.Client, name)
			return err == nil && js.Runs > before && js.LastStatus != "" && js.LastStatus != "running"
		})
		if js.LastStatus != want {
			t.Fatalf("%s ended %s, want %s", name, js.LastStatus, want)
		}
		return js
	}
	run("rotate", "completed")
	nu := run("nest-update", "completed")
	writeHistory(t, s, "job_nest_update", nu.LastWorkflowID, "")
	writeHistory(t, s, "nest_update", nu.LastWorkflowID+"/"+fly.JobNestUpdate, "")
	im := run("image", "completed")
	writeHistory(t, s, "runner_image_update_first", im.LastWorkflowID+"/"+fly.JobRunnerImageUpdate, "")
	if d, err := s.Acts.ImageDigest(ctx, image); err != nil || !strings.HasPrefix(d, "sha256:") {
		t.Errorf("image digest recorded: %q, %v", d, err)
	}
	if p, err := s.Store.ListPolicies(ctx); err != nil || !hasPolicy(p, mothergoose.NestCommitRecord, "c0ffee0123456789") {
		t.Errorf("the accepted Nest commit is not recorded: %+v, %v", p, err)
	}
	// The sweep ran at once on its creation.
	sw, err := s.Client.ScheduleClient().GetHandle(ctx, contract.SweepScheduleID("web")).Describe(ctx)
	if err != nil || len(sw.Info.RecentActions) == 0 {
		t.Fatalf("the sweep schedule: %v", err)
	}
	sweepID := sw.Info.RecentActions[0].StartWorkflowResult.WorkflowID
	waitFor(t, ctx, "the first sweep ended", func() bool {
		d, err := s.Client.DescribeWorkflow(ctx, sweepID, "")
		return err == nil && d.RawResponse.GetWorkflowExecutionInfo().GetCloseTime() != nil
	})
	writeHistory(t, s, "sweep", sweepID, "")

	// Nest B: the image job is gone, rotate moved, nest-update reads a
	// broken ref, and the sweep is off.
	nestB := *nestA
	nestB.Jobs = []fly.Job{mk("nest-update", fly.JobNestUpdate, "@hourly", map[string]any{"ref": "broken"}), mk("rotate", fly.JobSecretRotation, "0 5 * * 2", nil)}
	nestB.MotherGoose.Sweep.Enabled = false
	if res, err := mg.NestSync().ApplyNest(ctx, &nestB, "", "e2e"); err != nil || len(res.Warnings) != 0 {
		t.Fatalf("apply B: %+v, %v", res, err)
	}
	waitFor(t, ctx, "the image schedule deleted", func() bool { got = list(); _, ok := got["image"]; return !ok && len(got) == 3 })
	if _, ok := got["not-ours"]; !ok {
		t.Error("a schedule Gosling did not make was deleted")
	}
	if _, err := s.Client.ScheduleClient().GetHandle(ctx, contract.SweepScheduleID("web")).Describe(ctx); err == nil {
		t.Error("the sweep schedule outlived the sweep")
	}
	if r := got["rotate"]; r.Schedule != "0 5 * * 2" {
		t.Errorf("rotate not updated: %+v", r)
	}
	failed := run("nest-update", "failed")
	if p, _ := s.Store.ListPolicies(ctx); !hasPolicy(p, mothergoose.NestCommitRecord, "c0ffee0123456789") {
		t.Error("an invalid Nest replaced the accepted commit")
	}
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var invalid, runs, failedRuns int
	for _, r := range recs {
		switch {
		case r.Action == "nest-invalid" && strings.Contains(r.Reason, "Unknown value"):
			invalid++
		case r.Action == contract.AuditJobRun:
			runs++
			if strings.HasPrefix(r.Reason, contract.JobFailed) {
				failedRuns++
			}
		}
	}
	if invalid != 1 || runs != 4 || failedRuns != 1 {
		t.Errorf("audit: %d nest-invalid, %d job runs (%d failed)", invalid, runs, failedRuns)
	}
	_ = failed

	// Pause and resume by hand; a job that is not scheduled is an error.
	if err := mothergoose.PauseJobSchedule(ctx, s.Client, "rotate", true, "maintenance"); err != nil {
		t.Fatal(err)
	}
	if js, _ := mothergoose.DescribeJobSchedule(ctx, s.Client, "rotate"); !js.Paused || js.Note != "maintenance" || js.NextRun != nil {
		t.Errorf("paused: %+v", js)
	}
	// A Nest application keeps an operator's pause.
	if _, err := mg.NestSync().ApplyNest(ctx, &nestB, "", "e2e"); err != nil {
		t.Fatal(err)
	}
	if js, _ := mothergoose.DescribeJobSchedule(ctx, s.Client, "rotate"); !js.Paused {
		t.Errorf("a Nest application lifted an operator's pause: %+v", js)
	}
	if err := mothergoose.PauseJobSchedule(ctx, s.Client, "rotate", false, "done"); err != nil {
		t.Fatal(err)
	}
	if err := mothergoose.TriggerJobSchedule(ctx, s.Client, "image"); !errors.Is(err, mothergoose.ErrNoJobSchedule) {
		t.Errorf("trigger a deleted job: %v", err)
	}
}

func hasPolicy(ps []store.Policy, name, version string) bool {
	for _, p := range ps {
		if p.Name == name && p.Version == version {
			return true
		}
	}
	return false
}
