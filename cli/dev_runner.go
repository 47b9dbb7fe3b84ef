package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/runnerstandin"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/spf13/cobra"
)

// NewCmdDevGitLabRunner builds the hidden `gosling dev gitlab-runner`: the
// gitlab-runner STAND-IN, not the real gitlab-runner, with gitlab-runner's
// own command line, so a script named gitlab-runner that execs `gosling dev
// gitlab-runner "$@"` (runnerstandin.WriteWrapper) stands in for it.
func NewCmdDevGitLabRunner(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "gitlab-runner",
		Hidden: true,
		Short:  runnerstandin.Banner + ": run, run-single, verify",
		Long: `This is a gitlab-runner STAND-IN, not the real gitlab-runner. The real one
cannot be built here, so Gosling ships this stand-in for development: it
speaks GitLab's runner API (verify, jobs/request with long polling, trace
patches, job updates), fetches each job's commit with git and runs jobs with
the shell executor (bash), with their caches. It does not run images,
services or artifacts.

Signals, as gitlab-runner: SIGQUIT finishes the running jobs and exits,
SIGTERM or SIGINT aborts them (a second one exits at once), SIGHUP reloads
config.toml.`,
		Version: runnerstandin.Version,
		Args:    cobra.NoArgs,
	}
	// gitlab-runner's global --log-format ($LOG_FORMAT): runner and text
	// log as lines of key=value, json as one JSON object a line (slog's
	// fields: time, level, msg, then the attributes).
	var logFormat string
	cmd.PersistentFlags().StringVar(&logFormat, "log-format", "", "log format: runner, text or json ($LOG_FORMAT)")
	cmd.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if logFormat == "" {
			logFormat, _ = f.Getenv("LOG_FORMAT")
		}
		switch logFormat {
		case "", "runner", "text":
		case "json":
			f.Logger = slog.New(secretstore.NewHandler(slog.NewJSONHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo}), f.Masker))
		default:
			return flagErrorf("--log-format %q: want runner, text or json", logFormat)
		}
		return nil
	}
	cmd.SetVersionTemplate(fmt.Sprintf("%s\nVersion:      %s\nGit revision: %s\nGit branch:   standin\nGO version:   %s\nBuilt:        n/a\nOS/Arch:      %s/%s\n",
		runnerstandin.Banner, runnerstandin.Version, runnerstandin.Revision, runtime.Version(), runtime.GOOS, runtime.GOARCH))
	cmd.AddCommand(NewCmdStandinRun(f, nil), NewCmdStandinRunSingle(f, nil), NewCmdStandinVerify(f, nil))
	return cmd
}

// defaultRunnerConfig is gitlab-runner's default config.toml: the system
// one for root, the user's otherwise; $CONFIG_FILE wins.
func defaultRunnerConfig(getenv func(string) (string, bool)) string {
	if v, ok := getenv("CONFIG_FILE"); ok && v != "" {
		return v
	}
	if os.Geteuid() == 0 {
		return "/etc/gitlab-runner/config.toml"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".gitlab-runner", "config.toml")
}

// StandinRunOptions are the inputs of `gitlab-runner run`.
type StandinRunOptions struct {
	IO               *IOStreams
	Factory          *Factory
	ConfigFile       string
	WorkingDirectory string
	ListenAddress    string
	Service          string
	User             string
	Syslog           bool
}

// NewCmdStandinRun builds `gitlab-runner run`.
func NewCmdStandinRun(f *Factory, runF func(*StandinRunOptions) error) *cobra.Command {
	opts := &StandinRunOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:     "run",
		Short:   "Run the runners of config.toml (" + runnerstandin.Banner + ")",
		Example: `  gitlab-runner run --config /etc/gitlab-runner/config.toml --listen-address 127.0.0.1:9252`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.ConfigFile == "" {
				opts.ConfigFile = defaultRunnerConfig(f.Getenv)
			}
			if opts.ListenAddress == "" {
				opts.ListenAddress, _ = f.Getenv("LISTEN_ADDRESS")
			}
			if runF != nil {
				return runF(opts)
			}
			return standinError(standinRun(cmd.Context(), opts))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.ConfigFile, "config", "c", "", "config file (default /etc/gitlab-runner/config.toml as root, else ~/.gitlab-runner/config.toml; $CONFIG_FILE)")
	fl.StringVarP(&opts.WorkingDirectory, "working-directory", "d", "", "where relative builds_dir are")
	fl.StringVar(&opts.ListenAddress, "listen-address", "", "metrics server address, host:port ($LISTEN_ADDRESS; overrides listen_address)")
	fl.StringVarP(&opts.Service, "service", "n", "gitlab-runner", "service name (accepted, unused by the stand-in)")
	fl.StringVarP(&opts.User, "user", "u", "", "run shell scripts as this user (not supported by the stand-in)")
	fl.BoolVar(&opts.Syslog, "syslog", false, "log to the system logger (not supported by the stand-in)")
	return cmd
}

func standinRun(ctx context.Context, opts *StandinRunOptions) error {
	if opts.User != "" {
		return flagErrorf("--user %s: the stand-in runs jobs as its own user; drop --user", opts.User)
	}
	fmt.Fprintf(opts.IO.ErrOut, "%s %s (%s)\n", runnerstandin.Banner, runnerstandin.Version, opts.ConfigFile)
	m, err := runnerstandin.NewMulti(runnerstandin.Options{
		ConfigFile: opts.ConfigFile, WorkingDirectory: opts.WorkingDirectory, ListenAddress: opts.ListenAddress, Logger: opts.Factory.Logger,
	})
	if err != nil {
		return standinConfigError(err)
	}
	return runWithSignals(ctx, m)
}

// runWithSignals runs m, turning signals into gitlab-runner's behaviour.
func runWithSignals(ctx context.Context, m *runnerstandin.Multi) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGQUIT, syscall.SIGTERM, os.Interrupt, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// The process context ends at the first SIGTERM; the stand-in decides
	// itself what a signal means.
	hard, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		forced := false
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				switch s {
				case syscall.SIGQUIT:
					m.GracefulStop()
				case syscall.SIGHUP:
					_ = m.Reload()
				default:
					if forced {
						cancel()
						return
					}
					forced = true
					m.Stop()
				}
			}
		}
	}()
	return m.Run(hard)
}

// standinError labels an error as the stand-in's, so no line of its output
// can pass for the real gitlab-runner's, and keeps its exit code.
func standinError(err error) error {
	var fe *flagError
	if err == nil || errors.As(err, &fe) {
		return err
	}
	code := ExitError
	var ce *CodeError
	switch {
	case errors.As(err, &ce):
		code = ce.Code
	case errors.Is(err, context.Canceled):
		code = ExitCancelled
	}
	return &CodeError{Code: code, Err: fmt.Errorf("%s: %w", runnerstandin.Banner, err)}
}

func standinConfigError(err error) error {
	if errors.Is(err, runnerstandin.ErrInvalidConfig) {
		return &CodeError{Code: ExitInvalidConfig, Err: err}
	}
	return err
}

// StandinRunSingleOptions are the inputs of `gitlab-runner run-single`.
type StandinRunSingleOptions struct {
	IO         *IOStreams
	Factory    *Factory
	ConfigFile string
	RunnerName string
	Runner     runnerstandin.RunnerConfig
	// MaxBuilds stops after that many jobs (0: no limit).
	MaxBuilds int
	// WaitTimeout, in seconds, stops when no job came for that long.
	WaitTimeout   int
	ListenAddress string
}

// NewCmdStandinRunSingle builds `gitlab-runner run-single`.
func NewCmdStandinRunSingle(f *Factory, runF func(*StandinRunSingleOptions) error) *cobra.Command {
	opts := &StandinRunSingleOptions{IO: f.IO, Factory: f}
	rc := &opts.Runner
	cmd := &cobra.Command{
		Use:   "run-single",
		Short: "Run one runner without config.toml (" + runnerstandin.Banner + ")",
		Example: `  gitlab-runner run-single --url https://gitlab.example.com --token glrt-... \
    --executor shell --max-builds 1 --wait-timeout 600 --builds-dir /tmp/builds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for flag, env := range map[*string]string{&rc.URL: "CI_SERVER_URL", &rc.Token: "CI_SERVER_TOKEN", &rc.Executor: "RUNNER_EXECUTOR", &rc.Name: "RUNNER_NAME", &rc.BuildsDir: "RUNNER_BUILDS_DIR"} {
				if *flag == "" {
					*flag, _ = f.Getenv(env)
				}
			}
			// gitlab-runner reads --config only for the runner --runner
			// names (RunSingleCommand.HandleArgs).
			if opts.RunnerName == "" {
				opts.ConfigFile = ""
			}
			if opts.ConfigFile == "" && (rc.URL == "" || rc.Token == "") {
				return flagErrorf("run-single needs --url and --token, or --config with --runner NAME")
			}
			if opts.MaxBuilds < 0 || opts.WaitTimeout < 0 {
				return flagErrorf("--max-builds and --wait-timeout cannot be negative")
			}
			if runF != nil {
				return runF(opts)
			}
			return standinError(standinRunSingle(cmd.Context(), opts))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.ConfigFile, "config", "c", "", "take the runner from this config.toml instead of flags")
	fl.StringVarP(&opts.RunnerName, "runner", "r", "", "the [[runners]] name to take from --config (without it, --config is not read)")
	fl.StringVar(&rc.URL, "url", "", "GitLab instance URL ($CI_SERVER_URL)")
	fl.StringVarP(&rc.Token, "token", "t", "", "runner authentication token ($CI_SERVER_TOKEN)")
	fl.StringVar(&rc.Executor, "executor", "shell", "executor: the stand-in runs shell only ($RUNNER_EXECUTOR)")
	fl.StringVar(&rc.Shell, "shell", "bash", "shell of the shell executor")
	fl.StringVar(&rc.Name, "name", "", "runner name ($RUNNER_NAME)")
	fl.StringVar(&rc.BuildsDir, "builds-dir", "", "where jobs run ($RUNNER_BUILDS_DIR)")
	fl.StringArrayVar(&rc.Environment, "env", nil, "KEY=value added to every job (repeatable)")
	fl.IntVar(&rc.Limit, "limit", 0, "jobs at once (0: 1)")
	fl.IntVar(&rc.OutputLimit, "output-limit", runnerstandin.DefaultOutputLimitKB, "job log limit in kilobytes")
	fl.IntVar(&opts.MaxBuilds, "max-builds", 0, "exit after this many jobs (0: never)")
	fl.IntVar(&opts.WaitTimeout, "wait-timeout", 0, "exit when no job came for this many seconds (0: never)")
	fl.StringVar(&opts.ListenAddress, "listen-address", "", "metrics server address, host:port")
	return cmd
}

func standinRunSingle(ctx context.Context, opts *StandinRunSingleOptions) error {
	cfg := &runnerstandin.Config{Concurrent: 1, Runners: []runnerstandin.RunnerConfig{opts.Runner}}
	systemIDDir := ""
	if opts.ConfigFile != "" {
		systemIDDir = filepath.Dir(opts.ConfigFile)
		full, _, err := runnerstandin.LoadConfig(opts.ConfigFile)
		if err != nil {
			return standinConfigError(err)
		}
		var picked *runnerstandin.RunnerConfig
		for i := range full.Runners {
			if full.Runners[i].Name == opts.RunnerName {
				picked = &full.Runners[i]
				break
			}
		}
		if picked == nil {
			return flagErrorf("--runner %q: no [[runners]] with that name in %s", opts.RunnerName, opts.ConfigFile)
		}
		cfg = &runnerstandin.Config{Concurrent: 1, CheckInterval: full.CheckInterval, ShutdownTimeout: full.ShutdownTimeout, Runners: []runnerstandin.RunnerConfig{*picked}}
	}
	if cfg.Runners[0].Limit > 0 {
		cfg.Concurrent = cfg.Runners[0].Limit
	}
	fmt.Fprintf(opts.IO.ErrOut, "%s %s (run-single)\n", runnerstandin.Banner, runnerstandin.Version)
	m, err := runnerstandin.NewMulti(runnerstandin.Options{
		Config: cfg, SystemIDDir: systemIDDir, ListenAddress: opts.ListenAddress, Logger: opts.Factory.Logger,
		MaxBuilds: opts.MaxBuilds, WaitTimeout: time.Duration(opts.WaitTimeout) * time.Second,
	})
	if err != nil {
		return standinConfigError(err)
	}
	return runWithSignals(ctx, m)
}

// StandinVerifyOptions are the inputs of `gitlab-runner verify`.
type StandinVerifyOptions struct {
	IO         *IOStreams
	Factory    *Factory
	ConfigFile string
	Name       string
	Delete     bool
}

// NewCmdStandinVerify builds `gitlab-runner verify`.
func NewCmdStandinVerify(f *Factory, runF func(*StandinVerifyOptions) error) *cobra.Command {
	opts := &StandinVerifyOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:     "verify",
		Short:   "Check every runner's token with GitLab (" + runnerstandin.Banner + ")",
		Example: `  gitlab-runner verify --config /etc/gitlab-runner/config.toml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.ConfigFile == "" {
				opts.ConfigFile = defaultRunnerConfig(f.Getenv)
			}
			if opts.Delete {
				return flagErrorf("--delete is not supported by the stand-in: remove the runner from config.toml by hand")
			}
			if runF != nil {
				return runF(opts)
			}
			return standinError(standinVerify(cmd.Context(), opts))
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.ConfigFile, "config", "c", "", "config file ($CONFIG_FILE)")
	fl.StringVarP(&opts.Name, "name", "n", "", "verify only the runner with this name")
	fl.BoolVar(&opts.Delete, "delete", false, "remove runners GitLab no longer knows (not supported by the stand-in)")
	return cmd
}

func standinVerify(ctx context.Context, opts *StandinVerifyOptions) error {
	cfg, _, err := runnerstandin.LoadConfig(opts.ConfigFile)
	if err != nil {
		return standinConfigError(err)
	}
	if opts.Name != "" {
		var only []runnerstandin.RunnerConfig
		for _, rc := range cfg.Runners {
			if rc.Name == opts.Name {
				only = append(only, rc)
			}
		}
		if len(only) == 0 {
			return flagErrorf("--name %q: no [[runners]] with that name in %s", opts.Name, opts.ConfigFile)
		}
		cfg.Runners = only
	}
	bad := 0
	for _, r := range runnerstandin.Verify(ctx, cfg, opts.ConfigFile) {
		switch {
		case r.Err != nil:
			bad++
			fmt.Fprintf(opts.IO.ErrOut, "ERROR: Verifying runner... error    runner=%s name=%s error=%q (%s)\n", r.ShortToken, r.Name, r.Err, runnerstandin.Banner)
		case r.Valid:
			fmt.Fprintf(opts.IO.ErrOut, "Verifying runner... is valid    runner=%s name=%s (%s)\n", r.ShortToken, r.Name, runnerstandin.Banner)
		default:
			bad++
			fmt.Fprintf(opts.IO.ErrOut, "ERROR: Verifying runner... is removed    runner=%s name=%s (%s)\n", r.ShortToken, r.Name, runnerstandin.Banner)
		}
	}
	if bad > 0 {
		return &CodeError{Code: ExitAuth, Err: fmt.Errorf("%d of %d runners failed verification", bad, len(cfg.Runners))}
	}
	return nil
}
