package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/spf13/cobra"
)

// Environment of the API commands.
const (
	envAPIURL   = "GOSLING_API_URL"
	envAPIToken = "GOSLING_API_TOKEN"
	defaultAPI  = "http://localhost:8080"
)

// APIFlags say where the MotherGoose API is. The token comes from
// $GOSLING_API_TOKEN only: a flag would show it in the process list and the
// shell history.
type APIFlags struct {
	URL   string
	Token string
	// noDev is why no running `gosling dev` was found when neither
	// $GOSLING_API_URL nor $GOSLING_API_TOKEN is set (nil: one was, or
	// they are).
	noDev error
}

func (a *APIFlags) register(cmd *cobra.Command, getenv func(string) (string, bool)) {
	def := defaultAPI
	url, urlSet := getenv(envAPIURL)
	token, tokenSet := getenv(envAPIToken)
	if !urlSet && !tokenSet {
		// A running `gosling dev` (devStateDir): use its API and token.
		if st, err := findDev(getenv, "", false); err == nil {
			url, token = st.APIURL, st.APIToken
		} else {
			a.noDev = err
		}
	}
	if url != "" {
		def = url
	}
	cmd.Flags().StringVar(&a.URL, "api", def, "MotherGoose API base URL: $"+envAPIURL+", else the API of the running gosling dev; the token is read from $"+envAPIToken)
	a.Token = strings.TrimSpace(token)
}

func (a *APIFlags) client() (*apiclient.Client, error) {
	c, err := apiclient.New(a.URL, a.Token)
	if err != nil {
		return nil, flagErrorf("--api: %v", err)
	}
	return c, nil
}

// apiFailure gives an API error its exit code: 4 when the API refused the
// token, 1 otherwise. An API unreachable at the default address, when no
// running `gosling dev` was found, also says where one was looked for and
// how to name it (errNoDev).
func (a *APIFlags) apiFailure(err error) error {
	var opErr *net.OpError
	if a.noDev != nil && a.URL == defaultAPI && errors.As(err, &opErr) {
		// Nothing answers at the default address: most likely no
		// `gosling dev` was found to talk to.
		return fmt.Errorf("%w\n%v; or pass --api (or $%s) for another API", err, a.noDev, envAPIURL)
	}
	if !apiclient.IsAuth(err) {
		return err
	}
	hint := "check $" + envAPIToken
	if a.Token == "" {
		hint = "$" + envAPIToken + " is not set"
	}
	return &CodeError{Code: ExitAuth, Err: fmt.Errorf("%w (%s)", err, hint)}
}

// collectPages reads pages from an API list until it has limit items or the
// list ends; more says whether items were left unread.
func collectPages[T any](limit int, page func(cursor string, n int) ([]T, string, error)) (items []T, more bool, err error) {
	items = []T{}
	for cursor := ""; len(items) < limit; {
		got, next, err := page(cursor, min(limit-len(items), maxAPIPage))
		if err != nil {
			return nil, false, err
		}
		items = append(items, got...)
		if cursor = next; cursor == "" {
			break
		}
		more = len(items) >= limit
	}
	return items, more, nil
}

// timeCell shows a time as an age on a terminal and as RFC 3339 in a pipe.
func timeCell(ios *IOStreams, t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	if !ios.StdoutTTY {
		return t.UTC().Format(time.RFC3339)
	}
	d := now.Sub(*t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", max(int(d.Seconds()), 0))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func idCell(n int64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10)
}

// NewCmdRunners builds `gosling runners`.
func NewCmdRunners(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runners <command>",
		Short: "List, inspect, drain and delete runners through the MotherGoose API",
		Long: `Runners talks to the MotherGoose REST API (--api, or $GOSLING_API_URL) with
the bearer token in $GOSLING_API_TOKEN. Exit status is 4 when the API
refuses the token.`,
	}
	cmd.AddCommand(NewCmdRunnersList(f, nil), NewCmdRunnersGet(f, nil), NewCmdRunnersDrain(f, nil), NewCmdRunnersDelete(f, nil))
	return cmd
}

// RunnersListOptions are the inputs of `gosling runners list`.
type RunnersListOptions struct {
	IO     *IOStreams
	API    APIFlags
	Egg    string
	State  string
	Cloud  string
	Limit  int
	Export exportFlags
	Now    func() time.Time
}

// NewCmdRunnersList builds `gosling runners list`.
func NewCmdRunnersList(f *Factory, runF func(*RunnersListOptions) error) *cobra.Command {
	opts := &RunnersListOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List runners, ordered by ID",
		Example: `  gosling runners list
  gosling runners list --egg web-app --state active,dormant
  gosling runners list --cloud aws --limit 200 --json id,state --jq '.[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 1 {
				return flagErrorf("--limit must be at least 1")
			}
			if runF != nil {
				return runF(opts)
			}
			return runnersListRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Egg, "egg", "", "only runners of this egg")
	fl.StringVar(&opts.State, "state", "", "only runners in these states, comma-separated ("+strings.Join(stateNames(), ", ")+")")
	fl.StringVar(&opts.Cloud, "cloud", "", "only runners on this cloud")
	fl.IntVar(&opts.Limit, "limit", 50, "most runners to list")
	addJSONFlags(cmd, &opts.Export, apiv1.Runner{})
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func stateNames() []string {
	out := make([]string, len(store.AllStates))
	for i, s := range store.AllStates {
		out[i] = string(s)
	}
	return out
}

// maxAPIPage is the API's largest page.
const maxAPIPage = 500

func runnersListRun(ctx context.Context, opts *RunnersListOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	runners, more, err := collectPages(opts.Limit, func(after string, n int) ([]apiv1.Runner, string, error) {
		page, err := c.ListRunners(ctx, apiclient.RunnerFilter{Egg: opts.Egg, State: opts.State, Cloud: opts.Cloud, After: after, Limit: n})
		if err != nil {
			return nil, "", err
		}
		return page.Runners, page.Next, nil
	})
	if err != nil {
		return opts.API.apiFailure(err)
	}
	now := opts.Now()
	rows := make([][]string, 0, len(runners))
	for _, r := range runners {
		updated := r.UpdatedAt
		rows = append(rows, []string{r.ID, r.Egg, r.State, r.Cloud, r.Kind, idCell(r.GitLabRunnerID), idCell(r.JobID), timeCell(opts.IO, &updated, now)})
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Empty: "No runners match.",
		Header: []string{"ID", "EGG", "STATE", "CLOUD", "KIND", "GITLAB RUNNER", "JOB", "UPDATED"}}
	if err := p.Print(ctx, runners, rows); err != nil {
		return err
	}
	if more && opts.IO.StdoutTTY && !opts.Export.Enabled() {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the first %d runners; pass --limit to see more.\n", len(runners))
	}
	return nil
}

// RunnersGetOptions are the inputs of `gosling runners get`.
type RunnersGetOptions struct {
	IO     *IOStreams
	API    APIFlags
	ID     string
	Export exportFlags
	Now    func() time.Time
}

// NewCmdRunnersGet builds `gosling runners get`.
func NewCmdRunnersGet(f *Factory, runF func(*RunnersGetOptions) error) *cobra.Command {
	opts := &RunnersGetOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show one runner",
		Example: `  gosling runners get web-app-3f2a9c01de
  gosling runners get web-app-3f2a9c01de --json state,reason --jq .state`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runnersGetRun(cmd.Context(), opts)
		},
	}
	addJSONFlags(cmd, &opts.Export, apiv1.Runner{})
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func runnersGetRun(ctx context.Context, opts *RunnersGetOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	r, err := c.GetRunner(ctx, opts.ID)
	if err != nil {
		return opts.API.apiFailure(err)
	}
	if opts.Export.Enabled() {
		return opts.Export.Write(ctx, opts.IO.Out, r)
	}
	now := opts.Now()
	created, updated := r.CreatedAt, r.UpdatedAt
	fields := [][]string{
		{"id", r.ID}, {"egg", r.Egg}, {"state", r.State}, {"reason", orDash(r.Reason)},
		{"cloud", r.Cloud}, {"kind", r.Kind}, {"gitlab host", r.GitLabHost}, {"gitlab runner", idCell(r.GitLabRunnerID)},
		{"job", idCell(r.JobID)}, {"workflow", orDash(r.WorkflowID)}, {"workspace", orDash(r.Workspace)},
		{"token", orDash(r.TokenRef)}, {"failures", strconv.Itoa(r.Failures)},
		{"last heartbeat", timeCell(opts.IO, r.LastHeartbeat, now)}, {"last job", timeCell(opts.IO, r.LastJobAt, now)},
		{"created", timeCell(opts.IO, &created, now)}, {"updated", timeCell(opts.IO, &updated, now)},
		{"version", strconv.FormatInt(r.Version, 10)},
	}
	if !opts.IO.StdoutTTY {
		return printTable(opts.IO, nil, fields)
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	for _, kv := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RunnersDrainOptions are the inputs of `gosling runners drain`.
type RunnersDrainOptions struct {
	IO  *IOStreams
	API APIFlags
	ID  string
}

// NewCmdRunnersDrain builds `gosling runners drain`.
func NewCmdRunnersDrain(f *Factory, runF func(*RunnersDrainOptions) error) *cobra.Command {
	opts := &RunnersDrainOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "drain ID",
		Short: "Pause a runner in GitLab so it takes no new jobs, and mark it draining",
		Long: `Drain pauses the runner in GitLab, so it finishes the jobs it has and takes no
new ones, and moves it to the draining state. Only active and dormant
runners can be drained; draining a draining runner changes nothing.`,
		Example: `  gosling runners drain web-app-3f2a9c01de`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runnersDrainRun(cmd.Context(), opts)
		},
	}
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func runnersDrainRun(ctx context.Context, opts *RunnersDrainOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	r, err := c.DrainRunner(ctx, opts.ID)
	if err != nil {
		return opts.API.apiFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Runner %s is %s: paused in GitLab, it takes no new jobs.\n", r.ID, r.State)
	return nil
}

// RunnersDeleteOptions are the inputs of `gosling runners delete`.
type RunnersDeleteOptions struct {
	IO  *IOStreams
	API APIFlags
	ID  string
	Yes bool
}

// NewCmdRunnersDelete builds `gosling runners delete`.
func NewCmdRunnersDelete(f *Factory, runF func(*RunnersDeleteOptions) error) *cobra.Command {
	opts := &RunnersDeleteOptions{IO: f.IO}
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Tear a runner down: its machine, its GitLab runner and its token",
		Long: `Delete starts the runner's teardown workflow (DeprovisionRunner) and returns;
a job the runner is running is cut short. On a terminal it asks first;
elsewhere pass --yes.`,
		Example: `  gosling runners delete web-app-3f2a9c01de
  gosling runners delete web-app-3f2a9c01de --yes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ID = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runnersDeleteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "delete without asking")
	opts.API.register(cmd, f.Getenv)
	return cmd
}

func runnersDeleteRun(ctx context.Context, opts *RunnersDeleteOptions) error {
	if !opts.Yes {
		if !opts.IO.CanPrompt() {
			return errMissing("yes", "confirmation")
		}
		answer, err := opts.IO.Prompt(fmt.Sprintf("Delete runner %s? Its machine, GitLab runner and token are removed (y/N)", opts.ID), "n")
		if err != nil {
			return err
		}
		if a := strings.ToLower(answer); a != "y" && a != "yes" {
			return errCancelled
		}
	}
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	wf, err := c.DeleteRunner(ctx, opts.ID)
	if err != nil {
		return opts.API.apiFailure(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "Deleting runner %s: workflow %s tears it down.\n", opts.ID, wf)
	return nil
}
