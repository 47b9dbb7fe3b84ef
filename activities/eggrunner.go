package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
)

// EnsureEggRunner returns the GitLab runner an egg's machines of one shape
// share, made on the first call: it asks the egg and shape's EggRunner
// workflow (contract.UpdateEnsureEggRunner, started when none runs), which
// creates at most one GitLab runner however many provisionings ask at once.
// Errors: the workflow's (a GitLab refusal, such as GitLab.com's creation
// cap, is non-retryable there) or Temporal's.
func (a *Activities) EnsureEggRunner(ctx context.Context, in EnsureEggRunnerInput) (contract.EggRunner, error) {
	if err := a.checkRunnerSecrets(ctx, in.Secrets); err != nil {
		return contract.EggRunner{}, err
	}
	mg, err := a.motherGoose()
	if err != nil {
		return contract.EggRunner{}, err
	}
	r, err := mg.EnsureEggRunner(ctx, in.Runner)
	var app *temporal.ApplicationError
	for e := err; errors.As(e, &app); e = app.Unwrap() {
		if app.NonRetryable() {
			return r, temporal.NewNonRetryableApplicationError(err.Error(), app.Type(), err)
		}
	}
	return r, err
}

// EnsureEggRunnerInput asks for an egg's shared runner for one machine.
type EnsureEggRunnerInput struct {
	Runner contract.EggRunnerInput `json:"runner"`
	// Secrets are the other secrets the machine will need (its jobs'
	// secret variables): a missing one fails the machine before anything
	// is made.
	Secrets []fly.SecretRef `json:"secrets,omitempty"`
}

// EggRunnerRetireCheck says whether an egg's shared GitLab runner may go.
type EggRunnerRetireCheck struct {
	// Superseded is set when the egg is gone from the store or its runners'
	// shape changed (their tags, run_untagged, group or projects).
	Superseded bool `json:"superseded"`
	// Machines counts the egg's live runners on the GitLab runner.
	Machines int `json:"machines"`
}

// CheckEggRunnerRetired compares an egg's shared runner with the egg's
// stored configuration and counts the machines still on it (every live
// state: a failed runner's teardown still needs its record).
func (a *Activities) CheckEggRunnerRetired(ctx context.Context, in contract.EggRunnerInput) (EggRunnerRetireCheck, error) {
	var out EggRunnerRetireCheck
	key := in.Shape.Key()
	cfg, err := a.Store.GetEggConfig(ctx, in.Egg)
	switch {
	case errors.Is(err, store.ErrNotFound):
		out.Superseded = true
	case err != nil:
		return out, fmt.Errorf("read egg %s: %w", in.Egg, err)
	default:
		var e fly.Egg
		if err := json.Unmarshal(cfg.Spec, &e); err != nil {
			return out, fmt.Errorf("decode egg %s: %w", in.Egg, err)
		}
		var fallback *fly.ProjectRef
		if len(in.Shape.Projects) == 1 {
			fallback = &in.Shape.Projects[0]
		}
		out.Superseded = contract.EggShape(e, fallback, in.Shape.MaximumTimeout, in.Shape.LocalToken).Key() != key
	}
	if in.Runner == nil || in.Runner.GitLabRunnerID == 0 {
		return out, nil
	}
	rs, err := a.Store.ListRunners(ctx, store.RunnerFilter{Egg: in.Egg, States: LiveStates, GitLabHost: in.GitLab.Host, GitLabRunnerID: in.Runner.GitLabRunnerID})
	if err != nil {
		return out, fmt.Errorf("list runners of egg %s: %w", in.Egg, err)
	}
	out.Machines = len(rs)
	return out, nil
}
