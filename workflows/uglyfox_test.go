package workflows

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// ufEnv is a test environment for the UglyFox workflows that records the
// audit entries, pool requests and teardowns they make.
type ufEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu       sync.Mutex
	audit    []activities.AuditEntry
	signals  []string // pool:runner:action
	deprov   []string // runner IDs
	checks   []string // runner GitLab IDs paused (with ! when forced)
	busyGL   map[int64]bool
	gonePool map[string]bool
	// expiredBefore is the cut-off of the last audit expiry.
	expiredBefore time.Time
}

func newUFEnv(t *testing.T) *ufEnv {
	var s testsuite.WorkflowTestSuite
	e := &ufEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment(), busyGL: map[int64]bool{}, gonePool: map[string]bool{}}
	e.SetStartTime(evalNow)
	e.RegisterWorkflow(Prune)
	e.RegisterWorkflow(Reconcile)
	e.RegisterWorkflow(DeprovisionRunner)
	var a *activities.Activities
	e.RegisterActivity(a)
	e.OnActivity(a.ListEggPolicies, mock.Anything).Return([]activities.EggPolicy{
		{Name: "web", GitLab: fly.GitLab{Host: "gitlab.example.com", Token: "local://gitlab/token"}, ApexMin: 1},
	}, nil)
	e.OnActivity(a.AppendAudits, mock.Anything, mock.Anything).Return(func(_ context.Context, in []activities.AuditEntry) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.audit = append(e.audit, in...)
		return nil
	})
	e.OnActivity(a.ExpireAudit, mock.Anything, mock.Anything).Return(func(_ context.Context, before time.Time) (int64, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.expiredBefore = before
		return 3, nil
	})
	e.OnActivity(a.PauseForRetire, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RetireCheckInput) (activities.RetireCheck, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		mark := ""
		if in.Force {
			mark = "!"
		}
		e.checks = append(e.checks, strconv.FormatInt(in.GitLabRunnerID, 10)+mark)
		return activities.RetireCheck{Busy: e.busyGL[in.GitLabRunnerID] && !in.Force}, nil
	})
	e.OnWorkflow(DeprovisionRunner, mock.Anything, mock.Anything).Return(func(_ workflow.Context, in contract.DeprovisionRunnerInput) (contract.DeprovisionRunnerResult, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if in.Actor != contract.ActorUglyFox {
			t.Errorf("deprovision actor = %q", in.Actor)
		}
		e.deprov = append(e.deprov, in.RunnerID)
		return contract.DeprovisionRunnerResult{RunnerID: in.RunnerID}, nil
	})
	e.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, contract.SignalRunnerAction, mock.Anything).Return(
		func(_, workflowID, _, _ string, arg interface{}) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.gonePool[workflowID] {
				return &temporal.UnknownExternalWorkflowExecutionError{}
			}
			ra := arg.(contract.RunnerAction)
			if ra.Actor != contract.ActorUglyFox || ra.Policy == "" || ra.Reason == "" {
				t.Errorf("runner action %+v lacks actor, policy or reason", ra)
			}
			e.signals = append(e.signals, workflowID+":"+ra.RunnerID+":"+ra.Action)
			return nil
		})
	return e
}

// pages serves runners in pages of size n, as ListRunnerViews does.
func (e *ufEnv) pages(runners []activities.RunnerView, heartbeats []activities.Heartbeat, n int) {
	var a *activities.Activities
	runners = slices.Clone(runners)
	slices.SortFunc(runners, func(x, y activities.RunnerView) int { return strings.Compare(x.ID, y.ID) })
	e.OnActivity(a.ListRunnerViews, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.RunnerPageInput) (activities.RunnerPage, error) {
		if in.Limit != n {
			return activities.RunnerPage{}, errors.New("unexpected page size")
		}
		start := 0
		for start < len(runners) && runners[start].ID <= in.After {
			start++
		}
		end := min(start+n, len(runners))
		p := activities.RunnerPage{Runners: runners[start:end]}
		for _, h := range heartbeats {
			for _, r := range p.Runners {
				if r.ID == h.RunnerID {
					p.Heartbeats = append(p.Heartbeats, h)
				}
			}
		}
		if end-start == n {
			p.Next = runners[end-1].ID
		}
		return p, nil
	})
}

func (e *ufEnv) auditSummary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for _, a := range e.audit {
		parts = append(parts, a.RunnerID+":"+a.Action+":"+a.Policy+"("+string(a.Before.State)+">"+string(a.After.State)+")")
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// pruneFleet is one runner for each kind of decision, and healthy ones.
func pruneFleet() ([]activities.RunnerView, []activities.Heartbeat) {
	runners := []activities.RunnerView{
		poolRunner(1, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) }), // healthy
		poolRunner(2, func(r *activities.RunnerView) {
			r.CreatedAt = evalNow.Add(-80 * time.Hour)
			r.LastJobAt = ago(time.Minute)
		}), // recycle
		poolRunner(3, func(r *activities.RunnerView) { r.Since = evalNow.Add(-2 * time.Hour) }),                      // idle: demote
		poolRunner(4, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) }),                             // silent
		jobRunner("web-a", func(r *activities.RunnerView) { r.Failures = 4; r.Busy = true; r.GitLabRunnerID = 901 }), // failed, busy
		jobRunner("web-b", func(r *activities.RunnerView) { r.CreatedAt = evalNow.Add(-80 * time.Hour); r.GitLabRunnerID = 902 }),
		jobRunner("web-c", func(r *activities.RunnerView) { r.CreatedAt = evalNow.Add(-80 * time.Hour); r.GitLabRunnerID = 903 }),
	}
	hb := []activities.Heartbeat{
		{RunnerID: "web-p1", At: evalNow.Add(-time.Minute)},
		{RunnerID: "web-p4", At: evalNow.Add(-time.Hour)},
	}
	return runners, hb
}

func TestPruneDryRunOnlyReports(t *testing.T) {
	e := newUFEnv(t)
	runners, hb := pruneFleet()
	e.pages(runners, hb, 3)
	e.ExecuteWorkflow(Prune, contract.PruneInput{Policy: fly.DefaultUglyFox(), DryRun: true, PageSize: 3})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res contract.PruneResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || res.Runners != len(runners) {
		t.Fatalf("result = %+v", res)
	}
	want := "web-a:failed:terminate! web-b:old.max_age:terminate web-c:old.max_age:terminate web-p2:old.max_age:recycle web-p3:idle.apex:demote web-p4:heartbeat:terminate!"
	if got := summary(res.Decisions); got != want {
		t.Errorf("decisions = %s\nwant        %s", got, want)
	}
	for _, d := range res.Decisions {
		if d.Outcome != "" || d.Error != "" {
			t.Errorf("dry run acted on %s: %s%s", d.RunnerID, d.Outcome, d.Error)
		}
	}
	if len(e.audit)+len(e.signals)+len(e.deprov)+len(e.checks) > 0 {
		t.Errorf("dry run acted: audit %d, signals %v, deprovisions %v, checks %v", len(e.audit), e.signals, e.deprov, e.checks)
	}
}

// Pool runners are acted on through their pool only; a one-job runner is
// paused, checked and deprovisioned, unless it turns out to be busy; a
// failed one is killed busy or not. Every action is audited.
func TestPruneActs(t *testing.T) {
	e := newUFEnv(t)
	runners, hb := pruneFleet()
	e.pages(runners, hb, contract.DefaultPrunePage)
	e.busyGL[902] = true // GitLab says web-b picked up a job since the store looked
	e.ExecuteWorkflow(Prune, contract.PruneInput{Policy: fly.DefaultUglyFox()})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res contract.PruneResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	sort.Strings(e.signals)
	if got := strings.Join(e.signals, " "); got != "pool/web:web-p2:recycle pool/web:web-p3:demote pool/web:web-p4:terminate" {
		t.Errorf("pool requests = %s", got)
	}
	sort.Strings(e.checks)
	if got := strings.Join(e.checks, " "); got != "901! 902 903" {
		t.Errorf("GitLab checks = %s", got)
	}
	sort.Strings(e.deprov)
	if got := strings.Join(e.deprov, " "); got != "web-a web-c" {
		t.Errorf("deprovisioned = %s", got)
	}
	outcomes := map[string]string{}
	for _, d := range res.Decisions {
		outcomes[d.RunnerID] = d.Outcome + d.Error
	}
	for id, want := range map[string]string{
		"web-a": "terminated", "web-b": "skipped: the runner is running a job", "web-c": "terminated",
		"web-p2": "requested from pool/web", "web-p4": "requested from pool/web",
	} {
		if outcomes[id] != want {
			t.Errorf("%s outcome = %q, want %q", id, outcomes[id], want)
		}
	}
	want := "web-a:terminate:failed(active>terminated) web-b:terminate:old.max_age(active>active) web-c:terminate:old.max_age(active>terminated) " +
		"web-p2:recycle:old.max_age(active>active) web-p3:demote:idle.apex(active>active) web-p4:terminate:heartbeat(active>active)"
	if got := e.auditSummary(); got != want {
		t.Errorf("audit = %s\nwant    %s", got, want)
	}
	if res.Failed != 0 {
		t.Errorf("failed = %d", res.Failed)
	}
}

// A pool that is not running cannot be asked: a runner that must be
// terminated is torn down directly; a recycle waits for the pool.
func TestPrunePoolGone(t *testing.T) {
	e := newUFEnv(t)
	e.gonePool["pool/web"] = true
	e.pages([]activities.RunnerView{
		poolRunner(1, func(r *activities.RunnerView) { r.Failures = 3 }),
		poolRunner(2, func(r *activities.RunnerView) {
			r.CreatedAt = evalNow.Add(-80 * time.Hour)
			r.LastJobAt = ago(time.Minute)
		}),
	}, nil, contract.DefaultPrunePage)
	e.ExecuteWorkflow(Prune, contract.PruneInput{Policy: fly.DefaultUglyFox()})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res contract.PruneResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.deprov, " "); got != "web-p1" {
		t.Errorf("deprovisioned = %s", got)
	}
	if res.Decisions[1].Outcome != "skipped: pool pool/web is not running" {
		t.Errorf("web-p2 outcome = %q", res.Decisions[1].Outcome)
	}
	// The pass also drops audit records past the retention.
	keep := fly.DefaultUglyFox().Audit.Retention.D()
	if keep <= 0 || res.ExpiredAudit != 3 || e.expiredBefore.IsZero() {
		t.Errorf("audit expiry: retention %s, expired %d before %s", keep, res.ExpiredAudit, e.expiredBefore)
	}
}

func TestReconcileActs(t *testing.T) {
	e := newUFEnv(t)
	var a *activities.Activities
	findings := []contract.Finding{
		{Kind: contract.FindingUnowned, RunnerID: "ghost", Egg: "web", GitLabRunnerIDs: []int64{77}, Detail: "GitLab runner with no store row and no machine"},
		{Kind: contract.FindingUnowned, RunnerID: "stray", Workspace: "stray", Detail: "machine (workspace) with no store row"},
		{Kind: contract.FindingMachineGone, RunnerID: "web-a", Egg: "web", State: store.StateActive, WorkflowID: "runner/gitlab.example.com/job/7", StoredGitLabRunnerID: 901, Workspace: "web-a", Detail: "the machine's agent process is dead"},
		{Kind: contract.FindingGitLabGone, RunnerID: "web-p4", Egg: "web", State: store.StateActive, WorkflowID: "pool/web/runner/web-p4", StoredGitLabRunnerID: 104, Workspace: "web-p4", Detail: "the machine's GitLab runner was deleted"},
		{Kind: contract.FindingRowOrphan, RunnerID: "web-p5", Egg: "web", State: store.StateDormant, WorkflowID: "pool/web/runner/web-p5", Detail: "neither a GitLab runner nor a machine"},
		{Kind: contract.FindingStuck, RunnerID: "web-p6", Egg: "web", State: store.StateTerminating, WorkflowID: "pool/web/runner/web-p6", Detail: "terminating since then"},
	}
	e.OnActivity(a.SurveyRunners, mock.Anything, mock.Anything).Return(activities.Survey{GitLabRunners: 3, Workspaces: 3, Rows: 5, Findings: findings}, nil)
	var reaped []string
	e.OnActivity(a.ReapOrphan, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.ReapInput) (activities.ReapResult, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		reaped = append(reaped, in.RunnerID)
		if in.RunnerID == "ghost" && (in.GitLab == nil || in.GitLab.Host != "gitlab.example.com") {
			t.Errorf("ghost reaped without its GitLab: %+v", in)
		}
		return activities.ReapResult{DestroyedWorkspace: in.Workspace, DeletedGitLabRunners: in.GitLabRunnerIDs}, nil
	})
	var moves []string
	e.OnActivity(a.TransitionRunner, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.TransitionInput) (store.Runner, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		moves = append(moves, in.RunnerID+">"+string(in.To))
		return store.Runner{ID: in.RunnerID, State: in.To}, nil
	})
	e.ExecuteWorkflow(Reconcile, contract.ReconcileInput{Policy: fly.DefaultUglyFox()})
	if err := e.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res contract.ReconcileResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	sort.Strings(reaped)
	if got := strings.Join(reaped, " "); got != "ghost stray web-p5" {
		t.Errorf("reaped = %s", got)
	}
	if got := strings.Join(moves, " "); got != "web-p5>terminating web-p5>terminated" {
		t.Errorf("transitions = %s", got)
	}
	sort.Strings(e.signals)
	if got := strings.Join(e.signals, " "); got != "pool/web:web-p4:terminate pool/web:web-p5:terminate" {
		t.Errorf("pool requests = %s", got)
	}
	sort.Strings(e.deprov)
	if got := strings.Join(e.deprov, " "); got != "web-a web-p6" {
		t.Errorf("deprovisioned = %s", got)
	}
	want := "ghost:reap:reconcile(>) stray:reap:reconcile(>) web-a:terminate:reconcile(active>terminated) " +
		"web-p4:terminate:reconcile(active>) web-p5:mark-terminated:reconcile(dormant>terminated) web-p6:terminate:reconcile(terminating>terminated)"
	if got := e.auditSummary(); got != want {
		t.Errorf("audit = %s\nwant    %s", got, want)
	}
	if res.Failed != 0 || len(res.Findings) != len(findings) {
		t.Errorf("result = %+v", res)
	}
}

func TestReconcileDryRun(t *testing.T) {
	e := newUFEnv(t)
	var a *activities.Activities
	e.OnActivity(a.SurveyRunners, mock.Anything, mock.Anything).Return(activities.Survey{Findings: []contract.Finding{
		{Kind: contract.FindingUnowned, RunnerID: "stray", Workspace: "stray"},
	}}, nil)
	p := fly.DefaultUglyFox()
	p.Reconcile.Action = fly.ActionReport
	e.ExecuteWorkflow(Reconcile, contract.ReconcileInput{Policy: p})
	var res contract.ReconcileResult
	if err := e.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if !res.DryRun || len(res.Findings) != 1 || res.Findings[0].Action != contract.ReconcileReap || res.Findings[0].Outcome != "" {
		t.Errorf("result = %+v", res)
	}
	if len(e.audit) != 0 {
		t.Errorf("dry run audited %d records", len(e.audit))
	}
}
