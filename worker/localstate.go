package worker

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/gosling-ci/gosling/contract"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// localStateMark starts the part of a worker's identity that says where
// its OpenTofu state is when it is on the worker's own disk.
const localStateMark = "tofu-state=local:"

// LocalStateIdentity is the Temporal identity of a mothergoose worker that
// keeps OpenTofu state in stateDir on this host: pid@host, then the state's
// place, so CheckAloneOnLocalState can tell another such worker.
func LocalStateIdentity(stateDir string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%d@%s@%s%s:%s", os.Getpid(), host, localStateMark, host, stateDir)
}

// ErrSecondLocalStateWorker: another mothergoose worker keeps OpenTofu
// state on its own disk.
var ErrSecondLocalStateWorker = fmt.Errorf("another mothergoose worker keeps its OpenTofu state on its own disk")

// CheckAloneOnLocalState refuses a second mothergoose worker on local
// OpenTofu state: the pollers Temporal reports on the mothergoose task
// queue (DescribeTaskQueue, its activity queue; pollers seen within the
// last few minutes) must not include a worker whose identity places its
// local state elsewhere (another host or directory). A worker restarted
// on the same host and state directory is the same state, and passes.
// Temporal being unreachable is an error too: nothing can be checked.
func CheckAloneOnLocalState(ctx context.Context, c client.Client, identity string) error {
	_, mine, ok := strings.Cut(identity, localStateMark)
	if !ok {
		return nil
	}
	resp, err := c.DescribeTaskQueue(ctx, contract.TaskQueueMotherGoose, enumspb.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return fmt.Errorf("check for other workers on local OpenTofu state: %w", err)
	}
	for _, p := range resp.GetPollers() {
		_, theirs, ok := strings.Cut(p.GetIdentity(), localStateMark)
		if ok && theirs != mine {
			return fmt.Errorf("%w (worker %s, seen %s): its machines' states are not shared, so a teardown landing on the wrong worker would leave a machine running. "+
				"Run one mothergoose worker, or share the state: a postgresql database (state backend pg) or state { backend = \"s3\" ... } in MG/config.fly",
				ErrSecondLocalStateWorker, p.GetIdentity(), p.GetLastAccessTime().AsTime().UTC().Format("15:04:05"))
		}
	}
	return nil
}
