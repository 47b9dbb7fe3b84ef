package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/spf13/cobra"
)

// AuditOptions are the inputs of `gosling audit`.
type AuditOptions struct {
	IO     *IOStreams
	API    APIFlags
	Egg    string
	Runner string
	// Since and Until are the flags as given: a duration back from now or
	// a time.
	Since  string
	Until  string
	Limit  int
	Export exportFlags
	Now    func() time.Time

	since, until time.Time
}

// NewCmdAudit builds `gosling audit`.
func NewCmdAudit(f *Factory, runF func(*AuditOptions) error) *cobra.Command {
	opts := &AuditOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: every lifecycle action, by whom, why, before and after",
		Long: `Audit reads the append-only audit log through the MotherGoose API (--api, or
$GOSLING_API_URL, with the token in $GOSLING_API_TOKEN), oldest first. Every
lifecycle action of a runner is there: provisioned, ready, promoted,
demoted, drained, failed, terminating, terminated, reaped (UglyFox's
reconciliation) and rotate-token, with who acted (mothergoose, uglyfox, api,
job/NAME, cli:USER), the policy that fired, why, and the runner's state
before and after; and the Nest's, the webhooks' and the secrets' records.`,
		Example: `  gosling audit --since 24h
  gosling audit --egg web-app --since 2025-06-01T00:00:00Z --until 2025-06-02
  gosling audit --runner web-app-p3 --json action,state_before,state_after
  gosling audit --egg data-group --json action,runner_id --jq '.[] | select(.action == "promoted") | .runner_id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 1 {
				return flagErrorf("--limit must be at least 1")
			}
			for _, fl := range []struct {
				name, v string
				dst     *time.Time
			}{{"since", opts.Since, &opts.since}, {"until", opts.Until, &opts.until}} {
				if fl.v == "" {
					continue
				}
				t, err := parseSince(fl.v, opts.Now())
				if err != nil {
					return flagErrorf("--%s: %v", fl.name, err)
				}
				*fl.dst = t
			}
			if runF != nil {
				return runF(opts)
			}
			return auditRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Egg, "egg", "", "only records of this egg")
	fl.StringVar(&opts.Runner, "runner", "", "only records of this runner")
	fl.StringVar(&opts.Since, "since", "", `only records from this time on: a duration back from now ("24h", "7d"), a date or an RFC 3339 time`)
	fl.StringVar(&opts.Until, "until", "", "only records before this time: a duration back from now, a date or an RFC 3339 time")
	fl.IntVar(&opts.Limit, "limit", 200, "most records to show")
	addJSONFlags(cmd, &opts.Export, apiv1.AuditRecord{})
	opts.API.register(cmd, f.Getenv)
	return cmd
}

// parseSince reads --since: a fly duration back from now, or a time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := fly.ParseDuration(s); err == nil {
		return now.Add(-d.D()), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h, 7d) nor a time (2025-06-01 or 2025-06-01T15:04:05Z)", s)
}

func auditRun(ctx context.Context, opts *AuditOptions) error {
	c, err := opts.API.client()
	if err != nil {
		return err
	}
	records, more, err := collectPages(opts.Limit, func(after string, n int) ([]apiv1.AuditRecord, string, error) {
		page, err := c.ListAudit(ctx, apiclient.AuditFilter{Egg: opts.Egg, Runner: opts.Runner, Since: opts.since, After: after, Limit: n})
		if err != nil {
			return nil, "", err
		}
		// Records come oldest first: the first one at or past --until
		// ends the list.
		for i, r := range page.Audit {
			if !opts.until.IsZero() && !r.At.Before(opts.until) {
				return page.Audit[:i], "", nil
			}
		}
		return page.Audit, page.Next, nil
	})
	if err != nil {
		return opts.API.apiFailure(err)
	}
	now := opts.Now()
	rows := make([][]string, 0, len(records))
	for _, r := range records {
		at := r.At
		rows = append(rows, []string{
			timeCell(opts.IO, &at, now), r.Actor, r.Action, orDash(r.Egg), orDash(r.RunnerID), orDash(r.Policy),
			stateChange(r.StateBefore, r.StateAfter), orDash(r.Reason),
		})
	}
	p := listPrinter{IO: opts.IO, Export: &opts.Export, Empty: "No audit records match.",
		Header: []string{"WHEN", "ACTOR", "ACTION", "EGG", "RUNNER", "POLICY", "STATE", "REASON"}}
	if err := p.Print(ctx, records, rows); err != nil {
		return err
	}
	if more && opts.IO.StdoutTTY && !opts.Export.Enabled() {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the first %d records; pass --limit or --since to see others.\n", len(records))
	}
	return nil
}

// stateChange shows a record's before and after states, such as
// "active > terminated".
func stateChange(b, a string) string {
	if b == "" && a == "" {
		return "-"
	}
	return orDash(b) + " > " + orDash(a)
}
