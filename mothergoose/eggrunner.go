package mothergoose

import (
	"context"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
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
