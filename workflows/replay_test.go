package workflows

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// recordedHistory is a history recorded from a real run on the Temporal dev
// server (e2e, `make histories`), with the workflow's IDs.
type recordedHistory struct {
	WorkflowID string          `json:"workflow_id"`
	RunID      string          `json:"run_id"`
	History    json.RawMessage `json:"history"`
}

// Recorded histories must replay against today's workflow code: a change to
// the order of a workflow's commands that is not behind workflow.GetVersion
// fails here.
func TestReplayRecordedHistories(t *testing.T) {
	// UglyFox's passes live in a folder of their own.
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	uf, err := filepath.Glob(filepath.Join("testdata", "histories", "uglyfox", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, uf...)
	if len(files) < 4 || len(uf) < 2 {
		t.Fatalf("found %d recorded histories (%d of UglyFox), want at least 4 (prune and reconcile among them): run `make histories`", len(files), len(uf))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join("testdata", "histories"), f)
		t.Run(rel, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var rec recordedHistory
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			h, err := client.HistoryFromJSON(bytes.NewReader(rec.History), client.HistoryJSONOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflow(ProvisionRunner)
			r.RegisterWorkflow(DeprovisionRunner)
			r.RegisterWorkflow(Pool)
			r.RegisterWorkflow(Gate)
			r.RegisterWorkflow(RotateRunnerTokens)
			r.RegisterWorkflow(Prune)
			r.RegisterWorkflow(Reconcile)
			r.RegisterWorkflow(SelfManagementJob)
			r.RegisterWorkflow(NestUpdate)
			r.RegisterWorkflow(RunnerImageUpdate)
			r.RegisterWorkflow(CustomJob)
			r.RegisterWorkflow(Sweep)
			r.RegisterWorkflow(AddProjectHook)
			r.RegisterWorkflow(EggRunner)
			r.RegisterWorkflow(DrainRunner)
			err = r.ReplayWorkflowHistoryWithOptions(log.NewStructuredLogger(slog.New(slog.DiscardHandler)), h,
				worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: rec.WorkflowID, RunID: rec.RunID}})
			if err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
