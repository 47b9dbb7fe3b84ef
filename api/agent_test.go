package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// Agents post heartbeats with their machine's own agent credential: the
// right one records the beat (and nothing else); the runner's GitLab token,
// another machine's credential and anything else are refused alike; a
// credential written by another process is accepted once read again.
func TestAgentHeartbeat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	ref := fly.SecretRef("local://runners/web-p1/token")
	if _, err := e.secrets.Put(ctx, ref, "glrt-first-token"); err != nil {
		t.Fatal(err)
	}
	for id, credential := range map[string]string{"web-p1": "gsa-machine-one", "web-p2": "gsa-machine-two"} {
		agentRef := "local://runners/" + id + "/agent"
		if _, err := e.secrets.Put(ctx, fly.SecretRef(agentRef), credential); err != nil {
			t.Fatal(err)
		}
		// Both machines run the egg's one GitLab runner.
		r := &store.Runner{ID: id, Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, TokenRef: string(ref), AgentRef: agentRef}
		if err := e.store.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := e.store.GetRunner(ctx, "web-p1")
	path := "/agent/v1/runners/web-p1/heartbeat"
	// The answer pins nothing but the token's current version.
	if got := e.call("POST", path, "gsa-machine-one"); got.Status != http.StatusOK || strings.TrimSpace(string(got.Body)) != `{"token_version":"1"}` {
		t.Fatalf("right credential: %d %s, want 200 and only the token's version", got.Status, got.Body)
	}
	after, _ := e.store.GetRunner(ctx, "web-p1")
	if after.LastHeartbeat == nil || after.Version != before.Version {
		t.Errorf("beat: last %v, version %d -> %d", after.LastHeartbeat, before.Version, after.Version)
	}

	// Another process writes a new credential (a re-provisioned machine).
	local, err := secretstore.OpenLocal(e.secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := secretstore.NewResolver(local).Put(ctx, "local://runners/web-p1/agent", "gsa-machine-one-again"); err != nil {
		t.Fatal(err)
	}
	if got := e.call("POST", path, "gsa-machine-one-again"); got.Status != http.StatusOK {
		t.Errorf("new credential: %d %s", got.Status, got.Body)
	}
	if got := e.call("POST", path, "gsa-machine-one"); got.Status != http.StatusUnauthorized {
		t.Errorf("old credential after the new one: %d", got.Status)
	}
	// The GitLab token, another machine's credential and anything else are
	// refused alike, and recorded nowhere.
	last, _ := e.store.GetRunner(ctx, "web-p1")
	for token, want := range map[string]int{"": 401, "wrong": 401, apiToken: 401, "glrt-first-token": 401, "gsa-machine-two": 401} {
		if got := e.call("POST", path, token); got.Status != want {
			t.Errorf("token %q: %d, want %d", token, got.Status, want)
		}
	}
	if got := e.call("POST", "/agent/v1/runners/nope/heartbeat", "gsa-machine-one-again"); got.Status != http.StatusUnauthorized {
		t.Errorf("unknown runner: %d", got.Status)
	}
	if got, _ := e.store.GetRunner(ctx, "web-p1"); !got.LastHeartbeat.Equal(*last.LastHeartbeat) {
		t.Errorf("a refused beat was recorded: %v", got.LastHeartbeat)
	}
	if got, _ := e.store.GetRunner(ctx, "web-p2"); got.LastHeartbeat != nil {
		t.Errorf("machine two's beat recorded: %v", got.LastHeartbeat)
	}
}

// post sends an agent request with a JSON body.
func (e *env) post(path, token string, body any) reply {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, e.url(path), bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return do(e.t, req)
}

// agentSignals returns the payloads of the named signal in a workflow's history.
func agentSignals(t *testing.T, c client.Client, workflowID, name string) []string {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var out []string
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == name {
			for _, p := range a.GetInput().GetPayloads() {
				out = append(out, string(p.GetData()))
			}
		}
	}
	return out
}

// An agent's ready report becomes runner-ready signals to the workflows
// that wait for the runner: the one its record names and, for a pool's
// runner, its pool. A job report becomes job-status signals. Agents hold
// no Temporal credential: this is their only way in.
func TestAgentReadyAndJobsSignalWorkflows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	tc := e.mg.Temporal()
	ref := fly.SecretRef("local://runners/web-p7/token")
	if _, err := e.secrets.Put(ctx, ref, "glrt-ready-token"); err != nil {
		t.Fatal(err)
	}
	// Workflows with no worker stay open and keep what they are sent.
	provisionID := "pool/web/runner/web-p7-" + time.Now().Format("150405.000")
	poolID := contract.PoolWorkflowID("web")
	for _, id := range []string{provisionID, poolID} {
		if _, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "no-worker-" + t.Name()}, contract.WorkflowProvisionRunner, contract.ProvisionRunnerInput{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), id, "", "test over") })
	}
	if _, err := e.secrets.Put(ctx, "local://runners/web-p7/agent", "gsa-ready-credential"); err != nil {
		t.Fatal(err)
	}
	r := &store.Runner{ID: "web-p7", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateRegistering, GitLabHost: e.host, TokenRef: string(ref),
		AgentRef: "local://runners/web-p7/agent", WorkflowID: provisionID}
	if err := e.store.CreateRunner(ctx, r); err != nil {
		t.Fatal(err)
	}
	path := "/agent/v1/runners/web-p7/"
	if got := e.post(path+"ready", "glrt-ready-token", agentapi.Ready{Trigger: "start"}); got.Status != http.StatusUnauthorized {
		t.Fatalf("the GitLab token: %d %s", got.Status, got.Body)
	}
	got := e.post(path+"ready", "gsa-ready-credential", agentapi.Ready{Trigger: "start", PID: 42, Host: "m1", Versions: agentapi.Versions{Agent: "dev"}})
	if got.Status != http.StatusOK {
		t.Fatalf("ready: %d %s", got.Status, got.Body)
	}
	for _, id := range []string{provisionID, poolID} {
		sigs := agentSignals(t, tc, id, contract.SignalRunnerReady)
		if len(sigs) != 1 || !strings.Contains(sigs[0], `"runner_id":"web-p7"`) || !strings.Contains(sigs[0], `"pid":42`) {
			t.Errorf("%s got runner-ready %v", id, sigs)
		}
	}
	if got := e.post(path+"jobs", "gsa-ready-credential", map[string]any{"job_id": 0, "status": "done"}); got.Status != http.StatusBadRequest {
		t.Errorf("bad job report: %d %s", got.Status, got.Body)
	}
	// A wrong token is 401 whatever the body: the body is not looked at.
	for _, route := range []string{"jobs", "ready", "heartbeat"} {
		req, _ := http.NewRequest(http.MethodPost, e.url(path+route), strings.NewReader("{not json"))
		req.Header.Set("Authorization", "Bearer wrong")
		if got := do(t, req); got.Status != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token and a bad body: %d %s, want 401", route, got.Status, got.Body)
		}
	}
	if got := e.post(path+"jobs", "gsa-ready-credential", agentapi.JobReport{JobID: 77, Status: agentapi.JobSuccess}); got.Status != http.StatusNoContent {
		t.Fatalf("job report: %d %s", got.Status, got.Body)
	}
	sigs := agentSignals(t, tc, provisionID, contract.SignalJobStatus)
	if len(sigs) != 1 || !strings.Contains(sigs[0], `"job_id":77`) || !strings.Contains(sigs[0], `"runner_id":"web-p7"`) {
		t.Errorf("job-status signals %v", sigs)
	}
	if r, _ := e.store.GetRunner(ctx, "web-p7"); r.LastHeartbeat == nil {
		t.Error("the ready report was not recorded as a beat")
	}
}
