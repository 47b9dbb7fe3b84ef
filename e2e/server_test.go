package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/store/pgtest"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/mothergoose"
)

// fleet is Gosling deployed as production runs it: a Temporal server,
// PostgreSQL, `gosling server` and one worker per task queue, each its own
// OS process, configured from a Nest's MG/config.fly, with the GitLab test
// server and local runners.
type fleet struct {
	t        testing.TB
	temporal *Temporal
	gitlab   *gitlabtest.Server
	project  gitlabtest.Project
	dsn      string
	store    store.Store
	stateDir string
	nestDir  string
	apiAddr  string
	env      []string

	server, mgWorker, ufWorker *Process
	mgMetrics, ufMetrics       string
	// projects and extraWorker serve the fleet benchmark.
	projects    []gitlabtest.Project
	extraWorker *Process
}

const fleetWebhookSecret = "fleet-webhook-secret-0001"

// fleetOptions shape a fleet.
type fleetOptions struct {
	// NoWorkers starts the server alone.
	NoWorkers bool
	// InMemoryTemporal keeps Temporal's state in memory: faster, but lost
	// when it stops.
	InMemoryTemporal bool
}

func startFleet(t testing.TB, o fleetOptions) *fleet {
	t.Helper()
	ctx := context.Background()
	f := &fleet{t: t, stateDir: t.TempDir(), nestDir: t.TempDir()}
	f.temporal = StartTemporal(t, o.InMemoryTemporal)
	f.dsn = pgtest.Start(t)
	f.gitlab = gitlabtest.New()
	t.Cleanup(f.gitlab.Close)
	g := f.gitlab.AddGroup("acme", 0)
	f.project = f.gitlab.AddProject("acme/web", g.ID)

	// The secrets every process reads, in the local store of the shared
	// state directory.
	local, err := secretstore.OpenLocal(filepath.Join(f.stateDir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	for ref, v := range map[fly.SecretRef]string{
		"local://gitlab/token": f.gitlab.Token(), "local://gitlab/webhook": fleetWebhookSecret,
		"local://api/token": APIToken, "local://db/dsn": f.dsn,
	} {
		if _, err := res.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	f.writeNest()
	if f.store, err = store.Open(ctx, f.dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.store.Close() })

	f.apiAddr = FreeAddr(t)
	f.mgMetrics, f.ufMetrics = FreeAddr(t), FreeAddr(t)
	f.env = []string{"GOSLING_STATE_DIR=" + f.stateDir, "GOSLING_NEST=" + f.nestDir, "GOSLING_TOFU=" + testbin.Tofu(t)}
	f.startServer()
	if !o.NoWorkers {
		f.mgWorker = f.startWorker("mothergoose-worker-1", "mothergoose", f.mgMetrics)
		f.ufWorker = f.startWorker("uglyfox-worker", "uglyfox", f.ufMetrics)
	}
	WaitHTTP(t, "http://"+f.apiAddr+"/readyz", http.StatusOK, time.Minute, f.server)
	return f
}

// writeNest writes the Nest the processes are configured from.
func (f *fleet) writeNest() {
	mg := fmt.Sprintf(`mothergoose {
  cloud = "local"

  temporal {
    address   = %q
    namespace = "default"
  }

  api_gateway {
    name = "gosling-e2e"
    auth {
      name   = "gosling-e2e-auth"
      tokens = ["local://api/token"]
    }
  }

  database {
    engine = "postgresql"
    dsn    = "local://db/dsn"
  }

  secrets {
    backend = "local"
    local {
      path = %q
    }
  }

  provider "local" {}
}
`, f.temporal.Addr, filepath.Join(f.stateDir, "secrets"))
	egg := fmt.Sprintf(`egg "web" {
  gitlab {
    host           = %q
    insecure       = true
    token          = "local://gitlab/token"
    webhook_secret = "local://gitlab/webhook"
  }

  project_id = %d

  runner {
    type                  = "serverless"
    clouds                = ["local"]
    cpu                   = 1
    memory                = "2GiB"
    max_concurrent        = 10
    tags                  = ["docker"]
    expected_job_duration = "10m"
  }
}
`, f.host(), f.project.ID)
	for path, body := range map[string]string{"MG/config.fly": mg, "Eggs/web/config.fly": egg} {
		p := filepath.Join(f.nestDir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
}

// nest is the Nest the processes run.
func (f *fleet) nest() *fly.Nest {
	f.t.Helper()
	n, diags := fly.LoadNest(f.nestDir)
	if diags.HasErrors() {
		f.t.Fatal(diags)
	}
	return n
}

func (f *fleet) host() string { return strings.TrimPrefix(f.gitlab.URL(), "http://") }

func (f *fleet) startServer() {
	f.server = StartProcess(f.t, "server", f.stateDir, f.env, "server", "--addr", f.apiAddr, "--nest-sync", "0")
}

// startWorker starts a worker process; its local machines run the
// gitlab-runner STAND-IN (`gosling dev gitlab-runner`).
func (f *fleet) startWorker(name, queue, metrics string) *Process {
	runner, err := runnerstandin.WriteWrapper(filepath.Join(f.stateDir, "bin"), testbin.Gosling(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return StartProcess(f.t, name, f.stateDir, f.env, "worker", "--queue", queue, "--metrics-addr", metrics,
		"--agent-api-url", "http://"+f.apiAddr, "--gitlab-runner", runner)
}

// deliver sends a job's current Job Hook to the server as GitLab does.
func (f *fleet) deliver(ctx context.Context, jobID int64, key string) (int, mothergoose.Result) {
	f.t.Helper()
	spec, ok := f.gitlab.JobHook(jobID)
	if !ok {
		f.t.Fatalf("no job %d", jobID)
	}
	resp, err := f.gitlab.Deliver(ctx, "http://"+f.apiAddr+"/webhooks/gitlab", gitlabtest.EventJob, fleetWebhookSecret, gitlabtest.JobHookPayload(spec), key)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r mothergoose.Result
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &r)
	return resp.StatusCode, r
}

// runnersOf lists the store's runners made for a job.
func (f *fleet) runnersOf(ctx context.Context, jobID int64) []store.Runner {
	rs, err := f.store.ListRunners(ctx, store.RunnerFilter{Egg: "web"})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []store.Runner
	for _, r := range rs {
		if r.JobID == jobID {
			out = append(out, r)
		}
	}
	return out
}

// waitRunner waits until the job's runner is in state.
// waitJobRan waits until a GitLab job has run to success on a runner and
// returns that runner's GitLab ID.
func (f *fleet) waitJobRan(ctx context.Context, jobID int64) int64 {
	f.t.Helper()
	for {
		j, _ := f.gitlab.Job(jobID)
		if j.Status == "success" && j.RunnerID != 0 {
			return j.RunnerID
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("job %d never ran: %+v", jobID, j)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (f *fleet) waitRunner(ctx context.Context, jobID int64, state store.RunnerState) store.Runner {
	f.t.Helper()
	for {
		if rs := f.runnersOf(ctx, jobID); len(rs) > 0 && rs[0].State == state {
			return rs[0]
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("job %d: no runner in state %s: %+v", jobID, state, f.runnersOf(context.Background(), jobID))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// The production processes, end to end: a pending Job Hook to `gosling
// server` gets a runner made by a `gosling worker` process; that worker is
// killed while the runner is being made and another one finishes it, once;
// a hook taken while Temporal is down waits in the server's outbox across a
// server restart and is delivered; every process serves /metrics; and the
// runners, gone with the jobs they ran, leave nothing behind.
func TestServerAndWorkersAsProcesses(t *testing.T) {
	f := startFleet(t, fleetOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// 1. A pending job; GitLab refuses the agent's token check until the
	// worker making its runner has been killed.
	f.gitlab.FailNext("POST", "/runners/verify", http.StatusServiceUnavailable, 1_000_000, false)
	job1 := f.gitlab.AddJob(f.project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}, Status: "pending"})
	if code, r := f.deliver(ctx, job1.ID, "job1-pending"); code != http.StatusAccepted || r.Status != mothergoose.StatusAccepted {
		t.Fatalf("pending hook: %d %+v", code, r)
	}
	r1 := f.waitRunner(ctx, job1.ID, store.StateRegistering)
	f.mgWorker.Kill(syscall.SIGKILL)
	// The runner's OpenTofu state is in PostgreSQL (the pg backend), not on
	// the killed worker's disk: the next worker finishes and tears down the
	// runner without its workspace directory.
	wsDir := filepath.Join(f.stateDir, "tofu", "workspaces", r1.ID)
	if _, err := os.Stat(filepath.Join(wsDir, "terraform.tfstate")); err == nil {
		t.Errorf("the runner's state is on the worker's disk (%s)", wsDir)
	}
	if err := os.RemoveAll(wsDir); err != nil {
		t.Fatal(err)
	}
	f.mgWorker = f.startWorker("mothergoose-worker-2", "mothergoose", f.mgMetrics)
	f.gitlab.ClearFaults()
	// The runner's gitlab-runner runs the job, and the runner goes with it.
	ran1 := f.waitJobRan(ctx, job1.ID)
	f.waitRunner(ctx, job1.ID, store.StateTerminated)
	if rs := f.runnersOf(ctx, job1.ID); len(rs) != 1 || rs[0].ID != r1.ID || ran1 != rs[0].GitLabRunnerID {
		t.Fatalf("job %d ran on GitLab runner %d and has runners %+v, want exactly %s", job1.ID, ran1, rs, r1.ID)
	}

	// 2. Temporal goes down: the server takes the next hook into its
	// outbox, is restarted, and delivers it once Temporal is back.
	f.temporal.Stop()
	job2 := f.gitlab.AddJob(f.project.ID, gitlabtest.JobSpec{Name: "lint", Stage: "test", Ref: "main", Tags: []string{"docker"}, Status: "pending"})
	code, r := f.deliver(ctx, job2.ID, "job2-pending")
	if code != http.StatusAccepted || r.Status != mothergoose.StatusQueued || r.OutboxID == 0 {
		t.Fatalf("pending hook while Temporal is down: %d %+v", code, r)
	}
	f.server.Kill(syscall.SIGTERM)
	if depth, err := f.store.OutboxDepth(ctx); err != nil || depth != 1 {
		t.Fatalf("outbox after the server stopped: %d, %v", depth, err)
	}
	f.temporal.Start()
	f.startServer()
	WaitHTTP(t, "http://"+f.apiAddr+"/readyz", http.StatusOK, time.Minute, f.server)
	f.waitJobRan(ctx, job2.ID)
	if depth, _ := f.store.OutboxDepth(ctx); depth != 0 {
		t.Errorf("outbox depth %d after delivery", depth)
	}

	// 3. Every process answers /metrics, with its own figures.
	for url, want := range map[string]string{
		"http://" + f.apiAddr + "/metrics":   "gosling_http_request_duration_seconds",
		"http://" + f.mgMetrics + "/metrics": "gosling_runner_provision_seconds",
		"http://" + f.ufMetrics + "/metrics": "go_goroutines",
	} {
		body := get(t, url)
		if !strings.Contains(body, want) {
			t.Errorf("%s lacks %s", url, want)
		}
	}

	// 4. The jobs ended; their runners are torn down and nothing is left.
	for _, id := range []int64{job1.ID, job2.ID} {
		f.waitRunner(ctx, id, store.StateTerminated)
	}
	// GitLab keeps the egg's shared runner (its machines were its runner
	// managers), and no runner of a machine's own.
	if rs := f.gitlab.Runners(); len(rs) != 1 || !strings.HasPrefix(rs[0].Description, contract.EggRunnerDescriptionPrefix) {
		t.Errorf("GitLab has runners %+v, want the egg's shared runner alone", rs)
	}
	ws, _ := filepath.Glob(filepath.Join(f.stateDir, "tofu", "machines", "*"))
	for _, w := range ws {
		if _, err := os.Stat(filepath.Join(w, "agent.pid")); err == nil {
			t.Errorf("machine %s still has an agent", w)
		}
	}
	// The runners' workflows end once their teardown is recorded.
	for _, id := range []int64{job1.ID, job2.ID} {
		wfID := contract.RunnerWorkflowID(f.host(), id)
		var res contract.ProvisionRunnerResult
		if err := f.temporal.Client().GetWorkflow(ctx, wfID, "").Get(ctx, &res); err != nil || res.Outcome != "job-finished" {
			t.Errorf("%s: %+v, %v", wfID, res, err)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// A Serverless Container may be frozen between requests, its outbox loop
// with it: the always-on mothergoose worker delivers what the API took
// into the outbox while Temporal was down, with the API still frozen.
func TestWorkerDeliversTheOutboxOfAFrozenAPI(t *testing.T) {
	f := startFleet(t, fleetOptions{NoWorkers: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f.temporal.Stop()
	// A finished job's hook is a status signal to its runner's workflow:
	// delivering it needs Temporal, and makes no runner.
	job := f.gitlab.AddJob(f.project.ID, gitlabtest.JobSpec{Name: "lint", Stage: "test", Ref: "main", Tags: []string{"docker"}, Status: "success"})
	code, r := f.deliver(ctx, job.ID, "job-finished")
	if code != http.StatusAccepted || r.Status != mothergoose.StatusQueued || r.OutboxID == 0 {
		t.Fatalf("hook while Temporal is down: %d %+v", code, r)
	}
	if err := syscall.Kill(f.server.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(f.server.PID(), syscall.SIGCONT) })
	f.temporal.Start()
	f.mgWorker = f.startWorker("mothergoose-worker", "mothergoose", f.mgMetrics)
	for {
		depth, err := f.store.OutboxDepth(ctx)
		if err == nil && depth == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the worker did not deliver the outbox: depth %d, %v", depth, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := syscall.Kill(f.server.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f.mgWorker.Log); !strings.Contains(string(b), "outbox entry delivered") {
		t.Errorf("the worker's log does not show the delivery:\n%s", b)
	}
}
