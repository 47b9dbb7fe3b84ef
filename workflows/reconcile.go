package workflows

import (
	"fmt"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/workflow"
)

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
func Reconcile(ctx workflow.Context, in contract.ReconcileInput) (contract.ReconcileResult, error) {
	var a *activities.Activities
	dry := in.DryRun || in.Policy.DryRun || in.Policy.Reconcile.Action == fly.ActionReport
	res := contract.ReconcileResult{DryRun: dry, Findings: []contract.ReconcileFinding{}}
	eggs, err := loadEggs(ctx)
	if err != nil {
		return res, err
	}
	var sv activities.Survey
	if err := workflow.ExecuteActivity(uglyfoxSurveyCtx(ctx), a.SurveyRunners, activities.SurveyInput{}).Get(ctx, &sv); err != nil {
		return res, fmt.Errorf("survey runners: %w", err)
	}
	res.GitLabRunners, res.Workspaces, res.Machines, res.Rows, res.Unreachable = sv.GitLabRunners, sv.Workspaces, sv.Machines, sv.Rows, sv.Unreachable
	res.Findings = PlanReconcile(sv.Findings)
	workflow.GetLogger(ctx).Info("reconciliation surveyed", "gitlab_runners", sv.GitLabRunners, "workspaces", sv.Workspaces,
		"rows", sv.Rows, "findings", len(sv.Findings), "dry_run", dry)
	if dry {
		return res, nil
	}

	// Reaps and row fixes run side by side; terminations go through act.
	reaps := make([]workflow.Future, len(res.Findings))
	var terminate []contract.Decision
	var terminateAt []int
	for i := range res.Findings {
		f := &res.Findings[i]
		switch f.Action {
		case contract.ReconcileReap:
			in := activities.ReapInput{RunnerID: f.RunnerID, GitLabRunnerIDs: f.GitLabRunnerIDs, Workspace: f.Workspace, Machines: f.Machines, TokenRef: f.TokenRef}
			if e, ok := eggs[f.Egg]; ok {
				g := e.GitLab
				in.GitLab = &g
			} else if len(f.GitLabRunnerIDs) > 0 {
				f.Error = "egg " + f.Egg + " has no stored configuration: its GitLab is unknown"
				continue
			}
			reaps[i] = workflow.ExecuteActivity(tofuCtx(ctx), a.ReapOrphan, in)
		case contract.ReconcileMarkTerminated:
			reaps[i] = workflow.ExecuteActivity(secretsCtx(ctx), a.ReapOrphan, activities.ReapInput{RunnerID: f.RunnerID, TokenRef: f.TokenRef})
		default:
			d := contract.Decision{
				RunnerID: f.RunnerID, Egg: f.Egg, State: f.State, GitLabRunnerID: f.StoredGitLabRunnerID,
				Policy: contract.PolicyReconcile, Action: contract.ActionTerminate, Reason: f.Kind + ": " + f.Detail, Force: true,
			}
			// A pool already retiring a stuck runner ignores requests:
			// its teardown is run again directly.
			if f.Kind != contract.FindingStuck && f.State != store.StateFailed {
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
	var told []contract.Decision
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
		if f.Action == contract.ReconcileReap {
			f.Outcome = fmt.Sprintf("reaped (workspace %q destroyed, GitLab runners %v deleted, %d machines terminated by their labels)", out.DestroyedWorkspace, out.DeletedGitLabRunners, len(out.TerminatedMachines))
			continue
		}
		if err := markTerminated(ctx, f.RunnerID, f.State, f.Kind+": "+f.Detail); err != nil {
			f.Error = err.Error()
			continue
		}
		f.Outcome = "marked terminated"
		if pool := PoolOwner(f.Egg, f.RunnerID, f.WorkflowID); pool != "" && f.State != store.StateFailed {
			told = append(told, contract.Decision{RunnerID: f.RunnerID, Egg: f.Egg, Pool: pool, Policy: contract.PolicyReconcile, Action: contract.ActionTerminate, Reason: f.Kind + ": " + f.Detail})
		}
	}
	// Tell pools about runners that are gone, so they stop counting them;
	// their teardown finds the runner terminated and does nothing.
	for _, d := range told {
		_ = workflow.SignalExternalWorkflow(ctx, d.Pool, "", contract.SignalRunnerAction, contract.RunnerAction{
			RunnerID: d.RunnerID, Action: d.Action, Policy: d.Policy, Actor: contract.ActorUglyFox, Reason: d.Reason,
		}).Get(ctx, nil)
	}

	now := workflow.Now(ctx)
	records := make([]activities.AuditEntry, 0, len(res.Findings))
	for _, f := range res.Findings {
		after := activities.AuditState{Outcome: f.Outcome, Error: f.Error}
		if f.Error == "" && (f.Action == contract.ReconcileMarkTerminated || f.Outcome == "terminated") {
			after.State = store.StateTerminated
		}
		records = append(records, activities.AuditEntry{
			At: now, Actor: contract.ActorUglyFox, Action: f.Action, Egg: f.Egg, RunnerID: f.RunnerID, Policy: contract.PolicyReconcile,
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
func PlanReconcile(findings []contract.Finding) []contract.ReconcileFinding {
	out := make([]contract.ReconcileFinding, 0, len(findings))
	for _, f := range findings {
		rf := contract.ReconcileFinding{Finding: f, Action: contract.ReconcileTerminate}
		switch f.Kind {
		case contract.FindingUnowned:
			rf.Action = contract.ReconcileReap
		case contract.FindingRowOrphan:
			rf.Action = contract.ReconcileMarkTerminated
		}
		out = append(out, rf)
	}
	return out
}

// markTerminated records a runner with nothing left as terminated, through
// terminating where the lifecycle asks for it.
func markTerminated(ctx workflow.Context, runnerID string, from store.RunnerState, reason string) error {
	if from != store.StateFailed && from != store.StateTerminating {
		if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateTerminating, Reason: reason, Actor: contract.ActorUglyFox, Policy: contract.PolicyReconcile}); err != nil {
			return fmt.Errorf("mark %s terminating: %w", runnerID, err)
		}
	}
	if err := transitionWith(ctx, activities.TransitionInput{RunnerID: runnerID, To: store.StateTerminated, Reason: reason, Actor: contract.ActorUglyFox, Policy: contract.PolicyReconcile}); err != nil {
		return fmt.Errorf("mark %s terminated: %w", runnerID, err)
	}
	return nil
}
