package agent

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/internal/agentapi"
)

// The job lines of gitlab-runner's log in every form the agent can meet:
// 12.8's default format, whose colour codes split "job" from "=16"; its
// text and JSON formats; and the stand-in's. The same events come out of
// each.
func TestOutputWatcherReadsEveryLogFormat(t *testing.T) {
	for name, lines := range map[string][]string{
		"12.8 runner format": {
			"Checking for jobs... received\x1b[0;m                      \x1b[0;m  job\x1b[0;m=16 repo_url\x1b[0;m=http://127.0.0.1:1/acme/web.git runner\x1b[0;m=glrt-a4b",
			"Job succeeded\x1b[0;m                                      \x1b[0;m  duration\x1b[0;m=1.2s job\x1b[0;m=16 project\x1b[0;m=1 runner\x1b[0;m=glrt-a4b",
			"\x1b[31;1mJob failed: exit status 3\x1b[0;m                          \x1b[0;m  \x1b[31;1mduration\x1b[0;m=1s \x1b[31;1mjob\x1b[0;m=17 \x1b[31;1mproject\x1b[0;m=1",
		},
		"12.8 text format": {
			`time="2026-12-07T18:12:54Z" level=info msg="Checking for jobs... received" job=16 repo_url="http://127.0.0.1:1/acme/web.git" runner=glrt-a4b`,
			`time="2026-12-07T18:12:55Z" level=info msg="Job succeeded" duration=1.2s job=16 project=1 runner=glrt-a4b`,
			`time="2026-12-07T18:12:56Z" level=warning msg="Job failed: exit status 3" duration=1s job=17 project=1 runner=glrt-a4b`,
		},
		"12.8 json format": {
			`{"job":16,"level":"info","msg":"Checking for jobs... received","repo_url":"http://127.0.0.1:1/acme/web.git","runner":"glrt-a4b","time":"2026-12-07T18:12:54Z"}`,
			`{"duration":1.2,"job":16,"level":"info","msg":"Job succeeded","project":1,"runner":"glrt-a4b","time":"2026-12-07T18:12:55Z"}`,
			`{"duration":1,"job":17,"level":"warning","msg":"Job failed: exit status 3","project":1,"runner":"glrt-a4b","time":"2026-12-07T18:12:56Z"}`,
		},
		"stand-in json": {
			`{"time":"2026-12-07T18:12:54Z","level":"INFO","msg":"Checking for jobs... received","standin":"x","job":16,"runner":"glrt-a4b"}`,
			`{"time":"2026-12-07T18:12:55Z","level":"INFO","msg":"Submitting job to coordinator... ok","job":16,"state":"success","failure_reason":"","exit_code":0}`,
			`{"time":"2026-12-07T18:12:56Z","level":"INFO","msg":"Submitting job to coordinator... ok","job":17,"state":"failed","failure_reason":"script_failure","exit_code":3}`,
		},
	} {
		w := newOutputWatcher()
		if _, err := w.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
			t.Fatal(err)
		}
		var got []string
		for len(w.events) > 0 {
			r := <-w.events
			got = append(got, strings.TrimSpace(strings.Join([]string{strconv.FormatInt(r.JobID, 10), r.Status, r.FailureReason}, " ")))
		}
		if want := []string{"16 running", "16 success", "17 failed script_failure"}; !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// A job that runs out of time is told as job_execution_timeout.
func TestOutputWatcherTimeout(t *testing.T) {
	w := newOutputWatcher()
	_, _ = w.Write([]byte(`{"job":5,"level":"warning","msg":"Job failed: execution took longer than 3s seconds"}` + "\n"))
	if r := <-w.events; r.Status != agentapi.JobFailed || r.FailureReason != "job_execution_timeout" {
		t.Errorf("report %+v", r)
	}
}

// Both formats of /debug/jobs/list name the job: 12.x's "id=16 url=<the
// project>" and the later "url=<project>/-/jobs/16".
func TestJobListFormats(t *testing.T) {
	for _, l := range []string{
		"id=16 url=http://127.0.0.1:1/acme/web state=running stage=build executor_stage=step_script",
		"url=http://127.0.0.1:1/acme/web/-/jobs/16 state=running stage=build executor_stage=step_script duration=1s",
	} {
		m := jobListRE.FindStringSubmatch(l)
		if m == nil || m[1]+m[2] != "16" {
			t.Errorf("%q: %q", l, m)
		}
	}
}

// run-single's command line follows what the runner's help lists: 12.8's
// takes no --config (it would end in "FATAL: flag provided but not
// defined: -config"), so its settings go as flags and environment, the
// token never on the command line.
func TestRunSingleFlagsFollowTheRunner(t *testing.T) {
	legacy := runnerCaps{version: "12.8.0~pre.8e5683f8", singleFlags: []string{"name", "url", "token", "executor", "builds-dir", "env", "shell", "max-builds", "wait-timeout"}}
	current := runnerCaps{version: "17.5.0", singleFlags: []string{"config", "runner", "listen-address", "max-builds", "wait-timeout"}}
	if legacy.singleReadsConfig() || legacy.singleListens() || !current.singleReadsConfig() || !current.singleListens() {
		t.Errorf("caps: legacy %v/%v current %v/%v", legacy.singleReadsConfig(), legacy.singleListens(), current.singleReadsConfig(), current.singleListens())
	}
	if (runnerCaps{version: "16.11.0"}).singleReadsConfig() || !(runnerCaps{version: "18.6.0"}).singleReadsConfig() {
		t.Error("without help, the version should decide")
	}
	cfg := agentapi.Config{RunnerID: "web-1", GitLabURL: "https://gitlab.example.com", Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorShell}}
	args, env := legacySingle(runnerSpec{cfg: cfg, token: "glrt-secret", environment: []string{"DEPLOY_KEY=k, with comma"}, workDir: "/w"}, []string{"--max-builds", "1"})
	if strings.Contains(strings.Join(args, " "), "glrt-secret") || slices.Contains(args, "--config") {
		t.Errorf("args %q", args)
	}
	for _, want := range []string{"--url https://gitlab.example.com", "--executor shell", "--shell bash", "--builds-dir /w/builds", "--max-builds 1"} {
		if !strings.Contains(strings.Join(args, " "), want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if !slices.Contains(env, "CI_SERVER_TOKEN=glrt-secret") || !slices.Contains(env, "DEPLOY_KEY=k, with comma") {
		t.Errorf("env %q", env)
	}
}
