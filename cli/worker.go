package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	gworker "github.com/gosling-ci/gosling/worker"
	"github.com/spf13/cobra"
)

// WorkerOptions are the inputs of `gosling worker`.
type WorkerOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Masker   *secretstore.Masker
	Getenv   func(string) (string, bool)
	Queue    string
	Temporal TemporalFlags
	Runtime  RuntimeFlags
	MaxActs  int
	// Nest configures the worker from its MG/config.fly (Temporal, store,
	// secret backends, providers); empty runs on local defaults.
	Nest string
	Vars map[string]string
	// MetricsAddr serves /metrics and /healthz; empty serves nothing.
	MetricsAddr string
	// MetricsToken, when set, is a secret URI of the bearer token
	// /metrics requires.
	MetricsToken string
	// SimulateMachines and SimulateJob are for fleet benchmarks only
	// (hidden flags).
	SimulateMachines time.Duration
	SimulateJob      time.Duration
}

// NewCmdWorker builds `gosling worker`.
func NewCmdWorker(f *Factory, runF func(*WorkerOptions) error) *cobra.Command {
	opts := &WorkerOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv, Masker: f.Masker}
	var vars []string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a Temporal worker for the mothergoose or uglyfox task queue",
		Long: `Worker connects to Temporal and runs Gosling's workflows and activities for
one task queue: mothergoose (provisioning, pools, token rotation) or uglyfox
(pruning and reconciliation). Run any number of replicas of each; they share
the work, and a replica that dies loses nothing: Temporal gives its tasks
to another.

It is configured from the Nest's MG/config.fly (--nest): the Temporal
address, namespace, TLS and API key, the store (database block), the secret
backends and the providers. Flags and GOSLING_* variables override the file.
Runners are made by OpenTofu in per-runner workspaces under --state-dir;
runner tokens go to the secret backend, never to disk in plain text.

A mothergoose worker also delivers the store's outbox to Temporal: the
webhooks the API accepted while Temporal was unreachable (the API does too,
while it runs).

/metrics (Prometheus) and /healthz are served on --metrics-addr; gosling
deploy's instance groups (Yandex Cloud) health-check GET /healthz there.`,
		Example: `  gosling worker --queue mothergoose --nest ./nest
  gosling worker --queue uglyfox --nest ./nest --metrics-addr :9091
  gosling worker --queue mothergoose --nest ./nest --temporal-address temporal.example.com:7233 \
    --temporal-namespace gosling --temporal-tls --store postgres://gosling@db/gosling`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if opts.Vars, err = parseVars(vars); err != nil {
				return err
			}
			if _, ok := gworker.Workflows(opts.Queue); !ok {
				return flagErrorf("--queue %q: use %v", opts.Queue, gworker.Queues)
			}
			if runF != nil {
				return runF(opts)
			}
			return workerRun(cmd.Context(), opts)
		},
	}
	env := func(name, def string) string {
		if v, ok := f.Getenv(name); ok && v != "" {
			return v
		}
		return def
	}
	cmd.Flags().StringVar(&opts.Queue, "queue", env("GOSLING_QUEUE", "mothergoose"), "task queue: mothergoose or uglyfox ($GOSLING_QUEUE)")
	cmd.Flags().IntVar(&opts.MaxActs, "max-concurrent-activities", 0, "bound on parallel activities (0: SDK default)")
	nestFlag(cmd.Flags(), &opts.Nest, f.Getenv, "the Nest whose MG/config.fly configures the worker", "local defaults (SQLite and local:// secrets in --state-dir, the local provider)")
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set a Nest variable: --var name=value (repeatable)")
	cmd.Flags().StringVar(&opts.MetricsAddr, "metrics-addr", env("GOSLING_METRICS_ADDR", ":9090"), "address of /metrics and /healthz; empty serves none ($GOSLING_METRICS_ADDR)")
	cmd.Flags().StringVar(&opts.MetricsToken, "metrics-token", env("GOSLING_METRICS_TOKEN", ""), "a secret URI: /metrics then needs Authorization: Bearer <its value> (default: open) ($GOSLING_METRICS_TOKEN)")
	cmd.Flags().DurationVar(&opts.SimulateMachines, "simulate-machines", 0, "benchmarks only: simulate machines that take this long to apply, without OpenTofu")
	cmd.Flags().DurationVar(&opts.SimulateJob, "simulate-job", 5*time.Second, "benchmarks only: how long a simulated serverless runner's job takes")
	_ = cmd.Flags().MarkHidden("simulate-machines")
	_ = cmd.Flags().MarkHidden("simulate-job")
	opts.Temporal.register(cmd.Flags(), f.Getenv)
	opts.Runtime.register(cmd, f.Getenv, runtimeWorker)
	return cmd
}

func workerRun(ctx context.Context, opts *WorkerOptions) error {
	p, err := openProcess(ctx, processOptions{
		NestDir: opts.Nest, Vars: opts.Vars, Getenv: opts.Getenv, Temporal: opts.Temporal, Runtime: opts.Runtime,
		Logger: opts.Logger, Masker: opts.Masker, Activities: true, ErrOut: opts.IO, SimulateMachines: opts.SimulateMachines, SimulateJob: opts.SimulateJob,
		Queues: []string{opts.Queue}, Worker: gworker.Options{MaxConcurrentActivities: opts.MaxActs},
	})
	if errors.Is(err, gworker.ErrSecondLocalStateWorker) {
		return &CodeError{Code: ExitInvalidConfig, Err: err}
	}
	if err != nil {
		return err
	}
	defer p.Close()
	mg := p.MG
	w := p.Workers[0]
	if opts.MetricsAddr != "" {
		ln, err := net.Listen("tcp", opts.MetricsAddr)
		if err != nil {
			return fmt.Errorf("%s is not free (%v): choose another with --metrics-addr", opts.MetricsAddr, err)
		}
		h := mg.Metrics().Handler()
		if opts.MetricsToken != "" {
			ref, cache := fly.SecretRef(opts.MetricsToken), mg.SecretCache()
			h = metrics.RequireBearer(h, func(ctx context.Context, token string) (bool, error) { return cache.Match(ctx, ref, token) })
		}
		go serveObservability(ctx, ln, h, opts.Logger)
		opts.Logger.Info("metrics served", "addr", ln.Addr().String())
	}
	if opts.SimulateMachines > 0 {
		opts.Logger.Warn("SIMULATED machines (benchmarks only): no runner is really made", "apply", opts.SimulateMachines.String())
	}
	if opts.Queue == contract.TaskQueueMotherGoose {
		// The API may be frozen between requests (a Serverless Container):
		// the always-on mothergoose workers deliver the store's outbox too,
		// so what the API accepted while Temporal was unreachable reaches
		// it without waiting for the next request.
		octx, stopOutbox := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); mg.RunOutbox(octx) }()
		defer func() { stopOutbox(); <-done }()
	}
	opts.Logger.Info("worker started", "queue", opts.Queue, "nest", opts.Nest, "state_dir", p.StateDir)
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

// serveObservability serves /metrics and /healthz on ln until ctx ends.
func serveObservability(ctx context.Context, ln net.Listener, metricsHandler http.Handler, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server", "error", err)
	}
}
