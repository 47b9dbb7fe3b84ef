package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// jobEnv is a test environment with every job workflow registered and the
// job run's audit record captured.
type jobEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu     sync.Mutex
	audits []activities.JobRunAudit
}

func newJobEnv(t *testing.T) *jobEnv {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	e := &jobEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	for _, wf := range []any{SelfManagementJob, NestUpdate, RunnerImageUpdate, CustomJob, Sweep, RotateRunnerTokens} {
		e.RegisterWorkflow(wf)
	}
	var a *activities.Activities
	e.RegisterActivity(a)
	e.OnActivity(a.AuditJobRun, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.JobRunAudit) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.audits = append(e.audits, in)
		return nil
	})
	return e
}

func (e *jobEnv) run(t *testing.T, in contract.JobRunInput) (contract.JobRunResult, error) {
	t.Helper()
	e.ExecuteWorkflow(SelfManagementJob, in)
	if !e.IsWorkflowCompleted() {
		t.Fatal("the job run did not complete")
	}
	var res contract.JobRunResult
	err := e.GetWorkflowError()
	if err == nil {
		if gerr := e.GetWorkflowResult(&res); gerr != nil {
			t.Fatal(gerr)
		}
	}
	if len(e.audits) != 1 {
		t.Fatalf("%d audit records of the run, want 1", len(e.audits))
	}
	return res, err
}

func job(name, kind string) fly.Job {
	return fly.Job{Name: name, Kind: kind, File: "Jobs/" + name + ".fly", Enabled: true, Timeout: fly.Duration(30 * time.Minute)}
}

func jobFailure(t *testing.T, err error) string {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != contract.ErrTypeJobFailed {
		t.Fatalf("error %v, want a %s application error", err, contract.ErrTypeJobFailed)
	}
	return app.Error()
}

func TestNestUpdateJob(t *testing.T) {
	var a *activities.Activities
	in := contract.JobRunInput{Job: job("nest-update", fly.JobNestUpdate), NestUpdate: &contract.NestUpdateInput{Ref: "main", Actor: "job/nest-update"}}

	e := newJobEnv(t)
	e.OnActivity(a.UpdateNest, mock.Anything, *in.NestUpdate).Return(contract.NestUpdateResult{Commit: "0123456789abcdef0123", Eggs: 3, Pools: 2}, nil)
	res, err := e.run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != contract.JobSucceeded || !strings.Contains(res.Summary, "0123456789ab") || !strings.Contains(res.Summary, "3 eggs, 2 pools") {
		t.Errorf("result %+v", res)
	}
	if au := e.audits[0]; au.Job != "nest-update" || au.Outcome != contract.JobSucceeded || au.Kind != fly.JobNestUpdate {
		t.Errorf("audit %+v", au)
	}

	// An invalid Nest fails the run, with the diagnostics, and is audited.
	e = newJobEnv(t)
	e.OnActivity(a.UpdateNest, mock.Anything, mock.Anything).Return(contract.NestUpdateResult{
		Commit: "feedface", Invalid: true, Diagnostics: "Eggs/web/config.fly:3,5-9: Unknown value; ...",
	}, nil)
	_, err = e.run(t, in)
	msg := jobFailure(t, err)
	if !strings.Contains(msg, "is invalid and was not applied") || !strings.Contains(msg, "Eggs/web/config.fly:3,5-9") {
		t.Errorf("failure %q", msg)
	}
	if au := e.audits[0]; au.Outcome != contract.JobFailed || !strings.Contains(au.Summary, "Unknown value") {
		t.Errorf("audit %+v", au)
	}
}

func TestSecretRotationJobRunsTheRotation(t *testing.T) {
	var a *activities.Activities
	e := newJobEnv(t)
	e.OnActivity(a.ListRotationTargets, mock.Anything, mock.Anything).Return(activities.RotationTargets{}, nil)
	e.OnActivity(a.ListSharedRunners, mock.Anything, mock.Anything).Return(activities.SharedRunners{}, nil)
	var started string
	e.SetOnChildWorkflowStartedListener(func(info *workflow.Info, _ workflow.Context, _ converter.EncodedValues) {
		started = info.WorkflowExecution.ID
	})
	in := contract.JobRunInput{Job: job("rotate", fly.JobSecretRotation), Rotation: &contract.RotateRunnerTokensInput{Eggs: []string{"web"}, Actor: "job/rotate"}}
	res, err := e.run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if started != contract.RotateWorkflowID || res.WorkflowID != contract.RotateWorkflowID || res.Summary != "0 runners rotated, 0 failed, 0 skipped" {
		t.Errorf("child %s, result %+v", started, res)
	}
}

func TestJobWithoutItsInputFails(t *testing.T) {
	e := newJobEnv(t)
	_, err := e.run(t, contract.JobRunInput{Job: job("custom", fly.JobCustom)})
	if msg := jobFailure(t, err); !strings.Contains(msg, "no input of its kind") {
		t.Errorf("failure %q", msg)
	}
}

// poolFake plays a pool that recycles the runners it is asked to: each
// asked runner is gone by the next look.
type poolFake struct {
	mu      sync.Mutex
	runners []contract.PoolRunner
	asked   [][]string
	batch   []string
}

func (p *poolFake) status(_ context.Context, egg string) (activities.PoolRunners, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if egg != "web" {
		return activities.PoolRunners{}, nil
	}
	if len(p.batch) > 0 {
		p.asked = append(p.asked, p.batch)
		for _, id := range p.batch {
			p.runners = slices.DeleteFunc(p.runners, func(r contract.PoolRunner) bool { return r.ID == id })
			p.runners = append(p.runners, contract.PoolRunner{ID: id + "-new", State: contract.PoolApex})
		}
		p.batch = nil
	}
	return activities.PoolRunners{Running: true, Status: contract.PoolStatus{Egg: egg, Runners: slices.Clone(p.runners)}}, nil
}

func TestRunnerImageUpdate(t *testing.T) {
	var a *activities.Activities
	image := "registry.example.com/runner:v18"
	in := contract.JobRunInput{Job: job("image", fly.JobRunnerImageUpdate), ImageUpdate: &contract.RunnerImageUpdateInput{
		Job: "image", Image: image, Eggs: []string{"web", "serverless"}, RollPercent: 50, Poll: time.Second,
	}}
	setup := func(recorded, now string) (*jobEnv, *poolFake, *[]string) {
		e := newJobEnv(t)
		pool := &poolFake{}
		for _, id := range []string{"web-p1", "web-p2", "web-p3", "web-p4"} {
			pool.runners = append(pool.runners, contract.PoolRunner{ID: id, State: contract.PoolApex})
		}
		pool.runners = append(pool.runners, contract.PoolRunner{ID: "web-p5", State: contract.PoolProvisioning})
		var records []string
		e.OnActivity(a.ResolveImage, mock.Anything, activities.ResolveImageInput{Image: image}).Return(now, nil)
		e.OnActivity(a.ImageDigest, mock.Anything, image).Return(recorded, nil)
		e.OnActivity(a.RecordImageDigest, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ImageDigestRecord) error {
			records = append(records, r.Digest)
			return nil
		})
		e.OnActivity(a.PoolStatus, mock.Anything, mock.Anything).Return(pool.status)
		e.OnSignalExternalWorkflow(mock.Anything, contract.PoolWorkflowID("web"), "", contract.SignalRunnerAction, mock.Anything).Return(
			func(_, _, _, _ string, arg interface{}) error {
				act := arg.(contract.RunnerAction)
				if act.Action != contract.ActionRecycle || act.Actor != "job/image" || !strings.Contains(act.Reason, "sha256:new") {
					return errors.New("unexpected action")
				}
				pool.mu.Lock()
				defer pool.mu.Unlock()
				pool.batch = append(pool.batch, act.RunnerID)
				return nil
			})
		return e, pool, &records
	}

	// The first run only records the digest.
	e, pool, records := setup("", "sha256:old")
	res, err := e.run(t, in)
	if err != nil || !slices.Equal(*records, []string{"sha256:old"}) || len(pool.asked) != 0 || !strings.Contains(res.Summary, "recorded") {
		t.Fatalf("first run: %+v, %v, records %v", res, err, *records)
	}
	// Unchanged: nothing to do.
	e, pool, records = setup("sha256:old", "sha256:old")
	res, err = e.run(t, in)
	if err != nil || len(*records) != 0 || len(pool.asked) != 0 || !strings.Contains(res.Summary, "still") {
		t.Fatalf("unchanged: %+v, %v", res, err)
	}
	// Moved: the four runners in service are recycled two at a time (50%),
	// the one being made is left alone, then the digest is recorded.
	e, pool, records = setup("sha256:old", "sha256:new")
	res, err = e.run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(pool.asked) != 2 || !slices.Equal(pool.asked[0], []string{"web-p1", "web-p2"}) || !slices.Equal(pool.asked[1], []string{"web-p3", "web-p4"}) {
		t.Errorf("batches %v", pool.asked)
	}
	if !slices.Equal(*records, []string{"sha256:new"}) || !strings.Contains(res.Summary, "map[serverless:0 web:4]") {
		t.Errorf("records %v, summary %q", *records, res.Summary)
	}
}

func TestCustomJob(t *testing.T) {
	var a *activities.Activities
	runner := fly.Egg{Name: "job-prune", GitLab: fly.GitLab{Host: "gitlab.example.com", Token: "vault://gitlab/nest"},
		Projects: []fly.ProjectRef{{Path: "platform/nest"}}, Runner: fly.Runner{Tags: []string{"gosling-admin"}, Clouds: []string{fly.CloudLocal}}}
	in := contract.JobRunInput{Job: job("prune", fly.JobCustom), Custom: &contract.CustomJobInput{
		Job: "prune", Runner: runner, Cloud: fly.CloudLocal, Ref: "main", Timeout: 10 * time.Minute, Poll: time.Second,
		Variables: map[string]string{contract.VarJob: "prune", contract.VarJobScript: "crane gc"},
	}}
	setup := func(provisionErr error, final string) (*jobEnv, *[]string) {
		e := newJobEnv(t)
		var steps []string
		var mu sync.Mutex
		step := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			steps = append(steps, s)
		}
		e.RegisterWorkflowWithOptions(func(ctx workflow.Context, p contract.ProvisionRunnerInput) (contract.ProvisionRunnerResult, error) {
			step("provision " + p.Egg.Name + " " + p.Kind + " " + p.Egg.Runner.Tags[0])
			if p.Egg.Projects[0].ID != 42 {
				return contract.ProvisionRunnerResult{}, errors.New("no project ID")
			}
			return contract.ProvisionRunnerResult{RunnerID: p.RunnerID, State: "active"}, provisionErr
		}, workflow.RegisterOptions{Name: contract.WorkflowProvisionRunner})
		e.RegisterWorkflowWithOptions(func(ctx workflow.Context, d contract.DeprovisionRunnerInput) (contract.DeprovisionRunnerResult, error) {
			step("deprovision " + d.Actor)
			return contract.DeprovisionRunnerResult{RunnerID: d.RunnerID}, nil
		}, workflow.RegisterOptions{Name: contract.WorkflowDeprovisionRunner})
		e.OnActivity(a.ResolveProject, mock.Anything, mock.Anything).Return(fly.ProjectRef{ID: 42, Path: "platform/nest"}, nil)
		e.OnActivity(a.CreatePipeline, mock.Anything, mock.Anything).Return(func(_ context.Context, p activities.PipelineInput) (activities.Pipeline, error) {
			step("pipeline " + p.Variables[contract.VarJobScript])
			return activities.Pipeline{ID: 7, Status: "pending", WebURL: "https://gitlab.example.com/platform/nest/-/pipelines/7"}, nil
		})
		e.OnActivity(a.WaitPipeline, mock.Anything, mock.Anything).Return(activities.Pipeline{ID: 7, Status: final}, nil)
		return e, &steps
	}

	e, steps := setup(nil, "success")
	res, err := e.run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"provision job-prune vm gosling-admin", "pipeline crane gc", "deprovision job/prune"}
	if !slices.Equal(*steps, want) || !strings.Contains(res.Summary, "pipeline 7 success") {
		t.Errorf("steps %v, summary %q", *steps, res.Summary)
	}

	// A failed pipeline fails the run; the runner is torn down all the same.
	e, steps = setup(nil, "failed")
	_, err = e.run(t, in)
	if msg := jobFailure(t, err); !strings.Contains(msg, "pipeline 7 ended failed") {
		t.Errorf("failure %q", msg)
	}
	if !slices.Equal(*steps, want) {
		t.Errorf("steps %v", *steps)
	}

	// A runner that cannot be made: no pipeline.
	e, steps = setup(errors.New("tofu apply failed"), "success")
	_, err = e.run(t, in)
	if msg := jobFailure(t, err); !strings.Contains(msg, "make the job's runner") {
		t.Errorf("failure %q", msg)
	}
	if len(*steps) != 1 {
		t.Errorf("steps %v", *steps)
	}
}

func TestSweepWorkflow(t *testing.T) {
	var a *activities.Activities
	var s testsuite.WorkflowTestSuite
	e := s.NewTestWorkflowEnvironment()
	e.RegisterWorkflow(Sweep)
	e.RegisterActivity(a)
	in := contract.SweepInput{Egg: fly.Egg{Name: "web"}, Interval: time.Minute}
	e.OnActivity(a.SweepEgg, mock.Anything, in).Return(contract.SweepResult{Egg: "web", Pending: 3, Found: 2}, nil)
	e.ExecuteWorkflow(Sweep, in)
	var res contract.SweepResult
	if err := e.GetWorkflowResult(&res); err != nil || res.Found != 2 {
		t.Fatalf("%+v, %v", res, err)
	}
}
