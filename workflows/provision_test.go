package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

func testEgg(kind string) fly.Egg {
	return fly.Egg{
		Name: "web", Kind: fly.KindEgg,
		GitLab:   fly.GitLab{Host: "gitlab.example.com", Token: "local://gitlab/token", WebhookSecret: "local://gitlab/webhook"},
		Projects: []fly.ProjectRef{{ID: 7, Path: "acme/web"}},
		Runner: fly.Runner{
			Type: kind, Clouds: []string{fly.CloudLocal}, CPU: 2, Memory: 4 * fly.GiB, Disk: 20 * fly.GiB,
			MaxConcurrent: 5, JobsPerRunner: 1, Tags: []string{"docker"}, Image: "alpine:3.20",
			ExpectedJobDuration: fly.Duration(15 * time.Minute),
		},
	}
}

// calls records the activities a workflow ran, in order.
type calls struct {
	mu   sync.Mutex
	list []string
}

func (c *calls) add(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, s)
}

func (c *calls) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.list, ",")
}

type env struct {
	*testsuite.TestWorkflowEnvironment
	calls *calls
	// status is what the Jobs API says of the job (pending when ""), and
	// infoDelay how long it takes to say it.
	mu        sync.Mutex
	status    string
	infoDelay time.Duration
	// invoked is InvokeRunner's answer (after invokeAfter, 12 minutes
	// unless newEnvInvoke says otherwise).
	invoked activities.InvokeRunnerResult
	// created, ensured and applied are the inputs CreateGitLabRunner,
	// EnsureEggRunner and ApplyMachine got.
	created []activities.CreateGitLabRunnerInput
	ensured []activities.EnsureEggRunnerInput
	applied []activities.ApplyMachineInput
	// tokenRef is the token the store's record names: the egg's shared
	// runner's unless a test sets a machine's own (an older runner).
	tokenRef string
}

func (e *env) jobStatus() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.status == "" {
		return "pending"
	}
	return e.status
}

func (e *env) setJobStatus(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = s
}

// invokeAfter is how long InvokeRunner takes in the next newEnv.
var invokeAfter = 12 * time.Minute

// newEnv registers the workflows and mocks every activity to succeed,
// recording calls. Tests override single activities with failing ones.
func newEnv(t *testing.T, fail map[string]error) *env {
	return newEnvWithTags(t, fail, []string{"docker"})
}

func newEnvWithTags(t *testing.T, fail map[string]error, jobTags []string) *env {
	var s testsuite.WorkflowTestSuite
	e := &env{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment(), calls: &calls{}}
	e.RegisterWorkflow(ProvisionRunner)
	e.RegisterWorkflow(DeprovisionRunner)
	var a *activities.Activities
	e.RegisterActivity(a)
	failOr := func(name string) error {
		e.calls.add(name)
		if err, ok := fail[name]; ok {
			return err
		}
		return nil
	}
	// JobTags is what runs before versionProvisionJobInfo call.
	e.OnActivity(a.JobTags, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.JobTagsInput) ([]string, error) {
		return jobTags, failOr("tags")
	}).AfterFn(func() time.Duration { return e.infoDelay })
	e.OnActivity(a.JobInfo, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.JobInfoInput) (activities.JobInfo, error) {
		return activities.JobInfo{Status: e.jobStatus(), Tags: jobTags}, failOr("tags")
	}).AfterFn(func() time.Duration { return e.infoDelay })
	e.OnActivity(a.RecordRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RecordRunnerInput) error {
		return failOr("record")
	})
	e.OnActivity(a.CreateGitLabRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.CreateGitLabRunnerInput) (activities.CreateGitLabRunnerResult, error) {
		e.mu.Lock()
		e.created = append(e.created, in)
		e.mu.Unlock()
		if err := failOr("gitlab-create"); err != nil {
			return activities.CreateGitLabRunnerResult{}, err
		}
		return activities.CreateGitLabRunnerResult{GitLabRunnerID: 42, TokenRef: "local://runners/" + in.RunnerID + "/token"}, nil
	})
	e.OnActivity(a.EnsureEggRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.EnsureEggRunnerInput) (contract.EggRunner, error) {
		e.mu.Lock()
		e.ensured = append(e.ensured, in)
		e.mu.Unlock()
		if err := failOr("gitlab-join"); err != nil {
			return contract.EggRunner{}, err
		}
		return contract.EggRunner{GitLabRunnerID: 42, TokenRef: "local://runners/" + contract.EggRunnerSecretName(in.Runner.Egg, in.Runner.Shape.Key()) + "/token"}, nil
	})
	e.OnActivity(a.ApplyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ApplyMachineInput) (activities.ApplyMachineResult, error) {
		e.mu.Lock()
		e.applied = append(e.applied, in)
		e.mu.Unlock()
		name := "apply-running"
		if !in.Running {
			name = "apply-stopped"
		}
		return activities.ApplyMachineResult{Workspace: in.RunnerID}, failOr(name)
	})
	e.OnActivity(a.TransitionRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.TransitionInput) (store.Runner, error) {
		return store.Runner{ID: in.RunnerID, State: in.To}, failOr("to-" + string(in.To))
	})
	e.OnActivity(a.DestroyMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DestroyMachineInput) error {
		return failOr("destroy")
	})
	e.OnActivity(a.DrainMachine, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DrainMachineInput) (activities.DrainMachineResult, error) {
		return activities.DrainMachineResult{Outcome: activities.MachineDrained}, failOr("drain")
	})
	e.OnActivity(a.DeleteGitLabRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteGitLabRunnerInput) error {
		return failOr("gitlab-delete")
	})
	e.OnActivity(a.DeleteRunnerToken, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.DeleteRunnerTokenInput) error {
		return failOr("token-delete")
	})
	e.OnActivity(a.MintAgentCredential, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.AgentCredentialInput) (string, error) {
		return "local://runners/" + in.RunnerID + "/agent", failOr("agent-mint")
	})
	e.OnActivity(a.RevokeAgentCredential, mock.Anything, mock.Anything).Return(func(_ context.Context, runnerID string) error {
		return failOr("agent-revoke")
	})
	e.OnActivity(a.GetRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, id string) (store.Runner, error) {
		// A machine of the egg's shared runner, as joinEggRunner records it.
		ref := e.tokenRef
		if ref == "" {
			ref = "local://runners/" + contract.EggRunnerSecretName("web", "x") + "/token"
		}
		return store.Runner{ID: id, Egg: "web", State: store.StateActive, Workspace: id, GitLabRunnerID: 42, TokenRef: ref}, failOr("get")
	})
	e.invoked = activities.InvokeRunnerResult{Via: "http"}
	e.invoked.Jobs = []agentapi.JobReport{{JobID: 1001, Status: "success"}}
	e.OnActivity(a.InvokeRunner, mock.Anything, mock.Anything).Return(func(ctx context.Context, in activities.InvokeRunnerInput) (activities.InvokeRunnerResult, error) {
		if err := failOr("invoke"); err != nil {
			return activities.InvokeRunnerResult{}, err
		}
		return e.invoked, nil
	}).After(invokeAfter)
	return e
}

func (e *env) signalReady(after time.Duration, runnerID string) {
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalRunnerReady, contract.RunnerReady{RunnerID: runnerID, PID: 1})
	}, after)
}

func permanent(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, "Test", nil)
}

const wfID = "runner/gitlab.example.com/job/1001"

func start(e *env, in contract.ProvisionRunnerInput) {
	e.SetStartWorkflowOptions(startOpts(wfID))
	e.ExecuteWorkflow(ProvisionRunner, in)
}

// A runner made ahead of demand (a pool's) stays in service.
func TestProvisionPoolVM(t *testing.T) {
	e := newEnv(t, nil)
	id := contract.RunnerIDFor("web", wfID)
	e.signalReady(30*time.Second, id)
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM)})
	if !e.IsWorkflowCompleted() || e.GetWorkflowError() != nil {
		t.Fatalf("workflow: %v", e.GetWorkflowError())
	}
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.RunnerID != id || res.State != "active" || res.Kind != fly.RunnerVM || res.GitLabRunnerID != 42 || !strings.HasPrefix(res.KindReason, "egg web asks for vm") {
		t.Errorf("result = %+v", res)
	}
	if got, want := e.calls.String(), "record,agent-mint,gitlab-join,to-registering,apply-running,to-active"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

// A VM made for one job reads the job's tags first, serves the job and is
// torn down when it finishes.
func TestProvisionJobVM(t *testing.T) {
	e := newEnv(t, nil)
	id := contract.RunnerIDFor("web", wfID)
	e.signalReady(30*time.Second, id)
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: 1001, Status: "failed"})
	}, 2*time.Hour)
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{Host: "gitlab.example.com", ProjectID: 7, JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.State != "terminated" || res.Outcome != "job-finished" || strings.Join(res.JobTags, ",") != "docker" {
		t.Errorf("result = %+v", res)
	}
	want := "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-active,get,to-terminating,destroy,agent-revoke,to-terminated"
	if got := e.calls.String(); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

func TestProvisionJobVMDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.signalReady(time.Second, contract.RunnerIDFor("web", wfID))
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{ProjectID: 7, JobID: 1001}, JobDeadline: 3 * time.Hour})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "deadline" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
}

// A job this egg's runners could never take gets no runner at all.
func TestProvisionSkipsJobWithForeignTags(t *testing.T) {
	e := newEnvWithTags(t, nil, []string{"docker", "gpu"})
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{ProjectID: 7, JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "tags-mismatch" || !strings.Contains(res.KindReason, "lack the job's tags gpu") {
		t.Errorf("result = %+v", res)
	}
	if got := e.calls.String(); got != "tags" {
		t.Errorf("calls = %s", got)
	}
}

func TestProvisionDormant(t *testing.T) {
	e := newEnv(t, nil)
	e.signalReady(time.Second, contract.RunnerIDFor("web", wfID))
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerAuto), Dormant: true})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.State != "dormant" || res.Kind != fly.RunnerVM {
		t.Errorf("result = %+v", res)
	}
	if got, want := e.calls.String(), "record,agent-mint,gitlab-join,to-registering,apply-running,apply-stopped,to-dormant"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

// A serverless runner is invoked once its machine is applied; the
// invocation lasts its job, and its answer ends the runner.
func TestProvisionServerlessEndsWithItsInvocation(t *testing.T) {
	e := newEnv(t, nil)
	id := contract.RunnerIDFor("web", wfID)
	e.signalReady(10*time.Second, id)
	e.RegisterDelayedCallback(func() {
		// Job statuses from webhooks do not end it: the invocation does.
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: 1001, Status: "running"})
	}, 5*time.Minute)
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerAuto), Job: &contract.JobRef{Host: "gitlab.example.com", ProjectID: 7, JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Kind != fly.RunnerServerless || res.Outcome != "job-finished" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
	want := "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-active,invoke,get,to-terminating,destroy,agent-revoke,to-terminated"
	if got := e.calls.String(); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

// An invocation that ran no job (none came within gitlab-runner's wait)
// ends the runner too.
func TestProvisionServerlessNoJob(t *testing.T) {
	e := newEnv(t, nil)
	e.invoked.Jobs = nil
	e.signalReady(10*time.Second, contract.RunnerIDFor("web", wfID))
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "no-job" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
}

// An invocation whose gitlab-runner failed before taking a job (the agent
// answers with its error, InvokeRunner returns it) is retried, then
// reported as invocation-failed, never as no-job: the job it was made for
// is still pending.
func TestProvisionServerlessCrashedRunnerIsReported(t *testing.T) {
	// A crash comes soon after the invocation starts, well within the
	// egg's 15-minute deadline even when retried.
	invokeAfter = time.Minute
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, map[string]error{"invoke": errors.New("invoke runner web-1: gitlab-runner exited with status 1 before it took a job: FATAL: flag provided but not defined: -config")})
	e.signalReady(10*time.Second, contract.RunnerIDFor("web", wfID))
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "invocation-failed" || res.State != "terminated" {
		t.Errorf("result = %+v, want invocation-failed and torn down", res)
	}
	if got := strings.Count(e.calls.String(), "invoke"); got != 3 {
		t.Errorf("invoked %d times, want 3 (retried): %s", got, e.calls)
	}
}

// The job a serverless runner was made for ends without it (a webhook
// says another runner ran it): the idle invocation is cancelled after
// invokeGrace, long before its deadline.
func TestProvisionServerlessJobEndedElsewhere(t *testing.T) {
	invokeAfter = 2 * time.Hour
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, nil)
	e.signalReady(10*time.Second, contract.RunnerIDFor("web", wfID))
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: 1001, Status: "success"})
	}, 5*time.Minute)
	began := e.Now()
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "job-finished" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
	if took := e.Now().Sub(began); took < 5*time.Minute+invokeGrace || took > 10*time.Minute {
		t.Errorf("runner lived %s, want its job's end plus %s", took, invokeGrace)
	}
}

// While its own agent reports a job running, the invocation is never
// cancelled, whatever became of the job it was made for.
func TestProvisionServerlessBusyIsNotCancelled(t *testing.T) {
	invokeAfter = 20 * time.Minute
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, nil)
	id := contract.RunnerIDFor("web", wfID)
	e.signalReady(10*time.Second, id)
	// Its job ends elsewhere; within the grace, GitLab hands it another.
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: 1001, Status: "success"})
	}, 5*time.Minute)
	e.RegisterDelayedCallback(func() {
		e.SignalWorkflow(contract.SignalJobStatus, contract.JobStatus{JobID: 2002, Status: "running", RunnerID: id})
	}, 5*time.Minute+10*time.Second)
	began := e.Now()
	egg := testEgg(fly.RunnerServerless)
	egg.Runner.ExpectedJobDuration = fly.Duration(30 * time.Minute)
	start(e, contract.ProvisionRunnerInput{Egg: egg, Job: &contract.JobRef{JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "job-finished" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
	if took := e.Now().Sub(began); took < 20*time.Minute {
		t.Errorf("runner lived %s: its invocation was cancelled while it ran a job", took)
	}
}

// Past its deadline the invocation is cancelled and the runner torn down.
func TestProvisionServerlessDeadline(t *testing.T) {
	invokeAfter = 2 * time.Hour
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, nil)
	e.signalReady(10*time.Second, contract.RunnerIDFor("web", wfID))
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{JobID: 1001}, ServerlessDeadline: 20 * time.Minute})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "deadline" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
}

// Without a deadline in its input, a serverless runner lives as long as
// its egg's job timeout: its machine's deadline, its GitLab runner's
// maximum timeout (its shared runner's shape) and the invocation's end all follow the 5-minute jobs
// of egg-yandex-serverless-5m-jobs.fly.
func TestProvisionServerlessDeadlineFromEgg(t *testing.T) {
	invokeAfter = 2 * time.Hour
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, nil)
	e.signalReady(10*time.Second, contract.RunnerIDFor("web", wfID))
	egg := testEgg(fly.RunnerServerless)
	egg.Runner.Clouds, egg.Runner.CPU, egg.Runner.Memory = []string{fly.CloudYandex}, 1, 2*fly.GiB
	egg.Runner.ExpectedJobDuration = fly.Duration(5 * time.Minute)
	began := e.Now()
	start(e, contract.ProvisionRunnerInput{Egg: egg, Job: &contract.JobRef{JobID: 1001}})
	var res contract.ProvisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "deadline" || res.State != "terminated" {
		t.Errorf("result = %+v", res)
	}
	if took := e.Now().Sub(began); took < 5*time.Minute || took > 6*time.Minute {
		t.Errorf("runner lived %s, want its 5-minute deadline", took)
	}
	if len(e.applied) != 1 || e.applied[0].MaxRunMinutes != 5 {
		t.Errorf("ApplyMachine inputs %+v, want max_run_minutes 5", e.applied)
	}
	// The egg's shared GitLab runner has that shape's maximum timeout.
	if len(e.ensured) != 1 || e.ensured[0].Runner.Shape.MaximumTimeout != 5*time.Minute {
		t.Errorf("EnsureEggRunner inputs %+v, want maximum_timeout 5m", e.ensured)
	}
}

// An invocation that fails before the runner is ready fails the runner,
// with every step compensated.
func TestProvisionServerlessInvocationFails(t *testing.T) {
	invokeAfter = time.Minute
	defer func() { invokeAfter = 12 * time.Minute }()
	e := newEnv(t, map[string]error{"invoke": permanent("container refused")})
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerServerless), Job: &contract.JobRef{JobID: 1001}})
	err := e.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "container refused") {
		t.Fatalf("error = %v", err)
	}
	want := "record,agent-mint,gitlab-join,to-registering,apply-running,invoke,to-failed,destroy,agent-revoke,to-terminated"
	if got := e.calls.String(); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

// Every step's failure is compensated in reverse order of what was done,
// and the runner is recorded failed, then terminated.
func TestProvisionCompensatesEveryStep(t *testing.T) {
	cases := []struct {
		failing string
		want    string
	}{
		{"agent-mint", "tags,record,agent-mint,to-failed,agent-revoke,to-terminated"},
		{"gitlab-join", "tags,record,agent-mint,gitlab-join,to-failed,agent-revoke,to-terminated"},
		{"to-registering", "tags,record,agent-mint,gitlab-join,to-registering,to-failed,agent-revoke,to-terminated"},
		{"apply-running", "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-failed,destroy,agent-revoke,to-terminated"},
		{"to-active", "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-active,to-failed,destroy,agent-revoke,to-terminated"},
	}
	for _, c := range cases {
		t.Run(c.failing, func(t *testing.T) {
			e := newEnv(t, map[string]error{c.failing: permanent("boom at " + c.failing)})
			e.signalReady(time.Second, contract.RunnerIDFor("web", wfID))
			start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{JobID: 1001, ProjectID: 7}})
			err := e.GetWorkflowError()
			if err == nil || !strings.Contains(err.Error(), "boom at "+c.failing) {
				t.Fatalf("error = %v", err)
			}
			if got := e.calls.String(); got != c.want {
				t.Errorf("calls = %s\nwant    %s", got, c.want)
			}
		})
	}
}

func TestProvisionReadyTimeout(t *testing.T) {
	e := newEnv(t, nil)
	e.signalReady(time.Second, "someone-else")
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{JobID: 1001, ProjectID: 7}, ReadyTimeout: 3 * time.Minute})
	err := e.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "no ready signal within 3m") {
		t.Fatalf("error = %v", err)
	}
	want := "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-failed,destroy,agent-revoke,to-terminated"
	if got := e.calls.String(); got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

func TestProvisionCompensationFailureLeavesRunnerFailed(t *testing.T) {
	e := newEnv(t, map[string]error{"apply-running": permanent("apply broke"), "destroy": permanent("destroy broke")})
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM), Job: &contract.JobRef{JobID: 1001, ProjectID: 7}})
	err := e.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "compensation incomplete") {
		t.Fatalf("error = %v", err)
	}
	// The other compensations still ran; no terminated record.
	if got, want := e.calls.String(), "tags,record,agent-mint,gitlab-join,to-registering,apply-running,to-failed,destroy,agent-revoke"; got != want {
		t.Errorf("calls = %s\nwant    %s", got, want)
	}
}

func TestProvisionRecordFailureMakesNothing(t *testing.T) {
	e := newEnv(t, map[string]error{"record": permanent("store down")})
	start(e, contract.ProvisionRunnerInput{Egg: testEgg(fly.RunnerVM)})
	if e.GetWorkflowError() == nil {
		t.Fatal("no error")
	}
	if got := e.calls.String(); got != "record" {
		t.Errorf("calls = %s", got)
	}
}

func TestDeprovision(t *testing.T) {
	e := newEnv(t, nil)
	e.ExecuteWorkflow(DeprovisionRunner, contract.DeprovisionRunnerInput{RunnerID: "web-1", GitLab: testEgg("vm").GitLab, Reason: "test"})
	var res contract.DeprovisionRunnerResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got, want := e.calls.String(), "get,to-terminating,destroy,agent-revoke,to-terminated"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}

	// A machine of the egg's shared runner that its pool retires stops
	// taking jobs first.
	e = newEnv(t, nil)
	e.OnSignalExternalWorkflow(mock.Anything, "pool/web", "", contract.SignalRunnerRetired, mock.Anything).Return(nil)
	e.ExecuteWorkflow(DeprovisionRunner, contract.DeprovisionRunnerInput{RunnerID: "web-1", GitLab: testEgg("vm").GitLab, Reason: "idle", Owner: "pool/web"})
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got, want := e.calls.String(), "get,to-terminating,drain,destroy,agent-revoke,to-terminated"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}

	// A drain that fails does not stop the teardown.
	e = newEnv(t, map[string]error{"drain": permanent("agent deaf")})
	e.OnSignalExternalWorkflow(mock.Anything, "pool/web", "", contract.SignalRunnerRetired, mock.Anything).Return(nil)
	e.ExecuteWorkflow(DeprovisionRunner, contract.DeprovisionRunnerInput{RunnerID: "web-1", GitLab: testEgg("vm").GitLab, Reason: "idle", Owner: "pool/web"})
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got, want := e.calls.String(), "get,to-terminating,drain,destroy,agent-revoke,to-terminated"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	// A machine with a GitLab runner of its own was paused in GitLab.
	e = newEnv(t, nil)
	e.tokenRef = "local://runners/web-1/token"
	e.OnSignalExternalWorkflow(mock.Anything, "pool/web", "", contract.SignalRunnerRetired, mock.Anything).Return(nil)
	e.ExecuteWorkflow(DeprovisionRunner, contract.DeprovisionRunnerInput{RunnerID: "web-1", GitLab: testEgg("vm").GitLab, Reason: "idle", Owner: "pool/web"})
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got := e.calls.String(); strings.Contains(got, "drain") {
		t.Errorf("calls = %s: a machine with its own runner is not drained by its agent", got)
	}
}

func TestDeprovisionFailureRecordsFailed(t *testing.T) {
	e := newEnv(t, map[string]error{"gitlab-delete": permanent("gitlab down")})
	e.tokenRef = "local://runners/web-1/token" // a runner of its own
	e.ExecuteWorkflow(DeprovisionRunner, contract.DeprovisionRunnerInput{RunnerID: "web-1", GitLab: testEgg("vm").GitLab, Reason: "test"})
	if err := e.GetWorkflowError(); err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "gitlab down") {
		t.Fatalf("error = %v", err)
	}
	if got, want := e.calls.String(), "get,to-terminating,destroy,gitlab-delete,to-failed"; got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

func TestChooseKind(t *testing.T) {
	small := testEgg(fly.RunnerAuto)
	long := testEgg(fly.RunnerAuto)
	long.Runner.ExpectedJobDuration = fly.Duration(2 * time.Hour)
	big := testEgg(fly.RunnerAuto)
	big.Runner.CPU = 8
	bigFargate := big
	bigFargate.Runner.Memory = 16 * fly.GiB
	decimal := testEgg(fly.RunnerAuto)
	decimal.Runner.CPU, decimal.Runner.Memory = 1, 4e9
	cases := []struct {
		egg     fly.Egg
		cloud   string
		dormant bool
		want    string
		reason  string
	}{
		{small, fly.CloudYandex, false, fly.RunnerServerless, "fit Serverless Containers"},
		{small, fly.CloudAWS, false, fly.RunnerServerless, "fit AWS Lambda (15m at most)"},
		{long, fly.CloudAWS, false, fly.RunnerVM, "longer than the 1h limit"},
		{big, fly.CloudYandex, false, fly.RunnerVM, "no Serverless Containers size fits 8 vCPU"},
		{big, fly.CloudAWS, false, fly.RunnerVM, "no ECS Fargate size fits 8 vCPU with 4GiB"},
		{bigFargate, fly.CloudAWS, false, fly.RunnerServerless, "fit ECS Fargate"},
		{decimal, fly.CloudAWS, false, fly.RunnerVM, "3814.7MiB"},
		{small, fly.CloudYandex, true, fly.RunnerVM, "dormant"},
		{testEgg(fly.RunnerVM), fly.CloudAWS, false, fly.RunnerVM, "asks for vm"},
		{small, "mars", false, fly.RunnerVM, "no serverless runners"},
	}
	for _, c := range cases {
		kind, reason := contract.ChooseKind(c.egg, "", c.cloud, c.dormant)
		if kind != c.want || !strings.Contains(reason, c.reason) {
			t.Errorf("ChooseKind(%s, %v) = %s (%s), want %s (%s)", c.cloud, c.dormant, kind, reason, c.want, c.reason)
		}
	}
}

func TestIDs(t *testing.T) {
	if contract.RunnerWorkflowID("GitLab.com", 5) != "runner/gitlab.com/job/5" {
		t.Error(contract.RunnerWorkflowID("GitLab.com", 5))
	}
	a, b := contract.RunnerIDFor("web", "x"), contract.RunnerIDFor("web", "y")
	if a == b || !strings.HasPrefix(a, "web-") || len(a) != len("web-")+10 || a != contract.RunnerIDFor("web", "x") {
		t.Errorf("runner IDs %s %s", a, b)
	}
}

// The saga runs every compensation registered, the last first, and
// reports each one that failed.
func TestSagaCompensatesInReverse(t *testing.T) {
	var s saga
	var ran []string
	for _, name := range []string{"token", "gitlab", "machine"} {
		s.onFailure(func(workflow.Context) error {
			ran = append(ran, name)
			if name == "gitlab" {
				return errors.New("gitlab down")
			}
			return nil
		})
	}
	err := s.compensate(nil)
	if got := strings.Join(ran, ","); got != "machine,gitlab,token" {
		t.Errorf("compensations ran as %s, want machine,gitlab,token", got)
	}
	if err == nil || err.Error() != "gitlab down" {
		t.Errorf("compensate = %v, want the failed compensation's error", err)
	}
}
