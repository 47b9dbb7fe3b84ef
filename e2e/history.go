package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/internal/testbin"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// UpdateHistoriesEnv, when set to 1, makes integration tests write the
// histories of the workflows they ran to workflows/testdata/histories, for
// the replay tests. Run `make histories` after changing a workflow on purpose.
const UpdateHistoriesEnv = "GOSLING_UPDATE_HISTORIES"

func writeHistory(t *testing.T, s *Stack, name, workflowID, runID string) {
	t.Helper()
	if os.Getenv(UpdateHistoriesEnv) != "1" {
		return
	}
	iter := s.Client.GetWorkflowHistory(context.Background(), workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for iter.HasNext() {
		e, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	hist, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	// The workflow's ID is kept with its history: replay must run under the
	// same ID, as workflows derive names from it.
	b, err := json.MarshalIndent(struct {
		WorkflowID string          `json:"workflow_id"`
		RunID      string          `json:"run_id"`
		History    json.RawMessage `json:"history"`
	}{workflowID, h.Events[0].GetWorkflowExecutionStartedEventAttributes().GetOriginalExecutionRunId(), hist}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testbin.Root(), "workflows", "testdata", "histories", name+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d events)", path, len(h.Events))
}
