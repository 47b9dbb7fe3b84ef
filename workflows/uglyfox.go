package workflows

import (
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/internal/store"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Prune is one UglyFox policy pass: read every runner that is not
// terminated (in pages) and what probes saw of their machines, evaluate the
// policies (Evaluate), and act. A pool's runners are acted on only through
// their pool (SignalRunnerAction), so pool and UglyFox never race; a
// runner made for one job is paused in GitLab, checked for a running job
// and torn down with DeprovisionRunner. Each action is audited.
func Prune(ctx workflow.Context, in contract.PruneInput) (contract.PruneResult, error) {
	var a *activities.Activities
	dry := in.DryRun || in.Policy.DryRun
	res := contract.PruneResult{DryRun: dry, Decisions: []contract.Decision{}}
	eggs, err := loadEggs(ctx)
	if err != nil {
		return res, err
	}
	pageSize := in.PageSize
	if pageSize <= 0 {
		pageSize = contract.DefaultPrunePage
	}
	var runners []activities.RunnerView
	heartbeats := map[string]activities.Heartbeat{}
	for after := ""; ; {
		var page activities.RunnerPage
		if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.ListRunnerViews, activities.RunnerPageInput{After: after, Limit: pageSize}).Get(ctx, &page); err != nil {
			return res, fmt.Errorf("read runners after %q: %w", after, err)
		}
		runners = append(runners, page.Runners...)
		for _, h := range page.Heartbeats {
			heartbeats[h.RunnerID] = h
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	res.Runners = len(runners)
	decisions := Evaluate(workflow.Now(ctx), in.Policy, runners, heartbeats, eggs)
	if decisions == nil {
		decisions = []contract.Decision{}
	}
	workflow.GetLogger(ctx).Info("policy pass evaluated", "runners", len(runners), "decisions", len(decisions), "dry_run", dry)
	if dry {
		res.Decisions = decisions
		return res, nil
	}
	act(ctx, decisions, eggs)
	if err := audit(ctx, decisions); err != nil {
		return res, err
	}
	if keep := in.Policy.Audit.Retention.D(); keep > 0 {
		before := workflow.Now(ctx).Add(-keep)
		if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.ExpireAudit, before).Get(ctx, &res.ExpiredAudit); err != nil {
			return res, fmt.Errorf("expire audit records: %w", err)
		}
	}
	res.Decisions = decisions
	for _, d := range decisions {
		if d.Error != "" {
			res.Failed++
		}
	}
	return res, nil
}

func loadEggs(ctx workflow.Context) (map[string]activities.EggPolicy, error) {
	var a *activities.Activities
	var list []activities.EggPolicy
	if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.ListEggPolicies).Get(ctx, &list); err != nil {
		return nil, fmt.Errorf("read egg configurations: %w", err)
	}
	eggs := make(map[string]activities.EggPolicy, len(list))
	for _, e := range list {
		eggs[e.Name] = e
	}
	return eggs, nil
}

// act carries decisions out, all at once, and records in each what came of
// it. Pools get a RunnerAction; a runner without a pool (or whose pool is
// not running, for a termination) is paused in GitLab, checked for a
// running job unless forced, and torn down with DeprovisionRunner.
func act(ctx workflow.Context, ds []contract.Decision, eggs map[string]activities.EggPolicy) {
	var a *activities.Activities
	// 1. Requests to pools.
	signals := make([]workflow.Future, len(ds))
	for i := range ds {
		d := &ds[i]
		if d.Action == contract.ActionNotify || d.Pool == "" {
			continue
		}
		signals[i] = workflow.SignalExternalWorkflow(ctx, d.Pool, "", contract.SignalRunnerAction, contract.RunnerAction{
			RunnerID: d.RunnerID, Action: d.Action, Policy: d.Policy, Actor: contract.ActorUglyFox, Reason: d.Reason,
		})
	}
	retire := make([]bool, len(ds))
	for i := range ds {
		d := &ds[i]
		switch {
		case d.Action == contract.ActionNotify:
			d.Outcome = "recorded"
		case signals[i] != nil:
			err := signals[i].Get(ctx, nil)
			var gone *temporal.UnknownExternalWorkflowExecutionError
			switch {
			case err == nil:
				d.Outcome = "requested from " + d.Pool
			case errors.As(err, &gone) && d.Action == contract.ActionTerminate:
				retire[i] = true // no pool holds it any more
			case errors.As(err, &gone):
				d.Outcome = "skipped: pool " + d.Pool + " is not running"
			default:
				d.Error = "signal " + d.Pool + ": " + err.Error()
			}
		case d.Action == contract.ActionDemote:
			d.Outcome = "skipped: only a pool demotes its runners"
		default:
			retire[i] = true
		}
	}
	// 2. Race-free teardown: pause, check for a running job, deprovision.
	checks := make([]workflow.Future, len(ds))
	for i := range ds {
		if !retire[i] {
			continue
		}
		d := &ds[i]
		egg, ok := eggs[d.Egg]
		if !ok {
			d.Error = "egg " + d.Egg + " has no stored configuration: its GitLab is unknown"
			retire[i] = false
			continue
		}
		checks[i] = workflow.ExecuteActivity(gitlabCtx(ctx), a.PauseForRetire, activities.RetireCheckInput{
			GitLab: egg.GitLab, GitLabRunnerID: d.GitLabRunnerID, Force: d.Force, RunnerID: d.RunnerID,
		})
	}
	children := make([]workflow.ChildWorkflowFuture, len(ds))
	for i := range ds {
		if checks[i] == nil {
			continue
		}
		d := &ds[i]
		var chk activities.RetireCheck
		if err := checks[i].Get(ctx, &chk); err != nil {
			d.Error = "pause in GitLab: " + err.Error()
			continue
		}
		if chk.Busy {
			d.Outcome = "skipped: the runner is running a job"
			continue
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: contract.DeprovisionWorkflowID(d.RunnerID), TaskQueue: contract.TaskQueueMotherGoose,
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		})
		children[i] = workflow.ExecuteChildWorkflow(cctx, contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
			RunnerID: d.RunnerID, GitLab: eggs[d.Egg].GitLab, Reason: d.Policy + ": " + d.Reason, Actor: contract.ActorUglyFox,
		})
	}
	for i := range ds {
		if children[i] == nil {
			continue
		}
		d := &ds[i]
		var res contract.DeprovisionRunnerResult
		err := children[i].Get(ctx, &res)
		switch {
		case temporal.IsWorkflowExecutionAlreadyStartedError(err):
			d.Outcome = "teardown already under way"
		case err != nil:
			d.Error = "deprovision: " + err.Error()
		case res.AlreadyGone:
			d.Outcome = "already terminated"
		default:
			d.Outcome = "terminated"
		}
	}
}

// audit appends one record per decision.
func audit(ctx workflow.Context, ds []contract.Decision) error {
	now := workflow.Now(ctx)
	records := make([]activities.AuditEntry, 0, len(ds))
	for _, d := range ds {
		// The state after is what the decision left: terminated, or
		// terminating while a teardown already runs; a request to a pool,
		// a skip and a failure change nothing yet (the pool's own
		// transitions are audited as it carries them out).
		after := activities.AuditState{Outcome: d.Outcome, Error: d.Error, State: d.State}
		switch {
		case d.Error != "":
		case d.Outcome == "terminated" || d.Outcome == "already terminated":
			after.State = store.StateTerminated
		case d.Outcome == "teardown already under way":
			after.State = store.StateTerminating
		}
		if d.Pool != "" && d.Error == "" {
			after.Pool = d.Pool
		}
		records = append(records, activities.AuditEntry{
			At: now, Actor: contract.ActorUglyFox, Action: d.Action, Egg: d.Egg, RunnerID: d.RunnerID, Policy: d.Policy, Reason: d.Reason,
			Before: activities.AuditState{State: d.State, Pool: d.Pool}, After: after,
		})
	}
	return appendAudits(ctx, records)
}

// auditBatch bounds the records one activity appends.
const auditBatch = 500

func appendAudits(ctx workflow.Context, records []activities.AuditEntry) error {
	var a *activities.Activities
	for start := 0; start < len(records); start += auditBatch {
		end := min(start+auditBatch, len(records))
		if err := workflow.ExecuteLocalActivity(storeCtx(ctx), a.AppendAudits, records[start:end]).Get(ctx, nil); err != nil {
			return fmt.Errorf("append audit records: %w", err)
		}
	}
	return nil
}

// uglyfoxSurveyCtx runs the reconciliation survey: long, heartbeating.
func uglyfoxSurveyCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute,
			MaximumAttempts: 3,
		},
	})
}
