package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/cli/app"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/tofu"
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
	// AgentBinary is the agent the local provider's machines run: the
	// gosling-agent binary (cmd/gosling-agent), or empty for this gosling.
	AgentBinary string
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
		cmd.Flags().StringVar(&r.AgentBinary, "agent-binary", env("GOSLING_AGENT_BINARY", ""), "the agent binary machines of the local provider run: gosling-agent (cmd/gosling-agent), lighter and quicker to start (default: this gosling) ($GOSLING_AGENT_BINARY)")
		cmd.Flags().StringVar(&r.AgentAPIURL, "agent-api-url", env("GOSLING_AGENT_API_URL", ""), "MotherGoose API URL as runner machines reach it; their agents report ready, heartbeats and jobs there (default https://<api_gateway.domain>) ($GOSLING_AGENT_API_URL)")
	}
}

// agentBinary is the agent the local provider's machines run: the given
// binary (a path, or a name looked up in PATH) or this gosling.
func agentBinary(bin string) (string, error) {
	if bin == "" {
		return os.Executable()
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("--agent-binary %q: %w", bin, err)}
	}
	return filepath.Abs(p)
}

// awsCredentialEnv are the variables the AWS SDK reads a worker's own
// identity from; the s3 state backend gets them explicitly, since
// OpenTofu runs with a clean environment.
var awsCredentialEnv = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE",
	"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME"}

// stateBackend is the OpenTofu state backend of MG's state block: pg with
// the store's PostgreSQL database (the effective store, dsn or MG's
// database), s3 with the block's bucket and a static key from its secret
// URIs or the worker's own AWS identity, or this worker's disk.
func stateBackend(ctx context.Context, mg fly.MotherGoose, dsn string, res *secretstore.Resolver, getenv func(string) (string, bool)) (tofu.Backend, error) {
	if dsn == "" && mg.Database.Engine == "postgresql" {
		var err error
		if dsn, err = mothergoose.StoreDSN(ctx, mg, res); err != nil {
			return tofu.Backend{}, err
		}
	}
	postgres := strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
	switch mg.State.Effective(postgres) {
	case fly.StatePG:
		if !postgres {
			return tofu.Backend{}, fmt.Errorf("mothergoose.state: the pg backend needs a PostgreSQL store (--store postgres://... or a postgresql database)")
		}
		return tofu.PGBackend(dsn)
	case fly.StateS3:
		st := mg.State
		env := map[string]string{}
		if !st.AccessKey.IsZero() {
			id, err := res.Resolve(ctx, st.AccessKey)
			if err != nil {
				return tofu.Backend{}, fmt.Errorf("mothergoose.state.access_key: %w", err)
			}
			secret, err := res.Resolve(ctx, st.SecretKey)
			if err != nil {
				return tofu.Backend{}, fmt.Errorf("mothergoose.state.secret_key: %w", err)
			}
			env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = id, secret
		} else if getenv != nil {
			for _, k := range awsCredentialEnv {
				if v, ok := getenv(k); ok && v != "" {
					env[k] = v
				}
			}
		}
		return tofu.S3Backend(tofu.S3Config{Bucket: st.Bucket, Prefix: st.Prefix, Region: st.Region, Endpoint: st.Endpoint, PathStyle: st.PathStyle, Env: env})
	}
	return tofu.Backend{Kind: tofu.BackendLocal}, nil
}

// deploymentName is the deployment every machine's labels name:
// $GOSLING_DEPLOYMENT, else MG/config.fly's api_gateway.name, else
// agentapi.DefaultDeployment.
func deploymentName(nest *fly.Nest, getenv func(string) (string, bool)) string {
	if getenv != nil {
		if v, ok := getenv("GOSLING_DEPLOYMENT"); ok && v != "" {
			return v
		}
	}
	if n := nest.MotherGoose.APIGateway.Name; n != "" {
		return n
	}
	return agentapi.DefaultDeployment
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
	Masker   *secretstore.Masker
	// LazyTemporal lets the process start while Temporal is down (the API).
	LazyTemporal bool
	// Activities builds a worker's activities too.
	Activities bool
	// Queues are the task queues to run workers for, with Worker's
	// options; the first one's worker audits secret backend calls.
	Queues []string
	Worker worker.Options
	// API, when set, builds the API handler from its configuration for the
	// loaded Nest.
	API func(nest *fly.Nest) api.Config
	// ErrOut receives the diagnostics of an invalid Nest.
	ErrOut *IOStreams
	// SimulateMachines and SimulateJob are for fleet benchmarks only.
	SimulateMachines time.Duration
	SimulateJob      time.Duration
}

// process is an opened server process, built by the composition root
// (app.Open): MotherGoose and, as asked, the activities, the workers and
// the API.
type process struct {
	*app.App
	Nest *fly.Nest
	MG   *mothergoose.MotherGoose
	Acts *activities.Activities
	// StateDir is the process's state directory, absolute.
	StateDir string
	// Backend is the OpenTofu state backend workers use (tofu.BackendLocal,
	// BackendPG or BackendS3).
	Backend string
}

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

// openProcess builds a server process from the Nest and the flags with
// the composition root, app.Open.
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
	p := &process{Nest: nest, StateDir: stateDir}
	cfg := app.Config{
		MotherGoose: mothergoose.Config{
			Nest: nest, Vars: o.Vars, StoreDSN: dsn,
			SecretsDir: filepath.Join(stateDir, "secrets"), Masker: o.Masker, Getenv: o.Getenv,
			TemporalConnection: o.Temporal.Connection(), LazyTemporal: o.LazyTemporal,
			Logger: o.Logger,
		},
		Queues: o.Queues, Worker: o.Worker,
	}
	if o.API != nil {
		ac := o.API(nest)
		cfg.API = &ac
	}
	if len(o.Queues) > 0 {
		cfg.AuditQueue = o.Queues[0]
	}
	if o.Activities {
		cfg.Activities = func(ctx context.Context, mg *mothergoose.MotherGoose) (worker.Deps, error) {
			deps, backend, err := workerDeps(ctx, o, nest, stateDir, dsn, mg)
			p.Backend = backend
			return deps, err
		}
	}
	a, err := app.Open(ctx, cfg)
	var badStore *mothergoose.StoreConfigError
	var badConfig *configError
	var badActs *app.ActivitiesError
	switch {
	case errors.As(err, &badStore), errors.As(err, &badConfig), errors.As(err, &badActs):
		return nil, &CodeError{Code: ExitInvalidConfig, Err: err}
	case err != nil:
		return nil, err
	}
	p.App, p.MG, p.Acts = a, a.MotherGoose, a.Activities
	return p, nil
}

// configError is a worker configuration that cannot run (exit code 3).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

// workerDeps is what a worker's activities are built from: OpenTofu and
// the state backend of MG's state block, the agent's settings from MG and
// the flags. backend names the state backend.
func workerDeps(ctx context.Context, o processOptions, nest *fly.Nest, stateDir, dsn string, mg *mothergoose.MotherGoose) (deps worker.Deps, backend string, err error) {
	bin, err := o.Runtime.tofuBinary()
	if err != nil {
		return deps, "", err
	}
	self, err := agentBinary(o.Runtime.AgentBinary)
	if err != nil {
		return deps, "", err
	}
	apiURL := o.Runtime.AgentAPIURL
	if apiURL == "" && nest.MotherGoose.APIGateway.Domain != "" {
		apiURL = "https://" + nest.MotherGoose.APIGateway.Domain
	}
	be, err := stateBackend(ctx, nest.MotherGoose, dsn, mg.Secrets(), o.Getenv)
	if err != nil {
		return deps, "", &configError{err}
	}
	return worker.Deps{
		SecretsConfig: nest.MotherGoose.Secrets, Tofu: bin, StateDir: stateDir, Backend: be,
		Agent: activities.AgentSettings{
			Deployment: deploymentName(nest, o.Getenv),
			Binary:     self, SecretsDir: filepath.Join(stateDir, "secrets"), Secrets: nest.MotherGoose.Secrets,
			HeartbeatSeconds: 5, APIURL: apiURL, Release: nest.MotherGoose.Agent, RiftURL: o.Runtime.RiftURL,
			GitLabRunner: o.Runtime.GitLabRunner,
		},
		Providers: nest.MotherGoose.Providers, Getenv: o.Getenv,
		SimulateMachines: o.SimulateMachines, SimulateJob: o.SimulateJob,
	}, be.Kind, nil
}
