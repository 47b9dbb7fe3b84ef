package workflows

import (
	"github.com/gosling-ci/gosling/contract"
	"go.temporal.io/sdk/client"
)

func startOpts(id string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: id, TaskQueue: contract.TaskQueueMotherGoose}
}
