package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/lambdatest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// fakeMG is MotherGoose's agent endpoints as the agent sees them: it
// checks the bearer (the machine's agent credential, never the runner
// token) and keeps every report.
type fakeMG struct {
	srv   *httptest.Server
	token func() string

	mu    sync.Mutex
	ready []agentapi.Ready
	beats []agentapi.Beat
	jobs  []agentapi.JobReport
	// interruptions are the interruption notices reported.
	interruptions []agentapi.Interruption
	pins          agentapi.Pins
	denied        int
}

func newFakeMG(t testing.TB, token func() string) *fakeMG {
	f := &fakeMG{token: token}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+f.token() {
			f.mu.Lock()
			f.denied++
			f.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/ready"):
			var v agentapi.Ready
			_ = json.Unmarshal(b, &v)
			f.ready = append(f.ready, v)
		case strings.HasSuffix(r.URL.Path, "/heartbeat"):
			var v agentapi.Beat
			_ = json.Unmarshal(b, &v)
			f.beats = append(f.beats, v)
		case strings.HasSuffix(r.URL.Path, "/interruption"):
			var v agentapi.Interruption
			_ = json.Unmarshal(b, &v)
			f.interruptions = append(f.interruptions, v)
			w.WriteHeader(http.StatusNoContent)
			return
		case strings.HasSuffix(r.URL.Path, "/jobs"):
			var v agentapi.JobReport
			_ = json.Unmarshal(b, &v)
			f.jobs = append(f.jobs, v)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		_ = json.NewEncoder(w).Encode(f.pins)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMG) setPins(p agentapi.Pins) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pins = p
}

func (f *fakeMG) snapshot() (ready []agentapi.Ready, beats []agentapi.Beat, jobs []agentapi.JobReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ready), slices.Clone(f.beats), slices.Clone(f.jobs)
}

// jobStatuses lists the reported statuses of a job in order.
func (f *fakeMG) jobStatuses(id int64) []string {
	_, _, jobs := f.snapshot()
	var out []string
	for _, j := range jobs {
		if j.JobID == id {
			s := j.Status
			if j.FailureReason != "" {
				s += " " + j.FailureReason
			}
			out = append(out, s)
		}
	}
	return out
}

// rig is a GitLab test server with a project and a runner, a local secret
// store holding the runner's token and a secret variable, and a fake
// MotherGoose: what a machine's agent needs.
type rig struct {
	t       testing.TB
	gl      *gitlabtest.Server
	project gitlabtest.Project
	runner  gitlabtest.Runner
	store   *secretstore.Resolver
	mg      *fakeMG
	cfg     agentapi.Config
	dir     string
	gosling string
}

const (
	deployKey = "dk-5ecret-value-0451"
	// credential is the machine's agent credential.
	credential = "gsa-r1-credential-0451"
)

func newRig(t testing.TB) *rig {
	t.Helper()
	return newRigWith(t, gitlabtest.WithLongPolling(5*time.Second))
}

// newRigWith is newRig with the GitLab test server's options.
func newRigWith(t testing.TB, opts ...gitlabtest.Option) *rig {
	t.Helper()
	r := &rig{t: t, gl: gitlabtest.New(opts...), dir: filepath.Join(t.TempDir(), "machine"), gosling: testbin.Gosling(t)}
	t.Cleanup(r.gl.Close)
	r.project = r.gl.AddProject("acme/web", r.gl.AddGroup("acme", 0).ID)
	r.runner = r.gl.AddRunner(gitlabtest.Runner{ProjectID: r.project.ID, Type: "project_type", RunUntagged: true, Description: "gosling/web/r1"})
	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	r.store = secretstore.NewResolver(local)
	ctx := context.Background()
	if _, err := r.store.Put(ctx, "local://runners/r1/token", r.runner.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Put(ctx, "local://runners/r1/agent", credential); err != nil {
		t.Fatal(err)
	}
	r.mg = newFakeMG(t, func() string { return credential })
	wrapper, err := runnerstandin.WriteWrapper(filepath.Join(t.TempDir(), "bin"), r.gosling)
	if err != nil {
		t.Fatal(err)
	}
	r.cfg = agentapi.Config{
		RunnerID: "r1", Egg: "web", GitLabURL: r.gl.URL(), TokenRef: "local://runners/r1/token", AgentRef: "local://runners/r1/agent",
		SecretsDir: local.Dir(), APIURL: r.mg.srv.URL, HeartbeatSeconds: 1,
		Runner: agentapi.RunnerConfig{Binary: wrapper, Executor: agentapi.ExecutorShell, Concurrent: 1, Env: map[string]fly.EnvValue{
			"DEPLOY_KEY": {Secret: "local://ci/deploy_key"}, "STAGE_NAME": {Value: "review"},
		}},
	}
	return r
}

func (r *rig) launch(o agent.LaunchOptions) {
	r.t.Helper()
	if err := agent.Launch(r.gosling, r.dir, r.cfg, o); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() {
		if err := agent.Stop(r.dir, 30*time.Second); err != nil {
			r.t.Error(err)
		}
		if r.t.Failed() {
			b, _ := os.ReadFile(agent.LogFile(r.dir))
			r.t.Logf("agent.log:\n%s", b)
		}
	})
}

func (r *rig) pipeline(jobs ...gitlabtest.JobSpec) gitlabtest.Pipeline {
	r.t.Helper()
	p, err := r.gl.CreatePipeline(r.project.ID, gitlabtest.PipelineSpec{Jobs: jobs})
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// waitJobs waits until every job of a pipeline is finished.
func (r *rig) waitJobs(pipelineID int64, within time.Duration) []gitlabtest.Job {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		jobs := r.gl.PipelineJobs(pipelineID)
		done := len(jobs) > 0
		for _, j := range jobs {
			done = done && (j.Status == "success" || j.Status == "failed" || j.Status == "canceled" || j.Status == "skipped")
		}
		if done {
			return jobs
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("pipeline %d not done after %s: %+v", pipelineID, within, jobs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, within, what, cond)
}

// keyCheck is a script line that checks DEPLOY_KEY without printing it.
func keyCheck() string {
	sum := sha256.Sum256([]byte(deployKey))
	return `test "$(printf %s "$DEPLOY_KEY" | sha256sum | cut -c1-16)" = "` + hex.EncodeToString(sum[:])[:16] + `" && echo "deploy key ok in $STAGE_NAME"`
}

// deployAndBroken runs a pipeline of two jobs, one that checks the
// runner's secret variable and prints what follows (extra), one that
// fails, and checks their statuses, logs and what the agent told
// MotherGoose of them.
func (r *rig) deployAndBroken(extra ...string) (deploy, broken gitlabtest.Job) {
	t := r.t
	t.Helper()
	p := r.pipeline(
		gitlabtest.JobSpec{Name: "deploy", Stage: "test", Script: append([]string{keyCheck()}, extra...)},
		gitlabtest.JobSpec{Name: "broken", Stage: "test", Script: []string{"echo about to fail", "exit 3"}},
	)
	for _, j := range r.waitJobs(p.ID, 2*time.Minute) {
		if j.Name == "deploy" {
			deploy = j
		} else {
			broken = j
		}
	}
	if deploy.Status != "success" || !strings.Contains(string(r.gl.Trace(deploy.ID)), "deploy key ok in review") {
		t.Errorf("deploy: %s\n%s", deploy.Status, r.gl.Trace(deploy.ID))
	}
	if broken.Status != "failed" || broken.FailureReason != "script_failure" {
		t.Errorf("broken: %s %s", broken.Status, broken.FailureReason)
	}
	waitFor(t, "job reports", 30*time.Second, func() bool {
		return len(r.mg.jobStatuses(broken.ID)) == 2 && len(r.mg.jobStatuses(deploy.ID)) == 2
	})
	if got := r.mg.jobStatuses(deploy.ID); strings.Join(got, ",") != "running,success" {
		t.Errorf("deploy reports %v", got)
	}
	if got := r.mg.jobStatuses(broken.ID); strings.Join(got, ",") != "running,failed script_failure" {
		t.Errorf("broken reports %v", got)
	}
	return deploy, broken
}

// invoke posts one invocation to a served agent with a bearer token.
func invoke(t testing.TB, url, token string) (*http.Response, agentapi.InvokeResult) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+agentapi.PathInvoke, strings.NewReader(`{"runner_id":"r1"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res agentapi.InvokeResult
	_ = json.NewDecoder(resp.Body).Decode(&res)
	return resp, res
}

// The agent writes config.toml from its configuration (the token from the
// secret store, the runner's variables with secrets resolved), starts
// gitlab-runner (the stand-in), reports ready; jobs run, their logs and
// statuses go back to GitLab through the runner API, and the agent tells
// MotherGoose which jobs ran and how they ended. No secret reaches its log.
func TestAgentSupervisesGitLabRunner(t *testing.T) {
	r := newRig(t)
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	ready, _, _ := r.mg.snapshot()
	if ready[0].Trigger != agentapi.TriggerStart || ready[0].Versions.Agent == "" || ready[0].Versions.GitLabRunner != runnerstandin.Version || ready[0].TokenVersion != "1" {
		t.Errorf("ready = %+v", ready[0])
	}

	info, err := os.Stat(filepath.Join(r.dir, "config.toml"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("config.toml: %v %v", info, err)
	}
	toml, _ := os.ReadFile(filepath.Join(r.dir, "config.toml"))
	for _, want := range []string{`concurrent = 1`, `listen_address = '127.0.0.1:`, `url = '` + r.gl.URL(), `token = '` + r.runner.Token, `executor = 'shell'`, `'DEPLOY_KEY=` + deployKey + `'`, `'STAGE_NAME=review'`} {
		if !strings.Contains(string(toml), want) {
			t.Errorf("config.toml lacks %s:\n%s", want, toml)
		}
	}

	r.deployAndBroken()
	waitFor(t, "a heartbeat", 10*time.Second, func() bool { _, beats, _ := r.mg.snapshot(); return len(beats) > 0 })

	logs, _ := os.ReadFile(agent.LogFile(r.dir))
	for _, secret := range []string{deployKey, r.runner.Token} {
		if strings.Contains(string(logs), secret) {
			t.Errorf("agent.log holds a secret %q", secret[:6])
		}
	}
	if !strings.Contains(string(logs), runnerstandin.Banner) {
		t.Error("agent.log lacks gitlab-runner's output")
	}
}

// Stopping the machine waits for the running job: the agent stops
// gitlab-runner gracefully (SIGQUIT).
func TestAgentStopFinishesRunningJob(t *testing.T) {
	r := newRig(t)
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	p := r.pipeline(gitlabtest.JobSpec{Name: "slow", Script: []string{"sleep 2", "echo finished the slow job"}})
	jobID := r.gl.PipelineJobs(p.ID)[0].ID
	waitFor(t, "the job running", time.Minute, func() bool { j, _ := r.gl.Job(jobID); return j.Status == "running" })
	if err := agent.Stop(r.dir, time.Minute); err != nil {
		t.Fatal(err)
	}
	if j, _ := r.gl.Job(jobID); j.Status != "success" || !strings.Contains(string(r.gl.Trace(jobID)), "finished the slow job") {
		t.Errorf("job after stop: %s\n%s", j.Status, r.gl.Trace(jobID))
	}
	if s := agent.Inspect(r.dir); s.Alive {
		t.Errorf("agent alive after stop: %+v", s)
	}
}

// A VM made for one job (runner.mode single under `gosling agent run`)
// runs gitlab-runner run-single: it takes one job, then no other, though
// the agent stays up and heartbeats until the machine is destroyed.
func TestAgentOneJobVMTakesNoSecondJob(t *testing.T) {
	r := newRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	first := r.pipeline(gitlabtest.JobSpec{Name: "its-job", Script: []string{"echo the one job"}})
	if jobs := r.waitJobs(first.ID, time.Minute); jobs[0].Status != "success" {
		t.Fatalf("its job: %+v", jobs[0])
	}
	waitFor(t, "the agent done", 30*time.Second, func() bool { return agent.Inspect(r.dir).Phase == agent.PhaseDone })
	_, before, _ := r.mg.snapshot()
	second := r.pipeline(gitlabtest.JobSpec{Name: "another", Script: []string{"echo taken"}})
	id := r.gl.PipelineJobs(second.ID)[0].ID
	waitFor(t, "heartbeats after the job", 10*time.Second, func() bool { _, beats, _ := r.mg.snapshot(); return len(beats) > len(before)+1 })
	if j, _ := r.gl.Job(id); j.Status != "pending" || j.RunnerID != 0 {
		t.Errorf("a second job was taken: %+v", j)
	}
	if s := agent.Inspect(r.dir); !s.Alive || s.Phase != agent.PhaseDone {
		t.Errorf("agent after its job: %+v", s)
	}
	logs, _ := os.ReadFile(agent.LogFile(r.dir))
	if !strings.Contains(string(logs), "run-single") {
		t.Errorf("gitlab-runner did not run run-single:\n%s", logs)
	}
}

// A served agent runs one job per invocation; the answer comes when the job
// is done, and says how it went. Invokers need the runner token.
func TestAgentServeRunsOneJobPerInvocation(t *testing.T) {
	r := newRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.cfg.Runner.WaitTimeoutSeconds = 30
	r.launch(agent.LaunchOptions{Serve: true, MaxRun: 5 * time.Minute})
	u, err := agent.ServeURL(r.dir)
	if err != nil || !strings.HasPrefix(u, "http://127.0.0.1:") {
		t.Fatalf("serve url %q %v", u, err)
	}
	if resp, _ := invoke(t, u, "glrt-wrong"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %s", resp.Status)
	}
	p := r.pipeline(gitlabtest.JobSpec{Name: "one", Script: []string{keyCheck()}}, gitlabtest.JobSpec{Name: "two", Script: []string{"true"}})
	resp, res := invoke(t, u, r.runner.Token)
	if resp.StatusCode != http.StatusOK || res.Error != "" || res.ExitCode != 0 || len(res.Jobs) != 1 || res.Jobs[0].Status != agentapi.JobSuccess {
		t.Fatalf("invocation: %s %+v", resp.Status, res)
	}
	jobs := r.gl.PipelineJobs(p.ID)
	ran := 0
	for _, j := range jobs {
		if j.Status == "success" {
			ran++
		}
	}
	if ran != 1 {
		t.Errorf("one invocation ran %d jobs: %+v", ran, jobs)
	}
	// The next invocation takes the next job.
	if _, res := invoke(t, u, r.runner.Token); len(res.Jobs) != 1 || res.Jobs[0].Status != agentapi.JobSuccess {
		t.Errorf("second invocation: %+v", res)
	}
	ready, _, _ := r.mg.snapshot()
	if len(ready) != 2 || ready[0].Trigger != agentapi.TriggerInvoke {
		t.Errorf("ready reports %+v", ready)
	}
}

// An egg with a rift block gets [runners.cache] pointing at its Rift: the
// agent asks Rift's control API for the egg's settings with the runner
// token (over TLS, trusting Rift's CA) and writes Rift's rendering of them.
func TestAgentPointsTheCacheAtRift(t *testing.T) {
	r := newRig(t)
	var asked string
	rift := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		asked = req.Method + " " + req.URL.Path
		if req.Header.Get("Authorization") != "Bearer "+r.runner.Token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"egg": "web", "runner_id": "r1", "cache": map[string]any{
			"server_address": "rift.test:9000", "access_key": "GRTESTKEY", "secret_key": "rift-secret-key-0123", "bucket_name": "web", "bucket_location": "us-east-1",
		}})
	}))
	t.Cleanup(rift.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rift.Certificate().Raw})
	r.cfg.Runner.Rift = &agentapi.RiftConfig{URL: rift.URL, CA: string(ca)}
	r.launch(agent.LaunchOptions{})
	waitFor(t, "ready", time.Minute, func() bool { ready, _, _ := r.mg.snapshot(); return len(ready) > 0 })
	toml, _ := os.ReadFile(filepath.Join(r.dir, "config.toml"))
	for _, want := range []string{"[runners.cache]", "Type = 's3'", "ServerAddress = 'rift.test:9000'", "BucketName = 'web'", "SecretKey = 'rift-secret-key-0123'"} {
		if !strings.Contains(string(toml), want) {
			t.Errorf("config.toml lacks %s:\n%s", want, toml)
		}
	}
	if asked != "GET /rift/v1/eggs/web/config" {
		t.Errorf("Rift was asked %q", asked)
	}
	waitFor(t, "the stand-in reading the cache section", 10*time.Second, func() bool {
		b, _ := os.ReadFile(agent.LogFile(r.dir))
		return strings.Contains(string(b), "Job caches are restored and saved") && strings.Contains(string(b), `"server":"rift.test:9000"`)
	})
	if b, _ := os.ReadFile(agent.LogFile(r.dir)); strings.Contains(string(b), "rift-secret-key-0123") {
		t.Error("agent.log holds Rift's secret key")
	}
}

// A short AWS serverless runner is a Lambda function: the agent binary
// (gosling-agent) takes each invocation from the Lambda Runtime API
// (the stand-in), runs one job in it and answers with the job's result; it
// reports ready and the job to MotherGoose, and its answer names no
// secret.
func TestAgentServeLambdaRunsOneJobPerInvocation(t *testing.T) {
	r := newRig(t)
	r.cfg.Runner.Mode = agentapi.ModeSingle
	r.cfg.Runner.WaitTimeoutSeconds = 30
	rt := lambdatest.New("gosling-r1", 2*time.Minute)
	t.Cleanup(rt.Close)
	cfg, _ := json.Marshal(r.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, testbin.GoslingAgent(t), "agent", "serve", "--lambda", "--work-dir", r.dir, "--config-env", agentapi.EnvAgentConfig, "--auth", agentapi.InvokeAuthPlatform)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), agent.EnvLambdaRuntimeAPI+"="+rt.Addr(), agentapi.EnvAgentConfig+"="+string(cfg))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent output:\n%s", out.String())
		}
	})
	invoke := func() agentapi.InvokeResult {
		t.Helper()
		ictx, icancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer icancel()
		res := rt.Invoke(ictx, []byte(`{"runner_id":"r1","wait_timeout_seconds":30}`))
		if res.Kind != "response" {
			t.Fatalf("invocation ended %s: %s", res.Kind, res.Body)
		}
		var ir agentapi.InvokeResult
		if err := json.Unmarshal(res.Body, &ir); err != nil {
			t.Fatalf("answer %s: %v", res.Body, err)
		}
		if strings.Contains(string(res.Body), r.runner.Token) || strings.Contains(string(res.Body), deployKey) {
			t.Errorf("the answer holds a secret: %s", res.Body)
		}
		return ir
	}
	p := r.pipeline(gitlabtest.JobSpec{Name: "one", Script: []string{keyCheck()}}, gitlabtest.JobSpec{Name: "two", Script: []string{"true"}})
	if res := invoke(); res.Error != "" || res.ExitCode != 0 || len(res.Jobs) != 1 || res.Jobs[0].Status != agentapi.JobSuccess {
		t.Fatalf("first invocation: %+v", res)
	}
	if res := invoke(); len(res.Jobs) != 1 || res.Jobs[0].Status != agentapi.JobSuccess {
		t.Errorf("second invocation: %+v", res)
	}
	r.waitJobs(p.ID, 30*time.Second)
	ready, _, jobs := r.mg.snapshot()
	if len(ready) != 2 || ready[0].Trigger != agentapi.TriggerInvoke || len(jobs) == 0 {
		t.Errorf("ready reports %+v, job reports %d", ready, len(jobs))
	}
	if strings.Contains(out.String(), r.runner.Token) || strings.Contains(out.String(), deployKey) {
		t.Error("a secret in the agent's output")
	}
}
