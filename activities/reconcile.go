package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/activity"
)

// StuckAfter is how long a teardown may take before reconciliation runs it
// again (OpenTofu runs are bounded by 45 minutes).
const StuckAfter = time.Hour

// descriptionPrefix starts the description Gosling gives every runner in
// GitLab: gosling/<egg>/<runner ID>.
const descriptionPrefix = "gosling/"

// ParseRunnerDescription splits a Gosling runner description into egg and
// runner ID.
func ParseRunnerDescription(d string) (egg, runnerID string, ok bool) {
	rest, ok := strings.CutPrefix(d, descriptionPrefix)
	if !ok {
		return "", "", false
	}
	egg, runnerID, ok = strings.Cut(rest, "/")
	if !ok || egg == "" || runnerID == "" || strings.Contains(runnerID, "/") {
		return "", "", false
	}
	return egg, runnerID, true
}

// SurveyInput tunes a survey.
type SurveyInput struct {
	// PageSize bounds the store rows read at a time (default 1000).
	PageSize int `json:"page_size,omitempty"`
}

// Survey is what reconciliation saw and what disagrees.
type Survey struct {
	GitLabRunners int `json:"gitlab_runners"`
	Workspaces    int `json:"workspaces"`
	// Machines counts the machines found by their labels.
	Machines int `json:"machines"`
	Rows     int `json:"rows"`
	// Unreachable lists GitLab instances that could not be listed: nothing
	// is concluded about their runners' absence.
	Unreachable []string           `json:"unreachable,omitempty"`
	Findings    []contract.Finding `json:"findings"`
}

// glKey names one GitLab instance and token.
func glKey(g fly.GitLab) string { return g.BaseURL() + " " + string(g.Token) }

// SurveyRunners compares four views: the GitLab runners Gosling made
// (described gosling/<egg>/<id>, on the instances of the stored eggs; an
// egg's shared runners, gosling-egg/<egg>/<shape>, are counted and left
// to their EggRunner workflows), the
// OpenTofu workspaces, the machines the clouds hold with the deployment's
// labels (Inventories; so a machine whose state is gone is still found),
// and the store. Workspaces, machines and GitLab are read before the
// store: a runner's row is written before anything else of it, so a
// runner being made is never mistaken for an orphan. A GitLab runner that
// seems gone is confirmed by asking for it by ID, since a list paged while
// runners come and go can skip one.
func (a *Activities) SurveyRunners(ctx context.Context, in SurveyInput) (Survey, error) {
	var sv Survey
	beat := func(msg string) {
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, msg)
		}
	}
	eggs, err := a.ListEggPolicies(ctx)
	if err != nil {
		return sv, err
	}
	eggGitLab := map[string]fly.GitLab{}
	for _, e := range eggs {
		eggGitLab[e.Name] = e.GitLab
	}

	// 1. Workspaces.
	beat("listing workspaces")
	workspaces, err := a.workspaceNames(ctx)
	if err != nil {
		return sv, fmt.Errorf("list workspaces: %w", err)
	}
	sv.Workspaces = len(workspaces)

	// 1b. Machines, by their labels.
	beat("listing machines by their labels")
	machines, unreachable := a.labeledMachines(ctx)
	sv.Unreachable = append(sv.Unreachable, unreachable...)
	for _, ms := range machines {
		sv.Machines += len(ms)
	}

	// 2. GitLab, once per instance and token.
	beat("listing GitLab runners")
	gl := map[string][]int64{}   // runner ID -> GitLab runner IDs
	glEgg := map[string]string{} // runner ID -> egg from the description
	listed := map[string]bool{}  // instance keys listed in full
	// The eggs' shared runners listed, which their machines' rows name.
	type sharedKey struct {
		instance string
		id       int64
	}
	shared := map[sharedKey]bool{}
	for _, e := range eggs {
		key := glKey(e.GitLab)
		if _, done := listed[key]; done {
			continue
		}
		listed[key] = false
		c, err := a.gitlabClient(ctx, e.GitLab)
		if err != nil {
			sv.Unreachable = append(sv.Unreachable, e.GitLab.Host+": "+err.Error())
			continue
		}
		runners, err := c.ListRunners(ctx, gitlab.ListRunnersFilter{})
		if err != nil {
			sv.Unreachable = append(sv.Unreachable, e.GitLab.Host+": "+err.Error())
			continue
		}
		listed[key] = true
		for _, r := range runners {
			// An egg's shared runner (EggRunner) is its EggRunner
			// workflow's to keep or retire: counted, not judged here.
			if rest, ok := strings.CutPrefix(r.Description, contract.EggRunnerDescriptionPrefix); ok {
				egg, _, _ := strings.Cut(rest, "/")
				if g, ok := eggGitLab[egg]; ok && glKey(g) == key {
					sv.GitLabRunners++
					shared[sharedKey{key, r.ID}] = true
				}
				continue
			}
			egg, id, ok := ParseRunnerDescription(r.Description)
			if !ok {
				continue
			}
			// Only eggs served by this instance: another egg's name on it
			// is not ours to judge.
			if g, ok := eggGitLab[egg]; !ok || glKey(g) != key {
				continue
			}
			sv.GitLabRunners++
			gl[id] = append(gl[id], r.ID)
			glEgg[id] = egg
		}
	}
	knowsGitLab := func(egg string) bool {
		g, ok := eggGitLab[egg]
		return ok && listed[glKey(g)]
	}

	// 3. The store, last.
	beat("reading the store")
	rows := map[string]store.Runner{}
	pageSize := in.PageSize
	if pageSize <= 0 {
		pageSize = 1000
	}
	for after := ""; ; {
		page, err := a.Store.ListRunners(ctx, store.RunnerFilter{States: LiveStates, After: after, Limit: pageSize})
		if err != nil {
			return sv, err
		}
		for _, r := range page {
			rows[r.ID] = r
		}
		if len(page) < pageSize {
			break
		}
		after = page[len(page)-1].ID
	}
	// Runners seen in GitLab, on disk or on a cloud without a live row may
	// have a terminated one.
	seen := unionIDs(gl, workspaces, machines)
	for _, id := range seen {
		if _, ok := rows[id]; ok {
			continue
		}
		r, err := a.Store.GetRunner(ctx, id)
		switch {
		case err == nil:
			rows[id] = *r
		case !errors.Is(err, store.ErrNotFound):
			return sv, fmt.Errorf("read runner %s: %w", id, err)
		}
	}
	sv.Rows = len(rows)

	// 4. Compare, runner by runner.
	beat("comparing")
	now := time.Now()
	ids := seen
	for id := range rows {
		if _, ok := gl[id]; !ok && !workspaces[id] && len(machines[id]) == 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		row, hasRow := rows[id]
		f := contract.Finding{RunnerID: id, GitLabRunnerIDs: gl[id], Egg: glEgg[id]}
		if workspaces[id] {
			f.Workspace = id
		}
		f.Machines = machines[id]
		if hasRow {
			f.Egg, f.State, f.WorkflowID, f.StoredGitLabRunnerID, f.TokenRef = row.Egg, row.State, row.WorkflowID, row.GitLabRunnerID, row.TokenRef
		}
		hasGL, hasWS, hasMachine := len(f.GitLabRunnerIDs) > 0, workspaces[id], len(f.Machines) > 0
		switch {
		case !hasRow || row.State == store.StateTerminated:
			if !hasGL && !hasWS && !hasMachine {
				continue
			}
			f.Kind = contract.FindingUnowned
			f.Detail = unownedDetail(hasRow, hasGL, hasWS, hasMachine)
		case row.State == store.StateProvisioning || row.State == store.StateRegistering:
			continue // its ProvisionRunner owns it, and times out by itself
		case row.State == store.StateTerminating:
			if now.Sub(row.UpdatedAt) < StuckAfter {
				continue
			}
			f.Kind, f.Detail = contract.FindingStuck, fmt.Sprintf("terminating since %s", row.UpdatedAt.UTC().Format(time.RFC3339))
		default: // active, dormant, draining, failed
			if !hasWS && a.workspaceExists(ctx, id) {
				hasWS, f.Workspace = true, id // made after the listing
			}
			glKnown := knowsGitLab(row.Egg)
			if glKnown && !hasGL && shared[sharedKey{glKey(eggGitLab[row.Egg]), row.GitLabRunnerID}] {
				hasGL = true // the egg's shared runner, listed
			}
			if glKnown && !hasGL && row.GitLabRunnerID != 0 {
				// Confirm by ID: a paged list can skip a runner.
				hasGL = a.gitlabRunnerExists(ctx, eggGitLab[row.Egg], row.GitLabRunnerID)
			}
			switch {
			case glKnown && !hasGL && !hasWS && !hasMachine:
				f.Kind, f.Detail = contract.FindingRowOrphan, "neither a GitLab runner nor a machine"
			case row.State == store.StateFailed:
				continue // the policy pass finishes failed runners
			case !hasWS && hasMachine:
				// Its teardown ends the machine by its labels.
				f.Kind, f.Detail = contract.FindingMachineGone, "its OpenTofu state is gone; its machine is found by its labels"
			case !hasWS:
				f.Kind, f.Detail = contract.FindingMachineGone, "the GitLab runner has no machine (no workspace)"
			case glKnown && !hasGL:
				f.Kind, f.Detail = contract.FindingGitLabGone, "the machine's GitLab runner was deleted"
			default:
				hb, probed := a.probe(row)
				if !probed || !hb.Gone {
					continue
				}
				f.Kind, f.Detail = contract.FindingMachineGone, "the machine's agent process is dead"
			}
		}
		sv.Findings = append(sv.Findings, f)
	}
	if sv.Findings == nil {
		sv.Findings = []contract.Finding{}
	}
	return sv, nil
}

func unownedDetail(hasRow, hasGL, hasWS, hasMachine bool) string {
	owner := "no store row"
	if hasRow {
		owner = "a terminated store row"
	}
	machine := "machine (workspace)"
	switch {
	case hasMachine && !hasWS:
		machine = "machine found by its labels, without OpenTofu state,"
	case hasMachine:
		machine = "machine (workspace and labels)"
	}
	switch {
	case hasGL && (hasWS || hasMachine):
		return "GitLab runner and " + machine + " with " + owner
	case hasGL:
		return "GitLab runner with " + owner + " and no machine"
	}
	return machine + " with " + owner
}

// unionIDs lists the runner IDs of GitLab, the workspaces and the labelled
// machines, sorted.
func unionIDs(gl map[string][]int64, ws map[string]bool, machines map[string][]contract.MachineRef) []string {
	set := map[string]bool{}
	for id := range gl {
		set[id] = true
	}
	for id := range ws {
		set[id] = true
	}
	for id := range machines {
		set[id] = true
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// workspaceNames lists the workspaces whose states the backend holds (on
// the local backend, the directories on disk): a workspace's state is
// OpenTofu's business when it is destroyed.
func (a *Activities) workspaceNames(ctx context.Context) (map[string]bool, error) {
	if a.Tofu == nil {
		return map[string]bool{}, nil
	}
	return a.Tofu.WorkspaceNames(ctx)
}

func (a *Activities) workspaceExists(ctx context.Context, name string) bool {
	if a.Tofu == nil {
		return false
	}
	if a.Tofu.Backend.Remote() {
		names, err := a.Tofu.WorkspaceNames(ctx)
		return err != nil || names[name] // an error never gets a runner reaped
	}
	_, err := os.Stat(a.Tofu.WorkspaceDir(name))
	return err == nil
}

// gitlabRunnerExists asks GitLab for one runner; any answer but 404 counts
// as existing, so an error never gets a runner reaped.
func (a *Activities) gitlabRunnerExists(ctx context.Context, g fly.GitLab, id int64) bool {
	c, err := a.gitlabClient(ctx, g)
	if err != nil {
		return true
	}
	_, err = c.RunnerJobs(ctx, id, "running")
	return !gitlab.IsNotFound(err)
}

// ReapInput names what an unowned runner left behind.
type ReapInput struct {
	RunnerID string `json:"runner_id"`
	// Machines are the runner's machines found by their labels, ended
	// through their cloud's inventory after the workspace is destroyed.
	Machines []contract.MachineRef `json:"machines,omitempty"`
	// GitLab is the instance of the runner's egg; nil when the egg is unknown.
	GitLab          *fly.GitLab `json:"gitlab,omitempty"`
	GitLabRunnerIDs []int64     `json:"gitlab_runner_ids,omitempty"`
	Workspace       string      `json:"workspace,omitempty"`
	TokenRef        string      `json:"token_ref,omitempty"`
}

// ReapResult says what was removed.
type ReapResult struct {
	DestroyedWorkspace string `json:"destroyed_workspace,omitempty"`
	// TerminatedMachines are the labelled machines ended.
	TerminatedMachines   []contract.MachineRef `json:"terminated_machines,omitempty"`
	DeletedGitLabRunners []int64               `json:"deleted_gitlab_runners,omitempty"`
}

// ReapOrphan removes what no runner owns: the machine first (tofu destroy
// and the workspace), then the GitLab runners, then the token. Every step
// is idempotent.
func (a *Activities) ReapOrphan(ctx context.Context, in ReapInput) (ReapResult, error) {
	var res ReapResult
	if in.Workspace != "" {
		onLine, locks, stop := heartbeater(ctx)
		err := a.Tofu.DestroyWith(ctx, in.Workspace, onLine, locks)
		stop()
		if err != nil {
			return res, fmt.Errorf("destroy workspace %s: %w", in.Workspace, err)
		}
		// A local machine that outlived its state is stopped too.
		_ = agent.Stop(MachineDir(a.Tofu.StateDir(), in.RunnerID), 5*time.Second)
		res.DestroyedWorkspace = in.Workspace
	}
	// What the labels still show of the runner: the machines found by the
	// survey, and any the destroy left.
	left, err := a.machinesOf(ctx, in.RunnerID)
	if err != nil {
		return res, err
	}
	for _, m := range in.Machines {
		if !slices.Contains(left, m) {
			left = append(left, m)
		}
	}
	if err := a.terminateMachines(ctx, left); err != nil {
		return res, err
	}
	res.TerminatedMachines = left
	if len(in.GitLabRunnerIDs) > 0 && in.GitLab != nil {
		c, err := a.gitlabClient(ctx, *in.GitLab)
		if err != nil {
			return res, err
		}
		for _, id := range in.GitLabRunnerIDs {
			if err := c.DeleteRunner(ctx, id); err != nil {
				return res, err
			}
			res.DeletedGitLabRunners = append(res.DeletedGitLabRunners, id)
		}
	}
	// The egg's shared runner's token is its EggRunner's to delete.
	if a.Secrets != nil && (in.TokenRef != "" || a.TokenRef != nil) && !contract.IsEggRunnerToken(in.TokenRef) {
		if err := a.DeleteRunnerToken(ctx, DeleteRunnerTokenInput{RunnerID: in.RunnerID, TokenRef: in.TokenRef}); err != nil {
			return res, fmt.Errorf("delete token of %s: %w", in.RunnerID, err)
		}
	}
	return res, nil
}
