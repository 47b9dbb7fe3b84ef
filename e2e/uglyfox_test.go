package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
	gworker "github.com/gosling-ci/gosling/worker"
	"go.temporal.io/sdk/client"
)

// startUglyFox runs an in-process uglyfox worker beside the stack's
// mothergoose worker, and stores the egg's configuration, as the API does.
func startUglyFox(t testing.TB, s *Stack, eggs ...fly.Egg) {
	t.Helper()
	w, err := gworker.New(s.Client, contract.TaskQueueUglyFox, s.Acts, gworker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	for _, e := range eggs {
		spec, _ := json.Marshal(e)
		if err := s.Store.PutEggConfig(context.Background(), store.EggConfig{Name: e.Name, Version: "v1", Spec: spec, UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
}

// provisionActive makes a runner ahead of demand and waits until it is active.
func provisionActive(t *testing.T, ctx context.Context, s *Stack, egg fly.Egg, id string) contract.ProvisionRunnerResult {
	t.Helper()
	run, err := s.ProvisionPool(ctx, egg, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil || res.State != "active" {
		t.Fatalf("provision %s: %+v %v", id, res, err)
	}
	return res
}

// applyStray applies a local machine in a workspace no store row knows, the
// way a lost message or a crashed operator leaves one behind.
func applyStray(t *testing.T, ctx context.Context, s *Stack, id string) {
	t.Helper()
	cfg := agentapi.Config{RunnerID: id, Egg: "web", Deployment: deployment, GitLabURL: s.GitLab.URL(), TokenRef: "local://runners/" + id + "/token", SecretsDir: s.Local.Dir(),
		Runner: agentapi.RunnerConfig{Binary: s.GitLabRunner, Executor: agentapi.ExecutorShell}}
	m := tofu.Machine{
		RunnerID: id, Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: tofu.PowerRunning,
		CPU: 1, MemoryMiB: 1024, DiskGiB: 10,
		Agent: cfg, AgentBinary: s.Gosling, StateDir: s.Tofu.StateDir(),
	}
	vars, err := m.Variables()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tofu.Apply(ctx, tofu.ApplyRequest{Workspace: id, Module: m.Module(), Vars: vars}); err != nil {
		t.Fatal(err)
	}
}

func runReconcile(t *testing.T, ctx context.Context, s *Stack, name string, in contract.ReconcileInput) (contract.ReconcileResult, client.WorkflowRun) {
	t.Helper()
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: contract.ReconcileWorkflowID(name), TaskQueue: contract.TaskQueueUglyFox}, contract.WorkflowReconcile, in)
	if err != nil {
		t.Fatal(err)
	}
	var res contract.ReconcileResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return res, run
}

func findingsOf(res contract.ReconcileResult) string {
	var parts []string
	for _, f := range res.Findings {
		s := f.RunnerID + ":" + f.Kind + ":" + f.Action
		if f.Error != "" {
			s += ":error=" + f.Error
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// Behind Gosling's back a runner's agent process is killed, another
// runner is deleted in GitLab, a machine is applied that no store row
// knows and a GitLab runner is made that nothing else knows. One
// reconciliation pass heals all four, and the audit log records each; a
// dry run before it only reports, and a pass after it finds nothing.
func TestUglyFoxReconcileHeals(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	startUglyFox(t, s, egg)
	healthy := provisionActive(t, ctx, s, egg, "web-ok")
	killed := provisionActive(t, ctx, s, egg, "web-killed")
	// The egg's machines share one GitLab runner per shape: web-unlisted's
	// shape (one more tag) gives it a GitLab runner of its own to delete.
	other := egg
	other.Runner.Tags = append(slices.Clone(egg.Runner.Tags), "unlisted")
	unlisted := provisionActive(t, ctx, s, other, "web-unlisted")
	if unlisted.GitLabRunnerID == healthy.GitLabRunnerID {
		t.Fatalf("web-unlisted shares GitLab runner %d with web-ok", unlisted.GitLabRunnerID)
	}

	// 1. Kill an agent process.
	st := agent.Inspect(s.MachineDir(killed.RunnerID))
	if !st.Alive {
		t.Fatalf("agent of %s = %+v", killed.RunnerID, st)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for agent.Inspect(s.MachineDir(killed.RunnerID)).Alive {
		select {
		case <-ctx.Done():
			t.Fatal("killed agent still alive")
		case <-time.After(20 * time.Millisecond):
		}
	}
	// 2. Delete a runner in GitLab's UI.
	s.GitLab.DeleteRunnerBehindBack(unlisted.GitLabRunnerID)
	// 3. A machine with no store row.
	applyStray(t, ctx, s, "web-stray")
	strayPID := agent.Inspect(s.MachineDir("web-stray")).PID
	// 3b. A machine whose OpenTofu state was lost (a worker's disk gone):
	// only its labels tell it is there.
	applyStray(t, ctx, s, "web-stateless")
	if err := os.RemoveAll(s.Tofu.WorkspaceDir("web-stateless")); err != nil {
		t.Fatal(err)
	}
	// 4. A GitLab runner with nothing behind it.
	gl, err := gitlab.New(s.GitLab.URL(), s.GitLab.Token())
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := gl.CreateRunner(ctx, gitlab.RunnerSpec{
		Type: gitlab.RunnerTypeProject, ProjectID: s.Project.ID, Description: contract.RunnerDescription("web", "web-ghost"), Tags: []string{"docker"},
	})
	if err != nil {
		t.Fatal(err)
	}

	want := "web-ghost:unowned:reap web-killed:machine-gone:terminate web-stateless:unowned:reap web-stray:unowned:reap web-unlisted:gitlab-gone:terminate"
	dry, _ := runReconcile(t, ctx, s, "dry", contract.ReconcileInput{Policy: fly.DefaultUglyFox(), DryRun: true})
	if got := findingsOf(dry); got != want || !dry.DryRun {
		t.Fatalf("dry run findings = %s\nwant %s", got, want)
	}
	if _, ok := s.GitLab.Runner(ghost.ID); !ok {
		t.Fatal("a dry run deleted a GitLab runner")
	}

	res, run := runReconcile(t, ctx, s, "heal", contract.ReconcileInput{Policy: fly.DefaultUglyFox()})
	if got := findingsOf(res); got != want || res.Failed != 0 {
		t.Fatalf("findings = %s (failed %d)\nwant %s", got, res.Failed, want)
	}
	// GitLab: the egg's shared runner of web-ok and web-killed, and the
	// ghost (web-unlisted's was deleted).
	if res.GitLabRunners != 2 || res.Workspaces != 4 || res.Machines != 4 {
		t.Errorf("seen: %d GitLab runners, %d workspaces, %d labelled machines; want 2, 4 and 4", res.GitLabRunners, res.Workspaces, res.Machines)
	}
	writeHistory(t, s, "uglyfox/reconcile", run.GetID(), run.GetRunID())

	// Healed: both broken runners terminated, nothing of theirs left.
	for _, id := range []string{killed.RunnerID, unlisted.RunnerID} {
		assertGone(t, ctx, s, id)
	}
	if _, ok := s.GitLab.Runner(ghost.ID); ok {
		t.Error("the ghost GitLab runner is still there")
	}
	if ws, _ := s.Tofu.Workspaces(); len(ws) != 1 || ws[0].Name != healthy.RunnerID {
		t.Errorf("workspaces left = %+v, want only %s", ws, healthy.RunnerID)
	}
	if syscall.Kill(strayPID, 0) == nil && agent.Inspect(s.MachineDir("web-stray")).Alive {
		t.Error("the stray machine's agent still runs")
	}
	machines, err := agent.FindLocalMachines(deployment, filepath.Join(s.Tofu.StateDir(), "machines"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range machines {
		if m.RunnerID != healthy.RunnerID {
			t.Errorf("machine %s still runs after reconciliation: processes %v", m.RunnerID, m.PIDs)
		}
	}
	if r, err := s.Store.GetRunner(ctx, healthy.RunnerID); err != nil || r.State != store.StateActive {
		t.Errorf("healthy runner = %+v, %v", r, err)
	}

	// Audited, each.
	records, err := s.Store.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range records {
		if a.Actor == contract.ActorUglyFox && !activities.IsLifecycleAction(a.Action) {
			got = append(got, fmt.Sprintf("%s:%s:%s:%s", a.RunnerID, a.Action, a.Policy, a.After))
		}
	}
	sort.Strings(got)
	if len(got) != 5 || !strings.Contains(strings.Join(got, " "), `web-killed:terminate:reconcile:{"state":"terminated","outcome":"terminated"}`) {
		t.Errorf("audit =\n%s", strings.Join(got, "\n"))
	}

	again, _ := runReconcile(t, ctx, s, "again", contract.ReconcileInput{Policy: fly.DefaultUglyFox()})
	if len(again.Findings) != 0 {
		t.Errorf("second pass found %s", findingsOf(again))
	}

	// The schedules: made, then updated in place from a changed config.
	uf := fly.DefaultUglyFox()
	if err := mothergoose.EnsureUglyFoxSchedules(ctx, s.Client.ScheduleClient(), uf); err != nil {
		t.Fatal(err)
	}
	uf.Schedule = "*/7 * * * *"
	if err := mothergoose.EnsureUglyFoxSchedules(ctx, s.Client.ScheduleClient(), uf); err != nil {
		t.Fatal(err)
	}
	d, err := s.Client.ScheduleClient().GetHandle(ctx, contract.ScheduleIDPrune).Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); !ok || a.TaskQueue != contract.TaskQueueUglyFox {
		t.Errorf("prune schedule action = %+v", d.Schedule.Action)
	}
	if cal := d.Schedule.Spec.Calendars; len(cal) != 1 || len(cal[0].Minute) != 1 || cal[0].Minute[0].Step != 7 {
		t.Errorf("prune schedule spec = %+v, want every 7 minutes", d.Schedule.Spec)
	}
}

// A policy pass on the real stack: a runner whose failures reach the
// threshold is paused in GitLab and torn down, and the pass is audited.
func TestUglyFoxPruneTerminatesFailedRunner(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	startUglyFox(t, s, egg)
	ok := provisionActive(t, ctx, s, egg, "web-fine")
	bad := provisionActive(t, ctx, s, egg, "web-flaky")
	r, err := s.Store.GetRunner(ctx, bad.RunnerID)
	if err != nil {
		t.Fatal(err)
	}
	r.Failures = 3
	if err := s.Store.UpdateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: contract.PruneWorkflowID("e2e"), TaskQueue: contract.TaskQueueUglyFox},
		contract.WorkflowPrune, contract.PruneInput{Policy: fly.DefaultUglyFox()})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.PruneResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Decisions) != 1 || res.Decisions[0].RunnerID != bad.RunnerID || res.Decisions[0].Outcome != "terminated" {
		t.Fatalf("decisions = %+v", res.Decisions)
	}
	writeHistory(t, s, "uglyfox/prune", run.GetID(), run.GetRunID())
	assertGone(t, ctx, s, bad.RunnerID)
	if r, err := s.Store.GetRunner(ctx, ok.RunnerID); err != nil || r.State != store.StateActive {
		t.Errorf("healthy runner = %+v, %v", r, err)
	}
	hist, _ := s.Store.RunnerHistory(ctx, bad.RunnerID)
	if len(hist) == 0 || hist[len(hist)-1].Actor != contract.ActorUglyFox {
		t.Errorf("history = %+v", hist)
	}
	all, _ := s.Store.ListAudit(ctx, store.AuditFilter{RunnerID: bad.RunnerID})
	var records []store.AuditRecord
	for _, r := range all {
		// Besides the lifecycle, a terminated runner's cost is settled.
		if !activities.IsLifecycleAction(r.Action) && r.Action != mothergoose.AuditCostSettled {
			records = append(records, r)
		}
	}
	if len(records) != 1 || records[0].Policy != contract.PolicyFailed || records[0].Actor != contract.ActorUglyFox {
		t.Errorf("audit = %+v", records)
	}
}

// assertGone checks that nothing of one runner is left: GitLab runner,
// workspace, agent process, token; and that it is recorded terminated.
func assertGone(t *testing.T, ctx context.Context, s *Stack, runnerID string) {
	t.Helper()
	for _, r := range s.GitLab.Runners() {
		if r.Description == contract.RunnerDescription("web", runnerID) {
			t.Errorf("GitLab runner of %s left: %+v", runnerID, r)
		}
	}
	if ws, _ := s.Tofu.Workspaces(); slices.ContainsFunc(ws, func(w tofu.Workspace) bool { return w.Name == runnerID }) {
		t.Errorf("workspace of %s left", runnerID)
	}
	if st := agent.Inspect(s.MachineDir(runnerID)); st.Alive {
		t.Errorf("agent process of %s left: %+v", runnerID, st)
	}
	if _, err := os.Stat(s.MachineDir(runnerID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("machine directory of %s left: %v", runnerID, err)
	}
	if _, err := s.Secrets.Resolve(ctx, fly.SecretRef("local://runners/"+runnerID+"/token")); !errors.Is(err, secretstore.ErrNotFound) && !errors.Is(err, secretstore.ErrKeyNotFound) {
		t.Errorf("token of %s left: %v", runnerID, err)
	}
	if r, err := s.Store.GetRunner(ctx, runnerID); err != nil || r.State != store.StateTerminated {
		t.Errorf("store = %+v, %v", r, err)
	}
}
