package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/apiv1"

	"github.com/spf13/cobra"
)

// NewCmdPool builds `gosling pool`.
func NewCmdPool(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool <command>",
		Short: "Inspect, scale and drain an egg's Apex/Nadir runner pool",
		Long: `Every egg of VM runners has one pool: its Apex (running) and Nadir
(stopped, resumable) runners. A job takes an idle Apex runner, else a
promoted Nadir runner, else a new one, within the egg's limits.

Pool talks to the MotherGoose REST API (--api, or $GOSLING_API_URL) with the
bearer token in $GOSLING_API_TOKEN. Exit status is 4 when the API refuses
the token.`,
	}
	cmd.AddCommand(newCmdPoolStatus(f), newCmdPoolScale(f), newCmdPoolDrain(f))
	return cmd
}

func newCmdPoolStatus(f *Factory) *cobra.Command {
	var api APIFlags
	var export exportFlags
	cmd := &cobra.Command{
		Use:   "status EGG",
		Short: "Show a pool: counts by state, limits, and each runner with its age and last job",
		Example: `  gosling pool status web-app
  gosling pool status web-app --json counts,waiting
  gosling pool status web-app --json runners --jq '.runners[] | select(.state == "nadir") | .id'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client()
			if err != nil {
				return err
			}
			st, err := c.GetPool(cmd.Context(), args[0])
			if err != nil {
				return api.apiFailure(err)
			}
			if export.Enabled() {
				return export.Write(cmd.Context(), f.IO.Out, st)
			}
			return printPool(cmd.Context(), f.IO, st, time.Now())
		},
	}
	addJSONFlags(cmd, &export, apiv1.Pool{})
	api.register(cmd, f.Getenv)
	return cmd
}

func printPool(ctx context.Context, ios *IOStreams, st *apiv1.Pool, now time.Time) error {
	w := ios.Out
	l := st.Limits
	fmt.Fprintf(w, "Pool of %s", st.Egg)
	if st.Draining {
		fmt.Fprint(w, " (draining: `gosling pool scale` resumes it)")
	}
	fmt.Fprintf(w, "\n  Apex   %d running (min %d, max %d), %.1f vCPU, %s\n", st.Counts[contract.PoolApex], l.ApexMin, l.ApexMax, st.CPU[contract.PoolApex], st.Memory[contract.PoolApex])
	fmt.Fprintf(w, "  Nadir  %d stopped (min %d, max %d), %.1f vCPU, %s\n", st.Counts[contract.PoolNadir], l.NadirMin, l.NadirMax, st.CPU[contract.PoolNadir], st.Memory[contract.PoolNadir])
	var other []string
	for _, s := range []string{contract.PoolProvisioning, contract.PoolPromoting, contract.PoolDemoting, contract.PoolRetiring} {
		if n := st.Counts[s]; n > 0 {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(w, "  Moving %s\n", strings.Join(other, ", "))
	}
	fmt.Fprintf(w, "  Jobs waiting %d; served: %d by Apex, %d by promotion, %d by a new runner\n", st.Waiting,
		st.Stats.Served[contract.ServedByApex], st.Stats.Served[contract.ServedByPromotion], st.Stats.Served[contract.ServedByProvision])
	fmt.Fprintf(w, "  Hit rate %.0f%% (jobs served without a cold start)", 100*st.HitRate)
	if c := st.IdleCost; c != nil {
		fmt.Fprintf(w, "; idle runners cost %s %s an hour (%d idle Apex running, %d Nadir disks)", money(c.PerHour), c.Currency, c.ApexIdle, c.Nadir)
	}
	fmt.Fprintln(w)
	if n := len(st.Ignored); n > 0 {
		fmt.Fprintf(w, "  Jobs no runner will take (the latest %d):\n", min(n, 5))
		for _, ig := range st.Ignored[max(0, n-5):] {
			fmt.Fprintf(w, "    job %d, %s: %s\n", ig.JobID, timeCell(ios, &ig.At, now), ig.Reason)
		}
	}
	fmt.Fprintln(w)
	runners := append([]contract.PoolRunner(nil), st.Runners...)
	sort.Slice(runners, func(i, j int) bool { return runners[i].ID < runners[j].ID })
	rows := make([][]string, 0, len(runners))
	for _, r := range runners {
		last := "-"
		if r.LastJob != 0 {
			last = strconv.FormatInt(r.LastJob, 10)
		}
		jobs := make([]string, len(r.Jobs))
		for i, j := range r.Jobs {
			jobs[i] = strconv.FormatInt(j, 10)
		}
		created := r.CreatedAt
		rows = append(rows, []string{r.ID, r.State, timeCell(ios, &created, now), orDash(strings.Join(jobs, ",")), last})
	}
	return listPrinter{IO: ios, Header: []string{"RUNNER", "STATE", "CREATED", "JOBS", "LAST JOB"}}.Print(ctx, runners, rows)
}

func newCmdPoolScale(f *Factory) *cobra.Command {
	var api APIFlags
	var reset bool
	var apexMin, apexMax, nadirMin, nadirMax int
	cmd := &cobra.Command{
		Use:   "scale EGG [--apex-min N] [--apex-max N] [--nadir-min N] [--nadir-max N] | --reset",
		Short: "Set a pool's limits until the next reset (and resume a drained pool)",
		Long: `Scale overrides the egg's pool limits in the running pool, until
` + "`--reset`" + ` or a change of the egg in the Nest. Flags you leave out keep
their value. The pool refuses limits it cannot keep (a minimum above its
maximum, Apex beyond the egg's max_concurrent, Nadir for serverless).

Raising a minimum makes runners ahead of demand; lowering a maximum lets
runners above it go as they become idle. Running jobs are never cut short.`,
		Example: `  gosling pool scale web-app --nadir-min 4       # four warm, stopped VMs
  gosling pool scale web-app --apex-min 2 --apex-max 10
  gosling pool scale web-app --reset`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := contract.PoolScale{Reset: reset}
			set := 0
			for _, fl := range []struct {
				name string
				v    int
				dst  **int
			}{{"apex-min", apexMin, &req.ApexMin}, {"apex-max", apexMax, &req.ApexMax}, {"nadir-min", nadirMin, &req.NadirMin}, {"nadir-max", nadirMax, &req.NadirMax}} {
				if cmd.Flags().Changed(fl.name) {
					if fl.v < 0 {
						return flagErrorf("--%s must not be negative", fl.name)
					}
					v := fl.v
					*fl.dst = &v
					set++
				}
			}
			if reset && set > 0 {
				return flagErrorf("--reset takes no limits")
			}
			c, err := api.client()
			if err != nil {
				return err
			}
			l, err := c.ScalePool(cmd.Context(), args[0], req)
			if err != nil {
				return api.apiFailure(err)
			}
			fmt.Fprintf(f.IO.Out, "Pool of %s: Apex %d..%d, Nadir %d..%d\n", args[0], l.ApexMin, l.ApexMax, l.NadirMin, l.NadirMax)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&apexMin, "apex-min", 0, "running runners kept ready")
	fl.IntVar(&apexMax, "apex-max", 0, "most running runners")
	fl.IntVar(&nadirMin, "nadir-min", 0, "stopped runners kept ahead of demand")
	fl.IntVar(&nadirMax, "nadir-max", 0, "most stopped runners")
	fl.BoolVar(&reset, "reset", false, "drop every override: back to the Nest's limits")
	api.register(cmd, f.Getenv)
	return cmd
}

func newCmdPoolDrain(f *Factory) *cobra.Command {
	var api APIFlags
	cmd := &cobra.Command{
		Use:   "drain EGG",
		Short: "Retire every runner of a pool and make no new ones until it is scaled again",
		Long: `Drain tears down every Apex and Nadir runner of the egg's pool and stops
making new ones. Jobs that ask meanwhile wait in line; ` + "`gosling pool scale`" + `
resumes the pool and serves them.`,
		Example: `  gosling pool drain web-app
  gosling pool scale web-app --reset   # resume`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := api.client()
			if err != nil {
				return err
			}
			n, err := c.DrainPool(cmd.Context(), args[0])
			if err != nil {
				return api.apiFailure(err)
			}
			fmt.Fprintf(f.IO.Out, "Pool of %s is draining: %d runners are being retired\n", args[0], n)
			return nil
		},
	}
	api.register(cmd, f.Getenv)
	return cmd
}
