package workflows

import (
	"fmt"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/workflow"
)

// ReconcileInput asks for one reconciliation pass.
type ReconcileInput struct {
	Policy fly.UglyFox `json:"policy"`
	// DryRun only reports findings (so do Policy.DryRun and a reconcile
	// action of "report").
	DryRun bool `json:"dry_run,omitempty"`
}

// ReconcileFinding is a finding with what reconciliation did about it.
type ReconcileFinding struct {
	activities.Finding
	// Action is reap, mark-terminated or terminate.
	Action  string `json:"action"`
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Reconciliation actions (ReconcileFinding.Action, and the audit log's).
const (
	ReconcileReap           = "reap"
	ReconcileMarkTerminated = "mark-terminated"
	ReconcileTerminate      = ActionTerminate
)

// ReconcileResult reports a pass: what was seen, found and done.
type ReconcileResult struct {
	DryRun        bool               `json:"dry_run"`
	GitLabRunners int                `json:"gitlab_runners"`
	Workspaces    int                `json:"workspaces"`
	Rows          int                `json:"rows"`
	Unreachable   []string           `json:"unreachable,omitempty"`
	Findings      []ReconcileFinding `json:"findings"`
	// Failed counts findings whose action failed.
	Failed int `json:"failed"`
}

// Reconcile compares GitLab's runners, the OpenTofu workspaces and the
// store (activities.SurveyRunners) and reaps orphans both ways:
//
//   - what no live store row owns (a GitLab runner, a workspace) is
//     removed: tofu destroy, GitLab runner deleted, token deleted;
//   - a live runner whose machine is gone (no workspace, or a dead agent
//     process on the local provider) or whose GitLab runner was deleted is
//     terminated: through its pool when it has one, else DeprovisionRunner;
//   - a store row with neither GitLab runner nor machine is marked
//     terminated (and its pool told, so it forgets the runner);
//   - a teardown stuck in terminating is run again.
//
// Every action is audited; a dry run only reports.
func Reconcile(ctx workflow.Context, in ReconcileInput) (ReconcileResult, error) {
	var a *activities.Activities
	dry := in.DryRun || in.Policy.DryRun || in.Policy.Reconcile.Action == fly.ActionReport
	res := ReconcileResult{DryRun: dry, Findings: []ReconcileFinding{}}
	eggs, err := loadEggs(ctx)
	if err != nil {
		return res, err
	}
	var sv activities.Survey
	if err := workflow.ExecuteActivity(uglyfoxSurveyCtx(ctx), a.SurveyRunners, activities.SurveyInput{}).Get(ctx, &sv); err != nil {
		return res, fmt.Errorf("survey runners: %w", err)
	}
	res.GitLabRunners, res.Workspaces, res.Rows, res.Unreachable = sv.GitLabRunners, sv.Workspaces, sv.Rows, sv.Unreachable
	res.Findings = PlanReconcile(sv.Findings)
	workflow.GetLogger(ctx).Info("reconciliation surveyed", "gitlab_runners", sv.GitLabRunners, "workspaces", sv.Workspaces,
		"rows", sv.Rows, "findings", len(sv.Findings), "dry_run", dry)
	if dry {
		return res, nil
	}

	// Reaps and row fixes run side by side; terminations go through act.
	reaps := make([]workflow.Future, len(res.Findings))
	var terminate []Decision
	var terminateAt []int
	for i := range res.Findings {
		f := &res.Findings[i]
		switch f.Action {
		case ReconcileReap:
			in := activities.ReapInput{RunnerID: f.RunnerID, GitLabRunnerIDs: f.GitLabRunnerIDs, Workspace: f.Workspace, TokenRef: f.TokenRef}
			if e, ok := eggs[f.Egg]; ok {
				g := e.GitLab
				in.GitLab = &g
			} else if len(f.GitLabRunnerIDs) > 0 {
				f.Error = "egg " + f.Egg + " has no stored configuration: its GitLab is unknown"
				continue
			}
			reaps[i] = workflow.ExecuteActivity(tofuCtx(ctx), a.ReapOrphan, in)
		case ReconcileMarkTerminated:
			reaps[i] = workflow.ExecuteActivity(secretsCtx(ctx), a.ReapOrphan, activities.ReapInput{RunnerID: f.RunnerID, TokenRef: f.TokenRef})
		default:
			d := Decision{
				RunnerID: f.RunnerID, Egg: f.Egg, State: f.State, GitLabRunnerID: f.StoredGitLabRunnerID,
				Policy: PolicyReconcile, Action: ActionTerminate, Reason: f.Kind + ": " + f.Detail, Force: true,
			}
			// A pool already retiring a stuck runner ignores requests:
			// its teardown is run again directly.
			if f.Kind != activities.FindingStuck && f.State != store.StateFailed {
				d.Pool = PoolOwner(f.Egg, f.RunnerID, f.WorkflowID)
			}
			terminate = append(terminate, d)
			terminateAt = append(terminateAt, i)
		}
	}
	act(ctx, terminate, eggs)
	for j, d := range terminate {
		f := &res.Findings[terminateAt[j]]
		f.Outcome, f.Error = d.Outcome, d.Error
	}
	var told []Decision
	for i := range res.Findings {
		f := &res.Findings[i]
		if reaps[i] == nil {
			continue
		}
		var out activities.ReapResult
		if err := reaps[i].Get(ctx, &out); err != nil {
			f.Error = err.Error()
			continue
		}
		if f.Action == ReconcileReap {
			f.Outcome = fmt.Sprintf("reaped (workspace %q destroyed, GitLab runners %v deleted)", out.DestroyedWorkspace, out.DeletedGitLabRunners)
			continue
		}
		if err := markTerminated(ctx, f.RunnerID, f.State, f.Kind+": "+f.Detail); err != nil {
			f.Error = err.Error()
			continue
		}
		f.Outcome = "marked terminated"
		if pool := PoolOwner(f.Egg, f.RunnerID, f.WorkflowID); pool != "" && f.State != store.StateFailed {
			told = append(told, Decision{RunnerID: f.RunnerID, Egg: f.Egg, Pool: pool, Policy: PolicyReconcile, Action: ActionTerminate, Reason: f.Kind + ": " + f.Detail})
		}
	}
	// Tell pools about runners that are gone, so they stop counting them;
	// their teardown finds the runner terminated and does nothing.
	for _, d := range told {
		_ = workflow.SignalExternalWorkflow(ctx, d.Pool, "", SignalRunnerAction, RunnerAction{
			RunnerID: d.RunnerID, Action: d.Action, Policy: d.Policy, Actor: ActorUglyFox, Reason: d.Reason,
		}).Get(ctx, nil)
	}

	now := workflow.Now(ctx)
	records := make([]activities.AuditEntry, 0, len(res.Findings))
	for _, f := range res.Findings {
		after := activities.AuditState{Outcome: f.Outcome, Error: f.Error}
		if f.Error == "" && (f.Action == ReconcileMarkTerminated || f.Outcome == "terminated") {
			after.State = store.StateTerminated
		}
		records = append(records, activities.AuditEntry{
			At: now, Actor: ActorUglyFox, Action: f.Action, Egg: f.Egg, RunnerID: f.RunnerID, Policy: PolicyReconcile,
			Reason: f.Kind + ": " + f.Detail, Before: activities.AuditState{State: f.State}, After: after,
		})
		if f.Error != "" {
			res.Failed++
		}
	}
	if err := appendAudits(ctx, records); err != nil {
		return res, err
	}
	return res, nil
}

// PlanReconcile says what reconciliation does about each finding.
func PlanReconcile(findings []activities.Finding) []ReconcileFinding {
	out := make([]ReconcileFinding, 0, len(findings))
	for _, f := range findings {
		rf := ReconcileFinding{Finding: f, Action: ReconcileTerminate}
		switch f.Kind {
		case activities.FindingUnowned:
			rf.Action = ReconcileReap
		case activities.FindingRowOrphan:
			rf.Action = ReconcileMarkTerminated
		}
		out = append(out, rf)
	}
	return out
}

// markTerminated records a runner with nothing left as terminated, through
// terminating where the lifecycle asks for it.
func markTerminated(ctx workflow.Context, runnerID string, from store.RunnerState, reason string) error {
	if from != store.StateFailed && from != store.StateTerminating {
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateTerminating, Reason: reason, Actor: ActorUglyFox}); err != nil {
			return fmt.Errorf("mark %s terminating: %w", runnerID, err)
		}
	}
	if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateTerminated, Reason: reason, Actor: ActorUglyFox}); err != nil {
		return fmt.Errorf("mark %s terminated: %w", runnerID, err)
	}
	return nil
}
