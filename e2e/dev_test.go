package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// devRun is one `gosling dev` process on the example Nest.
type devRun struct {
	cmd *exec.Cmd
	out *lockedBuffer
	// stateHome is the dev's $XDG_STATE_HOME, where it registers itself.
	stateHome string
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startDev(t *testing.T, bin, stateDir string, ports []int, extra ...string) *devRun {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"dev", "--nest", filepath.Join(testbin.Root(), "examples", "nest"), "--state-dir", stateDir,
		"--api-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--temporal-port", fmt.Sprint(ports[1]),
		"--ui-port", fmt.Sprint(ports[2]), "--gitlab-addr", fmt.Sprintf("127.0.0.1:%d", ports[3]),
		"--temporal", testbin.Temporal(t), "--tofu", testbin.Tofu(t)}, extra...)...)
	// The dev registers itself under $XDG_STATE_HOME: the test's own, not
	// the user's.
	stateHome := t.TempDir()
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+stateHome)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devRun{cmd: cmd, out: out, stateHome: stateHome}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		// A dev killed outright leaves its machines running (they outlive
		// it by design): end those kept in this run's state directory.
		home := filepath.Join(stateDir, "tofu", "machines")
		if ms, err := agent.FindLocalMachines(deployment, home); err == nil {
			for _, m := range ms {
				_, _ = agent.KillLocalMachine(home, m.RunnerID, 10*time.Second)
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(stateDir, "dev.json")); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("gosling dev never became ready:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends Ctrl-C and waits for a clean exit.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gosling dev exited with %v:\n%s", err, d.out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("gosling dev did not stop on Ctrl-C:\n%s", d.out)
	}
}

// devPipeline is a small .gitlab-ci.yml: three jobs in two stages, one of
// which may fail.
const devPipeline = `stages: [build, test]
default:
  tags: [data]
build:
  stage: build
  script:
    - echo "building on stage $CI_JOB_STAGE"
test:
  stage: test
  script:
    - echo "testing after the build"
lint:
  stage: test
  allow_failure: true
  script:
    - echo "lint complains"
    - exit 2
`

// `make run` in miniature: gosling dev on the example Nest, a simulated job
// through the whole loop, Ctrl-C, and a second run resuming the same state.
func TestDevRunSimulateAndResume(t *testing.T) {
	bin := testbin.Gosling(t)
	stateDir := t.TempDir()
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	d := startDev(t, bin, stateDir, ports)
	for _, want := range []string{"GITLAB TEST SERVER", "GITLAB-RUNNER STAND-IN", "Temporal UI", "/metrics", "gosling dev simulate job", "gosling dev pipeline"} {
		if !strings.Contains(d.out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, d.out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(args ...string) []map[string]any {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"dev"}, args...), "--json", "--state-dir", stateDir)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gosling dev %v: %v\n%s\ndev:\n%s", args, err, out, d.out)
		}
		var steps []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("output %q: %v", line, err)
			}
			steps = append(steps, m)
		}
		return steps
	}
	simulate := func(egg string) []map[string]any {
		return run("simulate", "job", "--egg", egg, "--duration", "500ms")
	}
	// logOf is what a job printed, as streamed back.
	logOf := func(steps []map[string]any) string {
		var b strings.Builder
		for _, st := range steps {
			if st["step"] == "log" {
				fmt.Fprintf(&b, "[%v] %v\n", st["job"], st["message"])
			}
		}
		return b.String()
	}
	jobStatuses := func(steps []map[string]any) map[string]string {
		out := map[string]string{}
		for _, st := range steps {
			if st["step"] == "job" {
				out[st["job"].(string)] = st["status"].(string)
			}
		}
		return out
	}
	// web-app: auto runners that fit serverless, one per job. The job's
	// script really runs on the runner, and its log comes back.
	steps := simulate("web-app")
	last := steps[len(steps)-1]
	if last["step"] != "done" || last["status"] != "success" || !strings.Contains(last["message"].(string), "destroyed") {
		t.Errorf("web-app steps: %v", steps)
	}
	if l := logOf(steps); !strings.Contains(l, "Simulated job of egg web-app") || !strings.Contains(l, "STAND-IN") {
		t.Errorf("web-app job log:\n%s", l)
	}
	runner := last["runner"].(string)
	if a := agent.Inspect(filepath.Join(stateDir, "tofu", "machines", runner)); a.Alive {
		t.Errorf("the job's runner process is still there: %+v", a)
	}
	// data-group: a VM egg, served by its pool.
	steps = simulate("data-group")
	last = steps[len(steps)-1]
	if last["step"] != "done" || last["status"] != "success" || !strings.Contains(last["message"].(string), "Apex") {
		t.Errorf("data-group steps: %v", steps)
	}
	pooled := last["runner"].(string)
	if a := agent.Inspect(filepath.Join(stateDir, "tofu", "machines", pooled)); !a.Alive || a.Stopped {
		t.Errorf("the pool's runner is not running: %+v", a)
	}
	// A pipeline of three jobs in two stages from a .gitlab-ci.yml, on the
	// pool's runner: statuses and logs come back.
	ci := filepath.Join(t.TempDir(), ".gitlab-ci.yml")
	if err := os.WriteFile(ci, []byte(devPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	steps = run("pipeline", ci, "--egg", "data-group")
	last = steps[len(steps)-1]
	got := jobStatuses(steps)
	if last["step"] != "done" || last["status"] != "success" || got["build"] != "success" || got["test"] != "success" || got["lint"] != "failed" {
		t.Errorf("pipeline steps: %v", steps)
	}
	if l := logOf(steps); !strings.Contains(l, "[build] building on stage build") || !strings.Contains(l, "[test] testing after the build") || !strings.Contains(l, "[lint] lint complains") {
		t.Errorf("pipeline log:\n%s", l)
	}
	for _, st := range steps {
		if st["step"] == "job" && st["job"] == "lint" && (st["allowed_to_fail"] != true || !strings.Contains(st["message"].(string), "allowed to fail")) {
			t.Errorf("the lint job's failure is not marked allowed: %v", st)
		}
	}

	// A job no runner of the egg takes: the command says why, from the
	// pool's status the API answers, and stops (exit 1) instead of waiting.
	untagged := filepath.Join(t.TempDir(), ".gitlab-ci.yml")
	if err := os.WriteFile(untagged, []byte("orphan:\n  script: [\"echo never runs\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	out, err := exec.CommandContext(wctx, bin, "dev", "pipeline", untagged, "--egg", "data-group", "--state-dir", stateDir).CombinedOutput()
	timedOut := wctx.Err() != nil
	wcancel()
	var exit *exec.ExitError
	if timedOut || !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("dev pipeline of a job no runner takes: %v (timed out: %v), want exit 1", err, timedOut)
	}
	if !strings.Contains(string(out), "gets no runner: no runner of egg data-group can take it: the job has no tags and the egg's runners do not run untagged jobs") ||
		!strings.Contains(string(out), "stays pending in GitLab") {
		t.Errorf("dev pipeline did not say why the job waits:\n%s", out)
	}
	// The same for a serverless egg, whose gate's status gives the reason.
	sctx, scancel := context.WithTimeout(ctx, time.Minute)
	simOut, err := exec.CommandContext(sctx, bin, "dev", "simulate", "job", "--egg", "web-app", "--tags", "arm64", "--state-dir", stateDir).CombinedOutput()
	timedOut = sctx.Err() != nil
	scancel()
	if timedOut || !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("dev simulate job no runner takes: %v (timed out: %v), want exit 1", err, timedOut)
	}
	if !strings.Contains(string(simOut), "gets no runner: no runner of egg web-app can take it: the egg's runners lack the job's tags arm64") {
		t.Errorf("dev simulate job did not give the gate's reason:\n%s", simOut)
	}
	pool := exec.CommandContext(ctx, bin, "pool", "status", "data-group")
	pool.Env = append(os.Environ(), "GOSLING_DEV_STATE="+stateDir)
	if b, err := pool.CombinedOutput(); err != nil || !strings.Contains(string(b), "Jobs no runner will take") || !strings.Contains(string(b), "untagged") {
		t.Errorf("pool status: %v\n%s", err, b)
	}

	// The runners' lifecycle is in the audit log: made, ready, and their
	// state before and after.
	audit := exec.CommandContext(ctx, bin, "audit", "--egg", "data-group", "--json", "action,runner_id,state_before,state_after,actor",
		"--jq", `.[] | select(.runner_id == "`+pooled+`") | "\(.action) \(.state_before)>\(.state_after) \(.actor)"`)
	audit.Env = append(os.Environ(), "GOSLING_DEV_STATE="+stateDir)
	if b, err := audit.CombinedOutput(); err != nil || !strings.Contains(string(b), "provisioned null>provisioning mothergoose") ||
		!strings.Contains(string(b), "ready registering>") {
		t.Errorf("audit of %s: %v\n%s", pooled, err, b)
	}
	// Every secret the dev's Nest names has a value: no failed read.
	audit = exec.CommandContext(ctx, bin, "audit", "--json", "action,reason", "--jq", `.[] | select(.action == "secret-access") | .reason`)
	audit.Env = append(os.Environ(), "GOSLING_DEV_STATE="+stateDir)
	if b, err := audit.CombinedOutput(); err != nil || strings.Contains(string(b), ": failed") {
		t.Errorf("secret reads in the audit log: %v\n%s", err, b)
	}
	// The CLI finds the running dev by itself, from another directory,
	// by the dev's registration under $XDG_STATE_HOME.
	list := exec.CommandContext(ctx, bin, "runners", "list", "--egg", "data-group")
	list.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOSLING_") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			list.Env = append(list.Env, kv)
		}
	}
	list.Env = append(list.Env, "XDG_STATE_HOME="+d.stateHome)
	if out, err := list.CombinedOutput(); err != nil || !strings.Contains(string(out), pooled) {
		t.Errorf("runners list from another directory: %v\n%s", err, out)
	}

	d.stop(t)
	if a := agent.Inspect(filepath.Join(stateDir, "tofu", "machines", pooled)); a.Alive {
		t.Errorf("a runner process outlived Ctrl-C: %+v", a)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "dev.json")); err == nil {
		t.Error("dev.json left after a clean stop")
	}

	// A second run resumes: the pool's runner comes back and a new job
	// gets a runner again.
	d = startDev(t, bin, stateDir, ports)
	deadline := time.Now().Add(30 * time.Second)
	for a := agent.Inspect(filepath.Join(stateDir, "tofu", "machines", pooled)); !a.Alive || a.Stopped; a = agent.Inspect(filepath.Join(stateDir, "tofu", "machines", pooled)) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool's runner was not resumed: %+v\n%s", a, d.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if steps := simulate("data-group"); steps[len(steps)-1]["step"] != "done" || !strings.Contains(logOf(steps), "Simulated job") {
		t.Errorf("after resume: %v", steps)
	}
	d.stop(t)
}

// gosling dev killed with SIGKILL in the middle of a job comes back: the
// GitLab test server's state was written as it changed, the Temporal dev
// server died with it (its port and database are free for the next run),
// the machine kept running the job, the job ends, and the runner, its token
// still good, serves the next job.
func TestDevSurvivesKill9(t *testing.T) {
	bin := testbin.Gosling(t)
	stateDir := t.TempDir()
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	d := startDev(t, bin, stateDir, ports)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	sim := exec.CommandContext(ctx, bin, "dev", "simulate", "job", "--egg", "data-group", "--duration", "6s", "--json", "--state-dir", stateDir)
	out := &lockedBuffer{}
	sim.Stdout, sim.Stderr = out, out
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Process.Kill(); _, _ = sim.Process.Wait() })
	var runner string
	var jobID float64
	for runner == "" {
		for _, line := range strings.Split(out.String(), "\n") {
			var st map[string]any
			if json.Unmarshal([]byte(line), &st) == nil && st["step"] == "runner" {
				runner, _ = st["runner"].(string)
				jobID, _ = st["job_id"].(float64)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the job never got a runner:\n%s\ndev:\n%s", out, d.out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Mid-job: the dev stack dies at once.
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = d.cmd.Process.Wait()
	_ = sim.Process.Kill()
	killed := testRepositories(d)
	if len(killed) == 0 {
		t.Errorf("the killed dev (pid %d) left no GitLab test server repositories in %s to clean up", d.cmd.Process.Pid, os.TempDir())
	}

	d = startDev(t, bin, stateDir, ports)
	// The job ends on the runner that took it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		status, ranOn := devJob(stateDir, int64(jobID))
		if status == "success" && ranOn != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d after the restart: %s on runner %d\ndev:\n%s", int64(jobID), status, ranOn, d.out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The next start removed what the killed run left (startDev returned
	// on the killed run's dev.json: by now the new run is up).
	for _, dir := range killed {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the restarted dev kept the killed run's %s: %v", dir, err)
		}
	}
	// The runner's token still works: it takes the next job.
	again := exec.CommandContext(ctx, bin, "dev", "simulate", "job", "--egg", "data-group", "--duration", "100ms", "--json", "--state-dir", stateDir)
	res, err := again.CombinedOutput()
	if err != nil || !strings.Contains(string(res), `"step":"done"`) || !strings.Contains(string(res), runner) {
		t.Errorf("the next job after the restart (want runner %s): %v\n%s\ndev:\n%s", runner, err, res, d.out)
	}
	d.stop(t)
	// A clean stop removes this run's repositories.
	if left := testRepositories(d); len(left) > 0 {
		t.Errorf("gosling dev stopped and left %v", left)
	}
}

// testRepositories are the GitLab test server's repositories directories
// of a dev run, by its pid (gitlabtest names them so).
func testRepositories(d *devRun) []string {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("gitlabtest-repos-%d-*", d.cmd.Process.Pid)))
	return dirs
}

// devJob reads a job's status and runner from the state gosling dev's
// GitLab test server writes as it changes.
func devJob(stateDir string, jobID int64) (string, int64) {
	b, err := os.ReadFile(filepath.Join(stateDir, "gitlab-test-server.json"))
	if err != nil {
		return "unreadable", 0
	}
	var snap struct {
		Jobs []struct {
			ID       int64  `json:"ID"`
			Status   string `json:"Status"`
			RunnerID int64  `json:"RunnerID"`
		} `json:"jobs"`
	}
	if json.Unmarshal(b, &snap) != nil {
		return "unreadable", 0
	}
	for _, j := range snap.Jobs {
		if j.ID == jobID {
			return j.Status, j.RunnerID
		}
	}
	return "missing", 0
}

// gosling dev --gitlab-runner runs local runners on the real GitLab Runner
// (bin/gitlab-runner): a simulated job on a serverless egg (12.8's
// run-single) and a pipeline on a pooled egg (its run) come back with
// their statuses, and their logs as GitLab's viewer shows them: no colour
// codes, no section markers; a cache passes between two serverless
// runners through Rift.
func TestDevRunsOnRealGitLabRunner(t *testing.T) {
	bin := testbin.Gosling(t)
	stateDir := t.TempDir()
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t)}
	d := startDev(t, bin, stateDir, ports, "--gitlab-runner", testbin.GitLabRunner(t))
	if !strings.Contains(d.out.String(), testbin.GitLabRunner(t)) || strings.Contains(d.out.String(), "GITLAB-RUNNER STAND-IN") {
		t.Errorf("banner does not name the real gitlab-runner:\n%s", d.out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	run := func(args ...string) ([]map[string]any, string) {
		cmd := exec.CommandContext(ctx, bin, append(append([]string{"dev"}, args...), "--json", "--state-dir", stateDir)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("gosling dev %v: %v\n%s\ndev:\n%s", args, err, out, d.out)
		}
		var steps []map[string]any
		var logs strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("output %q: %v", line, err)
			}
			steps = append(steps, m)
			if m["step"] == "log" {
				fmt.Fprintf(&logs, "[%v] %v\n", m["job"], m["message"])
			}
		}
		return steps, logs.String()
	}
	plain := func(what, l string) {
		t.Helper()
		if strings.Contains(l, "\x1b") || strings.Contains(l, "section_start") || strings.Contains(l, "section_end") || !strings.Contains(l, "Running with gitlab-runner 12.8.0") {
			t.Errorf("%s log is not the real runner's in plain text:\n%q", what, l)
		}
	}
	steps, l := run("simulate", "job", "--egg", "web-app", "--duration", "500ms")
	if last := steps[len(steps)-1]; last["step"] != "done" || last["status"] != "success" || !strings.Contains(l, "Simulated job of egg web-app") {
		t.Errorf("web-app steps: %v\n%s", steps, l)
	}
	plain("web-app", l)
	ci := filepath.Join(t.TempDir(), ".gitlab-ci.yml")
	if err := os.WriteFile(ci, []byte(devPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, l = run("pipeline", ci, "--egg", "data-group")
	statuses := map[string]any{}
	for _, st := range steps {
		if st["step"] == "job" {
			statuses[st["job"].(string)] = st["status"]
		}
	}
	if last := steps[len(steps)-1]; last["step"] != "done" || last["status"] != "success" || statuses["build"] != "success" || statuses["lint"] != "failed" ||
		!strings.Contains(l, "[build] building on stage build") || !strings.Contains(l, "[lint] lint complains") {
		t.Errorf("pipeline steps: %v\n%s", steps, l)
	}
	plain("pipeline", l)
	// web-app has a rift block: 12.8's cache helper saves the first job's
	// cache in Rift's bucket and the second job, on another runner,
	// restores it.
	if err := os.WriteFile(ci, []byte(riftPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, l = run("pipeline", ci, "--egg", "web-app")
	if last := steps[len(steps)-1]; last["step"] != "done" || last["status"] != "success" || !strings.Contains(l, "[read] cached by job") ||
		!strings.Contains(l, "[read] Downloading cache.zip from http://127.0.0.1:") {
		t.Errorf("Rift cache pipeline steps: %v\n%s", steps, l)
	}
	d.stop(t)
}
