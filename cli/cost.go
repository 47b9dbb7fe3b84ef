package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/spf13/cobra"
)

// CostOptions are the inputs of `gosling cost`.
type CostOptions struct {
	IO  *IOStreams
	API APIFlags
	// Since is the flag as given: a duration back from now or a time.
	Since  string
	By     string
	Export exportFlags
	Now    func() time.Time

	since time.Time
}

// NewCmdCost builds `gosling cost`.
func NewCmdCost(f *Factory, runF func(*CostOptions) error) *cobra.Command {
	opts := &CostOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "Show the chargeback table: what the jobs of each egg or project cost, and how long they queued",
		Long: `Cost reads the chargeback table through the MotherGoose API (--api, or
$GOSLING_API_URL, with the token in $GOSLING_API_TOKEN): the jobs Gosling's
runners ran that finished in the period, by egg or by project, most costly
first. A job is charged its run time on its runner, divided by the runner's
job slots, at the price MG/config.fly's cost block gives the runner's cloud,
kind and capacity type for the egg's shape (RUN); when the runner ends, what
its machine cost beyond its jobs (idle Apex time, empty slots, provisioning,
Nadir disk time) is shared equally among them (IDLE). QUEUE is the mean
time from a job's pending hook to its runner starting it.`,
		Example: `  gosling cost --since 7d
  gosling cost --since 2025-06-01 --by project
  gosling cost --by project --json project,cost --jq '.[] | select(.cost > 1) | .project'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.By != "egg" && opts.By != "project" {
				return flagErrorf("--by must be egg or project, not %q", opts.By)
			}
			t, err := parseSince(opts.Since, opts.Now())
			if err != nil {
				return flagErrorf("--since: %v", err)
			}
			opts.since = t
			if runF != nil {
				return runF(opts)
			}
			return costRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Since, "since", "7d", `the period's start: a duration back from now ("24h", "7d"), a date or an RFC 3339 time`)
	fl.StringVar(&opts.By, "by", "egg", "one line per egg or per project")
	addJSONFlags(cmd, &opts.Export, apiv1.CostRow{})
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func costRun(ctx context.Context, opts *CostOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	rep, err := c.Cost(ctx, opts.since, opts.By)
	if err != nil {
		return opts.API.apiFailure(err)
	}
	header := []string{"EGG", "JOBS", "QUEUE", "MACHINE-HOURS", "RUN", "IDLE", "TOTAL " + rep.Currency}
	if rep.By == "project" {
		header = append([]string{"PROJECT"}, header...)
	}
	rows := make([][]string, 0, len(rep.Rows))
	for _, r := range rep.Rows {
		queue := "-"
		if r.QueuedJobs > 0 {
			queue = (time.Duration(r.QueueMeanSeconds * float64(time.Second))).Round(100 * time.Millisecond).String()
		}
		row := []string{r.Egg, strconv.Itoa(r.Jobs), queue, strconv.FormatFloat(r.MachineSeconds/3600, 'f', 3, 64),
			money(r.RunCost), money(r.IdleCost), money(r.Cost)}
		if rep.By == "project" {
			row = append([]string{r.Project}, row...)
		}
		rows = append(rows, row)
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Header: header,
		Empty: fmt.Sprintf("No job of a Gosling runner finished since %s.", rep.Since.Local().Format(time.DateTime))}
	return p.Print(ctx, rep.Rows, rows)
}

// money prints an amount with four decimals: a job's share is often a
// fraction of a cent.
func money(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
