package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// The whole loop through the real API: a pending Job Hook, delivered 20
// times at once with one Idempotency-Key as GitLab's retries would, gives
// the job exactly one runner process, which runs it (gitlab-runner stand-in
// through the runner API); its invocation ends with the job, the runner is
// torn down and nothing is left in GitLab, in tofu or as a process.
func TestWebhookToRunnerAndBack(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const secret = "webhook-secret-e2e"
	egg := s.Egg("sls", fly.RunnerServerless)
	a := s.StartAPI(secret, egg)
	// The runners' agents post their heartbeats to this API.
	s.Acts.Agent.APIURL = a.URL
	s.StartWorker()

	// The job runs until the test has seen its runner up: a runner made
	// for one job is gone moments after the job ends.
	release := filepath.Join(t.TempDir(), "release")
	job := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"},
		Script: []string{"until [ -e " + release + " ]; do sleep 0.1; done"}})
	key := gitlabtest.NewUUID()
	var mu sync.Mutex
	answers := map[string]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, key)
			if err != nil || code >= 300 {
				t.Errorf("delivery: %d %+v %v", code, hr, err)
				return
			}
			mu.Lock()
			answers[hr.Status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if answers[api.StatusAccepted] != 1 || answers[api.StatusDuplicate] != 19 {
		t.Errorf("answers = %v, want 1 accepted and 19 duplicates", answers)
	}

	wfID := contract.RunnerWorkflowID(s.Host(), job.ID)
	runnerID := contract.RunnerIDFor(egg.Name, wfID)
	waitState(t, ctx, s, runnerID, store.StateActive)
	if rs := s.GitLab.Runners(); len(rs) != 1 {
		t.Fatalf("GitLab runners = %d, want 1", len(rs))
	}
	if ws, _ := s.Tofu.Workspaces(); len(ws) != 1 {
		t.Fatalf("tofu workspaces = %d, want 1", len(ws))
	}
	if st := agent.Inspect(s.MachineDir(runnerID)); !st.Alive {
		t.Fatalf("no runner process: %+v", st)
	}
	for {
		r, err := s.Store.GetRunner(ctx, runnerID)
		if err == nil && r.LastHeartbeat != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the agent's heartbeat never reached the store: %+v, %v", r, err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	gl := s.GitLab.Runners()[0]
	for {
		j, _ := s.GitLab.Job(job.ID)
		if j.Status == "success" && j.RunnerID == gl.ID {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the runner never ran the job: %+v", j)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// GitLab's hook for the finished job (this project has no hook in the
	// test server: the test delivers it as GitLab would). Later statuses go
	// to the egg's gate, which passes the final one on.
	if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted || hr.WorkflowID != contract.GateWorkflowID(egg.Name) {
		t.Fatalf("success hook: %d %+v %v", code, hr, err)
	}
	var res contract.ProvisionRunnerResult
	if err := s.Client.GetWorkflow(ctx, wfID, "").Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "job-finished" {
		t.Errorf("result = %+v", res)
	}
	s.assertNothingLeft(ctx, runnerID)
	recs, err := s.Store.ListJobs(ctx, store.JobFilter{Egg: egg.Name})
	if err != nil || len(recs) != 1 || recs[0].Status != "success" {
		t.Errorf("job history = %+v, %v", recs, err)
	}
}
