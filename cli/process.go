package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/worker"
	"github.com/spf13/cobra"
)

// RuntimeFlags say where a process keeps its state on this machine and
// what overrides the Nest's MG block.
type RuntimeFlags struct {
	// Store is the store DSN (sqlite://..., postgres://...); it overrides
	// MG database.
	Store string
	// StateDir holds tofu workspaces, local machines and local secrets.
	StateDir string
	// Tofu is the OpenTofu binary.
	Tofu string
	// AgentAPIURL is MotherGoose's API as runner machines reach it: their
	// agents report ready, heartbeats and jobs there (default: https:// and
	// MG api_gateway.domain).
	AgentAPIURL string
	// RiftURL is the control API of the Rift runners use for eggs whose
	// rift block names no endpoint.
	RiftURL string
	// GitLabRunner is the gitlab-runner the local provider's machines run
	// (a path, or a name looked up in PATH; default gitlab-runner).
	GitLabRunner string
}

// runtimeFlagSet says which runtime flags a command offers: every process
// has a state directory and a store; OpenTofu is run by workers and by
// `uglyfox run --local` (its reconciliation reads the workspaces); what
// runner machines are given (their agents' API, Rift, gitlab-runner) only
// workers use.
type runtimeFlagSet int

const (
	runtimeStore runtimeFlagSet = iota
	runtimeTofu
	runtimeWorker
)

func (r *RuntimeFlags) register(cmd *cobra.Command, getenv func(string) (string, bool), set runtimeFlagSet) {
	env := func(name, def string) string {
		if v, ok := getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	cmd.Flags().StringVar(&r.StateDir, "state-dir", env("GOSLING_STATE_DIR", ".gosling"), "directory for tofu workspaces, local machines and local secrets ($GOSLING_STATE_DIR)")
	cmd.Flags().StringVar(&r.Store, "store", env("GOSLING_STORE", ""), "store DSN: sqlite://PATH, postgres://..., dynamodb://PREFIX?region=... (default: MG database, else sqlite in --state-dir) ($GOSLING_STORE)")
	if set >= runtimeTofu {
		cmd.Flags().StringVar(&r.Tofu, "tofu", env("GOSLING_TOFU", ""), "OpenTofu binary (default: bin/tofu beside gosling, then PATH) ($GOSLING_TOFU)")
	}
	if set >= runtimeWorker {
		cmd.Flags().StringVar(&r.RiftURL, "rift-url", env("GOSLING_RIFT_URL", ""), "Rift's control API (https://host:8443) for eggs whose rift block names no endpoint ($GOSLING_RIFT_URL)")
		cmd.Flags().StringVar(&r.GitLabRunner, "gitlab-runner", env("GOSLING_GITLAB_RUNNER", ""), "gitlab-runner that machines of the local provider run (default: gitlab-runner in PATH) ($GOSLING_GITLAB_RUNNER)")
		cmd.Flags().StringVar(&r.AgentAPIURL, "agent-api-url", env("GOSLING_AGENT_API_URL", ""), "MotherGoose API URL as runner machines reach it; their agents report ready, heartbeats and jobs there (default https://<api_gateway.domain>) ($GOSLING_AGENT_API_URL)")
	}
}

func (r *RuntimeFlags) tofuBinary() (string, error) {
	return findTool(r.Tofu, "tofu")
}

// processOptions say how to open one server process.
type processOptions struct {
	// NestDir is the Nest to load; empty runs on an empty Nest (local
	// defaults: SQLite in the state directory, local:// secrets).
	NestDir  string
	Vars     map[string]string
	Getenv   func(string) (string, bool)
	Temporal TemporalFlags
	Runtime  RuntimeFlags
	Logger   *slog.Logger
	Masker   *secrets.Masker
	// LazyTemporal lets the process start while Temporal is down (the API).
	LazyTemporal bool
	// Activities builds a worker's activities too.
	Activities bool
	// ErrOut receives the diagnostics of an invalid Nest.
	ErrOut *IOStreams
	// SimulateMachines and SimulateJob are for fleet benchmarks only.
	SimulateMachines time.Duration
	SimulateJob      time.Duration
}

// process is an opened server process: MotherGoose and, for workers, the
// activities.
type process struct {
	Nest     *fly.Nest
	MG       *mothergoose.MotherGoose
	Acts     *activities.Activities
	StateDir string
}

// Close closes what the process opened.
func (p *process) Close() error { return p.MG.Close() }

// loadNest loads the Nest a command names, printing its diagnostics; an
// invalid Nest is exit code 3.
func loadNest(dir string, vars map[string]string, getenv func(string) (string, bool), io *IOStreams) (*fly.Nest, error) {
	nest, diags := fly.LoadNest(dir, fly.Options{Vars: vars, Getenv: getenv})
	if diags.HasErrors() {
		if io != nil {
			_ = fly.WriteText(io.ErrOut, diags.Diagnostics, diags.Files, io.StderrTTY)
		}
		return nil, &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("the Nest in %s is invalid: run `gosling validate %s`", dir, dir)}
	}
	return nest, nil
}

// openProcess builds a server process from the Nest and the flags: every
// dependency is opened by mothergoose.Open, the one composition root.
func openProcess(ctx context.Context, o processOptions) (*process, error) {
	nest := &fly.Nest{}
	if o.NestDir != "" {
		var err error
		if nest, err = loadNest(o.NestDir, o.Vars, o.Getenv, o.ErrOut); err != nil {
			return nil, err
		}
	}
	stateDir, err := filepath.Abs(o.Runtime.StateDir)
	if err != nil {
		return nil, err
	}
	dsn := o.Runtime.Store
	if dsn == "" && o.NestDir == "" {
		dsn = "sqlite://" + filepath.Join(stateDir, "gosling.db")
	}
	mg, err := mothergoose.Open(ctx, mothergoose.Config{
		Nest: nest, Vars: o.Vars, StoreDSN: dsn,
		SecretsDir: filepath.Join(stateDir, "secrets"), Masker: o.Masker, Getenv: o.Getenv,
		TemporalConnection: o.Temporal.Connection(), LazyTemporal: o.LazyTemporal,
		Logger: o.Logger,
	})
	var badStore *mothergoose.StoreConfigError
	if errors.As(err, &badStore) {
		return nil, &CodeError{Code: ExitInvalidConfig, Err: err}
	}
	if err != nil {
		return nil, err
	}
	// Backend calls are counted in the process's metrics
	// (gosling_secret_backend_calls_total); the resolver was opened above.
	mg.Secrets().Observe(mg.Metrics())
	p := &process{Nest: nest, MG: mg, StateDir: stateDir}
	if !o.Activities {
		return p, nil
	}
	bin, err := o.Runtime.tofuBinary()
	if err != nil {
		mg.Close()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		mg.Close()
		return nil, err
	}
	apiURL := o.Runtime.AgentAPIURL
	if apiURL == "" && nest.MotherGoose.APIGateway.Domain != "" {
		apiURL = "https://" + nest.MotherGoose.APIGateway.Domain
	}
	p.Acts, err = worker.NewActivities(worker.Deps{
		Store: mg.Store(), Secrets: mg.Secrets(), Metrics: mg.Metrics(), Logger: o.Logger, GitLabOptions: mg.GitLabOptions(),
		SecretsConfig: nest.MotherGoose.Secrets, Tofu: bin, StateDir: stateDir,
		Agent: activities.AgentSettings{
			Binary: self, SecretsDir: filepath.Join(stateDir, "secrets"), Secrets: nest.MotherGoose.Secrets,
			HeartbeatSeconds: 5, APIURL: apiURL, Release: nest.MotherGoose.Agent, RiftURL: o.Runtime.RiftURL,
			GitLabRunner: o.Runtime.GitLabRunner,
		},
		SimulateMachines: o.SimulateMachines, SimulateJob: o.SimulateJob,
	})
	if err != nil {
		mg.Close()
		return nil, &CodeError{Code: ExitInvalidConfig, Err: err}
	}
	// The sweep and the self-management jobs run MotherGoose's logic in
	// the worker.
	p.Acts.MotherGoose = mg
	return p, nil
}
