package workflows

import "go.temporal.io/sdk/client"

func startOpts(id string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{ID: id, TaskQueue: TaskQueueMotherGoose}
}
