package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
	gworker "github.com/gosling-ci/gosling/worker"
	"github.com/spf13/cobra"
)

// WorkerOptions are the inputs of `gosling worker`.
type WorkerOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Queue    string
	Temporal TemporalFlags
	Runtime  RuntimeFlags
	MaxActs  int
	// Nest, when set, is the Nest whose MG/config.fly secrets block
	// configures the secret backends.
	Nest   string
	Getenv func(string) (string, bool)
}

// RuntimeFlags say where a process keeps its state on this machine.
type RuntimeFlags struct {
	// Store is the store DSN (sqlite://... or postgres://...).
	Store string
	// StateDir holds tofu workspaces, machines and local secrets.
	StateDir string
	// Tofu is the OpenTofu binary.
	Tofu string
	// AgentAPIURL is MotherGoose's API as runner machines reach it: their
	// agents post heartbeats there.
	AgentAPIURL string

	// SecretsConfig, set by a command, configures the secret backends
	// (MotherGoose's secrets block); without it only local:// is served.
	SecretsConfig *fly.Secrets
	// Masker, set by a command, is shared by the resolver, OpenTofu's
	// output and the command's logger.
	Masker *secrets.Masker
}

func (r *RuntimeFlags) register(cmd *cobra.Command, getenv func(string) (string, bool)) {
	env := func(name, def string) string {
		if v, ok := getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	cmd.Flags().StringVar(&r.StateDir, "state-dir", env("GOSLING_STATE_DIR", ".gosling"), "directory for tofu workspaces, local machines and local secrets ($GOSLING_STATE_DIR)")
	cmd.Flags().StringVar(&r.Store, "store", env("GOSLING_STORE", ""), "store DSN: sqlite://PATH or postgres://... (default sqlite in --state-dir) ($GOSLING_STORE)")
	cmd.Flags().StringVar(&r.Tofu, "tofu", env("GOSLING_TOFU", ""), "OpenTofu binary (default: bin/tofu beside gosling, then PATH) ($GOSLING_TOFU)")
	cmd.Flags().StringVar(&r.AgentAPIURL, "agent-api-url", env("GOSLING_AGENT_API_URL", ""), "MotherGoose API URL as runner machines reach it; their agents post heartbeats there (none when empty) ($GOSLING_AGENT_API_URL)")
}

func (r *RuntimeFlags) storeDSN() string {
	if r.Store != "" {
		return r.Store
	}
	return "sqlite://" + filepath.Join(r.StateDir, "gosling.db")
}

func (r *RuntimeFlags) tofuBinary() (string, error) {
	return findTool(r.Tofu, "tofu")
}

// Deps are the opened dependencies of a worker process.
type Deps struct {
	Store      store.Store
	Secrets    *secrets.Resolver
	Local      *secrets.Local
	Tofu       *tofu.Executor
	Activities *activities.Activities
}

// OpenDeps opens the store, the secret backends and OpenTofu.
func (r *RuntimeFlags) OpenDeps(ctx context.Context, t TemporalFlags, log *slog.Logger) (*Deps, error) {
	abs, err := filepath.Abs(r.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, r.storeDSN())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	local, err := secrets.OpenLocal(filepath.Join(abs, "secrets"))
	if err != nil {
		st.Close()
		return nil, err
	}
	bin, err := r.tofuBinary()
	if err != nil {
		st.Close()
		return nil, err
	}
	ex, err := tofu.New(bin, filepath.Join(abs, "tofu"))
	if err != nil {
		st.Close()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		st.Close()
		return nil, err
	}
	var res *secrets.Resolver
	tokenRef := activities.LocalTokenRef
	if r.SecretsConfig != nil {
		// Runner tokens of cloud machines go to the configured backend.
		if tokenRef, err = activities.TokenRefs(*r.SecretsConfig); err != nil {
			st.Close()
			return nil, &CodeError{Code: ExitInvalidConfig, Err: err}
		}
		// local:// stays in the state directory: agents read tokens there.
		res, err = secrets.Open(ctx, *r.SecretsConfig, secrets.OpenOptions{LocalDir: local.Dir(), Masker: r.Masker})
		if err != nil {
			st.Close()
			return nil, err
		}
	} else {
		res = secrets.NewResolver(local)
		if r.Masker != nil {
			res.SetMasker(r.Masker)
		}
	}
	ex.Filter = res.Masker().Mask
	acts := &activities.Activities{
		Store: st, Secrets: res, Tofu: ex, Logger: log,
		TokenRef: tokenRef,
		Agent: activities.AgentSettings{
			Binary: self, TemporalAddress: t.Address, Namespace: t.Namespace,
			SecretsDir: local.Dir(), HeartbeatSeconds: 5, APIURL: r.AgentAPIURL,
		},
	}
	return &Deps{Store: st, Secrets: res, Local: local, Tofu: ex, Activities: acts}, nil
}

// NewCmdWorker builds `gosling worker`.
func NewCmdWorker(f *Factory, runF func(*WorkerOptions) error) *cobra.Command {
	opts := &WorkerOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv}
	opts.Runtime.Masker = f.Masker
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker for the mothergoose or uglyfox task queue",
		Long: `Worker connects to Temporal and runs Gosling's workflows and activities for
one task queue: mothergoose (provisioning, pools) or uglyfox (pruning and
reconciliation). Run any number of replicas; they share the work.

Runners are made by OpenTofu in per-runner workspaces under --state-dir;
runner tokens go to the secret backend, never to disk in plain text.`,
		Example: `  gosling worker --queue mothergoose
  gosling worker --queue mothergoose --temporal-address temporal.example.com:7233 \
    --temporal-namespace gosling --temporal-tls --store postgres://gosling@db/gosling`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return workerRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Queue, "queue", "mothergoose", "task queue: mothergoose or uglyfox")
	cmd.Flags().IntVar(&opts.MaxActs, "max-concurrent-activities", 0, "bound on parallel activities (0: SDK default)")
	cmd.Flags().StringVar(&opts.Nest, "nest", "", "configure the secret backends from this Nest's MG/config.fly secrets block (default: local:// only)")
	opts.Temporal.register(cmd.Flags(), f.Getenv)
	opts.Runtime.register(cmd, f.Getenv)
	return cmd
}

func workerRun(ctx context.Context, opts *WorkerOptions) error {
	if opts.Nest != "" {
		cfg, err := secretsOfNest(opts.Nest, opts.Getenv)
		if err != nil {
			return err
		}
		opts.Runtime.SecretsConfig = &cfg
	}
	deps, err := opts.Runtime.OpenDeps(ctx, opts.Temporal, opts.Logger)
	if err != nil {
		return err
	}
	defer deps.Store.Close()
	deps.Secrets.Observe(activities.NewSecretAudit(deps.Store, opts.Queue, opts.Logger))
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	w, err := gworker.New(c, opts.Queue, deps.Activities, gworker.Options{MaxConcurrentActivities: opts.MaxActs})
	if err != nil {
		return flagErrorf("%v", err)
	}
	opts.Logger.Info("worker started", "queue", opts.Queue, "temporal", opts.Temporal.Address, "namespace", opts.Temporal.Namespace, "state_dir", opts.Runtime.StateDir)
	stop := make(chan any)
	go func() {
		<-ctx.Done()
		close(stop)
	}()
	if err := w.Run(stop); err != nil {
		return err
	}
	opts.Logger.Info("worker stopped")
	return nil
}

// secretsOfNest reads the secrets block of a Nest's MG/config.fly.
func secretsOfNest(dir string, getenv func(string) (string, bool)) (fly.Secrets, error) {
	nest, diags := fly.LoadNest(dir, fly.Options{Getenv: getenv})
	if diags.HasErrors() {
		return fly.Secrets{}, &CodeError{Code: ExitInvalidConfig, Err: fmt.Errorf("the Nest in %s is invalid: run `gosling validate %s`", dir, dir)}
	}
	return nest.MotherGoose.Secrets, nil
}
