package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/spf13/cobra"
)

// NewCmdJobs builds `gosling jobs`.
func NewCmdJobs(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs <command>",
		Short: "Show the GitLab job history MotherGoose recorded, and the schedules of the jobs of Jobs/",
		Long: `Jobs list talks to the MotherGoose REST API (--api, or $GOSLING_API_URL) with
the bearer token in $GOSLING_API_TOKEN. Exit status is 4 when the API refuses
the token. Jobs schedule talks to Temporal.`,
	}
	cmd.AddCommand(NewCmdJobsList(f, nil), NewCmdJobsSchedule(f))
	return cmd
}

// JobsListOptions are the inputs of `gosling jobs list`.
type JobsListOptions struct {
	IO     *IOStreams
	API    APIFlags
	Egg    string
	Status string
	Limit  int
	JSON   bool
	Now    func() time.Time
}

// NewCmdJobsList builds `gosling jobs list`.
func NewCmdJobsList(f *Factory, runF func(*JobsListOptions) error) *cobra.Command {
	opts := &JobsListOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recorded GitLab jobs, newest first",
		Example: `  gosling jobs list
  gosling jobs list --egg web-app --status failed --limit 20
  gosling jobs list --json | jq '.[] | select(.status == "pending")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 1 {
				return flagErrorf("--limit must be at least 1")
			}
			if runF != nil {
				return runF(opts)
			}
			return jobsListRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Egg, "egg", "", "only jobs of this egg")
	fl.StringVar(&opts.Status, "status", "", "only jobs with this GitLab status (pending, running, success, failed, ...)")
	fl.IntVar(&opts.Limit, "limit", 50, "most jobs to list")
	fl.BoolVar(&opts.JSON, "json", false, "print the jobs as JSON")
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func jobsListRun(ctx context.Context, opts *JobsListOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	jobs, more, err := collectPages(opts.Limit, func(before string, n int) ([]store.JobRecord, string, error) {
		page, err := c.ListJobs(ctx, apiclient.JobFilter{Egg: opts.Egg, Status: opts.Status, Before: before, Limit: n})
		if err != nil {
			return nil, "", err
		}
		return page.Jobs, page.Next, nil
	})
	if err != nil {
		return opts.API.apiFailure(err)
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, jobs)
	}
	if len(jobs) == 0 {
		if opts.IO.StdoutTTY {
			fmt.Fprintln(opts.IO.ErrOut, "No jobs match.")
		}
		return nil
	}
	now := opts.Now()
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		updated := j.UpdatedAt
		rows = append(rows, []string{idCell(j.JobID), j.Egg, j.Status, orDash(j.Name), orDash(j.Ref), idCell(j.PipelineID),
			orDash(j.RunnerID), orDash(j.GitLabHost), timeCell(opts.IO, &updated, now)})
	}
	if err := printTable(opts.IO, []string{"JOB", "EGG", "STATUS", "NAME", "REF", "PIPELINE", "RUNNER", "GITLAB", "UPDATED"}, rows); err != nil {
		return err
	}
	if more && opts.IO.StdoutTTY {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the newest %d jobs; pass --limit to see more.\n", len(jobs))
	}
	return nil
}
