package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

const testAPIToken = "cli-test-token"

// withEnv gives a test factory environment variables.
func withEnv(tio *testIO, env map[string]string) *testIO {
	tio.f.Getenv = func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
	return tio
}

// apiServer runs the real API over a fresh SQLite store, with one egg and
// no Temporal.
func apiServer(t *testing.T) (string, store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	local, err := secretstore.OpenLocal(filepath.Join(t.TempDir(), "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	if _, err := res.Put(ctx, "local://api/token", testAPIToken); err != nil {
		t.Fatal(err)
	}
	nest := &fly.Nest{Eggs: []fly.Egg{{Name: "web", Kind: fly.KindEgg, Version: "v1",
		GitLab:   fly.GitLab{Host: "gitlab.example.com", Token: "local://gitlab/token", WebhookSecret: "local://gitlab/hook"},
		Projects: []fly.ProjectRef{{ID: 1, Path: "acme/web"}}, Runner: fly.Runner{Type: fly.RunnerVM, Clouds: []string{fly.CloudLocal}}}}}
	// Temporal is not there: a lazy client to a closed port.
	mg, err := mothergoose.Open(ctx, mothergoose.Config{Nest: nest, Store: st, Secrets: res, LazyTemporal: true,
		TemporalConnection: mothergoose.TemporalConnection{Address: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mg.Close() })
	srv, err := api.New(api.Config{MotherGoose: mg, APITokens: []fly.SecretRef{"local://api/token"}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	created := time.Now().Add(-2 * time.Hour)
	for _, r := range []*store.Runner{
		{ID: "web-a", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: "gitlab.example.com", GitLabRunnerID: 0, JobID: 77, CreatedAt: created, UpdatedAt: created},
		{ID: "web-b", Egg: "web", Cloud: "aws", Kind: "serverless", State: store.StateProvisioning, GitLabHost: "gitlab.example.com"},
		{ID: "web-c", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateDormant, GitLabHost: "gitlab.example.com"},
	} {
		if err := st.CreateRunner(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for id := int64(1); id <= 4; id++ {
		status := "success"
		if id == 4 {
			status = "failed"
		}
		if _, err := st.RecordJob(ctx, store.JobRecord{GitLabHost: "gitlab.example.com", JobID: id, ProjectID: 1, Egg: "web", Name: "unit", Ref: "main", PipelineID: 9, Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	return hs.URL, st
}

func apiIO(stdin string, tty bool, url, token string) *testIO {
	env := map[string]string{envAPIURL: url}
	if token != "" {
		env[envAPIToken] = token
	}
	return withEnv(newTestIO(stdin, tty), env)
}

func TestRunnersFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{envAPIURL: "http://from-env:1", envAPIToken: " secret "})
	var got *RunnersListOptions
	cmd := NewCmdRunnersList(tio.f, func(o *RunnersListOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--egg", "web", "--state", "active,dormant", "--cloud", "aws", "--limit", "7", "--json", "id,state"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Egg != "web" || got.State != "active,dormant" || got.Cloud != "aws" || got.Limit != 7 || !slices.Equal(got.Export.Fields, []string{"id", "state"}) ||
		got.API.URL != "http://from-env:1" || got.API.Token != "secret" {
		t.Errorf("options = %+v", got)
	}

	tio = newTestIO("", false)
	var jobs *JobsListOptions
	cmd = NewCmdJobsList(tio.f, func(o *JobsListOptions) error { jobs = o; return nil })
	cmd.SetArgs([]string{"--status", "failed", "--api", "https://mg.example.com"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if jobs.Status != "failed" || jobs.Limit != 50 || jobs.API.URL != "https://mg.example.com" || jobs.API.Token != "" {
		t.Errorf("jobs options = %+v", jobs)
	}
	if cmd := NewCmdRunnersList(tio.f, nil); cmd.Flags().Lookup("token") != nil {
		t.Error("the token must not be a flag")
	}
	if code := run(t, newTestIO("", false), "runners", "list", "--limit", "0"); code != ExitError {
		t.Errorf("--limit 0: exit %d", code)
	}
}

func TestRunnersListOutput(t *testing.T) {
	url, _ := apiServer(t)

	tio := apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	lines := strings.Split(strings.TrimSpace(tio.out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "web-a\tweb\tactive\tlocal\tvm\t-\t77\t") || strings.Contains(tio.out.String(), "STATE") {
		t.Errorf("piped output:\n%s", tio.out)
	}
	if _, err := time.Parse(time.RFC3339, strings.Split(lines[0], "\t")[7]); err != nil {
		t.Errorf("piped time is not RFC 3339: %q", lines[0])
	}

	tio = apiIO("", true, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--state", "active,dormant", "--limit", "1"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	out := tio.out.String()
	if !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "web-a  ") || strings.Contains(out, "web-c") || !strings.Contains(out, "2h ago") {
		t.Errorf("table:\n%s", out)
	}
	if !strings.Contains(tio.err.String(), "--limit") {
		t.Errorf("no hint about more runners: %q", tio.err)
	}

	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--cloud", "aws", "--json", "id,state"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	var runners []map[string]any
	if err := json.Unmarshal(tio.out.Bytes(), &runners); err != nil || len(runners) != 1 || runners[0]["id"] != "web-b" || len(runners[0]) != 2 {
		t.Errorf("--json id,state: %v %s", err, tio.out)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "list", "--egg", "nobody", "--json", "id"); code != 0 || strings.TrimSpace(tio.out.String()) != "[]" {
		t.Errorf("empty --json: %d %q", code, tio.out)
	}
}

func TestRunnersAuthExitCode(t *testing.T) {
	url, _ := apiServer(t)
	for token, hint := range map[string]string{"": "GOSLING_API_TOKEN is not set", "wrong": "check $GOSLING_API_TOKEN"} {
		tio := apiIO("", false, url, token)
		if code := run(t, tio, "runners", "list"); code != ExitAuth {
			t.Errorf("token %q: exit %d, want %d", token, code, ExitAuth)
		}
		if !strings.Contains(tio.err.String(), "401") || !strings.Contains(tio.err.String(), hint) {
			t.Errorf("token %q: stderr %q", token, tio.err)
		}
		if strings.Contains(tio.err.String(), testAPIToken) {
			t.Error("the token was printed")
		}
	}
	tio := apiIO("", false, url, "wrong")
	if code := run(t, tio, "jobs", "list"); code != ExitAuth {
		t.Errorf("jobs list with a wrong token: exit %d", code)
	}
	tio = apiIO("", false, "http://127.0.0.1:1", testAPIToken)
	if code := run(t, tio, "runners", "get", "x"); code != ExitError || !strings.Contains(tio.err.String(), "127.0.0.1:1") {
		t.Errorf("unreachable API: exit %d: %s", code, tio.err)
	}
}

func TestRunnersGetAndDrain(t *testing.T) {
	url, st := apiServer(t)
	tio := apiIO("", true, url, testAPIToken)
	if code := run(t, tio, "runners", "get", "web-a"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	for _, want := range []string{"id:", "web-a", "state:", "active", "job:", "77", "created:", "2h ago"} {
		if !strings.Contains(tio.out.String(), want) {
			t.Errorf("get lacks %q:\n%s", want, tio.out)
		}
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "get", "web-a", "--json", "id,state"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var r apiv1.Runner
	if err := json.Unmarshal(tio.out.Bytes(), &r); err != nil || r.ID != "web-a" {
		t.Errorf("get --json: %v %s", err, tio.out)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "get", "nope"); code != ExitError || !strings.Contains(tio.err.String(), "404 not found") {
		t.Errorf("missing runner: exit %d: %s", code, tio.err)
	}

	// The drain itself is a workflow (tested with the API); here web-a has
	// been drained already, which the API answers with the runner.
	if _, err := st.Transition(context.Background(), store.TransitionRequest{RunnerID: "web-a", To: store.StateDraining, Reason: "test", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "drain", "web-a"); code != 0 {
		t.Fatalf("drain: exit %d: %s", code, tio.err)
	}
	if !strings.Contains(tio.err.String(), "web-a is draining") {
		t.Errorf("drain said %q", tio.err)
	}
	if got, _ := st.GetRunner(context.Background(), "web-a"); got.State != store.StateDraining {
		t.Errorf("runner after drain: %s", got.State)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "runners", "drain", "web-b"); code != ExitError || !strings.Contains(tio.err.String(), "409") {
		t.Errorf("drain a provisioning runner: exit %d: %s", code, tio.err)
	}
}

// fakeDeleteAPI counts DELETE requests.
type fakeDeleteAPI struct {
	mu      sync.Mutex
	deletes []string
}

func (f *fakeDeleteAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testAPIToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized"}`))
		return
	}
	f.mu.Lock()
	f.deletes = append(f.deletes, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"accepted","workflow_id":"deprovision/web-a"}`))
}

func (f *fakeDeleteAPI) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.deletes)
}

func TestRunnersDelete(t *testing.T) {
	fake := &fakeDeleteAPI{}
	hs := httptest.NewServer(fake)
	defer hs.Close()

	tio := apiIO("", false, hs.URL, testAPIToken)
	if code := run(t, tio, "runners", "delete", "web-a"); code != ExitError || !strings.Contains(tio.err.String(), "--yes") {
		t.Errorf("no terminal, no --yes: exit %d: %s", code, tio.err)
	}
	tio = apiIO("y\n", true, hs.URL, testAPIToken)
	if code := run(t, tio, "runners", "delete", "web-a", "--no-input"); code != ExitError || !strings.Contains(tio.err.String(), "--yes") {
		t.Errorf("--no-input on a terminal: exit %d: %s", code, tio.err)
	}
	tio = apiIO("n\n", true, hs.URL, testAPIToken)
	if code := run(t, tio, "runners", "delete", "web-a"); code != ExitCancelled {
		t.Errorf("answered no: exit %d: %s", code, tio.err)
	}
	if fake.count() != 0 {
		t.Fatalf("%d deletes before any confirmation", fake.count())
	}
	tio = apiIO("y\n", true, hs.URL, testAPIToken)
	if code := run(t, tio, "runners", "delete", "web-a"); code != 0 || !strings.Contains(tio.err.String(), "Delete runner web-a?") ||
		!strings.Contains(tio.err.String(), "deprovision/web-a") {
		t.Errorf("answered yes: exit %d: %s", code, tio.err)
	}
	tio = apiIO("", false, hs.URL, testAPIToken)
	if code := run(t, tio, "runners", "delete", "web-a", "--yes"); code != 0 {
		t.Errorf("--yes: exit %d: %s", code, tio.err)
	}
	if fake.count() != 2 || fake.deletes[0] != "DELETE /api/v1/runners/web-a" {
		t.Errorf("deletes: %v", fake.deletes)
	}
	tio = apiIO("", false, hs.URL, "")
	if code := run(t, tio, "runners", "delete", "web-a", "--yes"); code != ExitAuth {
		t.Errorf("delete without a token: exit %d", code)
	}
}

func TestJobsList(t *testing.T) {
	url, _ := apiServer(t)
	tio := apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "jobs", "list"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	lines := strings.Split(strings.TrimSpace(tio.out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "4\tweb\tfailed\tunit\tmain\t9\t-\tgitlab.example.com\t") {
		t.Errorf("piped jobs:\n%s", tio.out)
	}
	tio = apiIO("", true, url, testAPIToken)
	if code := run(t, tio, "jobs", "list", "--status", "success", "--limit", "2"); code != 0 {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if out := tio.out.String(); !strings.HasPrefix(out, "JOB ") || strings.Count(out, "\n") != 3 || strings.Contains(out, "failed") {
		t.Errorf("table:\n%s", out)
	}
	tio = apiIO("", false, url, testAPIToken)
	if code := run(t, tio, "jobs", "list", "--egg", "web", "--json", "job_id,status"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var jobs []apiv1.Job
	if err := json.Unmarshal(tio.out.Bytes(), &jobs); err != nil || len(jobs) != 4 || jobs[0].JobID != 4 {
		t.Errorf("--json: %v %s", err, tio.out)
	}
}
