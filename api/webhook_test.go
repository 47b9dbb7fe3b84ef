package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// history reads a workflow's events.
func history(t *testing.T, c client.Client, wfID string) []*historypb.HistoryEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.GetWorkflowHistory(ctx, wfID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var out []*historypb.HistoryEvent
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", wfID, err)
		}
		out = append(out, ev)
	}
	return out
}

// started decodes the input of a workflow's start event.
func started(t *testing.T, events []*historypb.HistoryEvent, input any) string {
	t.Helper()
	for _, ev := range events {
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), input); err != nil {
				t.Fatal(err)
			}
			return a.GetWorkflowType().GetName()
		}
	}
	t.Fatal("no start event")
	return ""
}

// signals decodes every job-status signal of a workflow, in order.
func signals(t *testing.T, events []*historypb.HistoryEvent) []contract.JobStatus {
	t.Helper()
	var out []contract.JobStatus
	for _, ev := range events {
		a := ev.GetWorkflowExecutionSignaledEventAttributes()
		if a == nil {
			continue
		}
		if a.GetSignalName() != contract.SignalJobStatus {
			t.Errorf("signal %q", a.GetSignalName())
		}
		var st contract.JobStatus
		if err := converter.GetDefaultDataConverter().FromPayloads(a.GetInput(), &st); err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
	}
	return out
}

func statuses(sts []contract.JobStatus) string {
	var s []string
	for _, st := range sts {
		s = append(s, st.Status)
	}
	return strings.Join(s, ",")
}

func terminate(t *testing.T, c client.Client, wfID string) {
	t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), wfID, "", "test over") })
}

// TestWebhookRefusals walks every refusal with real-shaped payloads: the
// right status, a JSON error, and no trace in the store.
func TestWebhookRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pending := e.jobHook(e.web, 11, "pending")
	stranger := e.gitlab.AddProject("stranger/app", 0)
	mr := []byte(fmt.Sprintf(`{"object_kind":"merge_request","event_type":"merge_request","project":{"id":%d,"path_with_namespace":%q,"web_url":"%s/%s"},"object_attributes":{"iid":1}}`,
		e.web.ID, e.web.PathWithNamespace, e.gitlab.URL(), e.web.PathWithNamespace))

	tests := []struct {
		name   string
		event  string
		token  string
		body   []byte
		header map[string]string
		status int
		error  string
	}{
		{"too large", gitlabtest.EventJob, webSecret, bytes.Repeat([]byte(" "), 25<<20+1), nil, http.StatusRequestEntityTooLarge, "payload too large"},
		{"no event header", "", webSecret, pending, nil, http.StatusUnprocessableEntity, "unknown event"},
		{"not a GitLab event", "Jobs Hook", webSecret, pending, nil, http.StatusUnprocessableEntity, "unknown event"},
		{"not JSON", gitlabtest.EventJob, webSecret, []byte(`{"object_kind":`), nil, http.StatusBadRequest, "bad payload"},
		{"no object_kind", gitlabtest.EventJob, webSecret, bytes.Replace(pending, []byte(`"object_kind":"build"`), []byte(`"object_kind":""`), 1), nil, http.StatusBadRequest, "bad payload"},
		{"object_kind of another event", gitlabtest.EventPipeline, webSecret, pending, nil, http.StatusBadRequest, "bad payload"},
		{"no project", gitlabtest.EventJob, webSecret, []byte(`{"object_kind":"build","build_id":1,"build_status":"pending"}`), nil, http.StatusBadRequest, "bad payload"},
		{"no build_id", gitlabtest.EventJob, webSecret, []byte(`{"object_kind":"build","build_status":"pending","project_id":1,"project":{"id":1}}`), nil, http.StatusBadRequest, "bad payload"},
		{"wrong JSON type", gitlabtest.EventJob, webSecret, []byte(`{"object_kind":"build","build_id":"1"}`), nil, http.StatusBadRequest, "bad payload"},
		{"no instance", gitlabtest.EventJob, webSecret, []byte(`{"object_kind":"build","build_id":1,"build_status":"pending","project_id":1}`), map[string]string{"X-Gitlab-Instance": ""}, http.StatusBadRequest, "bad payload"},
		{"no token", gitlabtest.EventJob, "", pending, nil, http.StatusUnauthorized, "unauthorized"},
		{"token of no egg", gitlabtest.EventJob, "guess", pending, nil, http.StatusUnauthorized, "unauthorized"},
		{"token of no egg, unknown project", gitlabtest.EventJob, "guess", e.jobHook(stranger, 12, "pending"), nil, http.StatusUnauthorized, "unauthorized"},
		{"token of an egg on another host", gitlabtest.EventJob, webSecret, pending, map[string]string{"X-Gitlab-Instance": "https://gitlab.com"}, http.StatusUnauthorized, "unauthorized"},
		{"unknown project", gitlabtest.EventJob, webSecret, e.jobHook(stranger, 13, "pending"), nil, http.StatusNotFound, "unknown project"},
		{"token of another egg", gitlabtest.EventJob, multiSecret, pending, nil, http.StatusUnauthorized, "unauthorized"},
		{"ignored event, token of no egg", "Merge Request Hook", "guess", mr, nil, http.StatusUnauthorized, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := e.gitlab.HookRequest(context.Background(), e.url("/webhooks/gitlab"), tc.event, tc.token, tc.body, "key-"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if tc.event == "" {
				req.Header.Del("X-Gitlab-Event")
			}
			for k, v := range tc.header {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			r := do(t, req)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if msg, _ := r.errorBody(t); msg != tc.error {
				t.Errorf("error %q, want %q", msg, tc.error)
			}
		})
	}
	jobs, err := e.store.ListJobs(context.Background(), store.JobFilter{})
	if err != nil || len(jobs) != 0 {
		t.Errorf("refused deliveries recorded jobs: %+v %v", jobs, err)
	}
	if depth, _ := e.store.OutboxDepth(context.Background()); depth != 0 {
		t.Errorf("refused deliveries queued %d outbox entries", depth)
	}
	// A refused delivery, resent right, is processed: nothing remembered it.
	r := e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 14, "running"), "key-no token")
	if hr := e.hookReply(r, http.StatusAccepted); hr.Status != api.StatusAccepted {
		t.Errorf("resent delivery: %+v", hr)
	}

	scrape := do(t, mustRequest(t, "GET", e.url("/metrics")))
	for _, want := range []string{
		`gosling_webhooks_total{event="job",result="too_large"} 1`,
		`gosling_webhooks_total{event="unknown",result="bad_event"} 2`,
		`gosling_webhooks_total{event="job",result="unknown_project"} 1`,
		`gosling_webhooks_total{event="merge_request",result="unauthorized"} 1`,
	} {
		if !strings.Contains(string(scrape.Body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestIgnoredEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// Merge requests of a served project are recorded (announce_test.go).
	issue := []byte(fmt.Sprintf(`{"object_kind":"issue","project":{"id":%d,"path_with_namespace":%q}}`, e.web.ID, e.web.PathWithNamespace))
	hr := e.hookReply(e.deliver("Issue Hook", webSecret, issue, ""), http.StatusAccepted)
	if hr.Status != api.StatusIgnored || !strings.Contains(hr.Reason, "Issue Hook") {
		t.Errorf("issue: %+v", hr)
	}
	tag := []byte(fmt.Sprintf(`{"object_kind":"tag_push","ref":"refs/tags/v1","project_id":%d}`, e.web.ID))
	if hr := e.hookReply(e.deliver("Tag Push Hook", webSecret, tag, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("tag push: %+v", hr)
	}
	system := []byte(`{"event_name":"project_create","name":"x"}`)
	if hr := e.hookReply(e.deliver("System Hook", dataSecret, system, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("system hook: %+v", hr)
	}
	// A push to a project that is not the Nest repository.
	push := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: e.hookProject(e.web)})
	if hr := e.hookReply(e.deliver(gitlabtest.EventPush, webSecret, push, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("push to an egg: %+v", hr)
	}
	if e.reloads.Load() != 0 {
		t.Error("a push to an egg reloaded the Nest")
	}
}

// TestJobLifecycle follows one job from pending to success: the workflow is
// started with the right ID and input, every status is signalled in order
// and recorded.
func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tc := devServer(t).Client()
	job := e.gitlab.AddJob(e.web.ID, gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}})
	wfID := contract.RunnerWorkflowID(e.host, job.ID)
	terminate(t, tc, wfID)

	spec, _ := e.gitlab.JobHook(job.ID)
	start := time.Now()
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the webhook took %s", took)
	}
	if hr.Status != api.StatusAccepted || hr.WorkflowID != wfID {
		t.Fatalf("pending: %+v, want workflow %s", hr, wfID)
	}
	desc, err := tc.DescribeWorkflow(context.Background(), wfID, "")
	if err != nil {
		t.Fatal(err)
	}
	if info := desc.RawResponse.GetWorkflowExecutionInfo(); info.GetType().GetName() != "ProvisionRunner" || info.GetTaskQueue() != contract.TaskQueueMotherGoose {
		t.Errorf("workflow %s on %s", info.GetType().GetName(), info.GetTaskQueue())
	}
	var in contract.ProvisionRunnerInput
	if name := started(t, history(t, tc, wfID), &in); name != "ProvisionRunner" {
		t.Errorf("started %s", name)
	}
	wantJob := contract.JobRef{Host: e.host, ProjectID: e.web.ID, ProjectPath: e.web.PathWithNamespace, JobID: job.ID, Name: "unit"}
	if in.RunnerID != contract.RunnerIDFor("web", wfID) || in.Egg.Name != "web" || in.Egg.Version != "web-v1" || in.Job == nil ||
		fmt.Sprint(*in.Job) != fmt.Sprint(wantJob) || in.Cloud != fly.CloudLocal || in.Provider.StateDir != "/tmp/gosling-test" {
		t.Errorf("input = %+v, job %+v", in, in.Job)
	}
	if len(in.Job.Tags) != 0 {
		t.Error("the webhook path made up job tags; the workflow reads them")
	}
	rec, err := e.store.GetJob(context.Background(), e.host, job.ID)
	if err != nil || rec.Status != "pending" || rec.Egg != "web" || rec.ProjectID != e.web.ID || rec.QueuedAt == nil || rec.PipelineID != job.PipelineID {
		t.Errorf("job record = %+v, %v", rec, err)
	}

	for _, status := range []string{"running", "success"} {
		e.gitlab.SetJobStatus(e.web.ID, job.ID, status, 0)
		spec, _ := e.gitlab.JobHook(job.ID)
		spec.Duration = 42 * time.Second
		hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted)
		if hr.Status != api.StatusAccepted || hr.WorkflowID != wfID || hr.Reason != "" {
			t.Errorf("%s: %+v", status, hr)
		}
	}
	if got := statuses(signals(t, history(t, tc, wfID))); got != "pending,running,success" {
		t.Errorf("signals %s", got)
	}
	rec, err = e.store.GetJob(context.Background(), e.host, job.ID)
	if err != nil || rec.Status != "success" || rec.StartedAt == nil || rec.FinishedAt == nil || rec.QueuedAt == nil {
		t.Errorf("job record = %+v, %v", rec, err)
	}
	scrape := string(do(t, mustRequest(t, "GET", e.url("/metrics"))).Body)
	for _, want := range []string{
		`gosling_webhooks_total{event="job",result="accepted"} 3`,
		`gosling_job_duration_seconds_sum{egg="web",status="success"} 42`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Queue time is what a Gosling runner's agent measures, not a hook.
	if strings.Contains(scrape, `gosling_job_queue_seconds_count{egg="web"}`) {
		t.Error("a hook observed the job's queue time")
	}

	// A status for a job whose workflow does not exist is fine.
	hr = e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 987654, "failed"), ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || !strings.Contains(hr.Reason, "no workflow") {
		t.Errorf("unknown job: %+v", hr)
	}
	// Statuses before pending are only recorded.
	hr = e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 987655, "created"), ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || hr.WorkflowID != "" {
		t.Errorf("created: %+v", hr)
	}
}

// TestParallelDuplicates sends one delivery 20 times at once: one is
// processed, the others are duplicates, and one workflow gets one signal.
func TestParallelDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tc := devServer(t).Client()
	body := e.jobHook(e.web, 4242, "pending")
	wfID := contract.RunnerWorkflowID(e.host, 4242)
	terminate(t, tc, wfID)

	const n = 20
	var (
		wg      sync.WaitGroup
		replies = make([]reply, n)
		start   = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			req, err := e.gitlab.HookRequest(context.Background(), e.url("/webhooks/gitlab"), gitlabtest.EventJob, webSecret, body, "same-key")
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			replies[i] = reply{Status: resp.StatusCode}
		})
	}
	close(start)
	wg.Wait()
	accepted, duplicates := 0, 0
	for _, r := range replies {
		switch r.Status {
		case http.StatusAccepted:
			accepted++
		case http.StatusOK:
			duplicates++
		}
	}
	if accepted != 1 || duplicates != n-1 {
		t.Errorf("%d accepted, %d duplicates, want 1 and %d", accepted, duplicates, n-1)
	}
	events := history(t, tc, wfID)
	if got := statuses(signals(t, events)); got != "pending" {
		t.Errorf("signals %q, want one pending", got)
	}
	var in contract.ProvisionRunnerInput
	started(t, events, &in)
	if in.Job == nil || in.Job.JobID != 4242 {
		t.Errorf("input %+v", in)
	}
	// The same event without Idempotency-Key but with the same event UUID
	// is recognised too.
	req := func() reply {
		r, err := e.gitlab.HookRequest(context.Background(), e.url("/webhooks/gitlab"), gitlabtest.EventJob, webSecret, e.jobHook(e.web, 4243, "running"), "")
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Del("Idempotency-Key")
		r.Header.Set("X-Gitlab-Event-UUID", "event-uuid-1")
		return do(t, r)
	}
	if r := req(); r.Status != http.StatusAccepted {
		t.Fatalf("first: %d %s", r.Status, r.Body)
	}
	if hr := e.hookReply(req(), http.StatusOK); hr.Status != api.StatusDuplicate {
		t.Errorf("second: %+v", hr)
	}
}

func TestBucketAndGroupMatching(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cases := []struct {
		project gitlabtest.Project
		secret  string
		egg     string
	}{
		{e.multiA, multiSecret, "multi"}, // listed as ACME/API
		{e.multiB, multiSecret, "multi"},
		{e.etl, dataSecret, "data"},
		{e.ml, dataSecret, "data"}, // in a subgroup
	}
	for i, c := range cases {
		id := int64(7000 + i)
		hr := e.hookReply(e.deliver(gitlabtest.EventJob, c.secret, e.jobHook(c.project, id, "running"), ""), http.StatusAccepted)
		if hr.Status != api.StatusAccepted {
			t.Errorf("%s: %+v", c.project.PathWithNamespace, hr)
		}
		rec, err := e.store.GetJob(context.Background(), e.host, id)
		if err != nil || rec.Egg != c.egg {
			t.Errorf("%s: recorded %+v, %v; want egg %s", c.project.PathWithNamespace, rec, err, c.egg)
		}
	}
	if n := e.gitlab.CountRequests("GET", "/groups/*"); n != 1 {
		t.Errorf("the group was looked up %d times, want once per egg version", n)
	}
	// Without subgroups, a project of a subgroup is nobody's.
	nest := e.makeNest("v3")
	nest.Eggs[0].Group.IncludeSubgroups = false
	e.apply(nest)
	if r := e.deliver(gitlabtest.EventJob, dataSecret, e.jobHook(e.ml, 7100, "running"), ""); r.Status != http.StatusNotFound {
		t.Errorf("subgroup project without include_subgroups: %d %s", r.Status, r.Body)
	}
	if r := e.deliver(gitlabtest.EventJob, dataSecret, e.jobHook(e.etl, 7101, "running"), ""); r.Status != http.StatusAccepted {
		t.Errorf("group project without include_subgroups: %d %s", r.Status, r.Body)
	}
	if n := e.gitlab.CountRequests("GET", "/groups/*"); n != 2 {
		t.Errorf("%d group lookups, want a second one for the new egg version", n)
	}
	// GitLab down while a group is needed: 503, and nothing remembered.
	e.apply(e.makeNest("v4"))
	e.gitlab.FailNext("GET", "/groups/*", http.StatusInternalServerError, 100, false)
	if r := e.deliver(gitlabtest.EventJob, dataSecret, e.jobHook(e.etl, 7102, "running"), "group-down"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("group lookup failing: %d %s", r.Status, r.Body)
	}
	e.gitlab.ClearFaults()
	if r := e.deliver(gitlabtest.EventJob, dataSecret, e.jobHook(e.etl, 7102, "running"), "group-down"); r.Status != http.StatusAccepted {
		t.Errorf("resend after GitLab came back: %d %s", r.Status, r.Body)
	}
}

func TestPipelineHookRecordsBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	pl, err := e.gitlab.CreatePipeline(e.web.ID, gitlabtest.PipelineSpec{Ref: "feature", Jobs: []gitlabtest.JobSpec{
		{Name: "compile", Stage: "build"}, {Name: "unit", Stage: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	jobs := e.gitlab.PipelineJobs(pl.ID)
	startedAt := time.Now().Add(-time.Minute).Truncate(time.Second)
	builds := []gitlabtest.PipelineBuild{
		{ID: jobs[0].ID, Stage: "build", Name: "compile", Status: "success", StartedAt: &startedAt, QueuedDuration: 5 * time.Second, Duration: 30 * time.Second},
		{ID: jobs[1].ID, Stage: "test", Name: "unit", Status: "pending"},
	}
	body := gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{
		Project: e.hookProject(e.web), PipelineID: pl.ID, Status: "running", Ref: "feature", Builds: builds,
	})
	hr := e.hookReply(e.deliver(gitlabtest.EventPipeline, webSecret, body, ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted {
		t.Fatalf("pipeline: %+v", hr)
	}
	a, err := e.store.GetJob(context.Background(), e.host, jobs[0].ID)
	if err != nil || a.Status != "success" || a.Name != "compile" || a.PipelineID != pl.ID || a.Ref != "feature" || a.Egg != "web" ||
		a.QueuedAt == nil || !a.QueuedAt.Equal(startedAt.Add(-5*time.Second)) {
		t.Errorf("build %d = %+v, %v", jobs[0].ID, a, err)
	}
	if b, err := e.store.GetJob(context.Background(), e.host, jobs[1].ID); err != nil || b.Status != "pending" {
		t.Errorf("build %d = %+v, %v", jobs[1].ID, b, err)
	}

	// Builds that are not the pipeline's jobs (another project's, or none
	// GitLab has) are left out and audited; the pipeline's own are kept.
	foreign := e.gitlab.AddJob(e.multiA.ID, gitlabtest.JobSpec{Name: "secret-build"})
	forged := gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{
		Project: e.hookProject(e.web), PipelineID: pl.ID, Status: "running", Ref: "feature",
		Builds: append(builds, gitlabtest.PipelineBuild{ID: foreign.ID, Stage: "test", Name: "x", Status: "success"},
			gitlabtest.PipelineBuild{ID: 987654, Stage: "test", Name: "y", Status: "success"}),
	})
	hr = e.hookReply(e.deliver(gitlabtest.EventPipeline, webSecret, forged, ""), http.StatusAccepted)
	if !strings.Contains(hr.Reason, "2 builds are not the project's jobs") {
		t.Errorf("forged builds: %+v", hr)
	}
	for _, id := range []int64{foreign.ID, 987654} {
		if _, err := e.store.GetJob(context.Background(), e.host, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("forged build %d was recorded: %v", id, err)
		}
	}
	// A pipeline the project does not have is refused whole.
	other := gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{
		Project: e.hookProject(e.web), PipelineID: 424242, Status: "running", Builds: []gitlabtest.PipelineBuild{{ID: 987655, Name: "z", Status: "pending"}},
	})
	if r := e.deliver(gitlabtest.EventPipeline, webSecret, other, ""); r.Status != http.StatusNotFound {
		t.Errorf("unknown pipeline: %d %s", r.Status, r.Body)
	}
	recs, _ := e.store.ListAudit(context.Background(), store.AuditFilter{Egg: "web"})
	refused := 0
	for _, r := range recs {
		if r.Action == "webhook-refused" {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("refusals audited: %d, want 2: %+v", refused, recs)
	}
}

func TestPushReloadsNest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	if cfg, err := e.store.GetEggConfig(ctx, "web"); err != nil || cfg.Version != "web-v1" {
		t.Fatalf("egg config at start: %+v, %v", cfg, err)
	}
	other := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: e.hookProject(e.nestRepo), Ref: "refs/heads/feature"})
	if hr := e.hookReply(e.deliver(gitlabtest.EventPush, nestSecret, other, ""), http.StatusAccepted); hr.Status != api.StatusIgnored {
		t.Errorf("push to another branch: %+v", hr)
	}
	// A push to the Nest carries the Nest's own secret: an egg's secret,
	// or a stranger's, applies nothing.
	push := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: e.hookProject(e.nestRepo), Ref: "refs/heads/main", After: strings.Repeat("ab", 20)})
	for _, token := range []string{"guess", multiSecret, webSecret} {
		if r := e.deliver(gitlabtest.EventPush, token, push, ""); r.Status != http.StatusUnauthorized || e.reloads.Load() != 0 {
			t.Errorf("push with token %q: %d %s, %d reloads", token, r.Status, r.Body, e.reloads.Load())
		}
	}
	hr := e.hookReply(e.deliver(gitlabtest.EventPush, nestSecret, push, "push-1"), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || e.reloads.Load() != 1 {
		t.Fatalf("push to the Nest: %+v, %d reloads", hr, e.reloads.Load())
	}
	// What is applied is the branch's head, whatever commit the payload
	// names.
	if ref := e.fetchedRef.Load(); ref == nil || *ref != "main" {
		t.Errorf("the push fetched the Nest at %v, want the head of main", ref)
	}
	if cfg, err := e.store.GetEggConfig(ctx, "web"); err != nil || cfg.Version != "web-v2" {
		t.Errorf("egg config after reload: %+v, %v", cfg, err)
	}
	audit, err := e.store.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(audit) != 1 || audit[0].Actor != "mothergoose" || audit[0].Action != "nest-apply" || !strings.Contains(audit[0].Reason, "refs/heads/main") {
		t.Errorf("audit = %+v, %v", audit, err)
	}
	if hr := e.hookReply(e.deliver(gitlabtest.EventPush, nestSecret, push, "push-1"), http.StatusOK); hr.Status != api.StatusDuplicate || e.reloads.Load() != 1 {
		t.Errorf("resent push: %+v", hr)
	}
}

// TestFailedProcessingIsForgotten: a delivery whose processing fails with a
// 5xx is forgotten, so GitLab's resend (same Idempotency-Key) is processed.
func TestFailedProcessingIsForgotten(t *testing.T) {
	t.Parallel()
	var calls int
	var mu sync.Mutex
	e := newEnv(t, envOptions{dispatch: func(nest *fly.Nest, egg *fly.Egg, ev mothergoose.JobEvent) (mothergoose.Intent, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch calls {
		case 1:
			return mothergoose.Intent{}, false, errors.New("dispatch broke")
		case 2:
			panic("dispatch panicked")
		}
		return mothergoose.Intent{}, false, nil
	}})
	body := e.jobHook(e.web, 31, "running")
	r := e.deliver(gitlabtest.EventJob, webSecret, body, "flaky")
	if r.Status != http.StatusInternalServerError {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if msg, detail := r.errorBody(t); msg != "internal error" || strings.Contains(detail, "dispatch broke") {
		t.Errorf("error %q %q: internals must stay in the log", msg, detail)
	}
	// The panic is a 500 too, logged with its stack, the request not dumped.
	if r := e.deliver(gitlabtest.EventJob, webSecret, body, "flaky"); r.Status != http.StatusInternalServerError {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "dispatch panicked") || !strings.Contains(logs, "dispatch broke") {
		t.Errorf("log lacks the failures:\n%s", logs)
	}
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, body, "flaky"), http.StatusAccepted); hr.Status != api.StatusAccepted {
		t.Errorf("third try: %+v", hr)
	}
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, body, "flaky"), http.StatusOK); hr.Status != api.StatusDuplicate {
		t.Errorf("after success: %+v", hr)
	}
}

// TestOutbox: with Temporal out of reach, deliveries are queued, 202; the
// dispatcher retries with backoff and delivers them in order once a
// Temporal server is reachable.
func TestOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, envOptions{temporal: unreachableTemporal(t), mutate: func(c *mothergoose.Config) { c.TemporalTimeout = 500 * time.Millisecond }})
	wfID := contract.RunnerWorkflowID(e.host, 61)

	start := time.Now()
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 61, "pending"), ""), http.StatusAccepted)
	if hr.Status != api.StatusQueued || hr.OutboxID == 0 || hr.WorkflowID != wfID {
		t.Fatalf("pending: %+v", hr)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("queueing took %s", took)
	}
	hr = e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 61, "running"), ""), http.StatusAccepted)
	if hr.Status != api.StatusQueued {
		t.Fatalf("running: %+v", hr)
	}
	if depth, err := e.store.OutboxDepth(ctx); err != nil || depth != 2 {
		t.Fatalf("outbox depth %d, %v", depth, err)
	}
	if rec, err := e.store.GetJob(ctx, e.host, 61); err != nil || rec.Status != "running" {
		t.Errorf("job record: %+v %v", rec, err)
	}
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 61, "success"), ""), http.StatusAccepted); hr.Status != api.StatusQueued {
		t.Errorf("success while queued: %+v", hr)
	}
	// A late pending is recorded (the job stays success) and not queued.
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 61, "pending"), ""), http.StatusAccepted); hr.Status != api.StatusAccepted || !strings.Contains(hr.Reason, "late pending") {
		t.Errorf("a late pending while queued: %+v", hr)
	}
	if depth, err := e.store.OutboxDepth(ctx); err != nil || depth != 3 {
		t.Fatalf("outbox depth %d, %v", depth, err)
	}

	// Old delivery keys go when the dispatcher starts; recent ones stay.
	for key, age := range map[string]time.Duration{"old": 8 * 24 * time.Hour, "recent": time.Hour} {
		if _, err := e.store.RecordDelivery(ctx, key, time.Now().Add(-age)); err != nil {
			t.Fatal(err)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.mg.RunOutbox(runCtx)
	}()
	t.Cleanup(func() { stop(); <-done })
	eventually(t, 10*time.Second, "a failed attempt", func() bool {
		due, err := e.store.DueOutbox(ctx, time.Now().Add(time.Hour), 0)
		return err == nil && len(due) > 0 && due[0].Attempts >= 2 && due[0].LastError != ""
	})

	if first, _ := e.store.RecordDelivery(ctx, "old", time.Now()); !first {
		t.Error("a delivery key older than the retention was kept")
	}
	if first, _ := e.store.RecordDelivery(ctx, "recent", time.Now()); first {
		t.Error("a recent delivery key was pruned")
	}

	// Temporal is back: a new dev server, and the client swapped.
	dev, err := startDev(t)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Stop() })
	e.mg.SetTemporal(dev.Client())
	eventually(t, 15*time.Second, "the outbox to drain", func() bool {
		depth, err := e.store.OutboxDepth(ctx)
		return err == nil && depth == 0
	})
	events := history(t, dev.Client(), wfID)
	var in contract.ProvisionRunnerInput
	if name := started(t, events, &in); name != "ProvisionRunner" || in.Job == nil || in.Job.JobID != 61 || in.Egg.Name != "web" {
		t.Errorf("replayed start: %s %+v", name, in)
	}
	if got := statuses(signals(t, events)); got != "pending,running,success" {
		t.Errorf("replayed signals %q, want them in the order accepted", got)
	}
	_ = dev.Client().TerminateWorkflow(ctx, wfID, "", "test over")
	scrape := string(do(t, mustRequest(t, "GET", e.url("/metrics"))).Body)
	if !strings.Contains(scrape, `gosling_outbox_deliveries_total{result="delivered"} 3`) || !strings.Contains(scrape, "gosling_outbox_depth 0") {
		t.Errorf("outbox metrics:\n%s", grep(scrape, "outbox"))
	}

	// Live again: no more queueing.
	hr = e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 61, "success"), ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted {
		t.Errorf("after recovery: %+v", hr)
	}
}

func grep(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWrongTokenBodyIsNotRead: a delivery with a wrong token is answered
// 401 from its headers, while its body is still being sent: the server
// reads none of it. A right token with a body over the limit is 413.
func TestWrongTokenBodyIsNotRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	req, err := http.NewRequest("POST", e.url("/webhooks/gitlab"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 24 << 20
	req.Header.Set("X-Gitlab-Event", gitlabtest.EventJob)
	req.Header.Set("X-Gitlab-Token", "not-a-secret")
	go func() { _, _ = pw.Write([]byte(`{"object_kind":"build",`)) }() // and nothing more
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401 before the body is read", resp.StatusCode)
	}

	big := e.jobHook(e.web, 71, "pending")
	big = append(big[:len(big)-1], []byte(`,"padding":"`+strings.Repeat("x", api.DefaultMaxWebhookBody)+`"}`)...)
	if r := e.deliver(gitlabtest.EventJob, webSecret, big, ""); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("right token, body over the limit: %d %s", r.Status, r.Body)
	}
}

// TestChunkedBodyTooLarge: a body without Content-Length is cut at the
// limit (api.DefaultMaxWebhookBody).
func TestChunkedBodyTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	body := io.MultiReader(strings.NewReader(`{"object_kind":"build","x":"`), io.LimitReader(zeros{}, 26<<20), strings.NewReader(`"}`))
	req, err := http.NewRequest("POST", e.url("/webhooks/gitlab"), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Event", gitlabtest.EventJob)
	req.Header.Set("X-Gitlab-Token", webSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The server may hang up before the client has sent everything.
		t.Logf("client: %v", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d", resp.StatusCode)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestPoolRouting: by default a VM egg's jobs go to the egg's pool workflow
// as demand (the first one starts it) and their statuses follow; a
// serverless egg's jobs go to the egg's gate the same way.
func TestPoolRouting(t *testing.T) {
	e := newEnv(t, envOptions{dispatch: mothergoose.ByRunnerKind})
	tc := devServer(t).Client()
	wfID := contract.PoolWorkflowID("web")
	terminate(t, tc, wfID)
	_ = tc.TerminateWorkflow(context.Background(), wfID, "", "test start")

	job := e.gitlab.AddJob(e.web.ID, gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}})
	spec, _ := e.gitlab.JobHook(job.ID)
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || hr.WorkflowID != wfID {
		t.Fatalf("pending: %+v, want workflow %s", hr, wfID)
	}
	desc, err := tc.DescribeWorkflow(context.Background(), wfID, "")
	if err != nil {
		t.Fatal(err)
	}
	if name := desc.RawResponse.GetWorkflowExecutionInfo().GetType().GetName(); name != "Pool" {
		t.Errorf("workflow type %s, want Pool", name)
	}
	spec.Status = "success"
	if hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted); hr.WorkflowID != wfID {
		t.Errorf("success: %+v", hr)
	}
	var signals []string
	iter := tc.GetWorkflowHistory(context.Background(), wfID, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil {
			signals = append(signals, a.GetSignalName())
		}
	}
	if strings.Join(signals, ",") != contract.SignalDemand+","+contract.SignalJobStatus {
		t.Errorf("signals = %v", signals)
	}

	egg := e.nest.Load().Eggs[0]
	egg.Runner.Type = fly.RunnerServerless
	in, ok, err := mothergoose.ByRunnerKind(e.nest.Load(), &egg, mothergoose.JobEvent{Host: e.host, ProjectID: e.web.ID, JobID: 77, Status: "pending"})
	if err != nil || !ok || in.WorkflowID != contract.GateWorkflowID(egg.Name) || in.Workflow != contract.WorkflowGate || in.Signal != contract.SignalDemand {
		t.Errorf("serverless egg: %+v %v %v", in, ok, err)
	}
}

// A job that failed because of its runner counts against that runner (for
// UglyFox's failed policy); a script failure does not, nor does another
// GitLab's runner with the same ID.
func TestRunnerFailuresCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	gr := e.gitlab.AddRunner(gitlabtest.Runner{ProjectID: e.web.ID, Description: "gosling/web/web-p1"})
	gr3 := e.gitlab.AddRunner(gitlabtest.Runner{ProjectID: e.web.ID, Description: "gosling/web/web-p3"})
	mine := &store.Runner{ID: "web-p1", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, GitLabRunnerID: gr.ID}
	other := &store.Runner{ID: "web-p2", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: "elsewhere.example.com", GitLabRunnerID: gr.ID}
	for _, r := range []*store.Runner{mine, other} {
		if err := e.store.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	fail := func(jobID int64, reason string) {
		e.ensureJob(e.web, jobID)
		e.gitlab.SetJobStatus(e.web.ID, jobID, "failed", gr.ID)
		now := time.Now()
		started := now.Add(-time.Minute)
		spec := gitlabtest.JobHookSpec{Project: e.hookProject(e.web), JobID: jobID, Name: "unit", Status: "failed", PipelineID: 7,
			StartedAt: &started, FinishedAt: &now, Duration: time.Minute, FailureReason: reason, Runner: &gitlabtest.HookRunner{ID: gr.ID, Description: "gosling/web/web-p1"}}
		if r := e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""); r.Status >= 300 {
			t.Fatalf("failed hook: %d %s", r.Status, r.Body)
		}
	}
	fail(501, "runner_system_failure")
	fail(502, "script_failure")
	fail(503, "runner_system_failure")
	got, _ := e.store.GetRunner(ctx, "web-p1")
	untouched, _ := e.store.GetRunner(ctx, "web-p2")
	if got.Failures != 2 || untouched.Failures != 0 {
		t.Errorf("failures: mine %d, other GitLab's %d", got.Failures, untouched.Failures)
	}
	recs, _ := e.store.ListAudit(ctx, store.AuditFilter{RunnerID: "web-p1"})
	if len(recs) != 2 || recs[1].Action != "runner-failure" || !strings.Contains(recs[1].Reason, "job 503") {
		t.Errorf("audit = %+v", recs)
	}

	// With UglyFox's failed.window, only failures within it count.
	n := e.makeNest("v1")
	n.UglyFox.Failed.Window = fly.Duration(time.Hour)
	e.apply(n)
	old := time.Now().Add(-2 * time.Hour)
	for i := range 2 {
		if _, err := e.store.AppendAudit(ctx, store.AuditRecord{At: old, Actor: "mothergoose", Action: "runner-failure", Egg: "web", RunnerID: "web-p3", Reason: fmt.Sprint("old ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	windowed := &store.Runner{ID: "web-p3", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, GitLabRunnerID: gr3.ID, Failures: 2}
	if err := e.store.CreateRunner(ctx, windowed); err != nil {
		t.Fatal(err)
	}
	e.ensureJob(e.web, 504)
	e.gitlab.SetJobStatus(e.web.ID, 504, "failed", gr3.ID)
	now := time.Now()
	started := now.Add(-time.Minute)
	spec := gitlabtest.JobHookSpec{Project: e.hookProject(e.web), JobID: 504, Name: "unit", Status: "failed", PipelineID: 7,
		StartedAt: &started, FinishedAt: &now, Duration: time.Minute, FailureReason: "runner_system_failure", Runner: &gitlabtest.HookRunner{ID: gr3.ID}}
	if r := e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""); r.Status >= 300 {
		t.Fatalf("failed hook: %d %s", r.Status, r.Body)
	}
	if got, _ := e.store.GetRunner(ctx, "web-p3"); got.Failures != 1 {
		t.Errorf("failures within the window = %d, want 1 (two are older than it)", got.Failures)
	}
}

// Machines sharing the egg's GitLab runner (runner managers) are told
// apart by their agents' job reports: a runner failure counts against the
// machine that reported the job, and against none when no machine did.
func TestRunnerFailuresCountedOnSharedRunner(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	gr := e.gitlab.AddRunner(gitlabtest.Runner{ProjectID: e.web.ID, Description: "gosling/web/shared"})
	for _, id := range []string{"web-s1", "web-s2"} {
		agentRef := "local://runners/" + id + "/agent"
		if _, err := e.secrets.Put(ctx, fly.SecretRef(agentRef), "gsa-"+id); err != nil {
			t.Fatal(err)
		}
		r := &store.Runner{ID: id, Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, GitLabRunnerID: gr.ID, AgentRef: agentRef}
		if err := e.store.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// Machine two's agent reports job 601; nobody reports job 602.
	if got := e.post("/agent/v1/runners/web-s2/jobs", "gsa-web-s2", agentapi.JobReport{JobID: 601, Status: agentapi.JobFailed, FailureReason: "runner_system_failure"}); got.Status != http.StatusNoContent {
		t.Fatalf("job report: %d %s", got.Status, got.Body)
	}
	for _, jobID := range []int64{601, 602} {
		e.ensureJob(e.web, jobID)
		e.gitlab.SetJobStatus(e.web.ID, jobID, "failed", gr.ID)
		now := time.Now()
		started := now.Add(-time.Minute)
		spec := gitlabtest.JobHookSpec{Project: e.hookProject(e.web), JobID: jobID, Name: "unit", Status: "failed", PipelineID: 7,
			StartedAt: &started, FinishedAt: &now, Duration: time.Minute, FailureReason: "runner_system_failure", Runner: &gitlabtest.HookRunner{ID: gr.ID, Description: "gosling/web/shared"}}
		if r := e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""); r.Status >= 300 {
			t.Fatalf("failed hook of job %d: %d %s", jobID, r.Status, r.Body)
		}
	}
	one, _ := e.store.GetRunner(ctx, "web-s1")
	two, _ := e.store.GetRunner(ctx, "web-s2")
	if one.Failures != 0 || two.Failures != 1 {
		t.Errorf("failures: machine one %d, machine two %d; want 0 and 1", one.Failures, two.Failures)
	}
	recs, _ := e.store.ListAudit(ctx, store.AuditFilter{Egg: "web"})
	refused := false
	for _, r := range recs {
		refused = refused || (r.Action == "webhook-refused" && strings.Contains(r.Reason, "job 602") && strings.Contains(r.Reason, "none reported the job"))
	}
	if !refused {
		t.Errorf("the unreported failure is not audited as counting against no machine: %+v", recs)
	}
	// The job's record keeps its project and egg from the hooks.
	if rec, err := e.store.GetJob(ctx, e.host, 601); err != nil || rec.RunnerID != "web-s2" || rec.ProjectID != e.web.ID || rec.Egg != "web" {
		t.Errorf("job 601 = %+v, %v", rec, err)
	}
}
