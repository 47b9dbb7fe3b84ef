package gitlabtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// The payloads are checked against client-go's own webhook types, which
// follow GitLab's data builders.
func TestJobHookPayloadShape(t *testing.T) {
	created := time.Date(2024, 6, 11, 3, 2, 25, 0, time.UTC)
	started := created.Add(90 * time.Second)
	body := gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{
		Project: gitlabtest.HookProject{ID: 42, PathWithNamespace: "acme/platform/web", BaseURL: "https://gitlab.example.com"},
		JobID:   1977, Name: "unit", Stage: "test", Status: "running", PipelineID: 2366,
		CreatedAt: created, StartedAt: &started, QueuedDuration: 90 * time.Second,
		Runner: &gitlabtest.HookRunner{ID: 7, Description: "gosling/web/r1", Tags: []string{"docker"}},
	})
	ev, err := gl.ParseWebhook(gl.EventTypeJob, body)
	if err != nil {
		t.Fatal(err)
	}
	job := ev.(*gl.JobEvent)
	if job.ObjectKind != "build" || job.BuildID != 1977 || job.BuildStatus != "running" || job.ProjectID != 42 ||
		job.Project.PathWithNamespace != "acme/platform/web" || job.ProjectName != "acme / platform / web" ||
		job.Commit.ID != 2366 || job.PipelineID != 2366 || job.Runner.ID != 7 || job.BuildQueuedDuration != 90 ||
		job.User.Email != "[REDACTED]" || job.BuildFailureReason != "unknown_failure" ||
		job.Project.WebURL != "https://gitlab.example.com/acme/platform/web" {
		t.Errorf("job event = %+v", job)
	}
	if job.BuildCreatedAt != "2024-06-11 03:02:25 UTC" || job.BuildCreatedAtISO != "2024-06-11T03:02:25Z" || job.BuildStartedAt != "2024-06-11 03:03:55 UTC" {
		t.Errorf("timestamps: %q %q %q", job.BuildCreatedAt, job.BuildCreatedAtISO, job.BuildStartedAt)
	}

	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"build_finished_at", "build_finished_at_iso", "build_duration", "environment"} {
		if v, ok := raw[key]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", key, v, ok)
		}
	}
	if _, ok := raw["tag_list"]; ok {
		t.Error("a Job Hook carries no job tags")
	}

	pending := gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: gitlabtest.HookProject{ID: 1, PathWithNamespace: "a/b"}, JobID: 5, OldTimestamps: true, NoISO: true})
	raw = nil
	if err := json.Unmarshal(pending, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["runner"] != nil || raw["build_status"] != "pending" {
		t.Errorf("pending job: runner %v, status %v", raw["runner"], raw["build_status"])
	}
	if _, ok := raw["build_created_at_iso"]; ok {
		t.Error("NoISO left build_created_at_iso in")
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`).MatchString(raw["build_created_at"].(string)) {
		t.Errorf("old timestamp format: %v", raw["build_created_at"])
	}
}

func TestJobHookFromServer(t *testing.T) {
	s, _ := setup(t)
	g := s.AddGroup("acme", 0)
	p := s.AddProject("web", g.ID)
	j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "lint", Tags: []string{"docker"}})
	spec, ok := s.JobHook(j.ID)
	if !ok || spec.JobID != j.ID || spec.Status != "pending" || spec.Project.PathWithNamespace != "acme/web" || spec.Runner != nil {
		t.Fatalf("JobHook = %+v, %v", spec, ok)
	}
	if _, ok := s.JobHook(999); ok {
		t.Error("JobHook of a missing job")
	}
	ev, err := gl.ParseWebhook(gl.EventTypeJob, gitlabtest.JobHookPayload(spec))
	if err != nil {
		t.Fatal(err)
	}
	if job := ev.(*gl.JobEvent); !strings.HasPrefix(job.Project.WebURL, s.URL()) || job.Runner.ID != 0 {
		t.Errorf("job event from server = %+v", job)
	}
}

func TestPipelineHookPayloadShape(t *testing.T) {
	body := gitlabtest.PipelineHookPayload(gitlabtest.PipelineHookSpec{
		Project: gitlabtest.HookProject{ID: 42, PathWithNamespace: "acme/web"}, PipelineID: 31, Status: "success",
		Builds: []gitlabtest.PipelineBuild{
			{ID: 380, Stage: "build", Name: "compile", Status: "success", QueuedDuration: 3 * time.Second, Duration: time.Minute},
			{ID: 381, Stage: "deploy", Name: "production", Status: "manual", Manual: true},
		},
	})
	ev, err := gl.ParseWebhook(gl.EventTypePipeline, body)
	if err != nil {
		t.Fatal(err)
	}
	p := ev.(*gl.PipelineEvent)
	if p.ObjectKind != "pipeline" || p.ObjectAttributes.ID != 31 || p.Project.PathWithNamespace != "acme/web" || len(p.Builds) != 2 ||
		p.Builds[0].QueuedDuration != 3 || p.Builds[1].When != "manual" || len(p.Commit.ID) != 40 ||
		strings.Join(p.ObjectAttributes.Stages, ",") != "build,deploy" {
		t.Errorf("pipeline event = %+v", p)
	}
}

func TestPushHookPayloadShape(t *testing.T) {
	body := gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: gitlabtest.HookProject{ID: 9, PathWithNamespace: "ops/nest"}, Ref: "refs/heads/main", Commits: []string{"a", "b"}})
	ev, err := gl.ParseWebhook(gl.EventTypePush, body)
	if err != nil {
		t.Fatal(err)
	}
	p := ev.(*gl.PushEvent)
	if p.ObjectKind != "push" || p.ProjectID != 9 || p.Project.PathWithNamespace != "ops/nest" || p.Ref != "refs/heads/main" ||
		p.TotalCommitsCount != 2 || p.Commits[1].ID != p.After || p.CheckoutSHA != p.After {
		t.Errorf("push event = %+v", p)
	}
}

func TestDeliverHeaders(t *testing.T) {
	s, _ := setup(t)
	type seen struct {
		header http.Header
		body   string
	}
	got := make(chan seen, 2)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Clone(), string(b)}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer receiver.Close()

	body := gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: gitlabtest.HookProject{ID: 1, PathWithNamespace: "a/b"}, JobID: 5})
	for range 2 {
		resp, err := s.Deliver(context.Background(), receiver.URL+"/webhooks/gitlab", gitlabtest.EventJob, "s3cret", body, "idem-1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	a, b := <-got, <-got
	h := a.header
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if h.Get("X-Gitlab-Event") != "Job Hook" || h.Get("X-Gitlab-Token") != "s3cret" || h.Get("X-Gitlab-Instance") != s.URL() ||
		h.Get("Idempotency-Key") != "idem-1" || h.Get("User-Agent") != "GitLab/18.6.0" || h.Get("Content-Type") != "application/json" ||
		!uuid.MatchString(h.Get("X-Gitlab-Webhook-UUID")) || !uuid.MatchString(h.Get("X-Gitlab-Event-UUID")) || a.body != string(body) {
		t.Errorf("headers = %v", h)
	}
	if a.header.Get("X-Gitlab-Webhook-UUID") == b.header.Get("X-Gitlab-Webhook-UUID") {
		t.Error("X-Gitlab-Webhook-UUID repeated across deliveries")
	}
	if b.header.Get("Idempotency-Key") != "idem-1" {
		t.Error("Idempotency-Key not kept across a resend")
	}

	req, err := s.HookRequest(context.Background(), receiver.URL, gitlabtest.EventPush, "", []byte(`{}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := req.Header["X-Gitlab-Token"]; ok || !uuid.MatchString(req.Header.Get("Idempotency-Key")) {
		t.Errorf("without token and key: %v", req.Header)
	}
}

func TestGetGroupShape(t *testing.T) {
	s, c := setup(t)
	acme := s.AddGroup("acme", 0)
	sub := s.AddGroup("platform", acme.ID)
	status, _, body := c.do("GET", "/groups/"+jsonInt(sub.ID), nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var g map[string]any
	if err := json.Unmarshal([]byte(body), &g); err != nil {
		t.Fatal(err)
	}
	if g["full_path"] != "acme/platform" || g["full_name"] != "acme / platform" || g["parent_id"] != float64(acme.ID) {
		t.Errorf("group = %v", g)
	}
	if status, _, _ := c.do("GET", "/groups/acme%2Fplatform", nil); status != http.StatusOK {
		t.Errorf("group by path: %d", status)
	}
	if status, _, body := c.do("GET", "/groups/99", nil); status != http.StatusNotFound || !strings.Contains(body, "404 Group Not Found") {
		t.Errorf("missing group: %d %s", status, body)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
