package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"google.golang.org/protobuf/proto"
)

// `gosling secrets rotate` on the local stack: two running runners and a
// dormant one get new tokens; the store holds them, GitLab accepts the new
// and refuses the old, the running agents (the same processes) report the
// new version verified, the dormant one reads it when resumed, every runner
// has an audit record, and no token reaches the CLI's output, the audit
// log, an agent's log or the workflow's history.
func TestRotateRunnerTokensEndToEnd(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	egg := s.Egg("web", fly.RunnerVM)
	spec, _ := json.Marshal(egg)
	if err := s.Store.PutEggConfig(ctx, store.EggConfig{Name: egg.Name, Version: "v1", Spec: spec, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"web-rot-1", "web-rot-2"}
	for _, id := range ids {
		provisionActive(t, ctx, s, egg, id)
	}
	dormantID := "web-rot-3"
	run, err := s.ProvisionPool(ctx, egg, dormantID, func(in *contract.ProvisionRunnerInput) { in.Dormant = true })
	if err != nil {
		t.Fatal(err)
	}
	var pres contract.ProvisionRunnerResult
	if err := run.Get(ctx, &pres); err != nil || pres.State != string(store.StateDormant) {
		t.Fatalf("provision %s: %+v %v", dormantID, pres, err)
	}
	all := append(ids, dormantID)

	type before struct {
		token string
		pid   int
	}
	old := map[string]before{}
	var known []string
	for _, id := range all {
		r, err := s.Store.GetRunner(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef))
		if err != nil {
			t.Fatal(err)
		}
		old[id] = before{token: tok, pid: agent.Inspect(s.MachineDir(id)).PID}
		known = append(known, tok)
	}

	res, cliOutput := rotateCLI(t, ctx, s, "web", "e2e rotation")
	if res.Rotated != 3 || res.Failed != 0 || res.Skipped != 0 || len(res.Runners) != 3 {
		t.Fatalf("result = %+v", res)
	}
	outcomes := map[string]contract.RunnerRotation{}
	for _, r := range res.Runners {
		outcomes[r.RunnerID] = r
	}

	s.Secrets.Purge()
	check, err := gitlab.NewRunnerClient(s.GitLab.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range all {
		o := outcomes[id]
		wantVerifier, wantAgent := contract.VerifiedByAgent, activities.AgentConfirmed
		if id == dormantID {
			wantVerifier, wantAgent = contract.VerifiedByGitLab, activities.AgentDeferred
		}
		if o.Outcome != contract.RotationRotated || o.VerifiedBy != wantVerifier || o.Agent != wantAgent || o.TokenWorks == nil || !*o.TokenWorks || o.TokenVersion != "2" {
			t.Errorf("%s: outcome %+v", id, o)
		}
		r, err := s.Store.GetRunner(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef))
		if err != nil {
			t.Fatal(err)
		}
		known = append(known, tok)
		if tok == old[id].token || !strings.HasPrefix(tok, "glrt-") {
			t.Errorf("%s: the stored token did not change to a new glrt- token", id)
		}
		if gr, _ := s.GitLab.Runner(r.GitLabRunnerID); gr.Token != tok {
			t.Errorf("%s: the stored token is not GitLab's", id)
		}
		if err := check.VerifyRunner(ctx, tok, ""); err != nil {
			t.Errorf("%s: GitLab refuses the new token: %v", id, err)
		}
		if err := check.VerifyRunner(ctx, old[id].token, ""); !errors.Is(err, gitlab.ErrInvalidRunnerToken) {
			t.Errorf("%s: GitLab still accepts the old token (%v)", id, err)
		}
		if id == dormantID {
			continue
		}
		st := agent.Inspect(s.MachineDir(id))
		if !st.Alive || st.Stopped || st.PID != old[id].pid {
			t.Errorf("%s: agent %+v, want process %d still running", id, st, old[id].pid)
		}
		ts, err := agent.ReadTokenStatus(s.MachineDir(id))
		if err != nil || ts.Trigger != agent.TriggerReload || !ts.Verified || ts.Version != o.TokenVersion || ts.PID != old[id].pid {
			t.Errorf("%s: agent token status %+v (%v), want version %s verified on reload", id, ts, err, o.TokenVersion)
		}
	}

	// The dormant runner stays asleep, and reads its new token when resumed.
	dir := s.MachineDir(dormantID)
	if st := agent.Inspect(dir); !st.Alive || !st.Stopped {
		t.Fatalf("dormant agent = %+v", st)
	}
	if err := agent.Power(s.Gosling, dir, "running", nil); err != nil {
		t.Fatal(err)
	}
	for {
		ts, err := agent.ReadTokenStatus(dir)
		if err == nil && ts.Trigger == agent.TriggerResume {
			if !ts.Verified || ts.Version != outcomes[dormantID].TokenVersion {
				t.Errorf("resumed agent token status %+v", ts)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the resumed agent never checked its token (last %+v, %v)", ts, err)
		case <-time.After(50 * time.Millisecond):
		}
	}

	// One audit record per runner, with the actor, the reason and the
	// version: never the token.
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{Egg: "web"})
	if err != nil {
		t.Fatal(err)
	}
	audited := map[string]int{}
	var auditText strings.Builder
	for _, r := range recs {
		if r.Action != activities.AuditActionRotateToken {
			continue
		}
		audited[r.RunnerID]++
		if r.Actor != "cli:tester" || r.Reason != "e2e rotation" || !strings.Contains(string(r.After), `"outcome":"rotated"`) || !strings.Contains(string(r.After), `"token_version":"2"`) {
			t.Errorf("audit record %+v (after %s)", r, r.After)
		}
		b, _ := json.Marshal(r)
		auditText.Write(b)
	}
	for _, id := range all {
		if audited[id] != 1 {
			t.Errorf("%s: %d rotate-token audit records, want 1", id, audited[id])
		}
	}

	sources := [][2]string{
		{"the rotation's history", rotationHistory(t, ctx, s)},
		{"the CLI's output", cliOutput},
		{"the audit log", auditText.String()},
	}
	for _, id := range all {
		b, _ := os.ReadFile(s.MachineDir(id) + "/agent.log")
		sources = append(sources, [2]string{id + "'s agent log", string(b)})
	}
	for _, src := range sources {
		for _, tok := range known {
			if strings.Contains(src[1], tok) {
				t.Errorf("a runner token leaks into %s", src[0])
			}
		}
	}
	writeHistory(t, s, "rotate_runner_tokens", contract.RotateWorkflowID, "")

	// One rotation at a time: a second start while none runs is accepted
	// again (the ID is reusable), and its runners rotate once more.
	var again contract.RotateRunnerTokensResult
	run2, err := s.Client.ExecuteWorkflow(ctx, contract.RotateStartOptions(), contract.WorkflowRotateRunnerTokens, contract.RotateRunnerTokensInput{Eggs: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := run2.Get(ctx, &again); err != nil || again.Rotated != 3 {
		t.Fatalf("second rotation: %+v %v", again, err)
	}
}

// rotationHistory is the rotation's history as raw protobuf bytes, where
// payloads are plain JSON.
func rotationHistory(t *testing.T, ctx context.Context, s *Stack) string {
	t.Helper()
	var b bytes.Buffer
	it := s.Client.GetWorkflowHistory(ctx, contract.RotateWorkflowID, "", false, 0)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	if b.Len() == 0 {
		t.Fatal("the rotation has no history")
	}
	return b.String()
}

// rotateCLI runs `gosling secrets rotate --egg EGG --reason REASON --json`
// as user tester against the stack's Temporal, and returns its result and
// its output (stdout, then stderr).
func rotateCLI(t *testing.T, ctx context.Context, s *Stack, egg, reason string) (contract.RotateRunnerTokensResult, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, s.Gosling, "secrets", "rotate", "--egg", egg, "--reason", reason, "--json", "rotated,failed,skipped,runners",
		"--temporal-address", s.Dev.FrontendHostPort(), "--temporal-namespace", s.Namespace)
	cmd.Env = append(os.Environ(), "USER=tester")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gosling secrets rotate: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var res contract.RotateRunnerTokensResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	return res, stdout.String() + stderr.String()
}
