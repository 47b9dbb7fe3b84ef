package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
)

// EggOf finds the configuration a runner was made with: the egg in the
// Nest in force, or its last stored configuration if the Nest dropped it.
// An egg in neither is KindConflict.
func (m *Operations) EggOf(ctx context.Context, name string) (*fly.Egg, error) {
	if egg, ok := m.Nest().Egg(name); ok {
		return egg, nil
	}
	cfg, err := m.store.GetEggConfig(ctx, name)
	if err == nil {
		var egg fly.Egg
		if err := json.Unmarshal(cfg.Spec, &egg); err == nil && egg.GitLab.Host != "" {
			return &egg, nil
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return nil, errorf(KindConflict, "unknown egg", "egg %s is neither in the Nest nor in the store", name)
}

// RunnerRequest is the answer to a drain or delete of a runner: the
// workflow that acts on it and, for a finished drain, the runner.
type RunnerRequest struct {
	Status     string        `json:"status"`
	WorkflowID string        `json:"workflow_id"`
	Runner     *store.Runner `json:"runner,omitempty"`
}

// DrainRunner stops a runner taking new jobs. A pool's runner is drained
// by its pool (contract.SignalRunnerAction), which retires it once it has
// no job; any other runner by the DrainRunner workflow (paused in GitLab,
// then recorded draining), whose result is awaited. Errors: store.ErrNotFound
// for an unknown runner, KindConflict for one that cannot drain.
func (m *Operations) DrainRunner(ctx context.Context, runnerID, actor, reason string) (RunnerRequest, error) {
	r, err := m.store.GetRunner(ctx, runnerID)
	if err != nil {
		return RunnerRequest{}, err
	}
	if r.State == store.StateDraining {
		return RunnerRequest{Status: StatusAccepted, Runner: r}, nil
	}
	if !store.CanTransition(r.State, store.StateDraining) {
		return RunnerRequest{}, errorf(KindConflict, "conflict", "runner %s is %s: only active and dormant runners can be drained", r.ID, r.State)
	}
	egg, err := m.EggOf(ctx, r.Egg)
	if err != nil {
		return RunnerRequest{}, err
	}
	if contract.PoolOwned(r.Egg, r.ID) {
		if req, asked, err := m.askPool(ctx, r, contract.ActionDrain, actor, reason); asked || err != nil {
			return req, err
		}
	}
	tc := m.Temporal()
	if tc == nil {
		return RunnerRequest{}, errNoTemporal
	}
	wfID := contract.DrainWorkflowID(r.ID)
	cctx, cancel := context.WithTimeout(ctx, 3*m.cfg.TemporalTimeout)
	defer cancel()
	run, err := tc.ExecuteWorkflow(cctx, contract.StartOptions(wfID), contract.WorkflowDrainRunner, contract.DrainRunnerInput{
		RunnerID: r.ID, GitLab: egg.GitLab, Actor: actor, Reason: reason,
	})
	if err != nil {
		return RunnerRequest{}, fmt.Errorf("start %s: %w", wfID, err)
	}
	var res contract.DrainRunnerResult
	if err := run.Get(cctx, &res); err != nil {
		var app *temporal.ApplicationError
		if errors.As(err, &app) && app.Type() == contract.ErrTypeIllegalState {
			return RunnerRequest{}, &Error{Kind: KindConflict, Msg: "conflict", Detail: app.Error()}
		}
		if Unreachable(err) {
			// Still running: the workflow finishes it.
			return RunnerRequest{Status: StatusAccepted, WorkflowID: wfID}, nil
		}
		return RunnerRequest{}, fmt.Errorf("drain runner %s: %w", r.ID, err)
	}
	moved, err := m.store.GetRunner(ctx, r.ID)
	if err != nil {
		return RunnerRequest{}, err
	}
	return RunnerRequest{Status: StatusAccepted, WorkflowID: wfID, Runner: moved}, nil
}

// DeleteRunner tears a runner down: through its pool when a pool owns it,
// else with the DeprovisionRunner workflow, which is started and not
// awaited. The workflow records the teardown; the request is audited.
func (m *Operations) DeleteRunner(ctx context.Context, runnerID, actor, reason string) (RunnerRequest, error) {
	r, err := m.store.GetRunner(ctx, runnerID)
	if err != nil {
		return RunnerRequest{}, err
	}
	egg, err := m.EggOf(ctx, r.Egg)
	if err != nil {
		return RunnerRequest{}, err
	}
	if contract.PoolOwned(r.Egg, r.ID) {
		if req, asked, err := m.askPool(ctx, r, contract.ActionTerminate, actor, reason); asked || err != nil {
			return req, err
		}
	}
	tc := m.Temporal()
	if tc == nil {
		return RunnerRequest{}, errNoTemporal
	}
	wfID := contract.DeprovisionWorkflowID(r.ID)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	_, err = tc.ExecuteWorkflow(cctx, contract.StartOptions(wfID), contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
		RunnerID: r.ID, GitLab: egg.GitLab, Reason: reason, Actor: actor,
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		return RunnerRequest{}, fmt.Errorf("start %s: %w", wfID, err)
	}
	m.audit(ctx, store.AuditRecord{Actor: actor, Action: "delete", Egg: r.Egg, RunnerID: r.ID, Reason: reason})
	return RunnerRequest{Status: StatusAccepted, WorkflowID: wfID}, nil
}

// askPool asks the pool that owns a runner to act on it. asked is false
// when that pool is not running (the caller acts itself).
func (m *Operations) askPool(ctx context.Context, r *store.Runner, action, actor, reason string) (RunnerRequest, bool, error) {
	tc := m.Temporal()
	if tc == nil {
		return RunnerRequest{}, true, errNoTemporal
	}
	wfID := contract.PoolWorkflowID(r.Egg)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	err := tc.SignalWorkflow(cctx, wfID, "", contract.SignalRunnerAction, contract.RunnerAction{
		RunnerID: r.ID, Action: action, Actor: actor, Reason: reason,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return RunnerRequest{}, false, nil
	}
	if err != nil {
		return RunnerRequest{}, true, fmt.Errorf("signal %s: %w", wfID, err)
	}
	m.audit(ctx, store.AuditRecord{Actor: actor, Action: action, Egg: r.Egg, RunnerID: r.ID, Reason: reason})
	return RunnerRequest{Status: StatusAccepted, WorkflowID: wfID}, true, nil
}
