package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/spf13/cobra"
)

// NewCmdJobsSchedule builds `gosling jobs schedule`: the Temporal
// Schedules of the Nest's self-management jobs.
func NewCmdJobsSchedule(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule <command>",
		Short: "List, pause, resume and trigger the Temporal Schedules of the jobs of Jobs/",
		Long: `Every job of Jobs/ runs on a Temporal Schedule that applying the Nest keeps in
step with its file (gosling-job-NAME). These commands talk to Temporal
(--temporal-address, $GOSLING_TEMPORAL_ADDRESS). A pause lasts until it is
lifted, whatever later Nest applications say, except that a job with
enabled = false stays paused. Exit status is 1 for a job without a schedule.`,
	}
	cmd.AddCommand(NewCmdJobsScheduleList(f, nil), NewCmdJobsSchedulePause(f, true, nil), NewCmdJobsSchedulePause(f, false, nil), NewCmdJobsScheduleTrigger(f, nil))
	return cmd
}

// JobsScheduleListOptions are the inputs of `gosling jobs schedule list`.
type JobsScheduleListOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Temporal TemporalFlags
	Export   exportFlags
	Now      func() time.Time
}

// NewCmdJobsScheduleList builds `gosling jobs schedule list`.
func NewCmdJobsScheduleList(f *Factory, runF func(*JobsScheduleListOptions) error) *cobra.Command {
	opts := &JobsScheduleListOptions{IO: f.IO, Logger: f.Logger, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the jobs' schedules with their last and next run",
		Example: `  gosling jobs schedule list
  gosling jobs schedule list --json name,last_status --jq '.[] | select(.last_status == "failed") | .name'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return jobsScheduleListRun(cmd.Context(), opts)
		},
	}
	addJSONFlags(cmd, &opts.Export, mothergoose.JobSchedule{})
	opts.Temporal.registerClient(cmd.Flags(), f.Getenv)
	return cmd
}

func jobsScheduleListRun(ctx context.Context, opts *JobsScheduleListOptions) error {
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	list, err := mothergoose.ListJobSchedules(ctx, c)
	if err != nil {
		return err
	}
	now := opts.Now()
	rows := make([][]string, 0, len(list))
	for _, j := range list {
		state := "active"
		if j.Paused {
			state = "paused"
		}
		rows = append(rows, []string{j.Name, orDash(j.Kind), orDash(j.Schedule), orDash(j.Timezone), state,
			timeCell(opts.IO, j.LastRun, now), orDash(j.LastStatus), futureCell(opts.IO, j.NextRun, now)})
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Empty: "No job schedules: the Nest has no jobs, or it was not applied yet.",
		Header: []string{"JOB", "KIND", "SCHEDULE", "TIMEZONE", "STATE", "LAST RUN", "LAST STATUS", "NEXT RUN"}}
	return p.Print(ctx, list, rows)
}

// futureCell shows a time to come as "in 5m" on a terminal and as RFC 3339
// in a pipe.
func futureCell(ios *IOStreams, t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	if !ios.StdoutTTY {
		return t.UTC().Format(time.RFC3339)
	}
	d := t.Sub(now)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("in %ds", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("in %dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("in %dh", int(d.Hours()))
	}
	return fmt.Sprintf("in %dd", int(d.Hours()/24))
}

// JobsSchedulePauseOptions are the inputs of `gosling jobs schedule
// pause|unpause`.
type JobsSchedulePauseOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Temporal TemporalFlags
	Name     string
	Pause    bool
	Reason   string
}

// NewCmdJobsSchedulePause builds `gosling jobs schedule pause` (pause
// true) or `unpause`.
func NewCmdJobsSchedulePause(f *Factory, pause bool, runF func(*JobsSchedulePauseOptions) error) *cobra.Command {
	opts := &JobsSchedulePauseOptions{IO: f.IO, Logger: f.Logger, Pause: pause}
	use, short, example := "pause NAME", "Stop a job's schedule from starting runs", `  gosling jobs schedule pause rotate-runner-tokens --reason "GitLab maintenance"`
	if !pause {
		use, short, example = "unpause NAME", "Let a paused job's schedule start runs again", `  gosling jobs schedule unpause rotate-runner-tokens`
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if err := validNameArg(opts.Name); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return jobsSchedulePauseRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Reason, "reason", "", "why, kept as the schedule's note")
	opts.Temporal.registerClient(cmd.Flags(), f.Getenv)
	return cmd
}

func jobsSchedulePauseRun(ctx context.Context, opts *JobsSchedulePauseOptions) error {
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	verb := "paused"
	if !opts.Pause {
		verb = "resumed"
	}
	note := verb + " with gosling jobs schedule"
	if opts.Reason != "" {
		note += ": " + opts.Reason
	}
	if err := mothergoose.PauseJobSchedule(ctx, c, opts.Name, opts.Pause, note); err != nil {
		return scheduleFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "The schedule of job %s is %s.\n", opts.Name, verb)
	return nil
}

// JobsScheduleTriggerOptions are the inputs of `gosling jobs schedule
// trigger`.
type JobsScheduleTriggerOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Temporal TemporalFlags
	Name     string
}

// NewCmdJobsScheduleTrigger builds `gosling jobs schedule trigger`.
func NewCmdJobsScheduleTrigger(f *Factory, runF func(*JobsScheduleTriggerOptions) error) *cobra.Command {
	opts := &JobsScheduleTriggerOptions{IO: f.IO, Logger: f.Logger}
	cmd := &cobra.Command{
		Use:   "trigger NAME",
		Short: "Run a job now, as its schedule would (a run still going is not doubled)",
		Example: `  gosling jobs schedule trigger nest-update
  gosling jobs schedule trigger nest-update && gosling jobs schedule list`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if err := validNameArg(opts.Name); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return jobsScheduleTriggerRun(cmd.Context(), opts)
		},
	}
	opts.Temporal.registerClient(cmd.Flags(), f.Getenv)
	return cmd
}

func jobsScheduleTriggerRun(ctx context.Context, opts *JobsScheduleTriggerOptions) error {
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := mothergoose.TriggerJobSchedule(ctx, c, opts.Name); err != nil {
		return scheduleFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Job %s is starting; see `gosling jobs schedule list` for its outcome.\n", opts.Name)
	return nil
}

// scheduleFailure explains a missing schedule.
func scheduleFailure(err error) error {
	if errors.Is(err, mothergoose.ErrNoJobSchedule) {
		return &CodeError{Code: ExitError, Err: err}
	}
	return err
}
