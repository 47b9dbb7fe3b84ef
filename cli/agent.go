package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/spf13/cobra"
)

// NewCmdAgent builds `gosling agent`, the process on a runner's machine.
func NewCmdAgent(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The runner machine's agent: readiness, heartbeats, power",
		Long: `The agent lives on a runner's machine. It checks the runner's token with
GitLab, tells MotherGoose the runner is ready, heartbeats, and stops
cleanly. On the local provider, OpenTofu runs launch, power and stop to make,
pause (Nadir), resume (Apex) and destroy the "machine", which is the agent
process itself.`,
	}
	var workDir string
	var maxRun time.Duration
	launch := &cobra.Command{
		Use:     "launch --work-dir DIR --config JSON",
		Short:   "Start the agent in the background (idempotent)",
		Example: `  gosling agent launch --work-dir .gosling/tofu/machines/web-1 --config '{"runner_id":"web-1",...}'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, _ := cmd.Flags().GetString("config")
			var cfg agent.Config
			if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
				return flagErrorf("--config is not agent JSON: %v", err)
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return agent.Launch(self, workDir, cfg, maxRun)
		},
	}
	launch.Flags().String("config", "", "the agent's configuration as JSON")
	launch.Flags().DurationVar(&maxRun, "max-run", 0, "deadline after which the agent exits (serverless runners)")

	stop := &cobra.Command{
		Use:     "stop --work-dir DIR",
		Short:   "Stop the agent and wait for it to exit (idempotent)",
		Example: `  gosling agent stop --work-dir .gosling/tofu/machines/web-1`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				workDir = args[0]
			}
			return agent.Stop(workDir, 10*time.Second)
		},
	}
	power := &cobra.Command{
		Use:     "power --work-dir DIR --state running|stopped",
		Short:   "Pause (stopped: Nadir) or resume (running: Apex) the agent",
		Example: `  gosling agent power --work-dir .gosling/tofu/machines/web-1 --state stopped`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			state, _ := cmd.Flags().GetString("state")
			if len(args) == 1 {
				state = args[0]
			}
			var cfg *agent.Config
			if raw, _ := cmd.Flags().GetString("config"); raw != "" {
				cfg = &agent.Config{}
				if err := json.Unmarshal([]byte(raw), cfg); err != nil {
					return flagErrorf("--config is not agent JSON: %v", err)
				}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			return agent.Power(self, workDir, state, cfg)
		},
	}
	power.Flags().String("state", "", "running or stopped")
	power.Flags().String("config", "", "replace the agent's configuration (JSON) first")
	run := &cobra.Command{
		Use:     "run --work-dir DIR",
		Short:   "Run the agent in the foreground",
		Example: `  gosling agent run --work-dir .gosling/tofu/machines/web-1 --max-run 60m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return agent.Run(cmd.Context(), workDir, maxRun, f.Logger)
		},
	}
	run.Flags().DurationVar(&maxRun, "max-run", 0, "deadline after which the agent exits")
	status := &cobra.Command{
		Use:     "status --work-dir DIR",
		Short:   "Print the agent's process state as JSON",
		Example: `  gosling agent status --work-dir .gosling/tofu/machines/web-1`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _ := json.Marshal(agent.Inspect(workDir))
			_, err := fmt.Fprintln(f.IO.Out, string(b))
			return err
		},
	}
	for _, c := range []*cobra.Command{launch, stop, power, run, status} {
		c.Flags().StringVar(&workDir, "work-dir", "", "the machine's work directory")
		cmd.AddCommand(c)
	}
	return cmd
}
