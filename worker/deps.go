package worker

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
)

// Deps are what a worker's activities need: the dependencies MotherGoose
// opened (store, secrets, metrics, GitLab options) and the worker's own
// (OpenTofu, the agent).
type Deps struct {
	Store         store.Store
	Secrets       *secrets.Resolver
	Metrics       *metrics.Metrics
	Logger        *slog.Logger
	GitLabOptions []gitlab.Option
	// SecretsConfig is the MG block's secrets block: runner tokens of
	// cloud machines go to its backend. Zero keeps them in local://.
	SecretsConfig fly.Secrets
	// Tofu is the OpenTofu binary; StateDir holds its per-runner
	// workspaces (under tofu/) and the local provider's machines.
	Tofu     string
	StateDir string
	// Backend is where OpenTofu keeps the runners' states (this worker's
	// disk when zero: one worker only).
	Backend tofu.Backend
	// Agent says how machines get their agent and where it reports.
	Agent activities.AgentSettings
	// SimulateMachines, for fleet benchmarks only, replaces machines by
	// ones that take this long to apply, and whose serverless invocations
	// take SimulateJob (see activities.SimulatedMachines).
	SimulateMachines time.Duration
	SimulateJob      time.Duration
}

// NewActivities opens OpenTofu in d.StateDir and builds the activities.
// Errors name what could not be opened; an unusable secrets block is
// reported as such.
func NewActivities(d Deps) (*activities.Activities, error) {
	abs, err := filepath.Abs(d.StateDir)
	if err != nil {
		return nil, err
	}
	ex, err := tofu.New(d.Tofu, filepath.Join(abs, "tofu"))
	if err != nil {
		return nil, fmt.Errorf("open OpenTofu: %w", err)
	}
	ex.Filter = d.Secrets.Masker().Mask
	ex.Backend = d.Backend
	tokenRef, err := activities.TokenRefs(d.SecretsConfig)
	if err != nil {
		return nil, fmt.Errorf("mothergoose.secrets: %w", err)
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	acts := &activities.Activities{
		Store: d.Store, Secrets: d.Secrets, Tofu: ex, Logger: log, Metrics: d.Metrics,
		TokenRef: tokenRef, GitLabOptions: d.GitLabOptions, Agent: d.Agent,
		// The local provider's machines are processes of this host.
		Inventories: []activities.Inventory{activities.LocalInventory{Deployment: d.Agent.Deployment, StateDir: ex.StateDir()}},
	}
	if d.SimulateMachines > 0 {
		acts.Simulate = &activities.SimulatedMachines{Apply: d.SimulateMachines, Destroy: d.SimulateMachines / 2, Job: d.SimulateJob}
	}
	return acts, nil
}
