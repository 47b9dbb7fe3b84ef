package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// PowerInput names a pool runner whose machine is resumed or stopped.
type PowerInput struct {
	Machine        ApplyMachineInput `json:"machine"`
	GitLabRunnerID int64             `json:"gitlab_runner_id"`
}

// PromoteRunner unpauses a dormant runner in GitLab and resumes its
// machine; its agent then reports ready to Machine.ReadyWorkflowID.
// Unpausing first is safe: runners pull their jobs, so a sleeping one takes
// none.
func (a *Activities) PromoteRunner(ctx context.Context, in PowerInput) error {
	// A machine of the egg's shared runner has nothing of its own paused
	// in GitLab: its stopped gitlab-runner took no job.
	if !contract.IsEggRunnerToken(in.Machine.TokenRef) {
		gl, err := a.gitlabClient(ctx, in.Machine.Egg.GitLab)
		if err != nil {
			return err
		}
		if err := gl.SetRunnerPaused(ctx, in.GitLabRunnerID, false); err != nil {
			return fmt.Errorf("unpause GitLab runner %d: %w", in.GitLabRunnerID, err)
		}
	}
	in.Machine.Running = true
	if err := a.fillAgentRef(ctx, &in.Machine); err != nil {
		return err
	}
	if in.Machine.Cloud == fly.CloudLocal && in.Machine.Egg.Runner.Module == "" {
		// The local provider's start call: the process resumes at once, as
		// an instance does on a cloud's start API; the apply below records
		// the power state in the workspace (its own resume is then a no-op).
		cfg := a.agentConfig(in.Machine)
		if err := agent.Power(a.Agent.Binary, MachineDir(a.Tofu.StateDir(), in.Machine.RunnerID), "running", &cfg); err != nil {
			return fmt.Errorf("resume machine of %s: %w", in.Machine.RunnerID, err)
		}
	}
	if _, err := a.ApplyMachine(ctx, in.Machine); err != nil {
		return fmt.Errorf("resume machine of %s: %w", in.Machine.RunnerID, err)
	}
	return nil
}

// DemoteResult says whether a runner was put to sleep.
type DemoteResult struct {
	Demoted bool `json:"demoted"`
	// Busy is set when GitLab had given it a job meanwhile: it stays Apex.
	Busy bool `json:"busy"`
}

// DemoteRunner puts an idle Apex runner to sleep without racing a job:
// pause it in GitLab so it takes no new job, confirm it runs none, then
// stop its machine. A runner that got a job meanwhile is unpaused again and
// left running.
//
// A machine of the egg's shared runner is not paused in GitLab (that would
// pause every machine of the egg): the job its agent reported running
// tells it busy, and stopping the machine stops its gitlab-runner.
func (a *Activities) DemoteRunner(ctx context.Context, in PowerInput) (DemoteResult, error) {
	if contract.IsEggRunnerToken(in.Machine.TokenRef) {
		if busy, err := a.machineBusy(ctx, in.Machine.RunnerID); err != nil || busy {
			return DemoteResult{Busy: busy}, err
		}
	} else {
		gl, err := a.gitlabClient(ctx, in.Machine.Egg.GitLab)
		if err != nil {
			return DemoteResult{}, err
		}
		if err := gl.SetRunnerPaused(ctx, in.GitLabRunnerID, true); err != nil {
			return DemoteResult{}, fmt.Errorf("pause GitLab runner %d: %w", in.GitLabRunnerID, err)
		}
		if busy, err := unpauseIfBusy(ctx, gl, in.GitLabRunnerID); err != nil || busy {
			return DemoteResult{Busy: busy}, err
		}
	}
	in.Machine.Running = false
	if in.Machine.Kind != fly.RunnerVM {
		return DemoteResult{}, temporal.NewNonRetryableApplicationError("only VM runners can be dormant", ErrTypeBadInput, nil)
	}
	if _, err := a.ApplyMachine(ctx, in.Machine); err != nil {
		return DemoteResult{}, fmt.Errorf("stop machine of %s: %w", in.Machine.RunnerID, err)
	}
	return DemoteResult{Demoted: true}, nil
}

// machineBusy tells whether a machine's agent reported a job of its own
// running and not yet finished.
func (a *Activities) machineBusy(ctx context.Context, runnerID string) (bool, error) {
	jobs, err := a.Store.ListJobs(ctx, store.JobFilter{RunnerID: runnerID, Status: "running", Limit: 1})
	if err != nil {
		return false, fmt.Errorf("list running jobs of runner %s: %w", runnerID, err)
	}
	return len(jobs) > 0, nil
}

// unpauseIfBusy is the second half of a race-free stop: with the runner
// paused (it takes no new job), it reports whether it still runs one, and
// if so unpauses it again.
func unpauseIfBusy(ctx context.Context, gl *gitlab.Client, runnerID int64) (bool, error) {
	jobs, err := gl.RunnerJobs(ctx, runnerID, "running")
	if err != nil {
		return false, fmt.Errorf("list running jobs of GitLab runner %d: %w", runnerID, err)
	}
	if len(jobs) == 0 {
		return false, nil
	}
	if err := gl.SetRunnerPaused(ctx, runnerID, false); err != nil {
		return true, fmt.Errorf("unpause busy GitLab runner %d: %w", runnerID, err)
	}
	return true, nil
}

// Outcomes of DrainMachine besides AgentDeferred and AgentGone.
const (
	// MachineDrained: the agent stopped its gitlab-runner taking jobs.
	MachineDrained = "drained"
	// MachineUnreachable: the machine's agent cannot be told from a worker
	// (a cloud VM); its teardown stops gitlab-runner.
	MachineUnreachable = "unreachable"
	// MachineNotServing: the agent serves no gitlab-runner (starting, or a
	// one-job machine whose job ran).
	MachineNotServing = "not-serving"
)

// DrainMachineInput names a machine of an egg's shared GitLab runner whose
// gitlab-runner must stop taking jobs.
type DrainMachineInput struct {
	RunnerID string `json:"runner_id"`
	Cloud    string `json:"cloud"`
}

// DrainMachineResult says what the machine's agent did.
type DrainMachineResult struct {
	Outcome string `json:"outcome"`
}

// DrainMachine stops a retired machine's gitlab-runner taking new jobs at
// once, where pausing in GitLab cannot (the egg's shared runner is paused
// for every machine or none): the agent's graceful stop (agent.Drain,
// gitlab-runner's SIGQUIT), a running job finishes. Only the local
// provider's agents are reachable from here (MachineUnreachable
// otherwise); a stopped (dormant) machine takes no job (AgentDeferred),
// a gone one none either (AgentGone).
func (a *Activities) DrainMachine(ctx context.Context, in DrainMachineInput) (DrainMachineResult, error) {
	if in.Cloud != fly.CloudLocal || a.Tofu == nil {
		return DrainMachineResult{Outcome: MachineUnreachable}, nil
	}
	switch err := agent.Drain(MachineDir(a.Tofu.StateDir(), in.RunnerID)); {
	case err == nil:
		return DrainMachineResult{Outcome: MachineDrained}, nil
	case errors.Is(err, agent.ErrStopped):
		return DrainMachineResult{Outcome: AgentDeferred}, nil
	case errors.Is(err, agent.ErrNotRunning):
		return DrainMachineResult{Outcome: AgentGone}, nil
	case errors.Is(err, agent.ErrNotServing):
		return DrainMachineResult{Outcome: MachineNotServing}, nil
	default:
		return DrainMachineResult{}, fmt.Errorf("drain the machine of %s: %w", in.RunnerID, err)
	}
}
