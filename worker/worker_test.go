package worker

import (
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/gosling-ci/gosling/contract"
)

// Recorded histories name workflow types by the Go function's name, which
// is what the SDK registered before names came from the contract: the two
// must stay equal, or those histories stop replaying.
func TestContractNamesAreTheFunctionNames(t *testing.T) {
	seen := map[string]bool{}
	for _, q := range Queues {
		wfs, ok := Workflows(q)
		if !ok || len(wfs) == 0 {
			t.Fatalf("queue %s has no workflows", q)
		}
		for _, wf := range wfs {
			full := runtime.FuncForPC(reflect.ValueOf(wf.Fn).Pointer()).Name()
			if fn := full[strings.LastIndex(full, ".")+1:]; fn != wf.Name {
				t.Errorf("%s is registered as %q", fn, wf.Name)
			}
			if seen[wf.Name] {
				t.Errorf("%s is registered twice", wf.Name)
			}
			seen[wf.Name] = true
		}
	}
	for _, name := range []string{contract.WorkflowProvisionRunner, contract.WorkflowDeprovisionRunner, contract.WorkflowDrainRunner, contract.WorkflowPool,
		contract.WorkflowRotateRunnerTokens, contract.WorkflowPrune, contract.WorkflowReconcile,
		contract.WorkflowSelfManagementJob, contract.WorkflowNestUpdate, contract.WorkflowRunnerImageUpdate, contract.WorkflowCustomJob, contract.WorkflowSweep} {
		if !seen[name] {
			t.Errorf("contract workflow %s is registered on no queue", name)
		}
	}
	if _, ok := Workflows("nope"); ok {
		t.Error("an unknown queue has workflows")
	}
}
