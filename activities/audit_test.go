package activities

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// failingOnce fails the second audit append once, after the first was
// written, as a store connection lost mid-batch would.
type failingOnce struct {
	store.Store
	mu    sync.Mutex
	calls int
}

func (f *failingOnce) AppendAudit(ctx context.Context, a store.AuditRecord) (int64, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if n == 2 {
		return 0, errors.New("connection lost")
	}
	return f.Store.AppendAudit(ctx, a)
}

// A retried AppendAudits writes each record once.
func TestAppendAuditsRetryWritesOnce(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := &Activities{Store: &failingOnce{Store: st}}
	batch := []AuditEntry{
		{Actor: "uglyfox", Action: "terminate", RunnerID: "web-1", Reason: "silent"},
		{Actor: "uglyfox", Action: "demote", RunnerID: "web-2", Reason: "idle"},
	}
	wf := func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Millisecond, MaximumAttempts: 3},
		})
		return workflow.ExecuteActivity(ctx, a.AppendAudits, batch).Get(ctx, nil)
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(wf, workflow.RegisterOptions{Name: "audit"})
	env.RegisterActivity(a)
	env.ExecuteWorkflow("audit")
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	recs, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].RunnerID != "web-1" || recs[1].RunnerID != "web-2" {
		t.Errorf("after a retried batch: %+v", recs)
	}
}
