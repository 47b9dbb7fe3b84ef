// Package agentcmd is the command tree of `gosling agent`, the process on a
// runner's machine. It is built from the agent's packages only, so both
// binaries carry it: gosling (cmd/gosling) and the small gosling-agent
// (cmd/gosling-agent) that runner machines download, which has no cloud
// SDK, no Temporal client and no server in it. Both run the same command
// lines, which the machine contract (internal/agentapi.MachineContract)
// renders.
package agentcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/spf13/cobra"
)

// Deps are what the agent's commands take from the process.
type Deps struct {
	// Version is the build's version (agents compare it to the Nest's pin).
	Version string
	// Out and ErrOut are the process's standard output and error, masked.
	Out, ErrOut io.Writer
	Logger      *slog.Logger
	// Masker holds every secret value the process has seen.
	Masker *secretstore.Masker
	Getenv func(string) (string, bool)
}

// UsageError is a command line the agent's commands refuse; callers print
// it with a pointer to --help and exit 1.
type UsageError struct{ error }

func flagErrorf(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// ConfigError is an agent configuration that does not parse: exit code 3.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

// New builds `gosling agent`, the process on a runner's machine.
func New(f Deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The runner machine's agent: supervises gitlab-runner, reports to MotherGoose",
		Long: `The agent lives on a runner's machine and supervises gitlab-runner there.
It reads the runner's token from the egg's secret backend, checks it with
GitLab, writes gitlab-runner's config.toml, starts gitlab-runner, reports
ready, heartbeats and jobs to MotherGoose's API with the runner's own token,
reloads on a token rotation, stops gitlab-runner gracefully before the
machine stops, and updates itself to the version the Nest pins.

  run       a VM's agent (systemd unit gosling-agent on clouds)
  serve     a serverless runner: one job per HTTP invocation
  install   prepare a cloud VM (gitlab-runner, the systemd unit)

On the local provider, OpenTofu runs launch, power and stop to make, pause
(Nadir), resume (Apex) and destroy the "machine", which is the agent
process itself.`,
	}
	cmd.AddCommand(newCmdAgentLaunch(f), newCmdAgentStop(f), newCmdAgentPower(f), newCmdAgentRun(f),
		newCmdAgentServe(f), newCmdAgentInstall(f), newCmdAgentStatus(f))
	return cmd
}

func decodeAgentConfig(raw string) (agentapi.Config, error) {
	cfg, err := agentapi.ParseConfig([]byte(raw))
	if err != nil {
		return cfg, flagErrorf("--config: %v", err)
	}
	return cfg, nil
}

func newCmdAgentLaunch(f Deps) *cobra.Command {
	var workDir, raw string
	var o agent.LaunchOptions
	cmd := &cobra.Command{
		Use:     "launch --work-dir DIR --config JSON",
		Short:   "Start the agent in the background (idempotent)",
		Example: `  gosling agent launch --work-dir .gosling/tofu/machines/web-1 --config '{"runner_id":"web-1",...}'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if workDir == "" {
				return flagErrorf("--work-dir is required")
			}
			cfg, err := decodeAgentConfig(raw)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return agent.Launch(self, workDir, cfg, o)
		},
	}
	cmd.Flags().StringVar(&workDir, "work-dir", "", "the machine's work directory")
	cmd.Flags().StringVar(&raw, "config", "", "the agent's configuration as JSON")
	cmd.Flags().DurationVar(&o.MaxRun, "max-run", 0, "deadline after which the agent exits (serverless runners)")
	cmd.Flags().BoolVar(&o.Serve, "serve", false, "launch a serverless runner that runs one job per invocation (agent serve)")
	return cmd
}

func newCmdAgentStop(f Deps) *cobra.Command {
	var workDir string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "stop --work-dir DIR",
		Short: "Stop the agent and wait for it to exit (idempotent)",
		Long: `Stop asks the agent to stop (SIGTERM); the agent stops gitlab-runner
gracefully (SIGQUIT), so a running job finishes first. Past --grace the
machine's processes are killed.`,
		Example: `  gosling agent stop --work-dir .gosling/tofu/machines/web-1`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				workDir = args[0]
			}
			if workDir == "" {
				return flagErrorf("--work-dir is required")
			}
			return agent.Stop(workDir, grace)
		},
	}
	cmd.Flags().StringVar(&workDir, "work-dir", "", "the machine's work directory")
	cmd.Flags().DurationVar(&grace, "grace", time.Hour, "how long a running job may take to finish before the machine is killed")
	return cmd
}

func newCmdAgentPower(f Deps) *cobra.Command {
	var workDir, state, raw string
	cmd := &cobra.Command{
		Use:     "power --work-dir DIR --state running|stopped",
		Short:   "Pause (stopped: Nadir) or resume (running: Apex) the agent",
		Example: `  gosling agent power --work-dir .gosling/tofu/machines/web-1 --state stopped`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				state = args[0]
			}
			if workDir == "" {
				return flagErrorf("--work-dir is required")
			}
			var cfg *agentapi.Config
			if raw != "" {
				c, err := decodeAgentConfig(raw)
				if err != nil {
					return err
				}
				cfg = &c
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return agent.Power(self, workDir, state, cfg)
		},
	}
	cmd.Flags().StringVar(&workDir, "work-dir", "", "the machine's work directory")
	cmd.Flags().StringVar(&state, "state", "", "running or stopped")
	cmd.Flags().StringVar(&raw, "config", "", "replace the agent's configuration (JSON) first")
	return cmd
}

// agentRunFlags are the flags run and serve share.
type agentRunFlags struct {
	workDir    string
	configFile string
	configEnv  string
	maxRun     time.Duration
}

func (fl *agentRunFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&fl.workDir, "work-dir", "", "the machine's work directory (config.json there unless --config or --config-env)")
	cmd.Flags().StringVar(&fl.configFile, "config", "", "read the configuration from this file")
	cmd.Flags().StringVar(&fl.configEnv, "config-env", "", "read the configuration (JSON) from this environment variable (serverless containers)")
	cmd.Flags().DurationVar(&fl.maxRun, "max-run", 0, "deadline after which the agent stops")
}

func (fl *agentRunFlags) options(f Deps) (agent.RunOptions, error) {
	o := agent.RunOptions{WorkDir: fl.workDir, MaxRun: fl.maxRun, Version: f.Version, Logger: f.Logger, Masker: f.Masker, Output: f.ErrOut, Getenv: f.Getenv}
	if fl.workDir == "" {
		return o, flagErrorf("--work-dir is required")
	}
	var raw []byte
	switch {
	case fl.configFile != "" && fl.configEnv != "":
		return o, flagErrorf("give --config or --config-env, not both")
	case fl.configFile != "":
		b, err := os.ReadFile(fl.configFile)
		if err != nil {
			return o, flagErrorf("--config: %v", err)
		}
		raw = b
	case fl.configEnv != "":
		v, ok := f.Getenv(fl.configEnv)
		if !ok || v == "" {
			return o, flagErrorf("--config-env %s: the variable is empty", fl.configEnv)
		}
		raw = []byte(v)
	}
	if raw != nil {
		cfg, err := agentapi.ParseConfig(raw)
		if err != nil {
			return o, &ConfigError{Err: err}
		}
		o.Config = &cfg
	}
	if err := os.MkdirAll(fl.workDir, 0o700); err != nil {
		return o, err
	}
	return o, nil
}

func newCmdAgentRun(f Deps) *cobra.Command {
	var fl agentRunFlags
	var oneJob bool
	cmd := &cobra.Command{
		Use:   "run --work-dir DIR",
		Short: "Run the agent in the foreground (a VM's agent)",
		Long: `Run supervises gitlab-runner until stopped: SIGTERM or SIGINT stop it
gracefully (the running job finishes), SIGHUP reloads the runner token,
SIGUSR1 stops gitlab-runner before the machine sleeps, SIGCONT starts it
again. --one-job runs gitlab-runner run-single for one job and exits (an
ECS task).`,
		Example: `  gosling agent run --work-dir /var/lib/gosling-agent --config /etc/gosling/agent.json
  gosling agent run --one-job --work-dir /tmp/gosling-agent --config-env GOSLING_AGENT_CONFIG --max-run 60m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.options(f)
			if err != nil {
				return err
			}
			o.OneJob = oneJob
			return agent.Run(cmd.Context(), o)
		},
	}
	fl.register(cmd)
	cmd.Flags().BoolVar(&oneJob, "one-job", false, "run one job (gitlab-runner run-single --max-builds 1) and exit")
	return cmd
}

func newCmdAgentServe(f Deps) *cobra.Command {
	var fl agentRunFlags
	var so agent.ServeOptions
	var lambda bool
	cmd := &cobra.Command{
		Use:   "serve --work-dir DIR",
		Short: "Serve a serverless runner: one job per invocation",
		Long: `Serve runs gitlab-runner once per POST /invoke, whose answer comes when the
job is done (a Yandex Serverless Container; the local provider's serverless
runners). --auth runner-token wants the runner token as the invoker's
bearer token; --auth platform leaves authentication to the platform.
--listen defaults to :$PORT when the platform sets PORT.

--lambda takes the invocations from the AWS Lambda Runtime API
($AWS_LAMBDA_RUNTIME_API) instead: a Lambda function from the runner image,
whose timeout is the job's deadline. Lambda authenticates its invokers.`,
		Example: `  gosling agent serve --work-dir /tmp/gosling-agent --config-env GOSLING_AGENT_CONFIG --auth platform
  gosling agent serve --lambda --work-dir /tmp/gosling-agent --config-env GOSLING_AGENT_CONFIG --auth platform`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.options(f)
			if err != nil {
				return err
			}
			if so.Auth != agentapi.InvokeAuthToken && so.Auth != agentapi.InvokeAuthPlatform {
				return flagErrorf("--auth %q: want %s or %s", so.Auth, agentapi.InvokeAuthToken, agentapi.InvokeAuthPlatform)
			}
			if lambda {
				if so.Auth != agentapi.InvokeAuthPlatform {
					return flagErrorf("--lambda takes --auth platform: Lambda authenticates its invokers")
				}
				return agent.ServeLambda(cmd.Context(), o)
			}
			return agent.Serve(cmd.Context(), o, so)
		},
	}
	cmd.Flags().BoolVar(&lambda, "lambda", false, "take invocations from the AWS Lambda Runtime API ($AWS_LAMBDA_RUNTIME_API)")
	fl.register(cmd)
	listen := "127.0.0.1:8080"
	if p, ok := f.Getenv("PORT"); ok && p != "" {
		listen = ":" + p
	}
	cmd.Flags().StringVar(&so.Listen, "listen", listen, "host:port to serve invocations on (:0 picks a port)")
	cmd.Flags().StringVar(&so.Auth, "auth", agentapi.InvokeAuthToken, "who authenticates invokers: runner-token or platform")
	return cmd
}

func newCmdAgentInstall(f Deps) *cobra.Command {
	o := agent.InstallOptions{ConfigFile: agentapi.VMConfigFile, WorkDir: agentapi.VMWorkDir, Binary: agentapi.VMBinary, SystemdDir: agentapi.VMSystemdDir, RunnerPath: agentapi.VMRunner}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Prepare a cloud VM: gitlab-runner and the gosling-agent systemd unit",
		Long: `Install checks the agent's configuration, installs gitlab-runner when it
is missing (the pinned release, its SHA-256 checked) and writes the systemd
unit gosling-agent.service. The VM's first-boot script runs it, then
` + "`systemctl enable --now gosling-agent`" + `.`,
		Example: `  gosling agent install --config /etc/gosling/agent.json --work-dir /var/lib/gosling-agent`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (o.RunnerVersion == "") != (o.RunnerURL == "") {
				return flagErrorf("give --gitlab-runner-version and --gitlab-runner-url together")
			}
			return agent.Install(cmd.Context(), o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.ConfigFile, "config", o.ConfigFile, "the agent's configuration")
	fl.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "the agent's work directory")
	fl.StringVar(&o.Binary, "binary", o.Binary, "the gosling binary the unit runs")
	fl.StringVar(&o.SystemdDir, "systemd-dir", o.SystemdDir, "where the unit is written")
	fl.StringVar(&o.RunnerVersion, "gitlab-runner-version", "", "install this gitlab-runner release when none is installed")
	fl.StringVar(&o.RunnerURL, "gitlab-runner-url", "", "the release URL ({version}, {os}, {arch} filled; checksum at URL.sha256)")
	fl.StringVar(&o.RunnerPath, "gitlab-runner-path", o.RunnerPath, "where gitlab-runner is installed")
	return cmd
}

func newCmdAgentStatus(f Deps) *cobra.Command {
	var workDir string
	cmd := &cobra.Command{
		Use:     "status --work-dir DIR",
		Short:   "Print the agent's process state as JSON",
		Example: `  gosling agent status --work-dir .gosling/tofu/machines/web-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _ := json.Marshal(agent.Inspect(workDir))
			_, err := fmt.Fprintln(f.Out, string(b))
			return err
		},
	}
	cmd.Flags().StringVar(&workDir, "work-dir", "", "the machine's work directory")
	return cmd
}

// secretEnv are environment variables whose values are secrets: masked
// from the start.
var secretEnv = []string{
	agent.EnvRunnerToken, "VAULT_TOKEN", "VAULT_APPROLE_SECRET_ID", secretstore.EnvYCIAMToken,
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
}

// Main runs a process whose only command is `agent` (the gosling-agent
// binary): name is how it was invoked, args what follows. Its output
// goes through a masker holding every secret value it reads; the exit code
// is gosling's: 0 ok, 1 error, 2 cancelled, 3 invalid configuration.
func Main(ctx context.Context, name, version string, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	m := secretstore.NewMasker()
	for _, k := range secretEnv {
		if v, ok := getenv(k); ok {
			m.Add(v)
		}
	}
	out, errOut := secretstore.NewWriter(stdout, m), secretstore.NewWriter(stderr, m)
	defer func() { _ = out.Flush(); _ = errOut.Flush() }()
	log := slog.New(secretstore.NewHandler(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelInfo}), m))
	root := &cobra.Command{
		Use:   name + " agent <command>",
		Short: "The agent of Gosling's runner machines",
		Long: `The agent of Gosling's runner machines alone: gosling's "agent" command and
nothing else of gosling (no cloud SDK, no Temporal client, no servers). Cloud
VMs download it at first boot and the runner image carries it; its command
lines are gosling's.

Exit codes: 0 ok, 1 error, 2 cancelled, 3 invalid configuration.`,
		Example:       "  " + name + " agent run --work-dir /var/lib/gosling-agent --config /etc/gosling/agent.json",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{err} })
	root.AddCommand(New(Deps{Version: version, Out: out, ErrOut: errOut, Logger: log, Masker: m, Getenv: getenv}))
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	var ue *UsageError
	var ce *ConfigError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(errOut, "error: %v\nRun '%s --help' for usage.\n", ue, name)
		return 1
	case errors.As(err, &ce):
		fmt.Fprintf(errOut, "error: %v\n", ce.Err)
		return 3
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(errOut, "cancelled")
		return 2
	}
	fmt.Fprintf(errOut, "error: %v\n", err)
	return 1
}
