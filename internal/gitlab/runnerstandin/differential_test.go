package runnerstandin_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// The differential test runs the same pipelines once on the real GitLab
// Runner (bin/gitlab-runner, the 12.8.0 pre-release scripts/tools.sh
// builds) and once on the stand-in, each against a GitLab test server of
// its own, and compares what GitLab saw: every job's status and failure
// reason, its log less what only says which runner ran it (normalTrace),
// and the runner-API calls made for it (jobCalls). Where the 2020 runner
// and the stand-in legitimately differ (the stand-in speaks for GitLab
// Runner 18), the difference is named in knownDifferences and in the
// README; anything else fails.

// diffCase is one pipeline of the differential test.
type diffCase struct {
	name string
	spec gitlabtest.PipelineSpec
	// cancel names a job canceled once its log shows "waiting".
	cancel string
}

func diffCases() []diffCase {
	return []diffCase{
		{name: "success", spec: gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "ok", Script: []string{"cat README.md", "test \"$(git rev-parse HEAD)\" = \"$CI_COMMIT_SHA\" && echo the job runs on its commit", "ls ci"},
		}}}},
		{name: "failure", spec: gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "broken", Script: []string{"echo before", "exit 3", "echo never"},
		}}}},
		{name: "allow_failure", spec: gitlabtest.PipelineSpec{Stages: []string{"test", "deploy"}, Jobs: []gitlabtest.JobSpec{
			{Name: "lint", Stage: "test", AllowFailure: true, Script: []string{"echo linting", "false"}},
			{Name: "deploy", Stage: "deploy", Script: []string{"echo deploying"}},
		}}},
		{name: "timeout", spec: gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "slow", Timeout: 3 * time.Second, Script: []string{"echo sleeping", "sleep 60", "echo never"},
		}}}},
		{name: "cancel", cancel: "held", spec: gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "held", Script: []string{"echo waiting", "sleep 60", "echo never"},
		}}}},
		{name: "variables", spec: gitlabtest.PipelineSpec{
			Variables: []gitlabtest.Variable{{Key: "DEPLOY_TOKEN", Value: "s3cr3t-value-123", Masked: true}, {Key: "PIPELINE_VAR", Value: "from-pipeline"}},
			Jobs: []gitlabtest.JobSpec{{
				Name:      "vars",
				Variables: []gitlabtest.Variable{{Key: "JOB_VAR", Value: "job-$PIPELINE_VAR", Public: true}},
				Script: []string{
					"echo \"job $JOB_VAR pipeline $PIPELINE_VAR runner $RUNNER_ENV\"",
					"echo \"the token is $DEPLOY_TOKEN\"",
					"echo \"project $CI_PROJECT_PATH job name $CI_JOB_NAME stage $CI_JOB_STAGE ref $CI_COMMIT_REF_NAME\"",
				},
			}},
		}},
		{name: "before_after_script", spec: gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{
			Name: "wrapped", BeforeScript: []string{"echo before"}, Script: []string{"echo main", "exit 4"},
			AfterScript: []string{"echo after $CI_JOB_NAME", "exit 1"},
		}}}},
		{name: "cache", spec: gitlabtest.PipelineSpec{Stages: []string{"build", "test"}, Jobs: []gitlabtest.JobSpec{
			{Name: "fill", Stage: "build", Cache: []gitlabtest.CacheSpec{{Key: "deps", Paths: []string{"vendor/"}}},
				Script: []string{"mkdir -p vendor", "echo cached-content > vendor/dep.txt"}},
			{Name: "use", Stage: "test", Cache: []gitlabtest.CacheSpec{{Key: "deps", Paths: []string{"vendor/"}, Policy: "pull"}},
				Script: []string{"cat vendor/dep.txt"}},
		}}},
	}
}

// jobOutcome is what GitLab saw of one job.
type jobOutcome struct {
	status, failureReason string
	trace                 []string
	calls                 []string
}

// runnerStart starts a runner of the runner token against gl, working in
// dir, and returns how to stop it gracefully.
type runnerStart func(t *testing.T, gl *gitlabtest.Server, token, dir string) (stop func())

// runDiffCases runs every case, one after the other, on the runner start
// starts, and returns what GitLab saw of each job by "case/job".
func runDiffCases(t *testing.T, start runnerStart) map[string]jobOutcome {
	t.Helper()
	gl := gitlabtest.New(gitlabtest.WithLongPolling(2 * time.Second))
	t.Cleanup(gl.Close)
	p := gl.AddProject("acme/web", gl.AddGroup("acme", 0).ID)
	gl.Commit(p.ID, "main", "the project", map[string][]byte{
		"README.md": []byte("# web: fetched from the GitLab test server\n"), "ci/run.sh": []byte("echo run\n"),
	})
	r := gl.AddRunner(gitlabtest.Runner{ProjectID: p.ID, RunUntagged: true, Description: "gosling/web/1"})
	stop := start(t, gl, r.Token, t.TempDir())
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	names := map[int64]string{}
	t.Cleanup(func() {
		if t.Failed() {
			for id := range names {
				for _, j := range gl.PipelineJobs(id) {
					t.Logf("job %d (%s) %s, its log:\n%s", j.ID, j.Name, j.Status, gl.Trace(j.ID))
				}
			}
			t.Logf("requests: %+v", gl.Requests())
		}
	})
	for _, c := range diffCases() {
		pl, err := gl.CreatePipeline(p.ID, c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		names[pl.ID] = c.name
		canceled := false
		waitFor(t, c.name+" to finish", func() bool {
			if c.cancel != "" && !canceled {
				j := jobByName(t, gl, pl.ID, c.cancel)
				if strings.Contains(string(gl.Trace(j.ID)), "waiting") {
					if err := gl.CancelJob(j.ID); err != nil {
						t.Fatal(err)
					}
					canceled = true
				}
			}
			got, _ := gl.Pipeline(pl.ID)
			return slices.Contains([]string{"success", "failed", "canceled"}, got.Status)
		})
	}
	stop()
	stopped = true
	calls := jobCallSegments(gl.Requests())
	out := map[string]jobOutcome{}
	for id, name := range names {
		for _, j := range gl.PipelineJobs(id) {
			out[name+"/"+j.Name] = jobOutcome{
				status: j.Status, failureReason: j.FailureReason,
				trace: normalTrace(string(gl.Trace(j.ID))), calls: calls[j.ID],
			}
		}
	}
	return out
}

var jobPathRE = regexp.MustCompile(`^/api/v4/jobs/(\d+)(/.*)?$`)

// jobCallSegments splits the request log by the job each runner-API call
// served: a POST /jobs/request answered 201 opens a job's segment, which
// holds every call up to the next one but the polls answered 204 (the
// runner asking for its next job). Each call is "METHOD path status",
// the job's ID written :id and the query left out; repeats in a row (trace
// patches, keep-alives) count once.
func jobCallSegments(reqs []gitlabtest.RequestRecord) map[int64][]string {
	out := map[int64][]string{}
	var seg []string
	var segJob int64
	flush := func() {
		if segJob != 0 {
			out[segJob] = seg
		}
		seg, segJob = nil, 0
	}
	for _, r := range reqs {
		path := r.Path
		switch {
		case path == "/api/v4/jobs/request" && r.Status == 201:
			flush()
		case path == "/api/v4/jobs/request" || path == "/api/v4/runners/verify":
			continue
		}
		if m := jobPathRE.FindStringSubmatch(path); m != nil {
			id, _ := strconv.ParseInt(m[1], 10, 64)
			if segJob == 0 {
				segJob = id
			}
			path = "/api/v4/jobs/:id" + m[2]
		}
		call := fmt.Sprintf("%s %s %d", r.Method, path, r.Status)
		if len(seg) == 0 || seg[len(seg)-1] != call {
			seg = append(seg, call)
		}
	}
	flush()
	return out
}

// framing are the lines a runner writes around a job's own output: the
// version banner, the executor's and Git's progress, cache transfers and
// the helper binary's log lines. They say which runner ran the job and how
// (the 2020 runner and the stand-in, which speaks for GitLab Runner 18,
// word them differently: the README lists how); what the job's commands
// printed, and the verdict, must agree.
var framing = regexp.MustCompile(`^(?:` + strings.Join([]string{
	`Running with gitlab-runner `, `  on `, `Preparing the "shell" executor`, `Using Shell`, `Preparing environment`, `Running on `,
	`Getting source from Git repository`, `Fetching changes`, `hint:`, `(?:Re)?[Ii]nitialized (?:empty|existing) Git repository`,
	`Created fresh repository`, `From http`, ` \* \[new `, `Checking out [0-9a-f]{8} as `, `Skipping Git submodules setup`, `Removing `,
	`Executing "step_script" stage`, `Restoring cache`, `Saving cache`, `Checking cache for `, `Downloading cache`, `No URL provided`,
	`Successfully extracted cache`, `Failed to extract cache`, `WARNING: file does not exist`, `Creating cache `, `.*: found \d+ matching`,
	`Uploading cache`, `Created cache`, `Not uploading cache`, `time="`, `Runtime platform`,
	`Running after.script`, `WARNING: after_script failed`,
}, "|") + `)`)

// normalTrace is a job log as GitLab's viewer shows it, line by line in
// plain text (gitlab.PlainLogLine), less its framing and the lines that
// held only markup.
func normalTrace(log string) []string {
	var out []string
	for _, raw := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
		l := gitlab.PlainLogLine(raw)
		if (l == "" && raw != "") || framing.MatchString(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

// realRunner runs bin/gitlab-runner run on a config.toml of the same
// settings as the stand-in's.
func realRunner(t *testing.T, gl *gitlabtest.Server, token, dir string) func() {
	bin := testbin.GitLabRunner(t)
	cfg := writeDiffConfig(t, gl, token, dir)
	cmd := exec.Command(bin, "run", "--config", cfg, "--working-directory", dir)
	cmd.Dir = dir
	// Its shell executor runs jobs in a login shell, which reads the
	// profile of $HOME: a home of its own keeps the machine user's (a
	// pyenv's rehash lock, say) out of the comparison.
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "LOG_FORMAT=text", "HOME="+home)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gitlab-runner's log:\n%s", logs.String())
		}
	})
	return func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// standIn runs the stand-in in process on the same config.toml.
func standIn(t *testing.T, gl *gitlabtest.Server, token, dir string) func() {
	var logs syncBuffer
	m, err := runnerstandin.NewMulti(runnerstandin.Options{ConfigFile: writeDiffConfig(t, gl, token, dir), WorkingDirectory: dir, Logger: slogTo(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the stand-in's log:\n%s", logs.String())
		}
	})
	return func() {
		m.GracefulStop()
		if err := <-done; err != nil {
			t.Errorf("stand-in: %v", err)
		}
	}
}

func writeDiffConfig(t *testing.T, gl *gitlabtest.Server, token, dir string) string {
	t.Helper()
	cfg := fmt.Sprintf(`concurrent = 1
check_interval = 1
shutdown_timeout = 10

[[runners]]
  name = "gosling-web-1"
  url = %q
  token = %q
  executor = "shell"
  shell = "bash"
  builds_dir = %q
  cache_dir = %q
  environment = ["RUNNER_ENV=from-config"]
`, gl.URL(), token, filepath.Join(dir, "builds"), filepath.Join(dir, "cache"))
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// canonicalCalls is the order in which a job's calls first appear; the
// calls answered 403 once GitLab canceled the job are sorted, as whether
// a runner learns of the cancel through a trace patch or a keep-alive
// update depends on which comes first. Trace patches answered 416 (a
// runner resending from the offset GitLab holds, which a patch that timed
// out on a loaded machine causes in either runner) are left out.
func canonicalCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if !slices.Contains(out, c) && c != "PATCH /api/v4/jobs/:id/trace 416" {
			out = append(out, c)
		}
	}
	if i := slices.IndexFunc(out, func(c string) bool { return strings.HasSuffix(c, " 403") }); i >= 0 {
		slices.Sort(out[i:])
	}
	return out
}

// TestDifferentialRealRunner runs diffCases on the real GitLab Runner and
// on the stand-in and compares what GitLab saw. It needs bin/gitlab-runner
// (`scripts/tools.sh gitlab-runner`, part of `make test`).
func TestDifferentialRealRunner(t *testing.T) {
	testbin.GitLabRunner(t)
	real := runDiffCases(t, realRunner)
	stand := runDiffCases(t, standIn)
	var keys []string
	for _, c := range diffCases() {
		for _, j := range c.spec.Jobs {
			keys = append(keys, c.name+"/"+j.Name)
		}
	}
	for _, k := range keys {
		r, ok := real[k]
		s, ok2 := stand[k]
		if !ok || !ok2 {
			t.Errorf("%s: no outcome (real %v, stand-in %v)", k, ok, ok2)
			continue
		}
		if r.status != s.status || r.failureReason != s.failureReason {
			t.Errorf("%s: real runner %s (%s), stand-in %s (%s)", k, r.status, r.failureReason, s.status, s.failureReason)
		}
		if !slices.Equal(r.trace, s.trace) {
			t.Errorf("%s: the logs differ\nreal runner:\n%s\nstand-in:\n%s", k, strings.Join(r.trace, "\n"), strings.Join(s.trace, "\n"))
		}
		if rc, sc := canonicalCalls(r.calls), canonicalCalls(s.calls); !slices.Equal(rc, sc) {
			t.Errorf("%s: the runner-API calls differ\nreal runner: %q\nstand-in:    %q", k, rc, sc)
		}
	}
	// The jobs did what they say: the outcomes are not merely equal.
	for k, want := range map[string]string{
		"success/ok": "success", "failure/broken": "failed", "allow_failure/lint": "failed", "allow_failure/deploy": "success",
		"timeout/slow": "failed", "cancel/held": "canceled", "variables/vars": "success", "before_after_script/wrapped": "failed",
		"cache/fill": "success", "cache/use": "success",
	} {
		if got := real[k].status; got != want {
			t.Errorf("%s on the real runner: %s, want %s", k, got, want)
		}
	}
	for k, line := range map[string]string{
		"success/ok": "the job runs on its commit", "cache/use": "cached-content",
		"variables/vars": "the token is [MASKED]", "before_after_script/wrapped": "after wrapped",
	} {
		if !slices.Contains(real[k].trace, line) {
			t.Errorf("%s: the real runner's log lacks %q:\n%s", k, line, strings.Join(real[k].trace, "\n"))
		}
	}
}
