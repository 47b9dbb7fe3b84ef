package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"
)

const (
	exampleSecret = "example-hook-secret-0005"
	flightSecret  = "flight-hook-secret-0006"
)

func testRunner(kind string) fly.Runner {
	return fly.Runner{Type: kind, Clouds: []string{fly.CloudLocal}, CPU: 1, Memory: fly.GiB, Disk: 10 * fly.GiB,
		MaxConcurrent: 4, JobsPerRunner: 1, Tags: []string{"docker"}, Image: "alpine:3.20"}
}

// exampleEgg serves GitLab's own example project on gitlab.example.com,
// named by path only, as the handed cases need; the test server answers
// for gitlab.example.com (exampleEnv) and holds the project (ID 380) and
// the cases' jobs.
func exampleEgg(e *env) []fly.Egg {
	if _, ok := e.gitlab.ProjectByPath("gitlab-org/gitlab-test"); !ok {
		g := e.gitlab.AddGroupWithID(9970, "gitlab-org", 0)
		p := e.gitlab.AddProjectWithID(380, "gitlab-org/gitlab-test", g.ID)
		for _, id := range []int64{1977, 1978, 1979, 3580121225} {
			e.ensureJob(p, id)
		}
	}
	return []fly.Egg{{
		Name: "gitlab-test", Kind: fly.KindEgg, Version: "gitlab-test-v1",
		GitLab:   fly.GitLab{Host: "gitlab.example.com", Token: "local://gitlab/token", WebhookSecret: "local://hooks/example"},
		Projects: []fly.ProjectRef{{Path: "gitlab-org/gitlab-test"}}, Runner: testRunner(fly.RunnerVM),
	}}
}

// sendRaw sends a body with exactly the headers given (no X-Gitlab-Instance
// unless given), as an old or differently configured GitLab would.
func (e *env) sendRaw(headers map[string]string, body []byte) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url("/webhooks/gitlab"), bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(e.t, req)
}

// TestCaseJobHookWithoutProjectObject: GitLab's published Job Hook example
// has no project object; the egg names its project by path, which comes
// from repository.homepage and project_name. Old instances send it as
// Build Hook without X-Gitlab-Instance: served all the same.
func TestCaseJobHookWithoutProjectObject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true, eggs: exampleEgg, instances: []string{"gitlab.example.com"}, secrets: map[fly.SecretRef]string{"local://hooks/example": exampleSecret}})
	body := readCase(t, "jobhook-no-project-object.json")
	hr := e.hookReply(e.sendRaw(map[string]string{"X-Gitlab-Event": "Job Hook", "X-Gitlab-Instance": "http://gitlab.example.com", "X-Gitlab-Token": exampleSecret}, body), http.StatusAccepted)
	if hr.Status != api.StatusAccepted {
		t.Errorf("case: %+v", hr)
	}
	rec, err := e.store.GetJob(context.Background(), "gitlab.example.com", 1977)
	if err != nil || rec.Egg != "gitlab-test" || rec.ProjectID != 380 || rec.Status != "created" {
		t.Errorf("job record %+v %v", rec, err)
	}
	// The same from an old instance: Build Hook, no X-Gitlab-Instance.
	old := bytes.Replace(body, []byte(`"build_id": 1977`), []byte(`"build_id": 1978`), 1)
	hr = e.hookReply(e.sendRaw(map[string]string{"X-Gitlab-Event": "Build Hook", "X-Gitlab-Token": exampleSecret}, old), http.StatusAccepted)
	if hr.Status != api.StatusAccepted {
		t.Errorf("old instance: %+v", hr)
	}
	if rec, err := e.store.GetJob(context.Background(), "gitlab.example.com", 1978); err != nil || rec.Egg != "gitlab-test" {
		t.Errorf("old instance's job record %+v %v", rec, err)
	}
	// A display name, not a path, in project_name: the homepage still tells.
	named := bytes.Replace(old, []byte(`"project_name": "gitlab-org/gitlab-test"`), []byte(`"project_name": "Gitlab Org / Gitlab Test"`), 1)
	named = bytes.Replace(named, []byte(`"build_id": 1978`), []byte(`"build_id": 1979`), 1)
	if hr := e.hookReply(e.sendRaw(map[string]string{"X-Gitlab-Event": "Job Hook", "X-Gitlab-Token": exampleSecret}, named), http.StatusAccepted); hr.Status != api.StatusAccepted {
		t.Errorf("display name: %+v", hr)
	}
	// Another egg's token on that host is still refused.
	if r := e.sendRaw(map[string]string{"X-Gitlab-Event": "Job Hook", "X-Gitlab-Token": webSecret}, body); r.Status != http.StatusUnauthorized {
		t.Errorf("a token of no egg on gitlab.example.com: %d %s", r.Status, r.Body)
	}
}

// TestCaseLateRunningAfterSuccess: the handed deliveries, success then a
// late running for the same job, with their own headers only (no
// X-Gitlab-Instance): the history stays success with its finished_at.
func TestCaseLateRunningAfterSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{eggs: exampleEgg, instances: []string{"gitlab.example.com"}, secrets: map[fly.SecretRef]string{"local://hooks/example": exampleSecret}})
	var deliveries []map[string]json.RawMessage
	if err := json.Unmarshal(readCase(t, "job-success-then-late-running.json"), &deliveries); err != nil {
		t.Fatal(err)
	}
	var replies []api.HookResponse
	for _, d := range deliveries {
		headers := map[string]string{"X-Gitlab-Token": exampleSecret}
		for k, v := range d {
			var s string
			if k != "body" && json.Unmarshal(v, &s) == nil {
				headers[k] = s
			}
		}
		replies = append(replies, e.hookReply(e.sendRaw(headers, d["body"]), http.StatusAccepted))
	}
	rec, err := e.store.GetJob(context.Background(), "gitlab.example.com", 3580121225)
	finished := time.Date(2023, 1, 10, 13, 50, 54, 0, time.UTC)
	started := time.Date(2023, 1, 10, 13, 50, 5, 0, time.UTC)
	if err != nil || rec.Status != "success" || rec.FinishedAt == nil || !rec.FinishedAt.Equal(finished) || rec.StartedAt == nil || !rec.StartedAt.Equal(started) || rec.Egg != "gitlab-test" {
		t.Errorf("job record %+v %v, want success finished at %s", rec, err, finished)
	}
	if len(replies) != 2 || replies[1].WorkflowID != "" || !strings.Contains(replies[1].Reason, "late running") {
		t.Errorf("replies %+v: the late running must not reach a workflow", replies)
	}
}

// flightEnv is an env with bucket "flight" serving GitLab group flightjs,
// and a MotherGoose worker.
func flightEnv(t *testing.T) (*env, gitlabtest.Group) {
	var group gitlabtest.Group
	e := newEnv(t, envOptions{worker: true, secrets: map[fly.SecretRef]string{"local://hooks/flight": flightSecret}, eggs: func(e *env) []fly.Egg {
		if group.ID == 0 {
			group = e.gitlab.AddGroup("flightjs", 0)
		}
		return []fly.Egg{{
			Name: "flight", Kind: fly.KindBucket, Version: "flight-v1",
			GitLab: fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://hooks/flight"},
			Group:  &fly.GroupRef{ID: group.ID}, Runner: testRunner(fly.RunnerVM),
		}}
	}})
	return e, group
}

// projectCreate is the handed group hook payload for a project of the
// test GitLab (its ID and path put in).
func projectCreate(t *testing.T, p gitlabtest.Project) []byte {
	var m map[string]any
	if err := json.Unmarshal(readCase(t, "group-project-create.json"), &m); err != nil {
		t.Fatal(err)
	}
	m["project_id"], m["path_with_namespace"], m["path"] = p.ID, p.PathWithNamespace, p.Path
	b, _ := json.Marshal(m)
	return b
}

// TestCaseGroupProjectCreate: a group hook's project_create for a project
// in a bucket's group is no failure: the AddProjectHook workflow gives the
// project the bucket's hook (audited) and its jobs are served; the webhook
// path itself writes nothing to GitLab. Other project events, and project
// events of groups no bucket serves, are ignored with 202.
func TestCaseGroupProjectCreate(t *testing.T) {
	t.Parallel()
	e, group := flightEnv(t)
	ctx := context.Background()
	// hookAdded waits for the project's AddProjectHook workflow to end.
	hookAdded := func(p gitlabtest.Project) error {
		t.Helper()
		wfID := contract.ProjectHookWorkflowID(e.host, p.ID)
		return e.mg.Temporal().GetWorkflow(ctx, wfID, "").Get(ctx, nil)
	}
	// The handed payload, with this GitLab's ID of flightjs/flight.
	flight := e.gitlab.AddProject("flight", group.ID)
	hr := e.hookReply(e.deliver("Project Hook", flightSecret, projectCreate(t, flight), "create-1"), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || hr.WorkflowID != contract.ProjectHookWorkflowID(e.host, flight.ID) {
		t.Fatalf("project_create: %+v", hr)
	}
	if err := hookAdded(flight); err != nil {
		t.Fatal(err)
	}
	hooks := e.gitlab.Hooks(flight.ID)
	if len(hooks) != 1 || hooks[0].URL != e.url("/webhooks/gitlab") || hooks[0].Token != flightSecret || !hooks[0].JobEvents || !hooks[0].PipelineEvents || hooks[0].PushEvents {
		t.Fatalf("hooks of the new project: %+v", hooks)
	}
	audit, _ := e.store.ListAudit(ctx, store.AuditFilter{Egg: "flight"})
	if n := countAudit(audit, "project-hook-add"); n != 1 {
		t.Errorf("audit %+v: want one project-hook-add", audit)
	}
	// A resend is a duplicate; the same event anew finds the workflow done.
	if hr := e.hookReply(e.deliver("Project Hook", flightSecret, projectCreate(t, flight), "create-1"), http.StatusOK); hr.Status != api.StatusDuplicate {
		t.Errorf("resend: %+v", hr)
	}
	if hr := e.hookReply(e.deliver("System Hook", flightSecret, projectCreate(t, flight), ""), http.StatusAccepted); !strings.Contains(hr.Reason, "finished already") || len(e.gitlab.Hooks(flight.ID)) != 1 {
		t.Errorf("second project_create: %+v, %d hooks", hr, len(e.gitlab.Hooks(flight.ID)))
	}
	// The new project's jobs are served.
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, flightSecret, e.jobHook(flight, 801, "running"), ""), http.StatusAccepted); hr.Status == api.StatusIgnored {
		t.Errorf("job of the new project: %+v", hr)
	}
	if rec, err := e.store.GetJob(ctx, e.host, 801); err != nil || rec.Egg != "flight" {
		t.Errorf("job record %+v %v", rec, err)
	}

	// An old instance's system hook: no X-Gitlab-Instance, no URL at all.
	second := e.gitlab.AddProject("flight2", group.ID)
	hr = e.hookReply(e.sendRaw(map[string]string{"X-Gitlab-Event": "System Hook", "X-Gitlab-Token": flightSecret}, projectCreate(t, second)), http.StatusAccepted)
	if err := hookAdded(second); hr.Status != api.StatusAccepted || err != nil || len(e.gitlab.Hooks(second.ID)) != 1 {
		t.Errorf("old instance's project_create: %+v, %v, hooks %+v", hr, err, e.gitlab.Hooks(second.ID))
	}

	// GitLab failing once is retried; GitLab refusing the hook (422) is
	// not: still 2xx, and audited.
	third := e.gitlab.AddProject("flight3", group.ID)
	e.gitlab.FailNext(http.MethodPost, "/projects/*/hooks", http.StatusBadGateway, 1, false)
	e.hookReply(e.deliver("Project Hook", flightSecret, projectCreate(t, third), ""), http.StatusAccepted)
	if err := hookAdded(third); err != nil || len(e.gitlab.Hooks(third.ID)) != 1 {
		t.Errorf("after a 502: %v, hooks %+v", err, e.gitlab.Hooks(third.ID))
	}
	fourth := e.gitlab.AddProject("flight4", group.ID)
	e.gitlab.FailNext(http.MethodPost, "/projects/*/hooks", http.StatusUnprocessableEntity, 1, false)
	e.hookReply(e.deliver("Project Hook", flightSecret, projectCreate(t, fourth), ""), http.StatusAccepted)
	if err := hookAdded(fourth); err == nil || len(e.gitlab.Hooks(fourth.ID)) != 0 {
		t.Errorf("a refused hook: workflow error %v, hooks %+v", err, e.gitlab.Hooks(fourth.ID))
	}
	audit, _ = e.store.ListAudit(ctx, store.AuditFilter{Egg: "flight"})
	if n := countAudit(audit, "project-hook-failed"); n != 1 {
		t.Errorf("audit: %d project-hook-failed, want 1", n)
	}

	// Ignored, 202: a project of a group no bucket serves, with a bucket's
	// token; another project event; a project_create with another egg's
	// token.
	elsewhere := e.gitlab.AddProject("elsewhere/app", 0)
	destroy := bytes.Replace(projectCreate(t, flight), []byte(`"project_create"`), []byte(`"project_destroy"`), 1)
	for name, tc := range map[string]struct {
		token string
		body  []byte
	}{
		"outside the group": {flightSecret, projectCreate(t, elsewhere)},
		"project_destroy":   {flightSecret, destroy},
		"another egg's":     {webSecret, projectCreate(t, e.gitlab.AddProject("flight5", group.ID))},
	} {
		if hr := e.hookReply(e.deliver("Project Hook", tc.token, tc.body, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
			t.Errorf("%s: %+v", name, hr)
		}
	}
	if len(e.gitlab.Hooks(elsewhere.ID)) != 0 {
		t.Error("a project outside every bucket's group got a hook")
	}
	if r := e.deliver("Project Hook", "guess", projectCreate(t, flight), ""); r.Status != http.StatusUnauthorized {
		t.Errorf("a token of no egg: %d", r.Status)
	}
}

func countAudit(recs []store.AuditRecord, action string) int {
	n := 0
	for _, r := range recs {
		if r.Action == action {
			n++
		}
	}
	return n
}

// TestIgnoredEventsNeverFail: every event Gosling does not act on is
// answered 202 ignored, for any project, served or not, once the token is
// some egg's on the host; only a token of no egg is refused.
func TestIgnoredEventsNeverFail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	stranger := e.gitlab.AddProject("stranger/app", 0)
	proj := fmt.Sprintf(`"project_id":%d,"project":{"id":%d,"path_with_namespace":%q,"web_url":"%s/%s"}`,
		stranger.ID, stranger.ID, stranger.PathWithNamespace, e.gitlab.URL(), stranger.PathWithNamespace)
	events := map[string]string{
		"Tag Push Hook":           `{"object_kind":"tag_push","ref":"refs/tags/v1",` + proj + `}`,
		"Issue Hook":              `{"object_kind":"issue",` + proj + `}`,
		"Note Hook":               `{"object_kind":"note",` + proj + `}`,
		"Wiki Page Hook":          `{"object_kind":"wiki_page",` + proj + `}`,
		"Deployment Hook":         `{"object_kind":"deployment",` + proj + `}`,
		"Release Hook":            `{"object_kind":"release",` + proj + `}`,
		"Emoji Hook":              `{"object_kind":"emoji",` + proj + `}`,
		"Member Hook":             `{"event_name":"user_add_to_group","group_id":3}`,
		"Subgroup Hook":           `{"event_name":"subgroup_create","group_id":3}`,
		"Project Hook":            `{"event_name":"project_rename","path_with_namespace":"stranger/app2","old_path_with_namespace":"stranger/app","project_id":` + fmt.Sprint(stranger.ID) + `}`,
		"System Hook":             `{"event_name":"user_create","name":"x"}`,
		"Confidential Issue Hook": `{"object_kind":"issue",` + proj + `}`,
	}
	// Merge requests are acted on only for a project an egg serves.
	events[gitlabtest.EventMergeRequest] = string(gitlabtest.MergeRequestHookPayload(gitlabtest.MergeRequestHookSpec{
		Project: e.hookProject(stranger), MergeRequest: gitlabtest.HookMergeRequest{ID: 1, IID: 1, SourceBranch: "x"}, Action: "open",
	}))
	for event, body := range events {
		if hr := e.hookReply(e.deliver(event, webSecret, []byte(body), ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
			t.Errorf("%s: %+v", event, hr)
		}
		if r := e.deliver(event, "guess", []byte(body), ""); r.Status != http.StatusUnauthorized {
			t.Errorf("%s with a token of no egg: %d", event, r.Status)
		}
	}
	push := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: e.hookProject(stranger)})
	if hr := e.hookReply(e.deliver(gitlabtest.EventPush, dataSecret, push, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("push to a project no egg serves: %+v", hr)
	}
	if jobs, _ := e.store.ListJobs(context.Background(), store.JobFilter{}); len(jobs) != 0 {
		t.Errorf("ignored events recorded jobs: %+v", jobs)
	}
}

// TestRenamedAndTransferredProjects: listed paths are resolved to project
// IDs when the Nest is applied; a project GitLab renamed or transferred is
// still served under its new path, a project that took over its old path
// is not, and a listed path that resolves to nothing is a warning.
func TestRenamedAndTransferredProjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true, eggs: func(e *env) []fly.Egg {
		return []fly.Egg{{Name: "gone", Kind: fly.KindEgg, Version: "gone-v1",
			GitLab:   fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://hooks/web"},
			Projects: []fly.ProjectRef{{Path: "acme/gone"}}, Runner: testRunner(fly.RunnerVM)}}
	}})
	ctx := context.Background()
	res, err := e.mg.NestSync().ApplyNest(ctx, e.nest.Load(), "", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(res.Warnings, "acme/gone", "does not resolve") {
		t.Errorf("warnings %q lack the path that does not resolve", res.Warnings)
	}
	audit, _ := e.store.ListAudit(ctx, store.AuditFilter{Egg: "gone"})
	if countAudit(audit, "egg-projects") != 1 {
		t.Errorf("audit of egg gone: %+v", audit)
	}
	if !strings.Contains(e.logs.String(), "does not resolve") {
		t.Error("no log line for the path that does not resolve")
	}

	served := func(p gitlabtest.Project, jobID int64) int {
		t.Helper()
		p, _ = e.gitlab.ProjectByID(p.ID)
		r := e.deliver(gitlabtest.EventJob, multiSecret, e.jobHook(p, jobID, "running"), "")
		if r.Status < 300 {
			if rec, err := e.store.GetJob(ctx, e.host, jobID); err != nil || rec.Egg != "multi" {
				t.Errorf("job %d of %s: %+v %v", jobID, p.PathWithNamespace, rec, err)
			}
		}
		return r.Status
	}
	// multi lists ACME/API by path: renamed, it is still served.
	e.gitlab.MoveProject(e.multiA.ID, "api-v2", e.multiA.GroupID)
	if st := served(e.multiA, 9001); st != http.StatusAccepted {
		t.Errorf("renamed project: %d", st)
	}
	res, err = e.mg.NestSync().ApplyNest(ctx, e.nest.Load(), "", "test")
	if err != nil || !hasWarning(res.Warnings, "ACME/API", "is now acme/api-v2") {
		t.Errorf("re-applied: %q %v", res.Warnings, err)
	}
	ops, _ := e.gitlab.GroupByFullPath("ops")
	e.gitlab.MoveProject(e.multiA.ID, "api", ops.ID)
	if st := served(e.multiA, 9002); st != http.StatusAccepted {
		t.Errorf("transferred project: %d", st)
	}
	// A new project at the old path is another project.
	usurper := e.gitlab.AddProject("api", e.multiA.GroupID)
	if st := served(usurper, 9003); st != http.StatusNotFound {
		t.Errorf("a new project at a renamed project's old path: %d, want 404", st)
	}
}

// TestProjectsResolvedLazily: without a Nest application, a hook that names
// a moved project resolves the eggs' paths then and there.
func TestProjectsResolvedLazily(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	e.gitlab.MoveProject(e.multiB.ID, "handbook", e.multiB.GroupID)
	p, _ := e.gitlab.ProjectByID(e.multiB.ID)
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, multiSecret, e.jobHook(p, 9100, "running"), ""), http.StatusAccepted)
	if hr.Status == api.StatusIgnored {
		t.Errorf("moved project: %+v", hr)
	}
	before := e.gitlab.CountRequests(http.MethodGet, "/projects/*")
	if before == 0 {
		t.Fatal("the moved project was matched without asking GitLab")
	}
	e.hookReply(e.deliver(gitlabtest.EventJob, multiSecret, e.jobHook(p, 9101, "running"), ""), http.StatusAccepted)
	if n := e.gitlab.CountRequests(http.MethodGet, "/projects/*"); n != before {
		t.Errorf("%d more project lookups for a resolved egg", n-before)
	}
}

func hasWarning(ws []string, parts ...string) bool {
	for _, w := range ws {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

func permutations(xs []string) [][]string {
	if len(xs) <= 1 {
		return [][]string{append([]string(nil), xs...)}
	}
	var out [][]string
	for i := range xs {
		rest := append(append([]string(nil), xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{xs[i]}, p...))
		}
	}
	return out
}

// TestJobEventPermutations: every order of a job's pending, running and
// success deliveries, for a serverless egg (its gate starts a runner
// workflow per job) and a pooled egg, ends with the same history; the
// gate or pool hears of the job as demand only while it still needs a
// runner (a pending that comes after running or success asks for
// nothing), and late statuses are not passed on.
func TestJobEventPermutations(t *testing.T) {
	t.Parallel()
	var slProject, vmProject gitlabtest.Project
	e := newEnv(t, envOptions{dispatch: mothergoose.ByRunnerKind, eggs: func(e *env) []fly.Egg {
		if slProject.ID == 0 {
			g := e.gitlab.AddGroup("perm", 0)
			slProject, vmProject = e.gitlab.AddProject("serverless", g.ID), e.gitlab.AddProject("pooled", g.ID)
		}
		gl := fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://hooks/web"}
		return []fly.Egg{
			{Name: "perm-sl", Kind: fly.KindEgg, Version: "v1", GitLab: gl, Projects: []fly.ProjectRef{{ID: slProject.ID}}, Runner: testRunner(fly.RunnerServerless)},
			{Name: "perm-vm-" + strings.ReplaceAll(e.host, ":", "-"), Kind: fly.KindEgg, Version: "v1", GitLab: gl, Projects: []fly.ProjectRef{{ID: vmProject.ID}}, Runner: testRunner(fly.RunnerVM)},
		}
	}})
	ctx := context.Background()
	tc := devServer(t).Client()
	poolID := contract.PoolWorkflowID("perm-vm-" + strings.ReplaceAll(e.host, ":", "-"))
	terminate(t, tc, poolID)
	gateID := contract.GateWorkflowID("perm-sl")
	terminate(t, tc, gateID)
	demanded := map[int64][]int64{}

	created := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	started, finished := created.Add(time.Minute), created.Add(3*time.Minute)
	payload := func(p gitlabtest.Project, jobID int64, status string) []byte {
		e.ensureJob(p, jobID)
		spec := gitlabtest.JobHookSpec{Project: e.hookProject(p), JobID: jobID, Name: "unit", Status: status, PipelineID: 77, CreatedAt: created}
		switch status {
		case "running":
			spec.StartedAt, spec.QueuedDuration = &started, time.Minute
		case "success":
			spec.StartedAt, spec.FinishedAt, spec.Duration, spec.QueuedDuration = &started, &finished, 2*time.Minute, time.Minute
		}
		return gitlabtest.JobHookPayload(spec)
	}
	for i, order := range permutations([]string{"pending", "running", "success"}) {
		for _, p := range []gitlabtest.Project{slProject, vmProject} {
			jobID := int64(50000 + i*10 + int(p.ID%10))
			wfID := contract.RunnerWorkflowID(e.host, jobID)
			if p.ID == slProject.ID {
				terminate(t, tc, wfID)
			}
			var passed []string
			for _, status := range order {
				hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, payload(p, jobID, status), ""), http.StatusAccepted)
				if hr.WorkflowID != "" {
					passed = append(passed, status)
				}
			}
			what := fmt.Sprintf("%s %v", p.PathWithNamespace, order)
			rec, err := e.store.GetJob(ctx, e.host, jobID)
			if err != nil || rec.Status != "success" || rec.FinishedAt == nil || !rec.FinishedAt.Equal(finished) ||
				rec.StartedAt == nil || !rec.StartedAt.Equal(started) || rec.QueuedAt == nil || !rec.QueuedAt.Equal(created) {
				t.Errorf("%s: history %+v %v", what, rec, err)
			}
			// Passed on: every status from the first one on that is not
			// behind what the job reached before it.
			var want []string
			reached := 0
			rank := map[string]int{"pending": 1, "running": 2, "success": 3}
			for _, s := range order {
				if rank[s] >= reached {
					reached = rank[s]
					want = append(want, s)
				}
			}
			if order[0] == "pending" {
				demanded[p.ID] = append(demanded[p.ID], jobID)
			}
			if strings.Join(passed, ",") != strings.Join(want, ",") {
				t.Errorf("%s: passed on %v, want %v", what, passed, want)
			}
			if p.ID == vmProject.ID {
				continue
			}
			// The gate starts runner workflows; the webhook path never does.
			var nf *serviceerror.NotFound
			if _, err := tc.DescribeWorkflow(ctx, wfID, ""); !errors.As(err, &nf) {
				t.Errorf("%s: the webhook path started a runner workflow (%v)", what, err)
			}
		}
	}
	for wfID, p := range map[string]gitlabtest.Project{poolID: vmProject, gateID: slProject} {
		var demands []int64
		for _, ev := range history(t, tc, wfID) {
			a := ev.GetWorkflowExecutionSignaledEventAttributes()
			if a == nil || a.GetSignalName() != contract.SignalDemand {
				continue
			}
			var d contract.Demand
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &d); err != nil {
				t.Fatal(err)
			}
			demands = append(demands, d.Job.JobID)
		}
		if fmt.Sprint(demands) != fmt.Sprint(demanded[p.ID]) {
			t.Errorf("%s demands %v, want one for each job whose pending came first %v", wfID, demands, demanded[p.ID])
		}
	}
}
