package mothergoose

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

func exampleNest(t *testing.T) *fly.Nest {
	t.Helper()
	nest, diags := fly.LoadNest("../examples/nest", fly.Options{Getenv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatalf("the example Nest: %v", diags.Diagnostics)
	}
	return nest
}

// Every job becomes a schedule on its cron and in its time zone, and every
// egg a sweep on the MG block's interval; each run's input carries what the
// job's kind needs.
func TestNestSchedules(t *testing.T) {
	nest := exampleNest(t)
	nest.Jobs[0].Enabled = false // nest-update
	scheds, warnings := NestSchedules(nest, Config{})
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}
	byID := map[string]client.ScheduleOptions{}
	for _, s := range scheds {
		byID[s.ID] = s
		if s.Memo[contract.MemoScheduleOwner] != contract.ScheduleOwnerNest || s.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP || s.CatchupWindow <= 0 {
			t.Errorf("%s: memo %v, overlap %v, catch-up %v", s.ID, s.Memo, s.Overlap, s.CatchupWindow)
		}
	}
	if len(scheds) != len(nest.Jobs)+len(nest.Eggs) {
		t.Fatalf("%d schedules for %d jobs and %d eggs", len(scheds), len(nest.Jobs), len(nest.Eggs))
	}
	input := func(id string) contract.JobRunInput {
		a := byID[id].Action.(*client.ScheduleWorkflowAction)
		if a.Workflow != contract.WorkflowSelfManagementJob || a.TaskQueue != contract.TaskQueueMotherGoose || a.ID != "job/"+strings.TrimPrefix(id, "gosling-job-") {
			t.Errorf("%s action %+v", id, a)
		}
		return a.Args[0].(contract.JobRunInput)
	}
	rot := byID["gosling-job-rotate-runner-tokens"]
	if rot.Spec.CronExpressions[0] != "0 3 * * 1" || rot.Spec.TimeZoneName != "Europe/Moscow" || rot.Paused {
		t.Errorf("rotation schedule %+v", rot)
	}
	if in := input(rot.ID); in.Rotation == nil || in.Rotation.ConfirmTimeout != 10*time.Minute || len(in.Rotation.Eggs) != 4 || in.Rotation.Actor != "job/rotate-runner-tokens" {
		t.Errorf("rotation input %+v", in.Rotation)
	}
	nu := byID["gosling-job-nest-update"]
	if !nu.Paused || nu.Note != noteDisabled {
		t.Errorf("a disabled job's schedule is not paused: %+v", nu)
	}
	if in := input(nu.ID); in.NestUpdate == nil || in.NestUpdate.Ref != "main" {
		t.Errorf("nest_update input %+v", in.NestUpdate)
	}
	if in := input("gosling-job-runner-image-update"); in.ImageUpdate == nil || in.ImageUpdate.RollPercent != 25 || !slices.Equal(in.ImageUpdate.Eggs, []string{"payments-api", "data-group"}) {
		t.Errorf("image update input %+v", in.ImageUpdate)
	}
	c := input("gosling-job-prune-registry").Custom
	if c == nil {
		t.Fatal("no custom input")
	}
	r := c.Runner
	if r.Name != "job-prune-registry" || !slices.Equal(r.Runner.Tags, []string{"gosling-admin"}) || r.Runner.Image != "alpine:3.20" ||
		r.Runner.Type != fly.RunnerVM || len(r.Projects) != 1 || r.Projects[0].Path != "platform/nest" || r.Group != nil {
		t.Errorf("dedicated runner %+v", r)
	}
	if tok := r.Runner.Env[contract.VarElevatedToken]; tok.Secret.IsZero() || tok.Secret != r.GitLab.Token {
		t.Errorf("elevated token %+v, GitLab %+v", tok, r.GitLab)
	}
	if c.Variables[contract.VarJobScript] != "crane gc cr.yandex/crpexample --older-than 720h" || c.Variables[contract.VarJob] != "prune-registry" || c.Cloud != "aws" {
		t.Errorf("custom input %+v", c)
	}
	sw := byID["gosling-sweep-web-app"]
	a := sw.Action.(*client.ScheduleWorkflowAction)
	in := a.Args[0].(contract.SweepInput)
	if sw.Spec.Intervals[0].Every != time.Minute || !sw.TriggerImmediately || a.Workflow != contract.WorkflowSweep ||
		in.Egg.Name != "web-app" || in.WebhookURL != "https://ci-runners.example.com/webhooks/gitlab" || len(in.Providers) == 0 {
		t.Errorf("sweep schedule %+v, input %+v", sw, in)
	}
	// Overrides from the process: interval and webhook URL.
	scheds, _ = NestSchedules(nest, Config{SweepInterval: 2 * time.Second, WebhookURL: "http://127.0.0.1:1/webhooks/gitlab"})
	for _, s := range scheds {
		if s.ID == "gosling-sweep-web-app" && (s.Spec.Intervals[0].Every != 2*time.Second || s.Action.(*client.ScheduleWorkflowAction).Args[0].(contract.SweepInput).WebhookURL != "http://127.0.0.1:1/webhooks/gitlab") {
			t.Errorf("overridden sweep %+v", s)
		}
	}
	// Without a sweep block turned off, no sweep schedules.
	nest.MotherGoose.Sweep.Enabled = false
	if scheds, _ = NestSchedules(nest, Config{}); len(scheds) != len(nest.Jobs) {
		t.Errorf("%d schedules with the sweep off", len(scheds))
	}
}

func TestJobRunInputErrors(t *testing.T) {
	nest := exampleNest(t)
	nest.MotherGoose.Nest.Project = ""
	for _, j := range nest.Jobs {
		_, err := JobRunInput(nest, j)
		switch j.Kind {
		case fly.JobNestUpdate, fly.JobCustom:
			if err == nil || !strings.Contains(err.Error(), "names no project") {
				t.Errorf("%s: %v", j.Name, err)
			}
		default:
			if err != nil {
				t.Errorf("%s: %v", j.Name, err)
			}
		}
	}
	custom, _ := nest.Job("prune-registry")
	custom.Runner.Tags = []string{"nobody-has-this"}
	if _, err := JobRunInput(nest, *custom); err == nil || !strings.Contains(err.Error(), "no egg's runners fit") {
		t.Errorf("custom job without a runner: %v", err)
	}
	if got := shellJoin([]string{"crane", "gc", "it's"}); got != `'crane' 'gc' 'it'\''s'` {
		t.Errorf("shellJoin = %s", got)
	}
}

// A custom job's script reaches eval as written: gitlab-runner turns the
// "$$" of a pipeline variable back into "$".
func TestCustomJobScriptEscapesDollars(t *testing.T) {
	nest := &fly.Nest{
		Eggs:        []fly.Egg{{Name: "platform", Runner: fly.Runner{Tags: []string{"gosling-admin"}}, GitLab: fly.GitLab{Host: "gitlab.example.com", Token: "vault://ci/gitlab/token"}}},
		MotherGoose: fly.MotherGoose{Nest: fly.NestSource{Project: "platform/nest", Host: "gitlab.example.com", Token: "vault://ci/gitlab/token"}},
	}
	for params, want := range map[string]map[string]any{
		`echo "$$HOME" $$(date) $$1`: {"script": `echo "$HOME" $(date) $1`},
		`'crane' 'gc' 'a b' '$$X'`:   {"command": []any{"crane", "gc", "a b", "$X"}},
	} {
		in, err := customJobInput(nest, fly.Job{Name: "j", Kind: fly.JobCustom, Params: want, Runner: fly.JobRunner{Tags: []string{"gosling-admin"}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := in.Variables[contract.VarJobScript]; got != params {
			t.Errorf("%v: GOSLING_JOB_SCRIPT = %q, want %q", want, got, params)
		}
	}
}
