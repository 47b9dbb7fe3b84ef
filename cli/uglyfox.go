package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/workflows"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
)

// NewCmdUglyFox builds `gosling uglyfox`.
func NewCmdUglyFox(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uglyfox <command>",
		Short: "Run UglyFox's policy and reconciliation passes, and schedule them",
		Long: `UglyFox prunes runners by the policies of UF/config.fly (failures, heartbeats,
maximum age, idle time) and reconciles GitLab's runners, the OpenTofu
workspaces and the store, reaping orphans both ways. Its passes are
workflows on the uglyfox task queue (gosling worker --queue uglyfox),
started by Temporal Schedules that 'gosling uglyfox schedule' makes, or by
hand with 'gosling uglyfox run'.`,
	}
	cmd.AddCommand(NewCmdUglyFoxRun(f, nil), NewCmdUglyFoxSchedule(f, nil))
	return cmd
}

// UglyFoxRunOptions are the inputs of `gosling uglyfox run`.
type UglyFoxRunOptions struct {
	IO        *IOStreams
	Logger    *slog.Logger
	Getenv    func(string) (string, bool)
	Nest      string
	DryRun    bool
	Reconcile bool
	Local     bool
	Export    exportFlags
	Temporal  TemporalFlags
	Runtime   RuntimeFlags
	Masker    *secretstore.Masker
	Now       func() time.Time
}

// NewCmdUglyFoxRun builds `gosling uglyfox run`.
func NewCmdUglyFoxRun(f *Factory, runF func(*UglyFoxRunOptions) error) *cobra.Command {
	opts := &UglyFoxRunOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run one policy pass (or, with --reconcile, one reconciliation pass) now",
		Long: `Run starts one UglyFox pass on the uglyfox task queue and prints what it
decided and did: a policy pass by default, a reconciliation pass with
--reconcile. --dry-run only reports. The policies come from UF/config.fly of
the Nest in --nest.

--local evaluates against the store and the state directory of this machine
without Temporal (the same flags as 'gosling worker'); it never acts.`,
		Example: `  gosling uglyfox run --dry-run
  gosling uglyfox run --reconcile --json findings,failed
  gosling uglyfox run --local --state-dir .gosling`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Local {
				opts.DryRun = true
			}
			if runF != nil {
				return runF(opts)
			}
			return uglyfoxRunRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	nestFlag(fl, &opts.Nest, f.Getenv, "the Nest whose UF/config.fly holds the policies", "")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "report what would be done, do nothing")
	fl.BoolVar(&opts.Reconcile, "reconcile", false, "run a reconciliation pass instead of a policy pass")
	fl.BoolVar(&opts.Local, "local", false, "evaluate against this machine's store and state directory, without Temporal (implies --dry-run)")
	addJSONFlags(cmd, &opts.Export, contract.PruneResult{}, contract.ReconcileResult{})
	opts.Temporal.register(fl, f.Getenv)
	opts.Runtime.register(cmd, f.Getenv, runtimeTofu)
	opts.Masker = f.Masker
	return cmd
}

// loadUglyFox reads the UglyFox configuration of a Nest; invalid
// configuration exits with status 3 after printing its diagnostics.
func loadUglyFox(ios *IOStreams, dir string, getenv func(string) (string, bool)) (fly.UglyFox, error) {
	nest, diags := fly.LoadNest(dir, fly.Options{Getenv: getenv})
	if diags.HasErrors() {
		if err := fly.WriteText(ios.ErrOut, diags.Diagnostics, diags.Files, ios.StderrTTY); err != nil {
			return fly.UglyFox{}, err
		}
		fmt.Fprintf(ios.ErrOut, "%s is invalid: %s.\n", dir, countDiags(diags))
		return fly.UglyFox{}, errSilent(ExitInvalidConfig)
	}
	return nest.UglyFox, nil
}

func uglyfoxRunRun(ctx context.Context, opts *UglyFoxRunOptions) error {
	uf, err := loadUglyFox(opts.IO, opts.Nest, opts.Getenv)
	if err != nil {
		return err
	}
	if opts.Local {
		return uglyfoxRunLocal(ctx, opts, uf)
	}
	opts.Temporal.Nest = opts.Nest
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	stamp := "manual-" + opts.Now().UTC().Format("20060102T150405.000")
	if opts.Reconcile {
		id := contract.ReconcileWorkflowID(stamp)
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueueUglyFox}, contract.WorkflowReconcile,
			contract.ReconcileInput{Policy: uf, DryRun: opts.DryRun})
		if err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		fmt.Fprintf(opts.IO.ErrOut, "Reconciliation pass %s started; waiting for it.\n", id)
		var res contract.ReconcileResult
		if err := run.Get(ctx, &res); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		return printReconcile(ctx, opts.IO, &opts.Export, res)
	}
	id := contract.PruneWorkflowID(stamp)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueueUglyFox}, contract.WorkflowPrune,
		contract.PruneInput{Policy: uf, DryRun: opts.DryRun})
	if err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Policy pass %s started; waiting for it.\n", id)
	var res contract.PruneResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	return printPrune(ctx, opts.IO, &opts.Export, res)
}

// uglyfoxRunLocal runs a pass's reading half in this process: the same
// activities and the same Evaluate a worker runs, without acting.
func uglyfoxRunLocal(ctx context.Context, opts *UglyFoxRunOptions, uf fly.UglyFox) error {
	// Temporal is never called: a lazy client makes no connection.
	p, err := openProcess(ctx, processOptions{Getenv: opts.Getenv, Temporal: opts.Temporal, Runtime: opts.Runtime,
		Logger: opts.Logger, Masker: opts.Masker, LazyTemporal: true, Activities: true, ErrOut: opts.IO})
	if err != nil {
		return err
	}
	defer p.Close()
	acts := p.Acts
	if opts.Reconcile {
		sv, err := acts.SurveyRunners(ctx, activities.SurveyInput{})
		if err != nil {
			return err
		}
		res := contract.ReconcileResult{DryRun: true, GitLabRunners: sv.GitLabRunners, Workspaces: sv.Workspaces, Rows: sv.Rows, Unreachable: sv.Unreachable}
		res.Findings = workflows.PlanReconcile(sv.Findings)
		return printReconcile(ctx, opts.IO, &opts.Export, res)
	}
	eggList, err := acts.ListEggPolicies(ctx)
	if err != nil {
		return err
	}
	eggs := map[string]activities.EggPolicy{}
	for _, e := range eggList {
		eggs[e.Name] = e
	}
	var runners []activities.RunnerView
	heartbeats := map[string]activities.Heartbeat{}
	for after := ""; ; {
		page, err := acts.ListRunnerViews(ctx, activities.RunnerPageInput{After: after, Limit: contract.DefaultPrunePage})
		if err != nil {
			return err
		}
		runners = append(runners, page.Runners...)
		for _, h := range page.Heartbeats {
			heartbeats[h.RunnerID] = h
		}
		if after = page.Next; after == "" {
			break
		}
	}
	ds := workflows.Evaluate(opts.Now(), uf, runners, heartbeats, eggs)
	if ds == nil {
		ds = []contract.Decision{}
	}
	return printPrune(ctx, opts.IO, &opts.Export, contract.PruneResult{DryRun: true, Runners: len(runners), Decisions: ds})
}

func printPrune(ctx context.Context, ios *IOStreams, export *exportFlags, res contract.PruneResult) error {
	if export.Enabled() {
		return export.Write(ctx, ios.Out, res)
	}
	verb := "did"
	if res.DryRun {
		verb = "would do (dry run)"
	}
	fmt.Fprintf(ios.ErrOut, "%d runners evaluated; %d decisions; what UglyFox %s:\n", res.Runners, len(res.Decisions), verb)
	rows := make([][]string, 0, len(res.Decisions))
	for _, d := range res.Decisions {
		rows = append(rows, []string{d.RunnerID, d.Egg, string(d.State), d.Policy, d.Action, outcomeCell(d.Outcome, d.Error, res.DryRun), d.Reason})
	}
	if err := printTable(ios, []string{"RUNNER", "EGG", "STATE", "POLICY", "ACTION", "OUTCOME", "REASON"}, rows); err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d of %d actions failed", res.Failed, len(res.Decisions))
	}
	return nil
}

func printReconcile(ctx context.Context, ios *IOStreams, export *exportFlags, res contract.ReconcileResult) error {
	if export.Enabled() {
		return export.Write(ctx, ios.Out, res)
	}
	fmt.Fprintf(ios.ErrOut, "Seen: %d GitLab runners, %d workspaces, %d store rows; %d findings", res.GitLabRunners, res.Workspaces, res.Rows, len(res.Findings))
	if res.DryRun {
		fmt.Fprint(ios.ErrOut, " (dry run: nothing done)")
	}
	fmt.Fprintln(ios.ErrOut, ".")
	for _, u := range res.Unreachable {
		fmt.Fprintf(ios.ErrOut, "warning: GitLab not listed, its runners were not judged: %s\n", u)
	}
	rows := make([][]string, 0, len(res.Findings))
	for _, f := range res.Findings {
		rows = append(rows, []string{f.RunnerID, orDash(f.Egg), orDash(string(f.State)), f.Kind, f.Action, outcomeCell(f.Outcome, f.Error, res.DryRun), f.Detail})
	}
	if err := printTable(ios, []string{"RUNNER", "EGG", "STATE", "FOUND", "ACTION", "OUTCOME", "DETAIL"}, rows); err != nil {
		return err
	}
	if res.Failed > 0 {
		return fmt.Errorf("%d of %d actions failed", res.Failed, len(res.Findings))
	}
	return nil
}

func outcomeCell(outcome, errMsg string, dry bool) string {
	switch {
	case errMsg != "":
		return "failed: " + errMsg
	case dry:
		return "-"
	}
	return orDash(outcome)
}

// UglyFoxScheduleOptions are the inputs of `gosling uglyfox schedule`.
type UglyFoxScheduleOptions struct {
	IO       *IOStreams
	Logger   *slog.Logger
	Getenv   func(string) (string, bool)
	Nest     string
	Temporal TemporalFlags
}

// NewCmdUglyFoxSchedule builds `gosling uglyfox schedule`.
func NewCmdUglyFoxSchedule(f *Factory, runF func(*UglyFoxScheduleOptions) error) *cobra.Command {
	opts := &UglyFoxScheduleOptions{IO: f.IO, Logger: f.Logger, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Create or update the Temporal Schedules of UglyFox's passes from UF/config.fly",
		Long: `Schedule makes two Temporal Schedules: ` + contract.ScheduleIDPrune + ` (a policy pass on
uglyfox.schedule) and ` + contract.ScheduleIDReconcile + ` (a reconciliation pass on
reconcile.schedule). Each carries the policies of UF/config.fly as they are
now: run it again after changing them. Running it twice changes nothing.
A pass that outlives its interval is not started twice.`,
		Example: `  gosling uglyfox schedule --nest my-nest`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return uglyfoxScheduleRun(cmd.Context(), opts)
		},
	}
	nestFlag(cmd.Flags(), &opts.Nest, f.Getenv, "the Nest whose UF/config.fly holds the schedules and policies", "")
	opts.Temporal.register(cmd.Flags(), f.Getenv)
	return cmd
}

func uglyfoxScheduleRun(ctx context.Context, opts *UglyFoxScheduleOptions) error {
	uf, err := loadUglyFox(opts.IO, opts.Nest, opts.Getenv)
	if err != nil {
		return err
	}
	opts.Temporal.Nest = opts.Nest
	c, err := opts.Temporal.Dial(ctx, opts.Logger)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := mothergoose.EnsureUglyFoxSchedules(ctx, c.ScheduleClient(), uf); err != nil {
		return err
	}
	dry := ""
	if uf.DryRun {
		dry = " (dry_run is set: passes only report)"
	}
	fmt.Fprintf(opts.IO.ErrOut, "Scheduled %s on %s and %s on %s%s.\n", contract.ScheduleIDPrune, strconv.Quote(uf.Schedule),
		contract.ScheduleIDReconcile, strconv.Quote(uf.Reconcile.Schedule), dry)
	if strings.TrimSpace(uf.File) == "" {
		fmt.Fprintln(opts.IO.ErrOut, "The Nest has no UF/config.fly: the default policies apply.")
	}
	return nil
}
