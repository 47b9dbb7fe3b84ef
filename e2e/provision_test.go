package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	os.Setenv("GOSLING_DEPLOYMENT", deployment)
	code := m.Run()
	if survivors := census(); survivors != "" {
		fmt.Fprintf(os.Stderr, "FAIL: machines outlived the tests that made them (killed now):\n%s", survivors)
		code = 1
	}
	testbin.Cleanup()
	os.Exit(code)
}

// census lists the machines of this test run still running, by their
// labels, and kills them.
func census() string {
	machines, err := agent.FindLocalMachines(deployment, "")
	if err != nil {
		return "census failed: " + err.Error() + "\n"
	}
	var b strings.Builder
	for _, m := range machines {
		fmt.Fprintf(&b, "  runner %s of egg %s: processes %v\n", m.RunnerID, m.Egg, m.PIDs)
		if _, err := agent.KillLocalMachine("", m.RunnerID, 10*time.Second); err != nil {
			fmt.Fprintf(&b, "    %v\n", err)
		}
	}
	return b.String()
}

// A job gets a registered runner whose machine is a real process made by
// `tofu apply`; duplicate starts make nothing new; when the job finishes the
// runner is torn down and nothing is left behind.
func TestJobRunnerVM(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	// The runner must not run the job by itself: this test ends it by the
	// job's status signal, as a Job Hook would.
	s.GitLab.FailNext(http.MethodPost, "/jobs/request", http.StatusServiceUnavailable, 1_000_000, false)

	run, jobID, err := s.ProvisionJob(ctx, egg, []string{"docker"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// GitLab retries and duplicate webhooks start the same workflow again.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := s.StartJobRunner(ctx, egg, jobID, nil)
			if err != nil {
				t.Errorf("duplicate start: %v", err)
				return
			}
			if dup.GetRunID() != run.GetRunID() {
				t.Errorf("duplicate start made run %s, first was %s", dup.GetRunID(), run.GetRunID())
			}
		}()
	}
	wg.Wait()
	runnerID := contract.RunnerIDFor("web", run.GetID())
	waitState(t, ctx, s, runnerID, store.StateActive)

	runners := s.GitLab.Runners()
	// The egg's shared runner, not one of the machine's own.
	if len(runners) != 1 || !strings.HasPrefix(runners[0].Description, contract.EggRunnerDescriptionPrefix+"web/") {
		t.Fatalf("GitLab runners = %+v", runners)
	}
	r, err := s.Store.GetRunner(ctx, runnerID)
	if err != nil || r.GitLabRunnerID != runners[0].ID || r.JobID != jobID {
		t.Fatalf("store = %+v, %v", r, err)
	}
	token, err := s.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef))
	if err != nil || token != runners[0].Token || !strings.HasPrefix(token, "glrt-") {
		t.Fatalf("stored token does not match GitLab's (err %v)", err)
	}
	if st := agent.Inspect(s.MachineDir(runnerID)); !st.Alive || st.Stopped {
		t.Fatalf("agent = %+v", st)
	}

	if err := s.Client.SignalWorkflow(ctx, run.GetID(), "", contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if res.Outcome != "job-finished" || res.State != "terminated" || res.Kind != fly.RunnerVM || strings.Join(res.JobTags, ",") != "docker" {
		t.Fatalf("result = %+v", res)
	}
	s.assertNothingLeft(ctx, runnerID)
	hist, _ := s.Store.RunnerHistory(ctx, runnerID)
	if got := transitions(hist); got != "provisioning>registering,registering>active,active>terminating,terminating>terminated" {
		t.Errorf("history = %s", got)
	}
	writeHistory(t, s, "provision_job_vm", run.GetID(), run.GetRunID())
	writeHistory(t, s, "deprovision", contract.DeprovisionWorkflowID(runnerID), "")
}

// A runner made ahead of demand stays until DeprovisionRunner removes it.
func TestPoolRunnerDeprovision(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	run, err := s.ProvisionPool(ctx, egg, "web-pool-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.State != "active" || res.GitLabRunnerID == 0 {
		t.Fatalf("result = %+v", res)
	}
	if st := agent.Inspect(s.MachineDir(res.RunnerID)); !st.Alive {
		t.Fatalf("agent = %+v", st)
	}
	writeHistory(t, s, "provision_pool_vm", run.GetID(), run.GetRunID())
	dres, err := s.Deprovision(ctx, egg, res.RunnerID)
	if err != nil || dres.AlreadyGone {
		t.Fatalf("deprovision: %+v %v", dres, err)
	}
	s.assertNothingLeft(ctx, res.RunnerID)
}

// A serverless runner takes one job and is torn down when it finishes.
func TestServerlessTornDownWhenJobFinishes(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	egg := s.Egg("sls", fly.RunnerAuto) // 1 vCPU, 1GiB, 10m jobs: fits serverless
	// Ended by the job's status signal, not by the runner running it.
	s.GitLab.FailNext(http.MethodPost, "/jobs/request", http.StatusServiceUnavailable, 1_000_000, false)
	run, jobID, err := s.ProvisionJob(ctx, egg, nil, func(in *contract.ProvisionRunnerInput) { in.Egg.Runner.RunUntagged = true })
	if err != nil {
		t.Fatal(err)
	}
	runnerID := contract.RunnerIDFor("sls", run.GetID())
	waitState(t, ctx, s, runnerID, store.StateActive)
	if st := agent.Inspect(s.MachineDir(runnerID)); !st.Alive {
		t.Fatalf("agent = %+v", st)
	}
	if err := s.Client.SignalWorkflow(ctx, run.GetID(), "", contract.SignalJobStatus, contract.JobStatus{JobID: jobID, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Kind != fly.RunnerServerless || res.Outcome != "job-finished" || res.State != "terminated" || !strings.Contains(res.KindReason, "fit local processes") {
		t.Fatalf("result = %+v", res)
	}
	s.assertNothingLeft(ctx, runnerID)
	writeHistory(t, s, "provision_serverless", run.GetID(), run.GetRunID())
}

// A job whose tags the egg's runners do not carry gets nothing.
func TestJobWithForeignTagsGetsNoRunner(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, _, err := s.ProvisionJob(ctx, s.Egg("web", fly.RunnerVM), []string{"docker", "gpu"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "tags-mismatch" || len(s.GitLab.Runners()) != 0 {
		t.Fatalf("result = %+v, GitLab runners %d", res, len(s.GitLab.Runners()))
	}
	if rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{}); len(rs) != 0 {
		t.Errorf("runners recorded: %+v", rs)
	}
	writeHistory(t, s, "provision_tags_mismatch", run.GetID(), run.GetRunID())
}

// A runner whose token GitLab rejects never becomes ready: provisioning is
// compensated and nothing is left.
func TestFailedProvisioningLeavesNothing(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.GitLab.FailNext("POST", "/runners/verify", 403, 1000, false)
	egg := s.Egg("web", fly.RunnerVM)
	run, _, err := s.ProvisionJob(ctx, egg, []string{"docker"}, func(in *contract.ProvisionRunnerInput) { in.ReadyTimeout = 5 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "no ready signal within 5s") {
		t.Fatalf("error = %v", err)
	}
	runnerID := contract.RunnerIDFor("web", run.GetID())
	s.assertNothingLeft(ctx, runnerID)
	hist, _ := s.Store.RunnerHistory(ctx, runnerID)
	if got := transitions(hist); got != "provisioning>registering,registering>failed,failed>terminated" {
		t.Errorf("history = %s", got)
	}
	r, _ := s.Store.GetRunner(ctx, runnerID)
	if !strings.Contains(r.Reason, "wait for ready signal failed") {
		t.Errorf("reason = %q", r.Reason)
	}
	writeHistory(t, s, "provision_compensated", run.GetID(), run.GetRunID())
}

func (s *Stack) assertNothingLeft(ctx context.Context, runnerID string) {
	t := s.T
	t.Helper()
	// The egg's shared GitLab runner stays for its other machines; none
	// is the machine's own.
	for _, r := range s.GitLab.Runners() {
		if !strings.HasPrefix(r.Description, contract.EggRunnerDescriptionPrefix) {
			t.Errorf("GitLab runner left: %+v", r)
		}
	}
	if ws, _ := s.Tofu.Workspaces(); len(ws) != 0 {
		t.Errorf("tofu workspaces left: %+v", ws)
	}
	if st := agent.Inspect(s.MachineDir(runnerID)); st.Alive {
		t.Errorf("agent process left: %+v", st)
	}
	if _, err := s.Secrets.Fresh(ctx, fly.SecretRef("local://runners/"+runnerID+"/token")); !errors.Is(err, secretstore.ErrNotFound) && !errors.Is(err, secretstore.ErrKeyNotFound) {
		t.Errorf("token left: %v", err)
	}
	r, err := s.Store.GetRunner(ctx, runnerID)
	if err != nil || r.State != store.StateTerminated {
		t.Errorf("store = %+v, %v", r, err)
	}
}

func waitState(t *testing.T, ctx context.Context, s *Stack, runnerID string, want store.RunnerState) {
	t.Helper()
	for {
		r, err := s.Store.GetRunner(ctx, runnerID)
		if err == nil && r.State == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("runner %s never reached %s (last: %+v, %v)", runnerID, want, r, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReached waits until the runner's history shows it reached want,
// whatever state it is in now: a runner made for one job can be torn
// down within moments of taking it.
func waitReached(t *testing.T, ctx context.Context, s *Stack, runnerID string, want store.RunnerState) {
	t.Helper()
	for {
		h, err := s.Store.RunnerHistory(ctx, runnerID)
		for _, x := range h {
			if x.To == want {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("runner %s never reached %s (history: %s, %v)", runnerID, want, transitions(h), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func transitions(h []store.Transition) string {
	var parts []string
	for _, x := range h {
		parts = append(parts, string(x.From)+">"+string(x.To))
	}
	return strings.Join(parts, ",")
}

// A runner whose job variables name a secret that cannot be read fails
// before anything is made, and says which URI.
func TestMissingSecretFailsBeforeAnythingIsMade(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	egg.Runner.Env = map[string]fly.EnvValue{"DEPLOY_KEY": {Secret: "local://deploy/missing-key"}, "STAGE": {Value: "ci"}}
	run, _, err := s.ProvisionJob(ctx, egg, []string{"docker"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "local://deploy/missing-key") {
		t.Fatalf("error = %v", err)
	}
	if rs := s.GitLab.Runners(); len(rs) != 0 {
		t.Errorf("GitLab runners made: %+v", rs)
	}
	if ws, _ := s.Tofu.Workspaces(); len(ws) != 0 {
		t.Errorf("tofu workspaces made: %+v", ws)
	}
	runnerID := contract.RunnerIDFor("web", run.GetID())
	r, _ := s.Store.GetRunner(ctx, runnerID)
	if r == nil || r.State != store.StateTerminated || !strings.Contains(r.Reason, "missing-key") {
		t.Errorf("store = %+v", r)
	}
}
