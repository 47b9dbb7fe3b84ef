package runnerstandin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

const secret = "s3cr3t-value-123"

// ciYAML is a pipeline of three jobs in two stages, with a masked secret
// printed whole and in two writes, and a job that fails.
const ciYAML = `
stages: [build, test]
variables:
  GREETING: hello
compile:
  stage: build
  tags: [shell]
  script:
    - echo "compile $GREETING from $CI_PROJECT_PATH job $CI_JOB_ID"
    - echo "runner env $RUNNER_ENV"
    - echo "the secret is $DEPLOY_TOKEN"
    - printf 's3cr3t-'; sleep 0.2; printf 'value-123\n'
    - echo "a token glpat-AbC123_xyz in the log"
unit:
  stage: test
  script:
    - test "$CI_JOB_TOKEN" != ""
    - echo "unit passed in $PWD"
  after_script:
    - echo after-unit
lint:
  stage: test
  allow_failure: true
  script:
    - echo "lint starting"
    - exit 3
    - echo never
`

// hookLog keeps the webhooks it receives, in order.
type hookLog struct {
	mu     sync.Mutex
	events []map[string]any
}

func newHookLog(t *testing.T) (*hookLog, string) {
	h := &hookLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		_ = json.NewDecoder(r.Body).Decode(&ev)
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func (h *hookLog) all() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.events...)
}

// jobStatuses lists each job's Job Hook statuses in arrival order.
func (h *hookLog) jobStatuses() map[string][]string {
	out := map[string][]string{}
	for _, ev := range h.all() {
		if ev["object_kind"] == "build" {
			name := ev["build_name"].(string)
			out[name] = append(out[name], ev["build_status"].(string))
		}
	}
	return out
}

func (h *hookLog) pipelineStatuses() []string {
	var out []string
	for _, ev := range h.all() {
		if ev["object_kind"] == "pipeline" {
			out = append(out, ev["object_attributes"].(map[string]any)["status"].(string))
		}
	}
	return out
}

type fixture struct {
	gl      *gitlabtest.Server
	project gitlabtest.Project
	runner  gitlabtest.Runner
	hooks   *hookLog
	dir     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	gl := gitlabtest.New(gitlabtest.WithLongPolling(5 * time.Second))
	t.Cleanup(gl.Close)
	p := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	r := gl.AddRunner(gitlabtest.Runner{ProjectID: p.ID, Tags: []string{"shell"}, RunUntagged: true, Description: "gosling/web/1"})
	hooks, url := newHookLog(t)
	body := fmt.Sprintf(`{"url":%q,"token":"hook-secret","job_events":true,"pipeline_events":true}`, url)
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v4/projects/%d/hooks", gl.URL(), p.ID), strings.NewReader(body))
	req.Header.Set("PRIVATE-TOKEN", gl.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("add hook: %v %v", err, resp)
	}
	resp.Body.Close()
	return &fixture{gl: gl, project: p, runner: r, hooks: hooks, dir: t.TempDir()}
}

func (f *fixture) configTOML(listen string) string {
	return fmt.Sprintf(`concurrent = 2
check_interval = 1
listen_address = %q
shutdown_timeout = 10
log_level = "info"

[[runners]]
  name = "gosling-web-1"
  url = %q
  id = %d
  token = %q
  executor = "shell"
  builds_dir = %q
  environment = ["RUNNER_ENV=from-config", "GO_ON=%s"]
  unknown_knob = true
  [runners.cache]
    Type = "s3"
    Shared = true
    [runners.cache.s3]
      ServerAddress = "127.0.0.1:9000"
      AccessKey = "cache-access"
      SecretKey = "cache-secret"
      BucketName = "runner-cache"
      Insecure = true
`, listen, f.gl.URL(), f.runner.ID, f.runner.Token, filepath.Join(f.dir, "builds"), f.goOn())
}

// goOn is a file whose creation lets a job waiting on $GO_ON go on.
func (f *fixture) goOn() string { return filepath.Join(f.dir, "go-on") }

func (f *fixture) writeConfig(t *testing.T, listen string) string {
	t.Helper()
	path := filepath.Join(f.dir, "config.toml")
	if err := os.WriteFile(path, []byte(f.configTOML(listen)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, 90*time.Second, what, cond)
}

func jobByName(t *testing.T, gl *gitlabtest.Server, pipelineID int64, name string) gitlabtest.Job {
	t.Helper()
	for _, j := range gl.PipelineJobs(pipelineID) {
		if j.Name == name {
			return j
		}
	}
	t.Fatalf("no job %s in pipeline %d", name, pipelineID)
	return gitlabtest.Job{}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPipelineRunsInProcess(t *testing.T) {
	f := newFixture(t)
	f.gl.PutFile(f.project.ID, gitlabtest.CIConfigPath, []byte(ciYAML))
	cfg, err := gitlabtest.ParseCIConfig([]byte(ciYAML))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := f.gl.CreatePipeline(f.project.ID, gitlabtest.PipelineSpec{
		Stages: cfg.Stages, Jobs: cfg.Jobs,
		Variables: []gitlabtest.Variable{{Key: "DEPLOY_TOKEN", Value: secret, Masked: true}},
	})
	if err != nil {
		t.Fatal(err)
	}

	var logs syncBuffer
	m, err := runnerstandin.NewMulti(runnerstandin.Options{
		ConfigFile: f.writeConfig(t, ""),
		Logger:     slogTo(&logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(context.Background()) }()

	waitFor(t, "the pipeline to finish", func() bool {
		p, _ := f.gl.Pipeline(pl.ID)
		return p.Status == "success" || p.Status == "failed"
	})
	m.GracefulStop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}

	if p, _ := f.gl.Pipeline(pl.ID); p.Status != "success" {
		t.Errorf("pipeline %s, want success (lint may fail)", p.Status)
	}
	compile := jobByName(t, f.gl, pl.ID, "compile")
	unit := jobByName(t, f.gl, pl.ID, "unit")
	lint := jobByName(t, f.gl, pl.ID, "lint")
	if compile.Status != "success" || unit.Status != "success" {
		t.Errorf("compile %s, unit %s", compile.Status, unit.Status)
	}
	if lint.Status != "failed" || lint.FailureReason != "script_failure" || lint.ExitCode == nil || *lint.ExitCode != 3 {
		t.Errorf("lint = %s %s %v", lint.Status, lint.FailureReason, lint.ExitCode)
	}

	ct := string(f.gl.Trace(compile.ID))
	for _, want := range []string{
		"Running with " + runnerstandin.Banner,
		fmt.Sprintf("compile hello from acme/web job %d", compile.ID),
		"runner env from-config",
		"the secret is [MASKED]",
		"a token glpat-[MASKED] in the log",
		"$ echo \"compile $GREETING",
		"Job succeeded",
	} {
		if !strings.Contains(ct, want) {
			t.Errorf("compile log lacks %q:\n%s", want, ct)
		}
	}
	if strings.Count(ct, "[MASKED]") < 2 {
		t.Errorf("the secret written in two parts was not masked:\n%s", ct)
	}
	ut, lt := string(f.gl.Trace(unit.ID)), string(f.gl.Trace(lint.ID))
	if !strings.Contains(ut, "unit passed in "+filepath.Join(f.dir, "builds")) || !strings.Contains(ut, "after-unit") {
		t.Errorf("unit log:\n%s", ut)
	}
	if !strings.Contains(lt, "lint starting") || strings.Contains(lt, "never") || !strings.Contains(lt, "ERROR: Job failed: exit status 3") {
		t.Errorf("lint log:\n%s", lt)
	}
	for _, tr := range []string{ct, ut, lt, logs.String()} {
		if strings.Contains(tr, secret) || strings.Contains(tr, unit.Token) || strings.Contains(tr, "cache-secret") {
			t.Errorf("a secret leaked:\n%s", tr)
		}
	}

	// Webhooks, per job in order of its changes, with the runner once picked.
	waitFor(t, "the last Pipeline Hook", func() bool {
		ps := f.hooks.pipelineStatuses()
		return len(ps) > 0 && ps[len(ps)-1] == "success"
	})
	got := f.hooks.jobStatuses()
	for name, want := range map[string]string{"compile": "pending running success", "unit": "pending running success", "lint": "pending running failed"} {
		if strings.Join(got[name], " ") != want {
			t.Errorf("%s hooks %v, want %s", name, got[name], want)
		}
	}
	if ps := strings.Join(f.hooks.pipelineStatuses(), " "); ps != "pending running success" {
		t.Errorf("pipeline hooks %s", ps)
	}
	for _, ev := range f.hooks.all() {
		if ev["object_kind"] != "build" {
			continue
		}
		runner, _ := ev["runner"].(map[string]any)
		if ev["build_status"] == "pending" {
			if ev["runner"] != nil {
				t.Errorf("pending hook has runner %v", ev["runner"])
			}
			continue
		}
		if runner == nil || runner["id"] != float64(f.runner.ID) || runner["description"] != "gosling/web/1" || runner["runner_type"] != "project_type" ||
			runner["is_shared"] != false || runner["active"] != true || fmt.Sprint(runner["tags"]) != "[shell]" || ev["build_started_at"] == nil {
			t.Errorf("%s %s hook: runner %v started %v", ev["build_name"], ev["build_status"], runner, ev["build_started_at"])
		}
		if ev["build_status"] != "running" && (ev["build_finished_at"] == nil || ev["build_duration"] == nil) {
			t.Errorf("%s %s hook lacks finish fields", ev["build_name"], ev["build_status"])
		}
	}

	// Metrics with gitlab-runner's names.
	rec := httptest.NewRecorder()
	m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	short := runnerstandin.ShortToken(f.runner.Token)
	for _, want := range []string{
		"gitlab_runner_concurrent 2",
		fmt.Sprintf(`gitlab_runner_jobs_total{runner=%q,runner_name="gosling-web-1",system_id=%q} 3`, short, m.SystemID()),
		fmt.Sprintf(`gitlab_runner_failed_jobs_total{failure_reason="script_failure",runner=%q`, short),
		`gitlab_runner_version_info{architecture=`,
		`gitlab_runner_api_request_statuses_total{endpoint="request_job"`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if r, _ := f.gl.Runner(f.runner.ID); r.Version != runnerstandin.Version || r.Executor != "shell" || r.SystemID != m.SystemID() {
		t.Errorf("GitLab saw runner %+v", r)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, runnerstandin.Banner) {
			t.Errorf("log line without the stand-in label: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "unknown key runners.unknown_knob") || !strings.Contains(logs.String(), "Job caches are restored and saved") {
		t.Errorf("config warnings missing:\n%s", logs.String())
	}
}

func TestCancelAndTimeout(t *testing.T) {
	f := newFixture(t)
	pl, err := f.gl.CreatePipeline(f.project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "forever", Stage: "test", Script: []string{"echo waiting", "sleep 60", "echo woke"}},
		{Name: "slow", Stage: "test", Script: []string{"echo slow", "sleep 60"}, Timeout: 2 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m, err := runnerstandin.NewMulti(runnerstandin.Options{ConfigFile: f.writeConfig(t, ""), Logger: slogTo(&logs)})
	defer func() {
		if t.Failed() || os.Getenv("STANDIN_LOGS") != "" {
			t.Log(logs.String())
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(context.Background()) }()

	forever := jobByName(t, f.gl, pl.ID, "forever")
	waitFor(t, "forever to log", func() bool { return strings.Contains(string(f.gl.Trace(forever.ID)), "waiting") })
	if err := f.gl.CancelJob(forever.ID); err != nil {
		t.Fatal(err)
	}
	jobsList := func() string {
		rec := httptest.NewRecorder()
		m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/jobs/list", nil))
		return rec.Body.String()
	}
	waitFor(t, "the stand-in to stop the canceled job", func() bool {
		return !strings.Contains(jobsList(), fmt.Sprintf("/-/jobs/%d ", forever.ID))
	})
	waitFor(t, "the slow job to time out", func() bool { j, _ := f.gl.Job(jobByName(t, f.gl, pl.ID, "slow").ID); return j.Status == "failed" })
	m.GracefulStop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if j, _ := f.gl.Job(forever.ID); j.Status != "canceled" || strings.Contains(string(f.gl.Trace(forever.ID)), "woke") {
		t.Errorf("canceled job: %s\n%s", j.Status, f.gl.Trace(forever.ID))
	}
	slow := jobByName(t, f.gl, pl.ID, "slow")
	if slow.FailureReason != "job_execution_timeout" || !strings.Contains(string(f.gl.Trace(slow.ID)), "execution took longer than 2s") {
		t.Errorf("slow job: %s %s\n%s", slow.Status, slow.FailureReason, f.gl.Trace(slow.ID))
	}
}

func TestConfigRefusesDockerAndReportsUnknownKeys(t *testing.T) {
	_, _, err := runnerstandin.ParseConfig([]byte("[[runners]]\nurl = \"https://gitlab.example.com\"\ntoken = \"glrt-x\"\nexecutor = \"docker\"\n"))
	if err == nil || !strings.Contains(err.Error(), `executor "docker" is not supported by the gitlab-runner STAND-IN`) {
		t.Errorf("docker: %v", err)
	}
	for src, want := range map[string]string{
		"[[runners]]\ntoken = \"glrt-x\"\nexecutor = \"shell\"\n":                                   "url is missing",
		"[[runners]]\nurl = \"https://g\"\nexecutor = \"shell\"\n":                                  "token is missing",
		"[[runners]]\nurl = \"https://g\"\ntoken = \"t\"\nexecutor = \"shell\"\nshell = \"pwsh\"\n": `shell "pwsh" is not supported`,
		"concurrent = \"many\"\n": "line 1",
	} {
		if _, _, err := runnerstandin.ParseConfig([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
	cfg, warnings, err := runnerstandin.ParseConfig([]byte("shiny = 1\n[[runners]]\nurl = \"https://g\"\ntoken = \"glrt-0123456789abc\"\nexecutor = \"shell\"\n[runners.cache]\nType = \"s3\"\n[runners.cache.s3]\nBucketName = \"b\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Concurrent != 1 || cfg.Runners[0].Shell != "bash" || cfg.Runners[0].OutputLimit != 4096 || cfg.Runners[0].Cache.S3.BucketName != "b" {
		t.Errorf("defaults: %+v", cfg)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "line 1: unknown key shiny") {
		t.Errorf("warnings %v", warnings)
	}
	if got := runnerstandin.ShortToken("glrt-0123456789abc"); got != "012345678" {
		t.Errorf("ShortToken = %q", got)
	}
}

// TestSubprocessGracefulStop runs the stand-in as gitlab-runner would be
// run: a gitlab-runner script on PATH executing the gosling binary, with a
// config.toml; SIGQUIT while a job runs lets the job finish, takes no
// further job, and exits 0.
func TestSubprocessGracefulStop(t *testing.T) {
	f := newFixture(t)
	gosling := testbin.Gosling(t)
	wrapper, err := runnerstandin.WriteWrapper(filepath.Join(f.dir, "bin"), gosling)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	cfgPath := f.writeConfig(t, metricsAddr)

	f.gl.PutFile(f.project.ID, gitlabtest.CIConfigPath, []byte(`
stages: [first, second]
slow:
  stage: first
  script:
    - echo started
    - while [ ! -e "$GO_ON" ]; do sleep 0.1; done
    - echo finished after SIGQUIT
later:
  stage: second
  script: echo should not run
`))
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v4/projects/%d/pipeline", f.gl.URL(), f.project.ID), strings.NewReader(`{"ref":"main"}`))
	req.Header.Set("PRIVATE-TOKEN", f.gl.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID int64 }
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create pipeline: %d", resp.StatusCode)
	}

	var stderr syncBuffer
	t.Setenv("PATH", filepath.Dir(wrapper)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command("gitlab-runner", "run", "--config", cfgPath, "--working-directory", f.dir)
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})

	slow := jobByName(t, f.gl, created.ID, "slow")
	waitFor(t, "the slow job to start", func() bool { return strings.Contains(string(f.gl.Trace(slow.ID)), "started") })
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `gitlab_runner_jobs{executor_stage="step_script",runner=`) {
		t.Errorf("/metrics while a job runs lacks gitlab_runner_jobs:\n%s", body)
	}
	// SIGHUP reloads config.toml and the job goes on.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return strings.Contains(stderr.String(), "Configuration loaded") })
	if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stand-in to take SIGQUIT", func() bool { return strings.Contains(stderr.String(), "Graceful shutdown") })
	if err := os.WriteFile(f.goOn(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGQUIT: %v\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("no exit after SIGQUIT:\n%s", stderr.String())
	}
	if j, _ := f.gl.Job(slow.ID); j.Status != "success" || !strings.Contains(string(f.gl.Trace(slow.ID)), "finished after SIGQUIT") {
		t.Errorf("slow job %s:\n%s", j.Status, f.gl.Trace(slow.ID))
	}
	if later := jobByName(t, f.gl, created.ID, "later"); later.Status != "pending" {
		t.Errorf("a job was taken after SIGQUIT: later is %s", later.Status)
	}
	waitFor(t, "the hooks of slow and later", func() bool {
		return len(f.hooks.jobStatuses()["later"]) == 1 && len(f.hooks.jobStatuses()["slow"]) == 3
	})
	if got := f.hooks.jobStatuses(); strings.Join(got["slow"], " ") != "pending running success" || strings.Join(got["later"], " ") != "pending" {
		t.Errorf("job hooks %v", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.Contains(line, "STAND-IN") {
			t.Errorf("output line without the stand-in label: %s", line)
		}
	}
}

func slogTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func TestReloadAndForcefulStop(t *testing.T) {
	f := newFixture(t)
	cfgPath := filepath.Join(f.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("concurrent = 1\ncheck_interval = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := runnerstandin.NewMulti(runnerstandin.Options{ConfigFile: cfgPath, ConfigCheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(context.Background()) }()

	pl, err := f.gl.CreatePipeline(f.project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "long", Script: []string{"echo started", "sleep 60", "echo never"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// No runner yet: the job waits. The config changes on disk and is
	// picked up without a signal.
	long := jobByName(t, f.gl, pl.ID, "long")
	if j, _ := f.gl.Job(long.ID); j.Status != "pending" {
		t.Fatalf("job taken without a runner: %s", j.Status)
	}
	if err := os.WriteFile(cfgPath, []byte(f.configTOML("")), 0o600); err != nil {
		t.Fatal(err)
	}
	// A modification time surely distinct from the first file's, whatever
	// the file system's granularity.
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(cfgPath, later, later); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reloaded runner to start the job", func() bool { return strings.Contains(string(f.gl.Trace(long.ID)), "started") })

	m.Stop()
	if err := <-runErr; err != nil {
		t.Fatalf("Run after Stop: %v", err)
	}
	j, _ := f.gl.Job(long.ID)
	tr := string(f.gl.Trace(long.ID))
	if j.Status != "failed" || j.FailureReason != "runner_system_failure" || !strings.Contains(tr, "ERROR: Job failed (system failure): aborted: terminated") || strings.Contains(tr, "never") {
		t.Errorf("aborted job %s %s:\n%s", j.Status, j.FailureReason, tr)
	}
}

func TestRunSingleMaxBuilds(t *testing.T) {
	f := newFixture(t)
	pl, err := f.gl.CreatePipeline(f.project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "one", Script: []string{"echo one"}},
		{Name: "two", Script: []string{"echo two"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := runnerstandin.NewMulti(runnerstandin.Options{
		Config: &runnerstandin.Config{Runners: []runnerstandin.RunnerConfig{{
			URL: f.gl.URL(), Token: f.runner.Token, Executor: "shell", BuildsDir: filepath.Join(f.dir, "b"),
		}}},
		MaxBuilds: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, j := range f.gl.PipelineJobs(pl.ID) {
		statuses = append(statuses, j.Name+":"+j.Status)
	}
	if strings.Join(statuses, " ") != "one:success two:pending" {
		t.Errorf("after --max-builds 1: %v", statuses)
	}
	if !strings.HasPrefix(m.SystemID(), "r_") {
		t.Errorf("system ID %q of a runner without config.toml", m.SystemID())
	}

	// --wait-timeout: nothing to do, so it stops by itself.
	idle, err := runnerstandin.NewMulti(runnerstandin.Options{
		Config:      &runnerstandin.Config{Runners: []runnerstandin.RunnerConfig{{URL: f.gl.URL(), Token: "glrt-unknown-token", Executor: "shell"}}},
		WaitTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPipelineRoundTrip measures one single-job pipeline through the
// test server and the in-process stand-in: created, picked by a woken long
// poll, run by bash, log sent, reported, pipeline success.
func BenchmarkPipelineRoundTrip(b *testing.B) {
	gl := gitlabtest.New(gitlabtest.WithLongPolling(time.Minute))
	defer gl.Close()
	p := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	r := gl.AddRunner(gitlabtest.Runner{ProjectID: p.ID})
	m, err := runnerstandin.NewMulti(runnerstandin.Options{Config: &runnerstandin.Config{Runners: []runnerstandin.RunnerConfig{{
		URL: gl.URL(), Token: r.Token, Executor: "shell", BuildsDir: b.TempDir(),
	}}}})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	b.ResetTimer()
	for range b.N {
		pl, err := gl.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "t", Script: []string{"true"}}}})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if got, _ := gl.Pipeline(pl.ID); got.Status == "success" {
				break
			} else if got.Status == "failed" {
				b.Fatalf("pipeline failed: %s", gl.Trace(gl.PipelineJobs(pl.ID)[0].ID))
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	m.GracefulStop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
