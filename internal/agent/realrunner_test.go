package agent_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// realRunnerVersion is what bin/gitlab-runner says it is.
const realRunnerVersion = "12.8.0~pre.8e5683f8"

// newRealRig is a rig whose machine runs the real GitLab Runner
// (bin/gitlab-runner) instead of the stand-in.
func newRealRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t)
	r.cfg.Runner.Binary = testbin.GitLabRunner(t)
	return r
}

// The agent supervises the real gitlab-runner (`gitlab-runner run`): it
// fetches each job's commit, runs it with the runner's variables (a secret
// one among them), and the agent tells MotherGoose of each job from
// 12.8's /debug/jobs/list and its JSON log, with its version. No secret
// reaches the agent's log.
func TestAgentSupervisesRealGitLabRunner(t *testing.T) {
	r := newRealRig(t)
	r.gl.Commit(r.project.ID, "main", "the project", map[string][]byte{"README.md": []byte("fetched from GitLab\n")})
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	if ready, _, _ := r.mg.snapshot(); ready[0].Versions.GitLabRunner != realRunnerVersion {
		t.Errorf("ready reports gitlab-runner %q, want %s", ready[0].Versions.GitLabRunner, realRunnerVersion)
	}
	if d, _ := r.deployAndBroken("cat README.md"); !strings.Contains(string(r.gl.Trace(d.ID)), "fetched from GitLab") {
		t.Errorf("deploy did not fetch its commit:\n%s", r.gl.Trace(d.ID))
	}
	logs, _ := os.ReadFile(agent.LogFile(r.dir))
	for _, secret := range []string{deployKey, r.runner.Token} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("agent.log holds a secret %q", secret[:6])
		}
	}
	if !strings.Contains(string(logs), `"msg":"Checking for jobs... received"`) {
		t.Errorf("agent.log lacks gitlab-runner's JSON log:\n%s", logs)
	}
}

// A VM made for one job runs 12.8's run-single, which reads no
// config.toml: the agent gives it flags and environment (the token and
// the runner's variables off its command line), follows its job from its
// log alone (it serves no metrics), and takes no second job.
func TestAgentOneJobVMOnRealRunSingle(t *testing.T) {
	r := newRealRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	first := r.pipeline(gitlabtest.JobSpec{Name: "its-job", Script: []string{keyCheck()}})
	jobs := r.waitJobs(first.ID, time.Minute)
	if jobs[0].Status != "success" || !strings.Contains(string(r.gl.Trace(jobs[0].ID)), "deploy key ok in review") {
		t.Fatalf("its job: %+v\n%s", jobs[0], r.gl.Trace(jobs[0].ID))
	}
	waitFor(t, "the job's reports", 30*time.Second, func() bool { return len(r.mg.jobStatuses(jobs[0].ID)) == 2 })
	if got := r.mg.jobStatuses(jobs[0].ID); strings.Join(got, ",") != "running,success" {
		t.Errorf("reports %v", got)
	}
	waitFor(t, "the agent done", 30*time.Second, func() bool { return agent.Inspect(r.dir).Phase == agent.PhaseDone })
	second := r.pipeline(gitlabtest.JobSpec{Name: "another", Script: []string{"echo taken"}})
	id := r.gl.PipelineJobs(second.ID)[0].ID
	_, before, _ := r.mg.snapshot()
	waitFor(t, "heartbeats after the job", 10*time.Second, func() bool { _, beats, _ := r.mg.snapshot(); return len(beats) > len(before)+1 })
	if j, _ := r.gl.Job(id); j.Status != "pending" || j.RunnerID != 0 {
		t.Errorf("a second job was taken: %+v", j)
	}
	logs, _ := os.ReadFile(agent.LogFile(r.dir))
	if strings.Contains(string(logs), "flag provided but not defined") || strings.Contains(string(logs), r.runner.Token) ||
		!strings.Contains(string(logs), "run-single reads no config.toml") {
		t.Errorf("agent.log:\n%s", logs)
	}
}

// A served (serverless) runner on the real run-single answers each
// invocation with the job it ran.
func TestAgentServeOnRealRunSingle(t *testing.T) {
	r := newRealRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.cfg.Runner.WaitTimeoutSeconds = 60
	r.launch(agent.LaunchOptions{Serve: true, MaxRun: 5 * time.Minute})
	u, err := agent.ServeURL(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	p := r.pipeline(gitlabtest.JobSpec{Name: "one", Script: []string{keyCheck()}})
	_, res := invoke(t, u, r.runner.Token)
	if res.Error != "" || res.ExitCode != 0 || len(res.Jobs) != 1 || res.Jobs[0].Status != agentapi.JobSuccess {
		t.Fatalf("invocation: %+v", res)
	}
	if j := r.gl.PipelineJobs(p.ID)[0]; j.Status != "success" || res.Jobs[0].JobID != j.ID {
		t.Errorf("job %+v, reported %+v", j, res.Jobs)
	}
}

// A gitlab-runner that exits non-zero before taking a job (here one whose
// run-single refuses a flag) fails the invocation with what it said, and
// a VM made for one job starts it again instead of calling itself done:
// neither is "no job came", which would leave the job pending unseen.
func TestAgentRunnerCrashWithoutJobIsAFailure(t *testing.T) {
	r := newRig(t)
	crash := filepath.Join(t.TempDir(), "gitlab-runner")
	script := "#!/bin/sh\ncase \"$*\" in\n*--version*) echo 'Version:      99.1.0'; exit 0;;\n*--help*) echo '--config value --runner value --listen-address value'; exit 0;;\nesac\n" +
		"echo 'FATAL: flag provided but not defined: -frobnicate' >&2\nexit 1\n"
	if err := os.WriteFile(crash, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r.cfg.Runner.Binary = crash
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.launch(agent.LaunchOptions{Serve: true, MaxRun: 5 * time.Minute})
	u, err := agent.ServeURL(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	_, res := invoke(t, u, r.runner.Token)
	if res.ExitCode != 1 || len(res.Jobs) != 0 || !strings.Contains(res.Error, "flag provided but not defined: -frobnicate") {
		t.Errorf("invocation of a crashing gitlab-runner: %+v", res)
	}

	vm := newRig(t)
	vm.cfg.Runner.Binary = crash
	vm.cfg.Runner.Mode = agentapi.ModeSingle
	vm.launch(agent.LaunchOptions{})
	waitFor(t, "a restart", time.Minute, func() bool {
		b, _ := os.ReadFile(agent.LogFile(vm.dir))
		return strings.Count(string(b), "gitlab-runner started") >= 2
	})
	if ph := agent.Inspect(vm.dir).Phase; ph == agent.PhaseDone {
		t.Errorf("a VM whose gitlab-runner crashed calls itself done")
	}
}

// BenchmarkRealRunnerStop measures how long stopping an idle machine's
// agent takes while GitLab holds the real gitlab-runner's job request
// (long polling, 50 s as behind Workhorse): 12.8 itself leaves only when
// that request returns.
func BenchmarkRealRunnerStop(b *testing.B) {
	for range b.N {
		b.StopTimer()
		r := newRigWith(b, gitlabtest.WithLongPolling(gitlabtest.DefaultLongPolling))
		r.cfg.Runner.Binary = testbin.GitLabRunner(b)
		if err := agent.Launch(r.gosling, r.dir, r.cfg, agent.LaunchOptions{}); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for r.gl.HeldRequests() == 0 {
			if time.Now().After(deadline) {
				b.Fatal("gitlab-runner never asked for a job")
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.StartTimer()
		if err := agent.Stop(r.dir, 2*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// Stopping a served agent while an invocation waits for a job stops that
// invocation's gitlab-runner too: it never outlives its agent.
func TestAgentServeStopEndsItsRunner(t *testing.T) {
	r := newRealRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.cfg.Runner.WaitTimeoutSeconds = 600
	r.launch(agent.LaunchOptions{Serve: true, MaxRun: 5 * time.Minute})
	u, err := agent.ServeURL(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan agentapi.InvokeResult, 1)
	go func() {
		// Not invoke: t.Fatal belongs to the test's goroutine.
		req, _ := http.NewRequest(http.MethodPost, u+agentapi.PathInvoke, strings.NewReader(`{"runner_id":"r1"}`))
		req.Header.Set("Authorization", "Bearer "+r.runner.Token)
		var res agentapi.InvokeResult
		if resp, err := http.DefaultClient.Do(req); err != nil {
			res.Error = err.Error()
		} else {
			_ = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
		}
		answered <- res
	}()
	var pid int
	waitFor(t, "gitlab-runner waiting for a job", time.Minute, func() bool {
		st, err := agent.ReadState(r.dir)
		pid = st.RunnerPID
		return err == nil && pid > 0 && r.gl.HeldRequests() > 0
	})
	if err := agent.Stop(r.dir, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("gitlab-runner (pid %d) outlived its agent", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case res := <-answered:
		if !strings.Contains(res.Error, "stopped") || len(res.Jobs) != 0 {
			t.Errorf("the stopped invocation answered %+v, want its error", res)
		}
	case <-time.After(time.Minute):
		t.Error("the invocation never answered")
	}
}
