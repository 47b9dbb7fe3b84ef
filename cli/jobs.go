package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/apiv1"
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
	Export exportFlags
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
  gosling jobs list --json job_id,status,egg --jq '.[] | select(.status == "pending") | .job_id'`,
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
	addJSONFlags(cmd, &opts.Export, apiv1.Job{})
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func jobsListRun(ctx context.Context, opts *JobsListOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	jobs, more, err := collectPages(opts.Limit, func(before string, n int) ([]apiv1.Job, string, error) {
		page, err := c.ListJobs(ctx, apiclient.JobFilter{Egg: opts.Egg, Status: opts.Status, Before: before, Limit: n})
		if err != nil {
			return nil, "", err
		}
		return page.Jobs, page.Next, nil
	})
	if err != nil {
		return opts.API.apiFailure(err)
	}
	now := opts.Now()
	rows := make([][]string, 0, len(jobs))
	for _, j := range jobs {
		updated := j.UpdatedAt
		rows = append(rows, []string{idCell(j.JobID), j.Egg, j.Status, orDash(j.Name), orDash(j.Ref), idCell(j.PipelineID),
			orDash(j.RunnerID), orDash(j.GitLabHost), timeCell(opts.IO, &updated, now)})
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Empty: "No jobs match.",
		Header: []string{"JOB", "EGG", "STATUS", "NAME", "REF", "PIPELINE", "RUNNER", "GITLAB", "UPDATED"}}
	if err := p.Print(ctx, jobs, rows); err != nil {
		return err
	}
	if more && opts.IO.StdoutTTY && !opts.Export.Enabled() {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the newest %d jobs; pass --limit to see more.\n", len(jobs))
	}
	return nil
}
