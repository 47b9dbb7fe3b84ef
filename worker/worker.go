// Package worker builds the Temporal workers of Gosling's task queues and
// registers their workflows and activities.
package worker

import (
	"fmt"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Queues lists the task queues a worker can serve.
var Queues = []string{workflows.TaskQueueMotherGoose, workflows.TaskQueueUglyFox}

// Options tune a worker.
type Options struct {
	// MaxConcurrentActivities bounds parallel side effects (OpenTofu runs
	// are the heavy ones); 0 keeps the SDK default.
	MaxConcurrentActivities int
}

// New builds a worker for a task queue with its workflows and activities.
func New(c client.Client, queue string, acts *activities.Activities, opts Options) (worker.Worker, error) {
	wo := worker.Options{MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities}
	switch queue {
	case workflows.TaskQueueMotherGoose:
		w := worker.New(c, queue, wo)
		Register(w, acts)
		return w, nil
	case workflows.TaskQueueUglyFox:
		w := worker.New(c, queue, wo)
		RegisterUglyFox(w, acts)
		return w, nil
	}
	return nil, fmt.Errorf("unknown task queue %q: use %v", queue, Queues)
}

// Register adds the MotherGoose workflows and the activities to a registry
// (a worker, a replayer or a test environment).
func Register(r interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
	RegisterActivity(a interface{})
}, acts *activities.Activities) {
	for _, wf := range MotherGooseWorkflows() {
		r.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{})
	}
	if acts != nil {
		r.RegisterActivity(acts)
	}
}

// MotherGooseWorkflows lists the workflows of the mothergoose task queue.
func MotherGooseWorkflows() []any {
	return []any{workflows.ProvisionRunner, workflows.DeprovisionRunner, workflows.Pool, workflows.RotateRunnerTokens}
}

// RegisterUglyFox adds the UglyFox workflows and the activities to a
// registry. Their teardowns (DeprovisionRunner) run on the mothergoose queue.
func RegisterUglyFox(r interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
	RegisterActivity(a interface{})
}, acts *activities.Activities) {
	for _, wf := range UglyFoxWorkflows() {
		r.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{})
	}
	if acts != nil {
		r.RegisterActivity(acts)
	}
}

// UglyFoxWorkflows lists the workflows of the uglyfox task queue.
func UglyFoxWorkflows() []any {
	return []any{workflows.Prune, workflows.Reconcile}
}
