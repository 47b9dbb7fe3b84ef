package activities

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/metrics"
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
	st := openSQLiteStore(t)
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

// UglyFox's carried-out decisions are counted by policy, action and a
// bounded outcome, once per record even when the batch is retried; records
// by others are not counted.
func TestAppendAuditsCountsUglyFoxActions(t *testing.T) {
	st := openSQLiteStore(t)
	m := metrics.New()
	a := &Activities{Store: &failingOnce{Store: st}, Metrics: m}
	batch := []AuditEntry{
		{Actor: "uglyfox", Action: "terminate", Policy: "heartbeat", RunnerID: "web-1", After: AuditState{Outcome: "terminated"}},
		{Actor: "uglyfox", Action: "demote", Policy: "idle.apex", RunnerID: "web-2", After: AuditState{Outcome: "requested from pool-web"}},
		{Actor: "uglyfox", Action: "terminate", Policy: "heartbeat", RunnerID: "web-3", After: AuditState{Outcome: "skipped: the runner is running a job"}},
		{Actor: "uglyfox", Action: "reap", Policy: "reconcile", RunnerID: "web-4", After: AuditState{Error: "destroy workspace: exit 1"}},
		{Actor: "ops@example.com", Action: "drain", RunnerID: "web-5"},
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
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var got []string
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(line, "gosling_uglyfox_actions_total{") {
			got = append(got, line)
		}
	}
	want := []string{
		`gosling_uglyfox_actions_total{action="demote",outcome="requested",policy="idle.apex"} 1`,
		`gosling_uglyfox_actions_total{action="reap",outcome="failed",policy="reconcile"} 1`,
		`gosling_uglyfox_actions_total{action="terminate",outcome="done",policy="heartbeat"} 1`,
		`gosling_uglyfox_actions_total{action="terminate",outcome="skipped",policy="heartbeat"} 1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUglyFoxOutcome(t *testing.T) {
	for _, tc := range []struct {
		after AuditState
		want  string
	}{
		{AuditState{Outcome: "terminated"}, OutcomeDone},
		{AuditState{Outcome: "already terminated"}, OutcomeDone},
		{AuditState{Outcome: "marked terminated"}, OutcomeDone},
		{AuditState{Outcome: `reaped (workspace "w" destroyed, GitLab runners [] deleted)`}, OutcomeDone},
		{AuditState{Outcome: "requested from gosling-pool-web"}, OutcomeRequested},
		{AuditState{Outcome: "recorded"}, OutcomeRecorded},
		{AuditState{Outcome: "skipped: pool p is not running"}, OutcomeSkipped},
		{AuditState{Outcome: "terminated", Error: "deprovision: boom"}, OutcomeFailed},
		{AuditState{Error: "signal p: boom"}, OutcomeFailed},
	} {
		if got := UglyFoxOutcome(tc.after); got != tc.want {
			t.Errorf("UglyFoxOutcome(%+v) = %q, want %q", tc.after, got, tc.want)
		}
	}
}

// A rotation's audit record is written once when its local activity runs
// again with the same run and activity IDs, as it does in a workflow task
// that is retried after it ran the local activity.
func TestAuditRotationRunAgainWritesOnce(t *testing.T) {
	ctx := context.Background()
	st := openSQLiteStore(t)
	a := &Activities{Store: st}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	rec := RotationAudit{Actor: "cli:alice", Egg: "web", RunnerID: "web-1", Outcome: "rotated", Version: "2"}
	for range 2 {
		if _, err := env.ExecuteLocalActivity(a.AuditRotation, rec); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := st.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Errorf("%d records after the local activity ran twice, want 1: %+v", len(recs), recs)
	}
}
