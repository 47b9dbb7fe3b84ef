package mothergoose

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// UglyFoxSchedules are the Temporal Schedules that run UglyFox: a policy
// pass on UF's schedule and a reconciliation pass on reconcile's. Each
// carries the policy it was made with; ApplyNest brings them up to date
// whenever the Nest changes.
func UglyFoxSchedules(uf fly.UglyFox) []client.ScheduleOptions {
	mk := func(id, cron, workflowID string, wf string, arg any) client.ScheduleOptions {
		return client.ScheduleOptions{
			ID:   id,
			Spec: client.ScheduleSpec{CronExpressions: []string{cron}},
			Action: &client.ScheduleWorkflowAction{
				ID: workflowID, Workflow: wf, Args: []any{arg}, TaskQueue: contract.TaskQueueUglyFox,
			},
			// A pass that outlives its interval is not doubled.
			Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
			Note:    "made by Gosling from UF/config.fly",
		}
	}
	return []client.ScheduleOptions{
		mk(contract.ScheduleIDPrune, uf.Schedule, contract.PruneWorkflowID("scheduled"), contract.WorkflowPrune, contract.PruneInput{Policy: uf}),
		mk(contract.ScheduleIDReconcile, uf.Reconcile.Schedule, contract.ReconcileWorkflowID("scheduled"), contract.WorkflowReconcile, contract.ReconcileInput{Policy: uf}),
	}
}

// EnsureUglyFoxSchedules creates UglyFox's schedules, or updates them to
// the given configuration when they exist. It is safe to run any number of
// times.
func EnsureUglyFoxSchedules(ctx context.Context, sc client.ScheduleClient, uf fly.UglyFox) error {
	for _, opts := range UglyFoxSchedules(uf) {
		_, err := sc.Create(ctx, opts)
		if err == nil {
			continue
		}
		if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return fmt.Errorf("create schedule %s: %w", opts.ID, err)
		}
		want := opts
		err = sc.GetHandle(ctx, opts.ID).Update(ctx, client.ScheduleUpdateOptions{
			DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				s := in.Description.Schedule
				s.Spec = &want.Spec
				s.Action = want.Action
				if s.Policy == nil {
					s.Policy = &client.SchedulePolicies{}
				}
				s.Policy.Overlap = want.Overlap
				return &client.ScheduleUpdate{Schedule: &s}, nil
			},
		})
		if err != nil {
			return fmt.Errorf("update schedule %s: %w", opts.ID, err)
		}
	}
	return nil
}
