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

// The UglyFox passes recorded on the dev server (internal/e2e, `make
// histories`) must replay against today's code. They live in a folder of
// their own, beside the MotherGoose histories.
func TestReplayUglyFoxHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "histories", "uglyfox", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d recorded UglyFox histories, want prune and reconcile: run `make histories`", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
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
			r.RegisterWorkflow(Prune)
			r.RegisterWorkflow(Reconcile)
			r.RegisterWorkflow(DeprovisionRunner)
			err = r.ReplayWorkflowHistoryWithOptions(log.NewStructuredLogger(slog.New(slog.DiscardHandler)), h,
				worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: rec.WorkflowID, RunID: rec.RunID}})
			if err != nil {
				t.Fatalf("replay %s: %v", f, err)
			}
		})
	}
}
