package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/spf13/cobra"
)

// DevInterruptOptions are the options of `gosling dev interrupt`.
type DevInterruptOptions struct {
	IO       *IOStreams
	Runner   string
	Grace    time.Duration
	StateDir string
	// Interrupt plays the interruption on a machine's work directory
	// (agent.Interrupt); tests replace it.
	Interrupt func(workDir string, grace time.Duration) error
}

// NewCmdDevInterrupt builds `gosling dev interrupt`.
func NewCmdDevInterrupt(f *Factory, runF func(*DevInterruptOptions) error) *cobra.Command {
	opts := &DevInterruptOptions{IO: f.IO, Interrupt: agent.Interrupt}
	cmd := &cobra.Command{
		Use:   "interrupt RUNNER",
		Short: "Play a Spot or preemptible interruption on a local runner of a running `gosling dev`",
		Long: `Interrupt does to a local runner's machine what a cloud does to a Spot
(AWS) or preemptible (Yandex Cloud) machine whose capacity it takes back:
the runner's agent gets a shutdown it did not ask for (SIGTERM, as a
preemptible VM's ACPI shutdown reaches it), stops gitlab-runner from taking
new jobs and reports the interruption, with the job it runs, to
MotherGoose; after --grace the machine is gone, killed with whatever it was
running (AWS gives two minutes, Yandex Cloud 30 seconds).

What follows is Gosling's: the runner's pool retires the runner, and once
it is gone retries the job it was running, once, through GitLab's API
(POST /projects/:id/jobs/:job_id/retry); the retry, a new job, lands on
another runner. Both go to the audit log (gosling audit).

Only runners whose egg buys its machines as spot or preemptible
(runner.capacity, or a fallback entry) are interrupted: an on-demand
machine is refused with exit code 1. RUNNER is the runner's ID, as
` + "`gosling runners list`" + ` and ` + "`gosling pool status`" + ` show it.`,
		Example: `  gosling dev interrupt web-app-p1
  gosling dev interrupt web-app-p1 --grace 30s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Runner = args[0]
			if opts.Grace < 0 {
				return flagErrorf("--grace must not be negative")
			}
			if runF != nil {
				return runF(opts)
			}
			return devInterruptRun(opts)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&opts.Grace, "grace", 5*time.Second, "how long the machine lives after the notice (AWS: 2m, Yandex Cloud: 30s)")
	fl.StringVar(&opts.StateDir, "state-dir", devStateDir(f.Getenv), "state directory of the running 'gosling dev' ($"+envDevState+")")
	return cmd
}

func devInterruptRun(opts *DevInterruptOptions) error {
	st, err := readDevState(opts.StateDir)
	if err != nil {
		return fmt.Errorf("no running `gosling dev` found in %s (%v): start one with `make run`", opts.StateDir, err)
	}
	// The local provider's machines live under the worker's OpenTofu
	// state (worker.NewActivities).
	dir := activities.MachineDir(filepath.Join(st.StateDir, "tofu"), opts.Runner)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("runner %s has no local machine in %s: name a runner of `gosling runners list`", opts.Runner, st.StateDir)
	}
	if err := opts.Interrupt(dir, opts.Grace); err != nil {
		if errors.Is(err, agent.ErrNotInterruptible) {
			return fmt.Errorf("runner %s: %w (set runner.capacity = \"spot\" in its egg to play interruptions)", opts.Runner, err)
		}
		return fmt.Errorf("interrupt runner %s: %w", opts.Runner, err)
	}
	fmt.Fprintf(opts.IO.Out, "runner %s interrupted: its machine is gone; its pool retires it and retries the job it was running\n", opts.Runner)
	return nil
}
