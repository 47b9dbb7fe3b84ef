// Package worker builds the Temporal workers of Gosling's task queues and
// registers their workflows, under the names of package contract, and
// their activities.
package worker

import (
	"fmt"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/workflows"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Queues lists the task queues a worker can serve.
var Queues = []string{contract.TaskQueueMotherGoose, contract.TaskQueueUglyFox}

// Options tune a worker.
type Options struct {
	// MaxConcurrentActivities bounds parallel side effects (OpenTofu runs
	// are the heavy ones); 0 keeps the SDK default.
	MaxConcurrentActivities int
	// Identity names the worker to Temporal (the SDK's pid@host when
	// empty); LocalStateIdentity makes one that says its OpenTofu state is
	// on its own disk.
	Identity string
}

// New builds a worker for a task queue with its workflows and activities.
// It fails for a queue that is not one of Queues.
func New(c client.Client, queue string, acts *activities.Activities, opts Options) (worker.Worker, error) {
	wfs, ok := Workflows(queue)
	if !ok {
		return nil, fmt.Errorf("unknown task queue %q: use %v", queue, Queues)
	}
	w := worker.New(c, queue, worker.Options{MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities, Identity: opts.Identity})
	register(w, wfs, acts)
	return w, nil
}

// Registry is what workflows and activities are registered with: a worker,
// a replayer or a test environment.
type Registry interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
	RegisterActivity(a interface{})
}

// Workflow is a workflow function and the contract name it is registered
// and started under.
type Workflow struct {
	Name string
	Fn   any
}

// Workflows lists the workflows of a task queue; ok is false for a queue
// Gosling does not serve.
func Workflows(queue string) (wfs []Workflow, ok bool) {
	switch queue {
	case contract.TaskQueueMotherGoose:
		return []Workflow{
			{contract.WorkflowProvisionRunner, workflows.ProvisionRunner},
			{contract.WorkflowDeprovisionRunner, workflows.DeprovisionRunner},
			{contract.WorkflowDrainRunner, workflows.DrainRunner},
			{contract.WorkflowPool, workflows.Pool},
			{contract.WorkflowGate, workflows.Gate},
			{contract.WorkflowRotateRunnerTokens, workflows.RotateRunnerTokens},
			{contract.WorkflowSelfManagementJob, workflows.SelfManagementJob},
			{contract.WorkflowNestUpdate, workflows.NestUpdate},
			{contract.WorkflowRunnerImageUpdate, workflows.RunnerImageUpdate},
			{contract.WorkflowCustomJob, workflows.CustomJob},
			{contract.WorkflowSweep, workflows.Sweep},
			{contract.WorkflowAddProjectHook, workflows.AddProjectHook},
			{contract.WorkflowEggRunner, workflows.EggRunner},
		}, true
	case contract.TaskQueueUglyFox:
		// Their teardowns (DeprovisionRunner) run on the mothergoose queue.
		return []Workflow{
			{contract.WorkflowPrune, workflows.Prune},
			{contract.WorkflowReconcile, workflows.Reconcile},
		}, true
	}
	return nil, false
}

// Register adds the MotherGoose workflows and the activities to a registry.
func Register(r Registry, acts *activities.Activities) {
	wfs, _ := Workflows(contract.TaskQueueMotherGoose)
	register(r, wfs, acts)
}

// RegisterUglyFox adds the UglyFox workflows and the activities to a
// registry.
func RegisterUglyFox(r Registry, acts *activities.Activities) {
	wfs, _ := Workflows(contract.TaskQueueUglyFox)
	register(r, wfs, acts)
}

func register(r Registry, wfs []Workflow, acts *activities.Activities) {
	for _, wf := range wfs {
		r.RegisterWorkflowWithOptions(wf.Fn, workflow.RegisterOptions{Name: wf.Name})
	}
	if acts != nil {
		r.RegisterActivity(acts)
	}
}
