package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/spf13/cobra"
)

// AuditOptions are the inputs of `gosling audit`.
type AuditOptions struct {
	IO     *IOStreams
	API    APIFlags
	Egg    string
	Runner string
	// Since is the flag as given: a duration back from now or a time.
	Since string
	Limit int
	JSON  bool
	Now   func() time.Time

	since time.Time
}

// NewCmdAudit builds `gosling audit`.
func NewCmdAudit(f *Factory, runF func(*AuditOptions) error) *cobra.Command {
	opts := &AuditOptions{IO: f.IO, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: every lifecycle action, by whom, why, before and after",
		Long: `Audit reads the append-only audit log through the MotherGoose API (--api, or
$GOSLING_API_URL, with the token in $GOSLING_API_TOKEN), oldest first. Every
lifecycle action of MotherGoose, UglyFox and the API is there, with the
policy that fired and the runner's state before and after.`,
		Example: `  gosling audit --since 24h
  gosling audit --egg web-app --since 2025-06-01T00:00:00Z
  gosling audit --runner web-app-p3 --json | jq '.[].after'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 1 {
				return flagErrorf("--limit must be at least 1")
			}
			if opts.Since != "" {
				t, err := parseSince(opts.Since, opts.Now())
				if err != nil {
					return flagErrorf("--since: %v", err)
				}
				opts.since = t
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
	fl.StringVar(&opts.Since, "since", "", `only records from this time on: a duration back from now ("24h", "7d") or an RFC 3339 time`)
	fl.IntVar(&opts.Limit, "limit", 200, "most records to show")
	fl.BoolVar(&opts.JSON, "json", false, "print the records as JSON")
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
	records, more, err := collectPages(opts.Limit, func(after string, n int) ([]store.AuditRecord, string, error) {
		page, err := c.ListAudit(ctx, apiclient.AuditFilter{Egg: opts.Egg, Runner: opts.Runner, Since: opts.since, After: after, Limit: n})
		if err != nil {
			return nil, "", err
		}
		return page.Audit, page.Next, nil
	})
	if err != nil {
		return opts.API.apiFailure(err)
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, records)
	}
	if len(records) == 0 {
		if opts.IO.StdoutTTY {
			fmt.Fprintln(opts.IO.ErrOut, "No audit records match.")
		}
		return nil
	}
	now := opts.Now()
	rows := make([][]string, 0, len(records))
	for _, r := range records {
		at := r.At
		rows = append(rows, []string{
			timeCell(opts.IO, &at, now), r.Actor, r.Action, orDash(r.Egg), orDash(r.RunnerID), orDash(r.Policy),
			stateChange(r.Before, r.After), orDash(r.Reason),
		})
	}
	if err := printTable(opts.IO, []string{"WHEN", "ACTOR", "ACTION", "EGG", "RUNNER", "POLICY", "STATE", "REASON"}, rows); err != nil {
		return err
	}
	if more && opts.IO.StdoutTTY {
		fmt.Fprintf(opts.IO.ErrOut, "Showing the first %d records; pass --limit or --since to see others.\n", len(records))
	}
	return nil
}

// stateChange shows a record's before and after states, such as
// "active > terminated".
func stateChange(before, after []byte) string {
	st := func(b []byte) string {
		var v struct {
			State string `json:"state"`
		}
		if len(b) == 0 || json.Unmarshal(b, &v) != nil {
			return ""
		}
		return v.State
	}
	b, a := st(before), st(after)
	if b == "" && a == "" {
		return "-"
	}
	return orDash(b) + " > " + orDash(a)
}
