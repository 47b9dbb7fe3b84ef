package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
	"go.temporal.io/sdk/converter"
)

// TestAnnouncements: on a project whose egg warms its pool
// (apex.warm_for), a push, a merge request opened or given commits and a
// pipeline's created jobs are announced to the pool (SignalPoolWarm), in
// the order they came, and a pipeline that is over withdraws its
// announcement; merge requests and the merge request a pipeline runs for
// are recorded in the audit log, once per delivery; what does not bring a
// pipeline announces nothing; an egg that does not warm, and a project no
// egg serves, get nothing announced.
func TestAnnouncements(t *testing.T) {
	t.Parallel()
	var project gitlabtest.Project
	var name string
	e := newEnv(t, envOptions{dispatch: mothergoose.ByRunnerKind, eggs: func(e *env) []fly.Egg {
		if project.ID == 0 {
			project = e.gitlab.AddProject("warm/app", e.gitlab.AddGroup("warm", 0).ID)
			name = "warm-" + strings.ReplaceAll(e.host, ":", "-")
		}
		egg := fly.Egg{Name: name, Kind: fly.KindEgg, Version: "v1", Projects: []fly.ProjectRef{{ID: project.ID}},
			GitLab: fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://hooks/web"},
			Runner: testRunner(fly.RunnerVM)}
		egg.Apex = fly.Pool{Max: 4, IdleTimeout: fly.Duration(time.Hour), WarmFor: fly.Duration(2 * time.Minute)}
		egg.Nadir = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
		return []fly.Egg{egg}
	}})
	ctx := context.Background()
	tc := devServer(t).Client()
	poolID := contract.PoolWorkflowID(name)
	terminate(t, tc, poolID)
	hp := e.hookProject(project)

	// The first pending job starts the pool.
	first := e.gitlab.AddJob(project.ID, gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}})
	spec, _ := e.gitlab.JobHook(first.ID)
	e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted)

	mr := gitlabtest.HookMergeRequest{ID: 700, IID: 7, Title: "Faster", SourceBranch: "fast"}
	pl, err := e.gitlab.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Ref: "fast", Source: "merge_request_event", Jobs: []gitlabtest.JobSpec{
		{Name: "compile", Stage: "build"}, {Name: "unit", Stage: "test"}, {Name: "lint", Stage: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	ids := e.gitlab.PipelineJobs(pl.ID)
	created := []gitlabtest.PipelineBuild{
		{ID: ids[0].ID, Stage: "build", Name: "compile", Status: "pending"},
		{ID: ids[1].ID, Stage: "test", Name: "unit", Status: "created"}, {ID: ids[2].ID, Stage: "test", Name: "lint", Status: "created"},
	}
	plKey := fmt.Sprintf("pipeline/%d", pl.ID)
	pipeline := gitlabtest.PipelineHookSpec{Project: hp, PipelineID: pl.ID, SHA: "c3", Source: "merge_request_event", Status: "pending", MergeRequest: &mr, Builds: created}
	over := pipeline
	over.Status = "success"
	over.Builds = nil
	zeros := strings.Repeat("0", 40)
	skipped := skipCIPush(t, hp, "")
	for _, step := range []struct {
		event, key string
		body       []byte
		status     string
		reason     string
	}{
		{gitlabtest.EventPush, "push", gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: hp, Ref: "refs/heads/main", After: "a1"}),
			api.StatusAccepted, "announced 1 jobs (commit/a1)"},
		{gitlabtest.EventPush, "delete", gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: hp, Ref: "refs/heads/old", Before: "a1", After: zeros}),
			api.StatusIgnored, "deleted the branch"},
		// shared/cases/push-skip-ci.json: its head commit says [skip ci].
		{gitlabtest.EventPush, "skip-ci", skipped, api.StatusIgnored, "the head commit says [skip ci]: GitLab makes no pipeline"},
		{gitlabtest.EventPush, "ci-skip", skipCIPush(t, hp, "Fix typo [CI-Skip]"), api.StatusIgnored, "the head commit says [CI-Skip]"},
		{gitlabtest.EventPush, "ci.skip", skipCIPush(t, hp, "Fix typo", `"push_options":{"ci":{"skip":true}}`), api.StatusIgnored, "ci.skip push option"},
		// An older commit's [skip ci] does not skip the pipeline.
		{gitlabtest.EventPush, "older-skip", skipCIPush(t, hp, "", `"after":"d1","checkout_sha":"d1","commits":[{"id":"d0","message":"WIP [skip ci]"},{"id":"d1","message":"Done"}]`),
			api.StatusAccepted, "announced 1 jobs (commit/d1)"},
		{gitlabtest.EventMergeRequest, "open", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hp, MergeRequest: mr, Action: "open", LastCommit: "b2"}),
			api.StatusAccepted, "recorded; announced 1 jobs (commit/b2)"},
		{gitlabtest.EventMergeRequest, "open", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hp, MergeRequest: mr, Action: "open", LastCommit: "b2"}),
			api.StatusDuplicate, ""},
		{gitlabtest.EventMergeRequest, "retitled", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hp, MergeRequest: mr, Action: "update", LastCommit: "b2"}),
			api.StatusAccepted, "update brings no pipeline"},
		{gitlabtest.EventMergeRequest, "pushed", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hp, MergeRequest: mr, Action: "update", LastCommit: "c3", OldRev: "b2", HeadPipelineID: pl.ID}),
			api.StatusAccepted, "announced 1 jobs (commit/c3)"},
		{gitlabtest.EventPipeline, "pipeline", gitlabtest.PipelineHookPayload(pipeline),
			api.StatusAccepted, "recorded 3 jobs; runs for merge request !7; announced 2 jobs (" + plKey + ")"},
		{gitlabtest.EventPipeline, "pipeline-resent", gitlabtest.PipelineHookPayload(pipeline),
			api.StatusAccepted, "announced 2 jobs (" + plKey + ")"},
		{gitlabtest.EventPipeline, "over", gitlabtest.PipelineHookPayload(over),
			api.StatusAccepted, "withdrew the announcement " + plKey},
		{gitlabtest.EventMergeRequest, "merged", gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: hp, MergeRequest: mr, Action: "merge", LastCommit: "c3", HeadPipelineID: pl.ID}),
			api.StatusAccepted, "merge brings no pipeline"},
	} {
		code := http.StatusAccepted
		if step.status == api.StatusDuplicate {
			code = http.StatusOK
		}
		hr := e.hookReply(e.deliver(step.event, webSecret, step.body, "announce-"+step.key), code)
		if hr.Status != step.status || !strings.Contains(hr.Reason, step.reason) {
			t.Errorf("%s %s: %+v, want %s with %q", step.event, step.key, hr, step.status, step.reason)
		}
	}
	var warms []string
	for _, ev := range history(t, tc, poolID) {
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a == nil || a.GetSignalName() != contract.SignalPoolWarm {
			continue
		}
		var w contract.Warm
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &w); err != nil {
			t.Fatal(err)
		}
		warms = append(warms, fmt.Sprintf("%s:%d:%v:%s", w.Key, w.Jobs, w.JobIDs, w.Commit))
	}
	later := fmt.Sprintf("[%d %d]", ids[1].ID, ids[2].ID)
	want := "commit/a1:1:[]: commit/d1:1:[]: commit/b2:1:[]: commit/c3:1:[]: " + plKey + ":2:" + later + ":c3 " + plKey + ":2:" + later + ":c3 " + plKey + ":0:[]:c3"
	if got := strings.Join(warms, " "); got != want {
		t.Errorf("announcements\n got %s\nwant %s", got, want)
	}
	recs, err := e.store.ListAudit(ctx, store.AuditFilter{Egg: name})
	if err != nil {
		t.Fatal(err)
	}
	var audit []string
	for _, r := range recs {
		audit = append(audit, r.Action)
		if r.Action == "merge-request-pipeline" && !strings.Contains(r.Reason, fmt.Sprintf("pipeline %d", pl.ID)) {
			t.Errorf("pipeline record: %+v", r)
		}
		if r.Action == "merge-request" && (!strings.Contains(r.Reason, "!7") || !strings.Contains(string(r.After), `"iid":7`)) {
			t.Errorf("merge request record: %+v", r)
		}
	}
	if got := strings.Join(audit, ","); got != "merge-request,merge-request,merge-request,merge-request-pipeline,merge-request" {
		t.Errorf("audit = %s", got)
	}
	// The pipeline's jobs are in the job history, with their pipeline.
	if j, err := e.store.GetJob(ctx, e.host, ids[1].ID); err != nil || j.PipelineID != pl.ID || j.Status != "created" {
		t.Errorf("job %d: %+v %v", ids[1].ID, j, err)
	}

	// A merge request with another egg's token is refused; on a project no
	// egg serves it is ignored; an egg that does not warm only records.
	openOn := func(p gitlabtest.Project) []byte {
		return gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{Project: e.hookProject(p), MergeRequest: mr, Action: "open", LastCommit: "d4"})
	}
	if r := e.deliver(gitlabtest.EventMergeRequest, multiSecret, openOn(project), "other-token"); r.Status != http.StatusUnauthorized {
		t.Errorf("another egg's token: %d %s", r.Status, r.Body)
	}
	stranger := e.gitlab.AddProject("stranger/app", 0)
	if hr := e.hookReply(e.deliver(gitlabtest.EventMergeRequest, webSecret, openOn(stranger), "stranger"), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("stranger: %+v", hr)
	}
	if hr := e.hookReply(e.deliver(gitlabtest.EventMergeRequest, webSecret, openOn(e.web), "cold"), http.StatusAccepted); hr.Status != api.StatusAccepted || !strings.Contains(hr.Reason, "does not warm") {
		t.Errorf("egg without warm_for: %+v", hr)
	}
	push := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: e.hookProject(e.web)})
	if hr := e.hookReply(e.deliver(gitlabtest.EventPush, webSecret, push, "cold-push"), http.StatusAccepted); hr.Status != api.StatusIgnored || !strings.Contains(hr.Reason, "does not warm") {
		t.Errorf("push to an egg without warm_for: %+v", hr)
	}
}

// skipCIPush is the Push Hook of shared/cases/push-skip-ci.json on a test
// project: the case's commits (the head one's message replaced by head,
// unless empty) and what extra JSON members say.
func skipCIPush(t *testing.T, hp gitlabtest.HookProject, head string, extra ...string) []byte {
	t.Helper()
	var c map[string]any
	if err := json.Unmarshal(readCase(t, "push-skip-ci.json"), &c); err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: hp, Ref: "refs/heads/main"}), &p); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "after", "checkout_sha", "commits", "total_commits_count", "message"} {
		p[k] = c[k]
	}
	if head != "" {
		commits := p["commits"].([]any)
		commits[len(commits)-1].(map[string]any)["message"] = head
	}
	for _, e := range extra {
		if err := json.Unmarshal([]byte("{"+e+"}"), &p); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestApplyNestGivesGatesTheSpec: a serverless egg's first pending job
// starts its gate; applying a Nest gives the running gate the egg's new
// spec (its max_concurrent applies from then on), without a warning.
func TestApplyNestGivesGatesTheSpec(t *testing.T) {
	t.Parallel()
	var project gitlabtest.Project
	var name string
	e := newEnv(t, envOptions{dispatch: mothergoose.ByRunnerKind, eggs: func(e *env) []fly.Egg {
		if project.ID == 0 {
			project = e.gitlab.AddProject("fn/app", e.gitlab.AddGroup("fn", 0).ID)
			name = "fn-" + strings.ReplaceAll(e.host, ":", "-")
		}
		return []fly.Egg{{Name: name, Kind: fly.KindEgg, Version: "v1", Projects: []fly.ProjectRef{{ID: project.ID}},
			GitLab: fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://hooks/web"},
			Runner: testRunner(fly.RunnerServerless)}}
	}})
	ctx := context.Background()
	tc := devServer(t).Client()
	gateID := contract.GateWorkflowID(name)
	terminate(t, tc, gateID)
	job := e.gitlab.AddJob(project.ID, gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}})
	spec, _ := e.gitlab.JobHook(job.ID)
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted); hr.WorkflowID != gateID {
		t.Fatalf("pending: %+v", hr)
	}
	nest := *e.nest.Load()
	nest.Eggs = append([]fly.Egg(nil), nest.Eggs...)
	for i := range nest.Eggs {
		if nest.Eggs[i].Name == name {
			nest.Eggs[i].Runner.MaxConcurrent, nest.Eggs[i].Version = 7, "v2"
		}
	}
	res, err := e.mg.NestSync().ApplyNest(ctx, &nest, "", "test")
	if err != nil || len(res.Warnings) != 0 {
		t.Fatalf("apply: %+v %v", res, err)
	}
	var got []int
	for _, ev := range history(t, tc, gateID) {
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a == nil || a.GetSignalName() != contract.SignalGateSpec {
			continue
		}
		var egg fly.Egg
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &egg); err != nil {
			t.Fatal(err)
		}
		got = append(got, egg.Runner.MaxConcurrent)
	}
	if fmt.Sprint(got) != "[7]" {
		t.Errorf("gate specs %v, want [7]", got)
	}
}
