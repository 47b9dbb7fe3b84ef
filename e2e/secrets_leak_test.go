package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/proto"
)

// Full provisionings with known secret values: the GitLab API token, the
// webhook secret, the API token and the runners' glrt- tokens. A VM runner
// is provisioned for a job and a serverless one through the webhook; when
// their jobs finish both are torn down. None of the values appears in any
// log line (the worker's, the agents'), in OpenTofu's output, state,
// variables or a saved plan, in the SQLite database, in the local secret
// store's file or in any workflow history.
func TestSecretsLeakNowhere(t *testing.T) {
	m := secretstore.NewMasker()
	logs := &lockedBuffer{}
	log := slog.New(secretstore.NewHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), m))
	s := Start(t, Options{Logger: log})
	// As `gosling worker` wires them: one Masker for the resolver, the
	// logger and OpenTofu's output; backend calls go to the audit log.
	s.Secrets.SetMasker(m)
	s.Tofu.Filter = m.Mask
	s.Secrets.Observe(activities.NewSecretAudit(s.Store, contract.TaskQueueMotherGoose, log))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Faults that make the GitLab client log: a retried read, and a runner
	// created whose answer is lost, adopted with a fresh token.
	s.GitLab.FailNext(http.MethodGet, "/projects/*/jobs/*", http.StatusServiceUnavailable, 1, false)
	s.GitLab.FailNext(http.MethodPost, "/user/runners", http.StatusBadGateway, 1, true)
	// GitLab's job queue answers 503 throughout: the machines live, their
	// gitlab-runners asking for work, while the test reads what they keep.
	s.GitLab.FailNext(http.MethodPost, "/jobs/request", http.StatusServiceUnavailable, 1_000_000, false)

	webhookSecret := "whsec-" + randomHex(t)
	known := map[string]string{"GitLab API token": s.GitLab.Token(), "webhook secret": webhookSecret, "API token": APIToken}
	vmEgg, slsEgg := s.Egg("leakvm", fly.RunnerVM), s.Egg("leaksls", fly.RunnerServerless)
	a := s.StartAPI(webhookSecret, slsEgg)

	vmRun, vmJob, err := s.ProvisionJob(ctx, vmEgg, []string{"docker"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vmRunner := contract.RunnerIDFor(vmEgg.Name, vmRun.GetID())
	slsJob := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}})
	if code, hr, err := s.DeliverJobHook(ctx, a, slsJob.ID, webhookSecret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
		t.Fatalf("pending hook: %d %+v %v", code, hr, err)
	}
	slsWF := contract.RunnerWorkflowID(s.Host(), slsJob.ID)
	slsRunner := contract.RunnerIDFor(slsEgg.Name, slsWF)
	waitState(t, ctx, s, vmRunner, store.StateActive)
	waitState(t, ctx, s, slsRunner, store.StateActive)

	gitlabRunners := map[string]int64{}
	for _, r := range s.GitLab.Runners() {
		if !strings.HasPrefix(r.Token, "glrt-") {
			t.Fatalf("runner %s has no glrt- token", r.Description)
		}
		known["runner token of "+r.Description] = r.Token
		gitlabRunners[r.Description] = r.ID
	}
	if len(gitlabRunners) != 2 {
		t.Fatalf("GitLab runners = %d, want 2", len(gitlabRunners))
	}
	for what, v := range known {
		if what != "API token" && !m.Contains(v) {
			t.Errorf("the %s was never registered with the Masker", what)
		}
	}

	// While the machines live: their workspaces, and plans saved from them.
	var sources [][2]string
	sources = append(sources, savePlan(t, s, vmRunner)...)
	sources = append(sources, savePlan(t, s, slsRunner)...)
	// gitlab-runner reads its token from its config.toml, as the real
	// one does: that file, mode 0600, is the one place a live machine
	// keeps it, and it goes with the machine.
	for _, src := range readTree(t, s.StateDir) {
		if filepath.Base(src[0]) == "config.toml" && strings.HasPrefix(src[0], filepath.Join("tofu", "machines")) {
			if st, err := os.Stat(filepath.Join(s.StateDir, src[0])); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v %v, want mode 0600", src[0], st.Mode(), err)
			}
			continue
		}
		sources = append(sources, src)
	}

	if err := s.Client.SignalWorkflow(ctx, vmRun.GetID(), "", contract.SignalJobStatus, contract.JobStatus{JobID: vmJob, Status: "success"}); err != nil {
		t.Fatal(err)
	}
	slsGitLabID := gitlabRunners[contract.RunnerDescription(slsEgg.Name, slsRunner)]
	for _, status := range []string{"running", "success"} {
		s.GitLab.SetJobStatus(s.Project.ID, slsJob.ID, status, slsGitLabID)
		if code, hr, err := s.DeliverJobHook(ctx, a, slsJob.ID, webhookSecret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
			t.Fatalf("%s hook: %d %+v %v", status, code, hr, err)
		}
	}
	for _, id := range []string{vmRun.GetID(), slsWF} {
		var res contract.ProvisionRunnerResult
		if err := s.Client.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
			t.Fatal(err)
		}
		if res.Outcome != "job-finished" {
			t.Fatalf("%s: result = %+v", id, res)
		}
	}
	// Each backend call on a runner's token is audited, by URI only.
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{vmRunner, slsRunner} {
		r, err := s.Store.GetRunner(ctx, id)
		if err != nil || !contract.IsEggRunnerToken(r.TokenRef) {
			t.Fatalf("runner %s: %+v %v, want the egg's shared token", id, r, err)
		}
		var audited []string
		for _, rec := range recs {
			if rec.Action == activities.AuditSecretAccess && strings.Contains(rec.Reason, r.TokenRef) {
				audited = append(audited, strings.Fields(rec.Reason)[0])
			}
		}
		// put by the worker when the egg's shared runner is made; reads by
		// the API naming the token's version in heartbeat answers (get,
		// versions: cached, and folded per minute in the audit log); no
		// delete: the shared token outlives the machine.
		got := strings.Join(audited, ",")
		n := len(audited)
		if n < 1 || audited[0] != "put" || slices.Contains(audited, "delete") {
			t.Errorf("audited calls on %s's token = %q, want put, then reads only", id, got)
		}
		for _, c := range audited[1:] {
			if c != "get" && c != "versions" {
				t.Errorf("audited calls on %s's token = %q: %s is no read", id, got, c)
			}
		}
		// The machine's agent credential: minted (put), read by the API
		// authenticating the agent's reports (get: cached, and folded per
		// minute in the audit log), revoked at teardown (delete).
		var cred []string
		for _, rec := range recs {
			if rec.Action == activities.AuditSecretAccess && strings.Contains(rec.Reason, string(activities.AgentRefFor(activities.LocalTokenRef(id)))) {
				cred = append(cred, strings.Fields(rec.Reason)[0])
			}
		}
		if n := len(cred); n < 3 || cred[0] != "put" || cred[n-1] != "delete" || !slices.Contains(cred, "get") {
			t.Errorf("audited calls on %s's agent credential = %q, want put, reads, delete", id, strings.Join(cred, ","))
		}
	}

	s.assertNothingLeft(ctx, vmRunner)
	s.assertNothingLeft(ctx, slsRunner)

	sources = append(sources, readTree(t, s.StateDir)...)
	sources = append(sources, [2]string{"the stack's log", logs.String()})
	sources = append(sources, histories(t, ctx, s, vmRun.GetID(), slsWF,
		contract.DeprovisionWorkflowID(vmRunner), contract.DeprovisionWorkflowID(slsRunner))...)
	for _, src := range sources {
		for what, v := range known {
			if strings.Contains(src[1], v) {
				t.Errorf("the %s leaks into %s", what, src[0])
			}
		}
	}
	if !strings.Contains(logs.String(), "gitlab: retrying request") || !strings.Contains(logs.String(), "token reset") {
		t.Errorf("the GitLab client's fault paths did not log:\n%s", logs.String())
	}
	// Masking is the last line of defence: nothing should have needed it.
	if strings.Contains(logs.String(), secretstore.Masked) {
		t.Errorf("a secret reached a log call and was masked there:\n%s", grepLines(logs.String(), secretstore.Masked))
	}
}

// savePlan saves a plan of the live workspace, as an operator would, and
// returns the plan file and its JSON rendering.
func savePlan(t *testing.T, s *Stack, workspace string) [][2]string {
	t.Helper()
	dir := s.Tofu.WorkspaceDir(workspace)
	plan := filepath.Join(t.TempDir(), "leak.tfplan")
	run := func(args ...string) []byte {
		cmd := exec.Command(s.Tofu.Binary(), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+filepath.Join(s.Tofu.StateDir(), "tofurc"), "CHECKPOINT_DISABLE=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tofu %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	planOut := run("plan", "-lock=false", "-input=false", "-no-color", "-out="+plan)
	shown := run("show", "-json", plan)
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	return [][2]string{{"tofu plan's output", string(planOut)}, {"the saved plan", string(b)}, {"tofu show -json of the plan", string(shown)}}
}

// readTree returns every regular file under dir: the SQLite database, the
// local secret store, OpenTofu's workspaces, states and variables, the
// machines and their agent logs.
func readTree(t *testing.T, dir string) [][2]string {
	t.Helper()
	var out [][2]string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, [2]string{rel, string(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("nothing under %s", dir)
	}
	return out
}

// histories returns the wire form of every event of the given workflows and
// of every other workflow the dev server lists: inputs, results,
// failures, signals and heartbeat details.
func histories(t *testing.T, ctx context.Context, s *Stack, ids ...string) [][2]string {
	t.Helper()
	seen := map[string]bool{}
	list, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: s.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.GetExecutions() {
		ids = append(ids, e.GetExecution().GetWorkflowId())
	}
	var out [][2]string
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		var b bytes.Buffer
		it := s.Client.GetWorkflowHistory(ctx, id, "", false, 0)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatalf("history of %s: %v", id, err)
			}
			raw, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(raw)
		}
		if b.Len() == 0 {
			t.Errorf("workflow %s has no history", id)
		}
		out = append(out, [2]string{"the history of " + id, b.String()})
	}
	return out
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
