package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gosling-ci/gosling/contract"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// EnsureEggRunner asks the EggRunner workflow of an egg and runner shape
// for the GitLab runner the egg's machines of that shape share, with one
// UpdateWithStart: the workflow is started when none runs (its fixed ID
// makes concurrent callers join one), and its update handler creates the
// runner on the first call and returns it on every call. Errors: the
// workflow's (GitLab refusing the runner) or Temporal's.
func (m *Operations) EnsureEggRunner(ctx context.Context, in contract.EggRunnerInput) (contract.EggRunner, error) {
	var out contract.EggRunner
	tc := m.Temporal()
	if tc == nil {
		return out, errNoTemporal
	}
	key := in.Shape.Key()
	in.Runner = nil
	start := tc.NewWithStartWorkflowOperation(contract.EggRunnerStartOptions(in.Egg, key), contract.WorkflowEggRunner, in)
	h, err := tc.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: contract.UpdateEnsureEggRunner, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return out, fmt.Errorf("ask the shared runner of egg %s (shape %s): %w", in.Egg, key, err)
	}
	if err := h.Get(ctx, &out); err != nil {
		return out, fmt.Errorf("shared runner of egg %s (shape %s): %w", in.Egg, key, err)
	}
	return out, nil
}

// EggRunners returns the shared GitLab runners of the running EggRunner
// workflows of eggs (every egg when eggs is empty), ordered by workflow
// ID: one visibility list of the running EggRunner workflows, then a query
// (contract.QueryEggRunner) per workflow of those eggs. A workflow whose
// runner is not made yet is left out. Errors: Temporal's.
func (m *Operations) EggRunners(ctx context.Context, eggs []string) ([]contract.EggRunnerOf, error) {
	tc := m.Temporal()
	if tc == nil {
		return nil, errNoTemporal
	}
	var ids []string
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			PageSize: poolListPage, NextPageToken: token,
			Query: fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", contract.WorkflowEggRunner),
		})
		if err != nil {
			return nil, fmt.Errorf("list shared runners: %w", err)
		}
		for _, ex := range resp.GetExecutions() {
			id := ex.GetExecution().GetWorkflowId()
			if len(eggs) == 0 || slices.ContainsFunc(eggs, func(egg string) bool {
				return strings.HasPrefix(id, contract.EggRunnerWorkflowID(egg, ""))
			}) {
				ids = append(ids, id)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			break
		}
	}
	slices.Sort(ids)
	out := []contract.EggRunnerOf{}
	for _, id := range ids {
		v, err := tc.QueryWorkflow(ctx, id, "", contract.QueryEggRunner)
		if err != nil {
			var nf *serviceerror.NotFound
			if errors.As(err, &nf) {
				continue // ended since it was listed
			}
			return nil, fmt.Errorf("ask shared runner %s: %w", id, err)
		}
		var st contract.EggRunnerStatus
		if err := v.Get(&st); err != nil {
			return nil, fmt.Errorf("decode shared runner %s: %w", id, err)
		}
		egg, ok := contract.EggOfEggRunnerWorkflow(id)
		if st.Runner == nil || !ok {
			continue
		}
		out = append(out, contract.EggRunnerOf{Egg: egg, Runner: *st.Runner})
	}
	return out, nil
}
