package activities

import (
	"context"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"go.temporal.io/sdk/activity"
)

// SimulatedMachines stand in for a cloud in fleet benchmarks, and only
// there (`gosling worker --simulate-machines`, hidden): applying a machine
// takes Apply, the time a real apply of the local module was measured to
// take, without running OpenTofu, and the "agent" reports ready at once
// through the worker's own Temporal client; destroying takes Destroy, and
// a serverless runner's invocation takes Job, as if it ran a job that
// long. Every other activity (the store, GitLab, secrets) is the real one.
type SimulatedMachines struct {
	Apply   time.Duration
	Destroy time.Duration
	Job     time.Duration
}

func (s *SimulatedMachines) apply(ctx context.Context, in ApplyMachineInput) (ApplyMachineResult, error) {
	start := time.Now()
	if err := sleepCtx(ctx, s.Apply); err != nil {
		return ApplyMachineResult{}, err
	}
	if in.Running && in.ReadyWorkflowID != "" {
		err := activity.GetClient(ctx).SignalWorkflow(ctx, in.ReadyWorkflowID, "", contract.SignalRunnerReady,
			contract.RunnerReady{RunnerID: in.RunnerID, Host: "simulated", At: time.Now().UTC()})
		if err != nil {
			return ApplyMachineResult{}, err
		}
	}
	return ApplyMachineResult{Workspace: in.RunnerID, Seconds: time.Since(start).Seconds()}, nil
}

func (s *SimulatedMachines) destroy(ctx context.Context) error { return sleepCtx(ctx, s.Destroy) }

func (s *SimulatedMachines) invoke(ctx context.Context) (InvokeRunnerResult, error) {
	if err := sleepCtx(ctx, s.Job); err != nil {
		return InvokeRunnerResult{}, err
	}
	return InvokeRunnerResult{Via: "simulated"}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
