package gitlabtest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// runnerCall talks the runner API as gitlab-runner does: JSON bodies, or
// raw bodies with extra headers for trace patches.
type runnerCall struct {
	t *testing.T
	s *gitlabtest.Server
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (c runnerCall) send(method, path string, body []byte, header map[string]string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.s.URL()+"/api/v4"+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (c runnerCall) json(method, path string, body any) answer {
	c.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.send(method, path, b, nil)
}

// request asks for a job as gitlab-runner's RequestJob does.
func (c runnerCall) request(token, lastUpdate string) answer {
	c.t.Helper()
	return c.json(http.MethodPost, "/jobs/request", map[string]any{
		"token": token, "last_update": lastUpdate, "system_id": "s_0123456789ab",
		"info": map[string]any{"name": "gitlab-runner", "version": "18.6.0", "executor": "shell", "shell": "bash",
			"features": map[string]bool{"variables": true, "masking": true, "cancelable": true, "trace_checksum": true}},
	})
}

// jobResponse holds the fields of gitlab-runner's common.JobResponse the
// tests read, with its JSON names.
type jobResponse struct {
	ID            int64  `json:"id"`
	Token         string `json:"token"`
	AllowGitFetch bool   `json:"allow_git_fetch"`
	JobInfo       struct {
		Name        string `json:"name"`
		Stage       string `json:"stage"`
		ProjectID   int64  `json:"project_id"`
		ProjectName string `json:"project_name"`
	} `json:"job_info"`
	GitInfo struct {
		RepoURL   string   `json:"repo_url"`
		Ref       string   `json:"ref"`
		Sha       string   `json:"sha"`
		BeforeSha string   `json:"before_sha"`
		RefType   string   `json:"ref_type"`
		Refspecs  []string `json:"refspecs"`
		Depth     int      `json:"depth"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int `json:"timeout"`
	} `json:"runner_info"`
	Variables []gitlabtest.Variable `json:"variables"`
	Steps     []struct {
		Name         string   `json:"name"`
		Script       []string `json:"script"`
		Timeout      int      `json:"timeout"`
		When         string   `json:"when"`
		AllowFailure bool     `json:"allow_failure"`
	} `json:"steps"`
	Image *struct {
		Name string `json:"name"`
	} `json:"image"`
	Features struct {
		TokenMaskPrefixes []string `json:"token_mask_prefixes"`
	} `json:"features"`
	Cache []struct {
		Key          string   `json:"key"`
		Untracked    bool     `json:"untracked"`
		Policy       string   `json:"policy"`
		Paths        []string `json:"paths"`
		When         string   `json:"when"`
		FallbackKeys []string `json:"fallback_keys"`
	} `json:"cache"`
}

func decodeJob(t *testing.T, a answer) jobResponse {
	t.Helper()
	if a.status != http.StatusCreated {
		t.Fatalf("jobs/request: %d %s, want 201", a.status, a.body)
	}
	var j jobResponse
	if err := json.Unmarshal([]byte(a.body), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

func variable(vars []gitlabtest.Variable, key string) (gitlabtest.Variable, bool) {
	var out gitlabtest.Variable
	found := false
	for _, v := range vars {
		if v.Key == key {
			out, found = v, true
		}
	}
	return out, found
}

func TestVerifyRunner(t *testing.T) {
	s, _ := setup(t)
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	c := runnerCall{t, s}

	a := c.json(http.MethodPost, "/runners/verify", map[string]any{"token": r.Token, "system_id": "s_abc"})
	var got struct {
		ID             int64   `json:"id"`
		Token          string  `json:"token"`
		TokenExpiresAt *string `json:"token_expires_at"`
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &got) != nil || got.ID != r.ID || got.Token != r.Token {
		t.Errorf("verify: %d %s", a.status, a.body)
	}
	if rr, _ := s.Runner(r.ID); rr.SystemID != "s_abc" || rr.ContactedAt == nil {
		t.Errorf("verify did not count as contact: %+v", rr)
	}
	if a := c.json(http.MethodPost, "/runners/verify", map[string]any{"token": "glrt-nope"}); a.status != http.StatusForbidden {
		t.Errorf("unknown token: %d %s", a.status, a.body)
	}
	if a := c.json(http.MethodPost, "/runners/verify", map[string]any{}); a.status != http.StatusBadRequest {
		t.Errorf("no token: %d %s", a.status, a.body)
	}
}

func TestRequestJobNoneThenLongPollWakes(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(time.Minute))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	c := runnerCall{t, s}

	if a := c.request("glrt-unknown", ""); a.status != http.StatusForbidden {
		t.Fatalf("unknown runner: %d", a.status)
	}
	first := c.request(r.Token, "")
	last := first.header.Get("X-GitLab-Last-Update")
	if first.status != http.StatusNoContent || last == "" {
		t.Fatalf("empty queue: %d, X-GitLab-Last-Update %q", first.status, last)
	}
	if rr, _ := s.Runner(r.ID); rr.Version != "18.6.0" || rr.Executor != "shell" || rr.SystemID != "s_0123456789ab" {
		t.Errorf("runner info not recorded: %+v", rr)
	}

	// Held until the queue changes: the job added meanwhile is the answer.
	got := make(chan answer, 1)
	go func() { got <- c.request(r.Token, last) }()
	waitFor(t, "the long poll to be held", func() bool { return s.HeldRequests() == 1 })
	if len(got) != 0 {
		t.Fatal("long poll answered before any change")
	}
	j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "unit", Script: []string{"make test"}})
	job := decodeJob(t, <-got)
	if job.ID != j.ID {
		t.Errorf("got job %d, want %d", job.ID, j.ID)
	}
	if jj, _ := s.Job(j.ID); jj.Status != "running" || jj.RunnerID != r.ID || jj.Token != job.Token || !strings.HasPrefix(job.Token, "glcbt-") {
		t.Errorf("picked job = %+v", jj)
	}
}

func TestLongPollTimesOutWithSameLastUpdate(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(100*time.Millisecond))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	c := runnerCall{t, s}
	last := c.request(r.Token, "").header.Get("X-GitLab-Last-Update")
	a := c.request(r.Token, last)
	if a.status != http.StatusNoContent || a.header.Get("X-GitLab-Last-Update") != last {
		t.Errorf("timed-out long poll: %d %q, want 204 %q", a.status, a.header.Get("X-GitLab-Last-Update"), last)
	}
	// A stale last_update is answered at once with the newest value.
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "a"})
	if a := c.request(r.Token, last); a.status != http.StatusCreated {
		t.Errorf("after a change: %d", a.status)
	}
}

func TestRequestJobMatchesTagsScopeAndPause(t *testing.T) {
	s, c := setup(t, gitlabtest.WithLongPolling(0))
	acme := s.AddGroup("acme", 0)
	sub := s.AddGroup("platform", acme.ID)
	web := s.AddProject("web", sub.ID)
	other := s.AddProject("acme/other", acme.ID)
	rc := runnerCall{t, s}

	docker := s.AddRunner(gitlabtest.Runner{ProjectID: web.ID, Tags: []string{"docker"}})
	elsewhere := s.AddRunner(gitlabtest.Runner{ProjectID: other.ID, Tags: []string{"docker", "linux"}, RunUntagged: true})
	group := s.AddRunner(gitlabtest.Runner{Type: "group_type", GroupID: acme.ID, Tags: []string{"docker", "linux"}})

	both := s.AddJob(web.ID, gitlabtest.JobSpec{Name: "both", Tags: []string{"docker", "linux"}})
	if a := rc.request(docker.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("runner without linux took a docker+linux job: %d", a.status)
	}
	if a := rc.request(elsewhere.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("another project's runner took the job: %d", a.status)
	}
	if job := decodeJob(t, rc.request(group.Token, "")); job.ID != both.ID {
		t.Errorf("group runner got %d, want %d (subgroup project)", job.ID, both.ID)
	}

	untagged := s.AddJob(web.ID, gitlabtest.JobSpec{Name: "untagged"})
	if a := rc.request(docker.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("runner with run_untagged false took an untagged job: %d", a.status)
	}
	status, _, body := c.do(http.MethodPut, fmt.Sprintf("/runners/%d", docker.ID), map[string]any{"run_untagged": true, "paused": true})
	if status != http.StatusOK {
		t.Fatalf("update runner: %d %s", status, body)
	}
	if a := rc.request(docker.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("paused runner got a job: %d", a.status)
	}
	c.do(http.MethodPut, fmt.Sprintf("/runners/%d", docker.ID), map[string]any{"paused": false})
	if job := decodeJob(t, rc.request(docker.Token, "")); job.ID != untagged.ID {
		t.Errorf("got %d, want the untagged job %d", job.ID, untagged.ID)
	}
}

func TestJobPayload(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID, MaximumTimeout: 1800, Description: "gosling/web/1"})
	pl, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{
		Variables: []gitlabtest.Variable{{Key: "FROM_PIPELINE", Value: "p"}},
		Jobs: []gitlabtest.JobSpec{{
			Name: "unit", Stage: "test", Script: []string{"make test"}, BeforeScript: []string{"make deps"},
			AfterScript: []string{"make clean"}, Image: "golang:1.26", AllowFailure: true,
			Variables: []gitlabtest.Variable{{Key: "GOFLAGS", Value: "-mod=mod", Public: true}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	job := decodeJob(t, runnerCall{t, s}.request(r.Token, ""))
	if job.JobInfo.Name != "unit" || job.JobInfo.Stage != "test" || job.JobInfo.ProjectID != p.ID || job.JobInfo.ProjectName != "web" {
		t.Errorf("job_info = %+v", job.JobInfo)
	}
	if job.GitInfo.Ref != "main" || job.GitInfo.Sha != pl.SHA || job.GitInfo.RefType != "branch" || job.GitInfo.Depth != 20 ||
		!strings.Contains(job.GitInfo.RepoURL, "gitlab-ci-token:"+job.Token+"@") || len(job.GitInfo.Refspecs) == 0 {
		t.Errorf("git_info = %+v", job.GitInfo)
	}
	if job.RunnerInfo.Timeout != 1800 {
		t.Errorf("timeout = %d, want the runner's maximum 1800", job.RunnerInfo.Timeout)
	}
	if len(job.Steps) != 2 || job.Steps[0].Name != "script" || strings.Join(job.Steps[0].Script, ";") != "make deps;make test" ||
		job.Steps[0].When != "on_success" || !job.Steps[0].AllowFailure || job.Steps[1].Name != "after_script" || job.Steps[1].When != "always" {
		t.Errorf("steps = %+v", job.Steps)
	}
	if job.Image == nil || job.Image.Name != "golang:1.26" {
		t.Errorf("image = %+v", job.Image)
	}
	if v, ok := variable(job.Variables, "CI_JOB_TOKEN"); !ok || v.Value != job.Token || !v.Masked || v.Public {
		t.Errorf("CI_JOB_TOKEN = %+v", v)
	}
	for key, want := range map[string]string{
		"CI_JOB_ID": fmt.Sprint(job.ID), "CI_PROJECT_ID": fmt.Sprint(p.ID), "CI_SERVER_URL": s.URL(), "CI_PROJECT_PATH": "acme/web",
		"CI_PIPELINE_ID": fmt.Sprint(pl.ID), "CI_COMMIT_SHA": pl.SHA, "GOFLAGS": "-mod=mod", "FROM_PIPELINE": "p",
		"CI_RUNNER_DESCRIPTION": "gosling/web/1",
	} {
		if v, _ := variable(job.Variables, key); v.Value != want {
			t.Errorf("%s = %q, want %q", key, v.Value, want)
		}
	}
	if len(job.Features.TokenMaskPrefixes) == 0 {
		t.Error("no token_mask_prefixes")
	}
}

func TestTracePatchAndUpdate(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "unit"})
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	path := fmt.Sprintf("/jobs/%d/trace", job.ID)
	patch := func(start int, data, token string) answer {
		return c.send(http.MethodPatch, path, []byte(data), map[string]string{
			"JOB-TOKEN": token, "Content-Type": "text/plain", "Content-Range": fmt.Sprintf("%d-%d", start, start+len(data)-1),
		})
	}

	a := patch(0, "hello", job.Token)
	if a.status != http.StatusAccepted || a.header.Get("Range") != "0-5" || a.header.Get("Job-Status") != "running" || a.header.Get("X-GitLab-Trace-Update-Interval") == "" {
		t.Errorf("first patch: %d %v", a.status, a.header)
	}
	if a := patch(0, "hello", job.Token); a.status != http.StatusRequestedRangeNotSatisfiable || a.header.Get("Range") != "0-5" {
		t.Errorf("repeated patch: %d Range %q, want 416 0-5", a.status, a.header.Get("Range"))
	}
	if a := patch(9, "xx", job.Token); a.status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("patch past the end: %d", a.status)
	}
	if a := patch(5, " world\n", "glcbt-wrong"); a.status != http.StatusForbidden {
		t.Errorf("wrong job token: %d", a.status)
	}
	if a := c.send(http.MethodPatch, path, []byte("x"), map[string]string{"JOB-TOKEN": job.Token}); a.status != http.StatusBadRequest {
		t.Errorf("no Content-Range: %d", a.status)
	}
	if a := patch(5, " world\n", job.Token); a.status != http.StatusAccepted || a.header.Get("Range") != "0-12" {
		t.Errorf("second patch: %d %q", a.status, a.header.Get("Range"))
	}
	if got := string(s.Trace(job.ID)); got != "hello world\n" {
		t.Errorf("Trace = %q", got)
	}
	if status, h, body := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs/%d/trace", p.ID, job.ID), nil); status != http.StatusOK || body != "hello world" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("GET trace: %d %q", status, body)
	}

	if a := c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "running"}); a.status != http.StatusOK {
		t.Errorf("keep-alive: %d %s", a.status, a.body)
	}
	a = c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{
		"token": job.Token, "state": "failed", "failure_reason": "script_failure", "exit_code": 3,
		"output": map[string]any{"checksum": "crc32:00000000", "bytesize": 12},
	})
	if a.status != http.StatusOK {
		t.Fatalf("PUT failed: %d %s", a.status, a.body)
	}
	if j, _ := s.Job(job.ID); j.Status != "failed" || j.FailureReason != "script_failure" || j.ExitCode == nil || *j.ExitCode != 3 || j.FinishedAt == nil {
		t.Errorf("job after PUT = %+v", j)
	}
	if a := c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "success"}); a.status != http.StatusForbidden || a.header.Get("Job-Status") != "failed" {
		t.Errorf("PUT after the end: %d Job-Status %q", a.status, a.header.Get("Job-Status"))
	}
}

func TestCanceledJobAnswers403(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "long"})
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))

	if status, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/jobs/%d/cancel", p.ID, job.ID), nil); status != http.StatusCreated || !strings.Contains(body, `"status":"canceled"`) {
		t.Fatalf("cancel: %d %s", status, body)
	}
	a := c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "success"})
	if a.status != http.StatusForbidden || a.header.Get("Job-Status") != "canceled" {
		t.Errorf("PUT on a canceled job: %d Job-Status %q, want 403 canceled", a.status, a.header.Get("Job-Status"))
	}
	a = c.send(http.MethodPatch, fmt.Sprintf("/jobs/%d/trace", job.ID), []byte("x"), map[string]string{"JOB-TOKEN": job.Token, "Content-Range": "0-0"})
	if a.status != http.StatusForbidden || a.header.Get("Job-Status") != "canceled" {
		t.Errorf("PATCH on a canceled job: %d Job-Status %q", a.status, a.header.Get("Job-Status"))
	}
	if j, _ := s.Job(job.ID); j.Status != "canceled" {
		t.Errorf("status %s", j.Status)
	}
}

func TestRequestJobRateLimit(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0), gitlabtest.WithRunnerRateLimit(3, time.Hour))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	other := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	c := runnerCall{t, s}
	for i := range 3 {
		if a := c.request(r.Token, ""); a.status != http.StatusNoContent {
			t.Fatalf("request %d: %d", i+1, a.status)
		}
	}
	a := c.request(r.Token, "")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "too many times") {
		t.Errorf("4th request: %d %v %s", a.status, a.header, a.body)
	}
	if a := c.request(other.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("the limit is per token, another runner got %d", a.status)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, 20*time.Second, what, cond)
}

// The job's cache: entries go out as GitLab sends them: defaults filled
// in, keys suffixed by whether the ref is protected unless unprotected.
func TestJobPayloadCache(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	cfg, err := gitlabtest.ParseCIConfig([]byte(`default:
  cache: {paths: [vendor/]}
deps:
  script: make deps
  cache:
    - key: deps-$CI_COMMIT_REF_SLUG
      paths: [vendor/, .cache/]
      policy: push
      when: always
      fallback_keys: [deps-main]
    - key: shared
      untracked: true
      unprotect: true
plain:
  script: make
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: cfg.Jobs}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for range 2 {
		job := decodeJob(t, runnerCall{t, s}.request(r.Token, ""))
		got[job.JobInfo.Name] = fmt.Sprintf("%+v", job.Cache)
	}
	if want := "[{Key:deps-$CI_COMMIT_REF_SLUG-protected Untracked:false Policy:push Paths:[vendor/ .cache/] When:always FallbackKeys:[deps-main]} {Key:shared Untracked:true Policy:pull-push Paths:[] When:on_success FallbackKeys:[]}]"; got["deps"] != want {
		t.Errorf("deps cache = %s\nwant        %s", got["deps"], want)
	}
	if want := "[{Key:default-protected Untracked:false Policy:pull-push Paths:[vendor/] When:on_success FallbackKeys:[]}]"; got["plain"] != want {
		t.Errorf("plain cache = %s\nwant         %s", got["plain"], want)
	}
}

// TestUpdateJobStates sends the bodies of testdata/runner-put-job-states.json
// (a case reduced from gitlab-runner's traffic) as PUT /jobs/:id: GitLab
// answers 400 to no state, an empty state and pending outside its
// two-phase job commit (Ci::UpdateBuildStateService), 200 to running and to
// the final update, and 400 to a body without the token it requires.
func TestUpdateJobStates(t *testing.T) {
	raw, err := os.ReadFile("testdata/runner-put-job-states.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Note string         `json:"note"`
		Body map[string]any `json:"body"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "unit"})
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	path := fmt.Sprintf("/jobs/%d", job.ID)

	if a := c.json(http.MethodPut, path, map[string]any{"state": "running"}); a.status != http.StatusBadRequest || !strings.Contains(a.body, "token is missing") {
		t.Errorf("no token: %d %s, want 400 token is missing", a.status, a.body)
	}
	if a := c.send(http.MethodPut, path, []byte(`{"state":"running"}`), map[string]string{"JOB-TOKEN": job.Token}); a.status != http.StatusBadRequest {
		t.Errorf("token only in JOB-TOKEN: %d, want 400 (PUT requires the token parameter)", a.status)
	}
	want := []int{http.StatusBadRequest, http.StatusBadRequest, http.StatusBadRequest, http.StatusOK, http.StatusOK}
	if len(cases) != len(want) {
		t.Fatalf("%d cases, want %d", len(cases), len(want))
	}
	for i, tc := range cases {
		tc.Body["token"] = job.Token
		a := c.json(http.MethodPut, path, tc.Body)
		if a.status != want[i] || a.body != strconv.Itoa(want[i]) {
			t.Errorf("%s: %d %q, want %d", tc.Note, a.status, a.body, want[i])
		}
		if j, _ := s.Job(job.ID); i < len(cases)-1 && j.Status != "running" {
			t.Errorf("%s: the job became %s", tc.Note, j.Status)
		}
	}
	if j, _ := s.Job(job.ID); j.Status != "failed" || j.FailureReason != "script_failure" {
		t.Errorf("after the final update: %s (%s), want failed (script_failure)", j.Status, j.FailureReason)
	}
	if a := c.json(http.MethodPut, path, map[string]any{"token": job.Token}); a.status != http.StatusForbidden || a.header.Get("Job-Status") != "failed" {
		t.Errorf("no state on a finished job: %d Job-Status %q, want 403 failed (authentication comes first)", a.status, a.header.Get("Job-Status"))
	}
}
