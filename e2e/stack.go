// Package e2e runs Gosling's real stack in tests and benchmarks: a Temporal
// dev server (the Temporal CLI from bin/), OpenTofu from bin/, the SQLite
// store, the local secret backend, local runner machines (gosling agent
// processes) and the GitLab test server in place of GitLab.
package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/cli/app"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/tofu"
	gworker "github.com/gosling-ci/gosling/worker"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
)

// deployment labels every machine this test binary makes, in process and
// in the gosling processes it starts (GOSLING_DEPLOYMENT), so the census
// after the tests (TestMain) finds what any of them left running.
var deployment = fmt.Sprintf("e2e-%d", os.Getpid())

// Stack is a running Gosling stack on this machine.
type Stack struct {
	T         testing.TB
	Dev       *testsuite.DevServer
	Client    client.Client
	GitLab    *gitlabtest.Server
	Group     gitlabtest.Group
	Project   gitlabtest.Project
	StateDir  string
	StoreDSN  string
	Store     store.Store
	Local     *secretstore.Local
	Secrets   *secretstore.Resolver
	Tofu      *tofu.Executor
	Acts      *activities.Activities
	Gosling   string
	Namespace string
	// GitLabRunner is the gitlab-runner local runners run under their
	// agents: Options.GitLabRunner, else the STAND-IN's wrapper.
	GitLabRunner string
	// AgentBinary is the agent the local provider's machines run:
	// Options.AgentBinary, else the gosling binary.
	AgentBinary string
	// AgentAPI is the URL agents report to: MotherGoose's API, serving
	// the latest StartAPI's MotherGoose (an empty Nest until then).
	AgentAPI string
	worker   worker.Worker
	handler  atomic.Pointer[http.Handler]
	// log is the worker's and the API's logger (Options.Logger).
	log *slog.Logger
}

// Options shape a stack.
type Options struct {
	// NoWorker leaves the worker out (tests that run it as a process).
	NoWorker bool
	// Logger receives the worker's logs (discarded by default).
	Logger *slog.Logger
	// GitLabRunner is the gitlab-runner binary local runners run (the
	// real one: testbin.GitLabRunner); empty runs the stand-in.
	GitLabRunner string
	// GitLab are options of the GitLab test server.
	GitLab []gitlabtest.Option
	// AgentBinary is the agent the local provider's machines run
	// (default: the gosling binary; testbin.GoslingAgent for the small one).
	AgentBinary string
}

// Start brings a stack up; everything stops in t.Cleanup.
func Start(t testing.TB, opts Options) *Stack {
	t.Helper()
	ctx := context.Background()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Stack{T: t, Namespace: "default", Gosling: testbin.Gosling(t), log: log}
	s.StateDir = t.TempDir()

	dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  testbin.Temporal(t),
		ClientOptions: &client.Options{Namespace: s.Namespace, Logger: quietLogger{}},
		LogLevel:      "error",
		Stdout:        discard{}, Stderr: discard{},
	})
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	s.Dev, s.Client = dev, dev.Client()
	t.Cleanup(func() { _ = dev.Stop() })

	s.GitLab = gitlabtest.New(opts.GitLab...)
	t.Cleanup(s.GitLab.Close)
	s.Group = s.GitLab.AddGroup("acme", 0)
	s.Project = s.GitLab.AddProject("acme/web", s.Group.ID)

	s.StoreDSN = "sqlite://" + filepath.Join(s.StateDir, "gosling.db")
	if s.Store, err = store.Open(ctx, s.StoreDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Store.Close() })
	if s.Local, err = secretstore.OpenLocal(filepath.Join(s.StateDir, "secrets")); err != nil {
		t.Fatal(err)
	}
	s.Secrets = secretstore.NewResolver(s.Local)
	if _, err := s.Secrets.Put(ctx, "local://gitlab/token", s.GitLab.Token()); err != nil {
		t.Fatal(err)
	}
	// Agents report to MotherGoose's API, never to Temporal: the API runs
	// from the start, on a MotherGoose with an empty Nest until StartAPI
	// serves eggs.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.handler.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	s.AgentAPI = hs.URL
	s.serve(&fly.Nest{MotherGoose: fly.MotherGoose{Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}}}}, nil)
	s.GitLabRunner = opts.GitLabRunner
	s.AgentBinary = cmp.Or(opts.AgentBinary, s.Gosling)
	if s.GitLabRunner == "" {
		if s.GitLabRunner, err = runnerstandin.WriteWrapper(filepath.Join(s.StateDir, "bin"), s.Gosling); err != nil {
			t.Fatal(err)
		}
	}
	// The worker's side, built as gosling worker builds it (app.Open); its
	// MotherGoose serves no Nest until ApplyNestWithSchedules.
	a := s.openApp(&fly.Nest{}, nil, true, nil)
	s.Acts = a.Activities
	s.Tofu = s.Acts.Tofu
	// Whatever a test leaves running, no agent process outlives it.
	t.Cleanup(func() {
		if t.Failed() {
			s.DumpAgentLogs()
		}
		s.destroyAll()
	})
	if !opts.NoWorker {
		s.StartWorker()
	}
	return s
}

// StartWorker runs an in-process MotherGoose worker.
func (s *Stack) StartWorker() {
	w, err := gworker.New(s.Client, contract.TaskQueueMotherGoose, s.Acts, gworker.Options{})
	if err != nil {
		s.T.Fatal(err)
	}
	if err := w.Start(); err != nil {
		s.T.Fatal(err)
	}
	s.worker = w
	s.T.Cleanup(w.Stop)
}

// Egg is an egg served by the stack's GitLab project.
func (s *Stack) Egg(name, kind string) fly.Egg {
	u, _ := url.Parse(s.GitLab.URL())
	return fly.Egg{
		Name: name, Kind: fly.KindEgg,
		GitLab:   fly.GitLab{Host: u.Host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://gitlab/webhook"},
		Projects: []fly.ProjectRef{{ID: s.Project.ID, Path: s.Project.PathWithNamespace}},
		Runner: fly.Runner{
			Type: kind, Clouds: []string{fly.CloudLocal}, CPU: 1, Memory: fly.GiB, Disk: 10 * fly.GiB,
			MaxConcurrent: 10, JobsPerRunner: 1, Tags: []string{"docker"}, Image: "alpine:3.20",
			ExpectedJobDuration: fly.Duration(10 * time.Minute),
		},
	}
}

// Host is the GitLab test server's host:port, as eggs name it.
func (s *Stack) Host() string {
	u, _ := url.Parse(s.GitLab.URL())
	return u.Host
}

// MachineDir is where a local runner's machine lives.
func (s *Stack) MachineDir(runnerID string) string {
	return filepath.Join(s.Tofu.StateDir(), "machines", runnerID)
}

// ProvisionJob adds a pending job with the given tags to the GitLab test
// server and starts ProvisionRunner for it, the way the webhook path does.
// It returns the run and the job's ID.
func (s *Stack) ProvisionJob(ctx context.Context, egg fly.Egg, tags []string, mutate func(*contract.ProvisionRunnerInput)) (client.WorkflowRun, int64, error) {
	job := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "test", Stage: "test", Ref: "main", Tags: tags, Status: "pending"})
	run, err := s.StartJobRunner(ctx, egg, job.ID, mutate)
	return run, job.ID, err
}

// StartJobRunner starts (or joins) ProvisionRunner for an existing job.
func (s *Stack) StartJobRunner(ctx context.Context, egg fly.Egg, jobID int64, mutate func(*contract.ProvisionRunnerInput)) (client.WorkflowRun, error) {
	wfID := contract.RunnerWorkflowID(egg.GitLab.Host, jobID)
	in := contract.ProvisionRunnerInput{
		RunnerID: contract.RunnerIDFor(egg.Name, wfID), Egg: egg,
		Job:          &contract.JobRef{Host: egg.GitLab.Host, ProjectID: s.Project.ID, ProjectPath: s.Project.PathWithNamespace, JobID: jobID},
		ReadyTimeout: 2 * time.Minute,
	}
	if mutate != nil {
		mutate(&in)
	}
	return s.Client.ExecuteWorkflow(ctx, contract.StartOptions(wfID), contract.WorkflowProvisionRunner, in)
}

// ProvisionPool starts ProvisionRunner for a runner made ahead of demand
// (no job): it stays in service until deprovisioned.
func (s *Stack) ProvisionPool(ctx context.Context, egg fly.Egg, runnerID string, mutate func(*contract.ProvisionRunnerInput)) (client.WorkflowRun, error) {
	in := contract.ProvisionRunnerInput{RunnerID: runnerID, Egg: egg, ReadyTimeout: 2 * time.Minute}
	if mutate != nil {
		mutate(&in)
	}
	return s.Client.ExecuteWorkflow(ctx, contract.StartOptions("test-pool/"+runnerID), contract.WorkflowProvisionRunner, in)
}

// Deprovision runs DeprovisionRunner to completion.
func (s *Stack) Deprovision(ctx context.Context, egg fly.Egg, runnerID string) (contract.DeprovisionRunnerResult, error) {
	var res contract.DeprovisionRunnerResult
	run, err := s.Client.ExecuteWorkflow(ctx, contract.StartOptions(contract.DeprovisionWorkflowID(runnerID)), contract.WorkflowDeprovisionRunner,
		contract.DeprovisionRunnerInput{RunnerID: runnerID, GitLab: egg.GitLab, Reason: "test teardown"})
	if err != nil {
		return res, err
	}
	return res, run.Get(ctx, &res)
}

// destroyAll destroys every workspace left, so no agent outlives a test.
func (s *Stack) destroyAll() {
	ws, err := s.Tofu.Workspaces()
	if err != nil {
		return
	}
	for _, w := range ws {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := s.Tofu.Destroy(ctx, w.Name, nil); err != nil {
			fmt.Fprintf(os.Stderr, "e2e cleanup: destroy %s: %v\n", w.Name, err)
		}
		cancel()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// DumpAgentLogs prints every local machine's agent log into the test log,
// for diagnosing a failed test.
func (s *Stack) DumpAgentLogs() {
	dirs, _ := filepath.Glob(filepath.Join(s.Tofu.StateDir(), "machines", "*", "agent.log"))
	for _, p := range dirs {
		b, _ := os.ReadFile(p)
		s.T.Logf("%s:\n%s", p, b)
	}
}

// APIToken is the REST API's bearer token on the stack.
const APIToken = "e2e-api-token"

// API is MotherGoose's HTTP server on the stack, serving a Nest.
type API struct {
	URL         string
	Server      *api.Server
	MotherGoose *mothergoose.MotherGoose
	Nest        *fly.Nest
}

// StartAPI serves the given eggs through MotherGoose and the real API,
// with "local://gitlab/webhook" as their webhook secret, and returns it.
func (s *Stack) StartAPI(secret string, eggs ...fly.Egg) *API {
	return s.StartAPIWith(nil, secret, eggs...)
}

// StartAPIWith is StartAPI with MotherGoose's configuration changed by
// mutate (nil: none) before it is opened.
func (s *Stack) StartAPIWith(mutate func(*mothergoose.Config), secret string, eggs ...fly.Egg) *API {
	t := s.T
	ctx := context.Background()
	for ref, v := range map[fly.SecretRef]string{"local://gitlab/webhook": secret, "local://api/token": APIToken} {
		if _, err := s.Secrets.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	nest := &fly.Nest{Eggs: eggs, MotherGoose: fly.MotherGoose{
		Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
	}}
	return s.serve(nest, mutate)
}

// openApp builds a process of the stack with the composition root, as
// gosling server and gosling worker are built: MotherGoose on nest over the
// stack's store, secrets and Temporal, and the worker's activities (acts)
// or the API (api); queues get workers, started. It is closed when the
// test ends.
func (s *Stack) openApp(nest *fly.Nest, mutate func(*mothergoose.Config), acts bool, apiCfg *api.Config, queues ...string) *app.App {
	t := s.T
	cfg := app.Config{
		MotherGoose: mothergoose.Config{Nest: nest, Store: s.Store, Temporal: s.Client, Secrets: s.Secrets, Logger: s.log,
			GitLabOptions: []gitlab.Option{gitlab.WithRetry(3, 10*time.Millisecond, 100*time.Millisecond)}},
		API: apiCfg, Queues: queues,
	}
	if mutate != nil {
		mutate(&cfg.MotherGoose)
	}
	if acts {
		cfg.Activities = func(context.Context, *mothergoose.MotherGoose) (gworker.Deps, error) {
			return gworker.Deps{
				Tofu: testbin.Tofu(t), StateDir: s.StateDir,
				Agent: activities.AgentSettings{
					Deployment: deployment,
					Binary:     s.AgentBinary, GitLabRunner: s.GitLabRunner, SecretsDir: s.Local.Dir(), HeartbeatSeconds: 1, APIURL: s.AgentAPI,
				},
			}, nil
		}
	}
	a, err := app.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// serve makes the stack's API serve a MotherGoose on nest.
func (s *Stack) serve(nest *fly.Nest, mutate func(*mothergoose.Config)) *API {
	t := s.T
	ctx := context.Background()
	a := s.openApp(nest, mutate, false, &api.Config{APITokens: []fly.SecretRef{"local://api/token"}})
	mg, srv := a.MotherGoose, a.API
	h := srv.Handler()
	s.handler.Store(&h)
	actx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go mg.RunOutbox(actx)
	return &API{URL: s.AgentAPI, Server: srv, MotherGoose: mg, Nest: nest}
}

// DeliverJobHook sends the job's current Job Hook to the API as GitLab
// does, and returns the HTTP status and the decoded answer.
func (s *Stack) DeliverJobHook(ctx context.Context, a *API, jobID int64, secret, idempotencyKey string) (int, api.HookResponse, error) {
	spec, ok := s.GitLab.JobHook(jobID)
	if !ok {
		return 0, api.HookResponse{}, fmt.Errorf("no job %d", jobID)
	}
	resp, err := s.GitLab.Deliver(ctx, a.URL+"/webhooks/gitlab", gitlabtest.EventJob, secret, gitlabtest.JobHookPayload(spec), idempotencyKey)
	if err != nil {
		return 0, api.HookResponse{}, err
	}
	defer resp.Body.Close()
	var hr api.HookResponse
	err = json.NewDecoder(resp.Body).Decode(&hr)
	return resp.StatusCode, hr, err
}

// ApplyNestWithSchedules opens MotherGoose on nest (fetch, when set, reads
// the Nest repository for nest_update), starts the worker with it, and
// applies nest, which makes the Nest's schedules; they are deleted when
// the test ends.
func (s *Stack) ApplyNestWithSchedules(ctx context.Context, nest *fly.Nest, fetch func(context.Context, string) (*fly.Nest, string, error)) *mothergoose.MotherGoose {
	s.T.Helper()
	// A worker whose MotherGoose serves the Nest, as gosling worker's
	// does once it has loaded one.
	a := s.openApp(nest, func(c *mothergoose.Config) { c.FetchNest, c.Logger = fetch, slog.New(slog.DiscardHandler) }, true, nil, contract.TaskQueueMotherGoose)
	mg := a.MotherGoose
	s.Acts = a.Activities
	if _, err := s.Secrets.Put(ctx, "local://gitlab/webhook", "unused"); err != nil {
		s.T.Fatal(err)
	}
	if res, err := mg.NestSync().ApplyNest(ctx, nest, "", "e2e"); err != nil || len(res.Warnings) != 0 {
		s.T.Fatalf("apply: %+v, %v", res, err)
	}
	s.T.Cleanup(func() { _, _ = mothergoose.EnsureNestSchedules(context.Background(), s.Client.ScheduleClient(), nil) })
	return mg
}
