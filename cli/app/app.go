// Package app is Gosling's one composition root, beside the commands: like
// them, and the end-to-end harness, it may build on api and worker, which
// nothing below cli does. From one Config, Open
// builds a process: MotherGoose (the store, the secret resolver, the
// Temporal client and the metrics, through mothergoose.Open), the
// activities a worker runs (OpenTofu and its state backend, the agent's
// settings, the machine inventories, through worker.NewActivities), the
// Temporal workers of the task queues asked for, and the API handler.
// `gosling server`, `gosling worker`, `gosling dev`, `gosling rift serve`
// and the end-to-end harness all build their processes here and differ only
// in their Config: dev and the harness pass their stand-ins (a Temporal dev
// server's client, the GitLab test server's options, a gitlab-runner
// stand-in) in as options.
//
// The glue every process needs is written here once: secret backend calls
// are counted in the metrics and, in a worker, audited; the activities run
// MotherGoose's logic for the sweep and the self-management jobs.
package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/worker"
	tworker "go.temporal.io/sdk/worker"
)

// Config is what a process is built from. MotherGoose is always opened;
// Activities, Queues and API are built when set.
type Config struct {
	// MotherGoose configures the server's logic and its dependencies; see
	// mothergoose.Config (what is handed over there is used as it is).
	MotherGoose mothergoose.Config
	// Activities, when set, says what a worker's activities are built
	// from, once MotherGoose is open (what they need of it, such as its
	// secret resolver for the state backend's credentials, is at hand).
	// The Deps' Store, Secrets, Metrics, Logger and GitLabOptions are
	// filled from MotherGoose when left empty.
	Activities func(ctx context.Context, mg *mothergoose.MotherGoose) (worker.Deps, error)
	// Queues are the task queues to run Temporal workers for (none: no
	// worker); they need Activities. Workers start with Start.
	Queues []string
	// Worker tunes every worker (concurrency, identity).
	Worker worker.Options
	// API, when set, builds the HTTP handler; its MotherGoose is filled.
	API *api.Config
	// AuditQueue, when set, audits every secret backend call of the
	// process as done by this task queue's worker (the audit log's
	// secret-access records).
	AuditQueue string
}

// localStateCheckTimeout bounds the look at the task queue's pollers.
const localStateCheckTimeout = 30 * time.Second

// ActivitiesError is a worker configuration that cannot run: the secrets
// block names no usable token store, OpenTofu is missing.
type ActivitiesError struct{ Err error }

func (e *ActivitiesError) Error() string { return "build the activities: " + e.Err.Error() }
func (e *ActivitiesError) Unwrap() error { return e.Err }

// App is a built process.
type App struct {
	MotherGoose *mothergoose.MotherGoose
	// Activities, Workers and API are nil when the Config asked for none.
	Activities *activities.Activities
	Workers    []tworker.Worker
	API        *api.Server

	started bool
}

// Open builds the process cfg describes. Errors name what could not be
// built; a database block that names no usable store is a
// *mothergoose.StoreConfigError, a task queue Gosling does not serve an
// error from worker.New. What was opened before an error is closed again.
func Open(ctx context.Context, cfg Config) (*App, error) {
	if len(cfg.Queues) > 0 && cfg.Activities == nil {
		return nil, errors.New("app: workers need activities (Config.Activities)")
	}
	mg, err := mothergoose.Open(ctx, cfg.MotherGoose)
	if err != nil {
		return nil, err
	}
	a := &App{MotherGoose: mg}
	ok := false
	defer func() {
		if !ok {
			_ = a.Close()
		}
	}()
	// Backend calls are counted in the process's metrics
	// (gosling_secret_backend_calls_total), and audited by a worker.
	mg.Secrets().Observe(mg.Metrics())
	if cfg.AuditQueue != "" {
		mg.Secrets().Observe(activities.NewSecretAudit(mg.Store(), cfg.AuditQueue, mg.Logger()))
	}
	if cfg.Activities != nil {
		deps, err := cfg.Activities(ctx, mg)
		if err != nil {
			return nil, err
		}
		if deps.Store == nil {
			deps.Store = mg.Store()
		}
		if deps.Secrets == nil {
			deps.Secrets = mg.Secrets()
		}
		if deps.Metrics == nil {
			deps.Metrics = mg.Metrics()
		}
		if deps.Logger == nil {
			deps.Logger = mg.Logger()
		}
		if deps.GitLabOptions == nil {
			deps.GitLabOptions = mg.GitLabOptions()
		}
		if a.Activities, err = worker.NewActivities(deps); err != nil {
			return nil, &ActivitiesError{Err: err}
		}
		// The sweep and the self-management jobs run MotherGoose's logic
		// in the worker.
		a.Activities.MotherGoose = mg.Operations()
	}
	for _, q := range cfg.Queues {
		wo := cfg.Worker
		if q == contract.TaskQueueMotherGoose && a.Activities.Simulate == nil && !a.Activities.Tofu.Backend.Remote() {
			// The machines' states are on this disk: no other worker
			// may make them.
			if wo.Identity == "" {
				wo.Identity = worker.LocalStateIdentity(a.Activities.Tofu.StateDir())
			}
			cctx, cancel := context.WithTimeout(ctx, localStateCheckTimeout)
			err := worker.CheckAloneOnLocalState(cctx, mg.Temporal(), wo.Identity)
			cancel()
			if err != nil {
				return nil, err
			}
			mg.Logger().Warn("OpenTofu state is on this worker's disk: run no other mothergoose worker (MG/config.fly state block)", "state_dir", a.Activities.Tofu.StateDir())
		}
		w, err := worker.New(mg.Temporal(), q, a.Activities, wo)
		if err != nil {
			return nil, err
		}
		a.Workers = append(a.Workers, w)
	}
	if cfg.API != nil {
		ac := *cfg.API
		ac.MotherGoose = mg
		if a.API, err = api.New(ac); err != nil {
			return nil, err
		}
	}
	ok = true
	return a, nil
}

// Start starts the workers; they poll their task queues until Close.
func (a *App) Start() error {
	for _, w := range a.Workers {
		if err := w.Start(); err != nil {
			return fmt.Errorf("start a worker: %w", err)
		}
	}
	a.started = true
	return nil
}

// Close stops the workers and closes what Open opened.
func (a *App) Close() error {
	if a.started {
		for _, w := range a.Workers {
			w.Stop()
		}
		a.started = false
	}
	if a.MotherGoose != nil {
		return a.MotherGoose.Close()
	}
	return nil
}
