package gitlabtest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

const threeJobs = `
stages: [build, test]
variables:
  GREETING: hello
default:
  before_script: [echo before]
compile:
  stage: build
  script: echo compile
unit:
  stage: test
  tags: [docker]
  script:
    - echo unit
    - [echo nested]
  variables:
    GREETING: {value: hi, description: overridden}
  timeout: 1h 30m
lint:
  stage: test
  image: {name: "golangci/golangci-lint:v2"}
  script: echo lint
  after_script: echo after
  allow_failure: true
.template:
  script: never run
`

func TestParseCIConfig(t *testing.T) {
	cfg, err := gitlabtest.ParseCIConfig([]byte(threeJobs))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Stages, ",") != ".pre,build,test,.post" || len(cfg.Jobs) != 3 {
		t.Fatalf("stages %v, %d jobs", cfg.Stages, len(cfg.Jobs))
	}
	unit := cfg.Jobs[1]
	if unit.Name != "unit" || unit.Stage != "test" || strings.Join(unit.Script, ";") != "echo unit;echo nested" ||
		strings.Join(unit.BeforeScript, ";") != "echo before" || unit.Timeout != 90*time.Minute || fmt.Sprint(unit.Tags) != "[docker]" {
		t.Errorf("unit = %+v", unit)
	}
	if last := unit.Variables[len(unit.Variables)-1]; last.Key != "GREETING" || last.Value != "hi" || !last.Public {
		t.Errorf("unit variables = %+v", unit.Variables)
	}
	lint := cfg.Jobs[2]
	if lint.Image != "golangci/golangci-lint:v2" || !lint.AllowFailure || fmt.Sprint(lint.AfterScript) != "[echo after]" {
		t.Errorf("lint = %+v", lint)
	}

	for src, want := range map[string]string{
		"build:\n  stage: build\n":                                              "jobs:build config should implement the script: keyword",
		"stages: [a]\nx:\n  stage: b\n  script: s\n":                            "jobs:x chosen stage b does not exist; available stages are .pre, a, .post",
		"x:\n  script: s\n  only: [main]\n":                                     "jobs:x config contains unknown keys: only",
		"x:\n  script: s\n  rules: {if: $A}\n":                                  "jobs:x:rules config should be an array of hashes",
		"x:\n  script: s\n  rules: [[[[[[[[[[[{}]]]]]]]]]]]\n":                  "nested no more than 10 levels",
		".r: &r {changes: [a]}\nx:\n  script: s\n  rules: [{<<: *r, if: $A}]\n": "jobs:x:rules:rule config contains unknown keys: changes",
		"x:\n  script: s\n  rules: [$A]\n":                                      "jobs:x:rules:rule config should be a hash",
		"x:\n  script: s\n  rules: [{changes: [a]}]\n":                          "jobs:x:rules:rule config contains unknown keys: changes (the GitLab test server understands if, when; every keyword it reads: gosling dev pipeline --help)",
		"x:\n  script: s\n  rules: [{if: $A, exists: [a]}]\n":                   "jobs:x:rules:rule config contains unknown keys: exists",
		"x:\n  script: s\n  rules: [{allow_failure: true}]\n":                   "unknown keys: allow_failure",
		"x:\n  script: s\n  rules: [{variables: {A: b}}]\n":                     "unknown keys: variables",
		"x:\n  script: s\n  rules: [{needs: [y]}]\n":                            "unknown keys: needs",
		"x:\n  script: s\n  rules: [{when: manual}]\n":                          "jobs:x:rules:rule when: manual is not supported by the GitLab test server; use on_success, always, never",
		"x:\n  script: s\n  rules: [{if: $A = b}]\n":                            "jobs:x:rules:rule if invalid expression syntax",
		"x:\n  script: s\n  rules: [{if: [a]}]\n":                               "jobs:x:rules:rule if should be a string",
		"include: other.yml\nx:\n  script: s\n":                                 "include: is not supported",
		"x: [1]\n":                                                              "jobs:x config should be a hash",
		"x:\n  script: s\n  timeout: soon\n":                                    `timeout "soon"`,
		"x:\n  script: s\n  when: manual\n":                                     "when: manual is not supported",
		"":                                                                      "please provide content",
		".hidden:\n  script: s\n":                                               "at least one visible job",
		"x:\n  script: s\nvariables: [a]\n":                                     "variables config should be a hash",
		"x:\n  script: s\n  cache: {policy: pull-only}\n":                       "jobs:x:cache:policy config should be one of: pull, push, pull-push",
		"x:\n  script: s\n  cache: {when: never}\n":                             "jobs:x:cache:when config should be one of",
		"x:\n  script: s\n  cache: {key: a/b}\n":                                `cannot contain the "/" character`,
		"x:\n  script: s\n  cache: {key: {files: [go.sum]}}\n":                  "key:files and key:prefix are not supported",
		"x:\n  script: s\n  cache: {paths: [a], keep: 1}\n":                     "jobs:x:cache config contains unknown keys: keep",
		"x:\n  script: s\n  cache: [{}, {}, {}, {}, {}]\n":                      "no more than 4 caches",
	} {
		if _, err := gitlabtest.ParseCIConfig([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", src, err, want)
		}
	}
}

// Rules come through anchors, nested lists and merge keys, as GitLab
// flattens them; a job without rules: has none (nil), one with an empty
// list has an empty one, which leaves it out of every pipeline.
func TestParseCIConfigRules(t *testing.T) {
	cfg, err := gitlabtest.ParseCIConfig([]byte(`
.gosling-rules: &gosling-rules
  - if: $GOSLING_JOB
.never: &never {when: never}
a:
  script: s
  rules: *gosling-rules
b:
  script: s
  rules:
    - <<: *never
      if: $CI_PIPELINE_SOURCE == "push"
    - *gosling-rules
    - [{when: always}]
c:
  script: s
d:
  script: s
  rules: []
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, j := range cfg.Jobs {
		got[j.Name] = fmt.Sprintf("%v %+v", j.Rules == nil, j.Rules)
	}
	want := map[string]string{
		"a": "false [{If:$GOSLING_JOB When:}]",
		"b": `false [{If:$CI_PIPELINE_SOURCE == "push" When:never} {If:$GOSLING_JOB When:} {If: When:always}]`,
		"c": "true []",
		"d": "false []",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rules:\n got %v\nwant %v", got, want)
	}
}

// hookLog is a webhook receiver that keeps what arrives, in order.
type hookLog struct {
	mu     sync.Mutex
	events []map[string]any
	heads  []http.Header
	status int
}

func newHookLog(t *testing.T) (*hookLog, *httptest.Server) {
	h := &hookLog{status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev map[string]any
		_ = json.Unmarshal(b, &ev)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.events = append(h.events, ev)
		h.heads = append(h.heads, r.Header.Clone())
		w.WriteHeader(h.status)
	}))
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *hookLog) snapshot() ([]map[string]any, []http.Header) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...), append([]http.Header(nil), h.heads...)
}

// statuses lists "kind:name:status" for every event received.
func (h *hookLog) statuses() []string {
	evs, _ := h.snapshot()
	var out []string
	for _, ev := range evs {
		switch ev["object_kind"] {
		case "build":
			out = append(out, fmt.Sprintf("job:%s:%s", ev["build_name"], ev["build_status"]))
		case "pipeline":
			out = append(out, fmt.Sprintf("pipeline:%s", ev["object_attributes"].(map[string]any)["status"]))
		}
	}
	return out
}

func TestPipelineStagesAndHooks(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID, Tags: []string{"docker"}, RunUntagged: true, Description: "r1"})
	recv, srv := newHookLog(t)
	if status, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": srv.URL, "token": "s3cret", "job_events": true, "pipeline_events": true}); status != http.StatusCreated {
		t.Fatalf("add hook: %d %s", status, body)
	}

	if status, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/pipeline", p.ID), map[string]any{"ref": "main"}); status != http.StatusBadRequest || body != `{"message":{"base":["Missing CI config file"]}}` {
		t.Errorf("no .gitlab-ci.yml: %d %s", status, body)
	}
	s.PutFile(p.ID, ".gitlab-ci.yml", []byte(threeJobs))
	s.PutFile(p.ID, "ci/deploy.yml", []byte("deploy: {script: x}"))
	if status, _, body := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/repository/files/ci%%2Fdeploy.yml/raw", p.ID), nil); status != http.StatusOK || body != "deploy: {script: x}" {
		t.Errorf("raw nested file: %d %q", status, body)
	}
	if status, _, _ := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/repository/files/nope.yml/raw", p.ID), nil); status != http.StatusNotFound {
		t.Errorf("missing file: %d", status)
	}
	if status, _, body := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/repository/files/.gitlab-ci.yml/raw?ref=main", p.ID), nil); status != http.StatusOK || !strings.Contains(body, "compile:") {
		t.Errorf("raw file: %d", status)
	}
	status, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/pipeline", p.ID), map[string]any{"ref": "main", "variables": []map[string]string{{"key": "RELEASE", "value": "1"}}})
	var created struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
		Source string `json:"source"`
	}
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil || created.Status != "pending" || created.Source != "api" {
		t.Fatalf("create pipeline: %d %s", status, body)
	}
	jobs := s.PipelineJobs(created.ID)
	if len(jobs) != 3 || jobs[0].Status != "pending" || jobs[1].Status != "created" || jobs[2].Status != "created" {
		t.Fatalf("jobs after creation: %+v", jobs)
	}

	c := runnerCall{t, s}
	finish := func(state string) {
		t.Helper()
		job := decodeJob(t, c.request(r.Token, ""))
		body := map[string]any{"token": job.Token, "state": state}
		if state == "failed" {
			body["failure_reason"], body["exit_code"] = "script_failure", 1
		}
		if a := c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), body); a.status != http.StatusOK {
			t.Fatalf("PUT %s: %d", state, a.status)
		}
	}
	finish("success")                                                // compile
	if a := c.request(r.Token, ""); a.status != http.StatusCreated { // unit, left running
		t.Fatalf("second job: %d", a.status)
	}
	unitID := jobs[1].ID
	finish("failed") // lint may fail
	unitToken := func() string { j, _ := s.Job(unitID); return j.Token }()
	c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", unitID), map[string]any{"token": unitToken, "state": "success"})

	want := []string{"job:compile:pending", "pipeline:pending", "job:compile:running", "pipeline:running", "job:compile:success",
		"job:unit:pending", "job:lint:pending", "job:unit:running", "job:lint:running", "job:lint:failed", "job:unit:success", "pipeline:success"}
	waitFor(t, "every webhook", func() bool { return len(recv.statuses()) >= len(want) })
	if got := recv.statuses(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("webhooks in order:\n got %v\nwant %v", got, want)
	}
	if pl, _ := s.Pipeline(created.ID); pl.Status != "success" || pl.FinishedAt == nil || fmt.Sprint(pl.Stages) != "[build test]" {
		t.Errorf("pipeline = %+v", pl)
	}

	// The payloads decode with client-go's webhook types, with the runner
	// once picked and null before.
	evs, heads := recv.snapshot()
	for i, ev := range evs {
		if heads[i].Get("X-Gitlab-Token") != "s3cret" || heads[i].Get("Idempotency-Key") == "" {
			t.Errorf("delivery %d headers %v", i, heads[i])
		}
		raw, _ := json.Marshal(ev)
		switch ev["object_kind"] {
		case "build":
			parsed, err := gl.ParseWebhook(gl.EventTypeJob, raw)
			if err != nil {
				t.Fatal(err)
			}
			job := parsed.(*gl.JobEvent)
			picked := job.BuildStatus != "pending"
			if picked != (job.Runner.ID == r.ID) || (picked && (job.Runner.Description != "r1" || fmt.Sprint(job.Runner.Tags) != "[docker]")) {
				t.Errorf("%s %s: runner %+v", job.BuildName, job.BuildStatus, job.Runner)
			}
			if picked && job.BuildStartedAt == "" {
				t.Errorf("%s %s has no build_started_at", job.BuildName, job.BuildStatus)
			}
			if job.BuildStatus == "failed" && job.BuildFailureReason != "script_failure" {
				t.Errorf("failure reason %q", job.BuildFailureReason)
			}
		case "pipeline":
			parsed, err := gl.ParseWebhook(gl.EventTypePipeline, raw)
			if err != nil {
				t.Fatal(err)
			}
			pe := parsed.(*gl.PipelineEvent)
			if pe.ObjectAttributes.ID != int64(created.ID) || len(pe.Builds) != 3 || fmt.Sprint(pe.ObjectAttributes.Stages) != "[build test]" {
				t.Errorf("pipeline event %+v", pe.ObjectAttributes)
			}
			if pe.ObjectAttributes.Status == "success" {
				for _, b := range pe.Builds {
					if b.Runner.ID != r.ID {
						t.Errorf("build %s runner %+v", b.Name, b.Runner)
					}
				}
			}
		}
	}
}

func TestPipelineFailureSkipsLaterStages(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	pl, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "compile", Stage: "build", Script: []string{"false"}},
		{Name: "unit", Stage: "test", Script: []string{"true"}},
		{Name: "deploy", Stage: "deploy", Script: []string{"true"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "failed", "failure_reason": "script_failure"})
	var statuses []string
	for _, j := range s.PipelineJobs(pl.ID) {
		statuses = append(statuses, j.Name+":"+j.Status)
	}
	if strings.Join(statuses, " ") != "compile:failed unit:skipped deploy:skipped" {
		t.Errorf("jobs: %v", statuses)
	}
	if got, _ := s.Pipeline(pl.ID); got.Status != "failed" {
		t.Errorf("pipeline %s", got.Status)
	}
	if a := c.request(r.Token, ""); a.status != http.StatusNoContent {
		t.Errorf("a skipped job was handed out: %d", a.status)
	}
}

func TestHookDisablingAndDroppedDeliveries(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	recv, srv := newHookLog(t)
	recv.status = http.StatusInternalServerError
	admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": srv.URL, "job_events": true})

	s.DropNextDeliveries(1)
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}, {Name: "f"}}}); err != nil {
		t.Fatal(err)
	}
	// Six pending hooks: one dropped, four failures, then the hook is off.
	waitFor(t, "six delivery records", func() bool { return len(s.Deliveries()) == 6 })
	var dropped, failed int
	for _, d := range s.Deliveries() {
		switch {
		case d.Dropped:
			dropped++
		case d.Status == http.StatusInternalServerError:
			failed++
		}
	}
	if dropped != 2 || failed != 4 || len(recv.statuses()) != 4 {
		t.Errorf("dropped %d, failed %d, received %d; want 2 (1 by the limit, 1 disabled), 4, 4", dropped, failed, len(recv.statuses()))
	}
	_, _, body := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/hooks", p.ID), nil)
	if !strings.Contains(body, `"alert_status":"temporarily_disabled"`) || strings.Contains(body, `"disabled_until":null`) {
		t.Errorf("hook after 4 failures: %s", body)
	}
}

func TestSnapshotKeepsPipelinesFilesAndTraces(t *testing.T) {
	s, _ := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	s.PutFile(p.ID, ".gitlab-ci.yml", []byte("a:\n  script: echo a\nb:\n  stage: deploy\n  script: echo b\n"))
	pl, err := s.CreatePipelineFromCIConfig(p.ID, "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	c.send(http.MethodPatch, fmt.Sprintf("/jobs/%d/trace", job.ID), []byte("log"), map[string]string{"JOB-TOKEN": job.Token, "Content-Range": "0-2"})
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	s2 := gitlabtest.New(gitlabtest.WithLongPolling(0))
	defer s2.Close()
	if err := s2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if got := string(s2.Trace(job.ID)); got != "log" {
		t.Errorf("trace %q", got)
	}
	// The runner finishes its job against the restored server, and the
	// pipeline goes on.
	c2 := runnerCall{t, s2}
	if a := c2.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "success"}); a.status != http.StatusOK {
		t.Fatalf("PUT after restore: %d %s", a.status, a.body)
	}
	next := decodeJob(t, c2.request(r.Token, ""))
	if next.JobInfo.Name != "b" {
		t.Errorf("next job %q", next.JobInfo.Name)
	}
	if got, _ := s2.Pipeline(pl.ID); got.Status != "running" {
		t.Errorf("pipeline %s", got.Status)
	}
	if _, err := s2.CreatePipelineFromCIConfig(p.ID, "main", nil); err != nil {
		t.Errorf("the .gitlab-ci.yml did not survive: %v", err)
	}
}

// customJobCI is the .gitlab-ci.yml Gosling documents for custom jobs: its
// one job joins only the pipelines Gosling makes with GOSLING_JOB.
const customJobCI = `
gosling-job:
  tags: [gosling-admin]
  rules:
    - if: $GOSLING_JOB
  script: ['eval "$GOSLING_JOB_SCRIPT"']
`

func TestPipelineRulesLeaveJobsOut(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("platform/nest", s.AddGroup("platform", 0).ID)
	s.PutFile(p.ID, ".gitlab-ci.yml", []byte(customJobCI))

	status, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/pipeline", p.ID), map[string]any{
		"ref": "main", "variables": []map[string]string{{"key": "GOSLING_JOB", "value": "prune"}, {"key": "GOSLING_JOB_SCRIPT", "value": "true"}},
	})
	var created struct {
		ID int64 `json:"id"`
	}
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &created) != nil {
		t.Fatalf("pipeline with GOSLING_JOB: %d %s", status, body)
	}
	if jobs := s.PipelineJobs(created.ID); len(jobs) != 1 || jobs[0].Name != "gosling-job" || jobs[0].Status != "pending" || jobs[0].When != "on_success" {
		t.Errorf("jobs with GOSLING_JOB: %+v", jobs)
	}

	// Without it, GitLab refuses the pipeline, as it would a push's.
	status, _, body = admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/pipeline", p.ID), map[string]any{"ref": "main"})
	want := `{"message":{"base":["Pipeline will not run for the selected trigger. The rules configuration prevented any jobs from being added to the pipeline."]}}`
	if status != http.StatusBadRequest || body != want {
		t.Errorf("pipeline without GOSLING_JOB: %d %s", status, body)
	}
	if _, err := s.CreatePipelineFromCIConfig(p.ID, "main", []gitlabtest.Variable{{Key: "GOSLING_JOB", Value: ""}}); !errors.Is(err, gitlabtest.ErrFilteredByRules) {
		t.Errorf("empty GOSLING_JOB: %v", err)
	}
	cfg, err := gitlabtest.ParseCIConfig([]byte(customJobCI))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Source: "push", Stages: cfg.Stages, Jobs: cfg.Jobs}); !errors.Is(err, gitlabtest.ErrFilteredByRules) {
		t.Errorf("push: %v", err)
	}
	// The refused pipelines were not kept: the next one is the second.
	next, err := s.CreatePipelineFromCIConfig(p.ID, "main", []gitlabtest.Variable{{Key: "GOSLING_JOB", Value: "prune"}})
	if err != nil || next.IID != 2 {
		t.Errorf("next pipeline %+v, %v", next, err)
	}
}

// rulesCI has jobs whose rules read the pipeline's source, branch and
// variables, global ones overridden by the pipeline's.
const rulesCI = `
stages: [build, test]
variables:
  MODE: quick
compile:
  stage: build
  script: "false"
notify:
  stage: test
  script: echo notify
  rules:
    - if: $CI_PIPELINE_SOURCE == "push"
      when: never
    - when: always
api-only:
  stage: test
  script: echo api
  rules:
    - if: '$CI_PIPELINE_SOURCE == "api" && $CI_COMMIT_BRANCH == "main"'
full:
  stage: test
  script: echo full
  rules:
    - if: $MODE == "full" || $CI_JOB_NAME =~ /^nope/
`

func TestPipelineRulesWhenNeverAndAlways(t *testing.T) {
	s, admin := setup(t, gitlabtest.WithLongPolling(0))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	recv, srv := newHookLog(t)
	admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": srv.URL, "pipeline_events": true})
	r := s.AddRunner(gitlabtest.Runner{ProjectID: p.ID, RunUntagged: true})
	s.PutFile(p.ID, ".gitlab-ci.yml", []byte(rulesCI))
	names := func(pl gitlabtest.Pipeline) string {
		var out []string
		for _, j := range s.PipelineJobs(pl.ID) {
			out = append(out, j.Name+":"+j.When+":"+j.Status)
		}
		return strings.Join(out, " ")
	}

	api, err := s.CreatePipelineFromCIConfig(p.ID, "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(api); got != "compile:on_success:pending notify:always:created api-only:on_success:created" {
		t.Errorf("api pipeline: %s", got)
	}
	full, err := s.CreatePipelineFromCIConfig(p.ID, "main", []gitlabtest.Variable{{Key: "MODE", Value: "full"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(full); !strings.HasSuffix(got, "full:on_success:created") {
		t.Errorf("MODE=full pipeline: %s", got)
	}
	cfg, err := gitlabtest.ParseCIConfig([]byte(rulesCI))
	if err != nil {
		t.Fatal(err)
	}
	push, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Source: "push", Stages: cfg.Stages, Jobs: cfg.Jobs})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(push); got != "compile:on_success:pending" {
		t.Errorf("push pipeline: %s", got)
	}

	// compile fails: notify (when: always) still runs, api-only is skipped.
	c := runnerCall{t, s}
	job := decodeJob(t, c.request(r.Token, ""))
	if job.ID != s.PipelineJobs(api.ID)[0].ID {
		t.Fatalf("first job %d is not the api pipeline's compile", job.ID)
	}
	c.json(http.MethodPut, fmt.Sprintf("/jobs/%d", job.ID), map[string]any{"token": job.Token, "state": "failed", "failure_reason": "script_failure"})
	if got := names(api); got != "compile:on_success:failed notify:always:pending api-only:on_success:skipped" {
		t.Errorf("after compile failed: %s", got)
	}
	// Pipeline Hooks say when each build runs.
	waitFor(t, "the pipelines' hooks", func() bool { return len(recv.statuses()) >= 3 })
	evs, _ := recv.snapshot()
	whens := map[string]any{}
	for _, ev := range evs {
		for _, b := range ev["builds"].([]any) {
			whens[b.(map[string]any)["name"].(string)] = b.(map[string]any)["when"]
		}
	}
	if whens["notify"] != "always" || whens["compile"] != "on_success" {
		t.Errorf("builds' when: %v", whens)
	}
}
