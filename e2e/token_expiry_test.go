package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// tokenLife is how long the GitLab test server lets a runner token live in
// TestExpiringSharedTokenRotated (GitLab sets up to 15 days; a short one
// makes the test see several rotations).
const tokenLife = 90 * time.Second

// TestExpiringSharedTokenRotated runs jobs on a pooled egg, one after
// another, for three and a half token lives while the GitLab test server
// lets runner tokens expire after tokenLife and refuses an expired one
// with 403: the egg's EggRunner rotates its shared token ahead of expiry
// (a third of its life before), every live machine takes the new one, and
// every job succeeds. The runner's token in GitLab is never past its
// expiry, the stored token is GitLab's, and each rotation is audited.
func TestExpiringSharedTokenRotated(t *testing.T) {
	s := Start(t, Options{GitLab: []gitlabtest.Option{gitlabtest.WithRunnerTokenExpiration(tokenLife)}})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	egg, p := s.projectEgg("expiring", fly.RunnerVM)
	egg.Apex = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
	a := s.StartAPI(jobsSecret, egg)
	s.hookProject(a, p)

	// The shared runner's token: its expiry is watched throughout.
	var first gitlabtest.Runner
	shared := func() (gitlabtest.Runner, bool) {
		for _, r := range s.GitLab.Runners() {
			if strings.HasPrefix(r.Description, contract.EggRunnerDescriptionPrefix+egg.Name+"/") {
				return r, true
			}
		}
		return gitlabtest.Runner{}, false
	}
	tokens := map[string]bool{}
	start := time.Now()
	jobs := 0
	for time.Since(start) < 7*tokenLife/2 {
		pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
			{Name: "unit", Tags: []string{"docker"}, Script: []string{"echo ok"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, done := s.waitPipeline(ctx, pl.ID)
		for _, j := range done {
			jobs++
			if j.Status != "success" {
				t.Errorf("job %d at %s: %s (%s)", j.ID, time.Since(start).Round(time.Second), j.Status, j.FailureReason)
			}
		}
		r, ok := shared()
		if !ok {
			t.Fatal("the egg has no shared GitLab runner")
		}
		if first.ID == 0 {
			first = r
		}
		if r.TokenExpiresAt == nil || !time.Now().Before(*r.TokenExpiresAt) {
			t.Fatalf("the shared runner's token expired (expires at %v)", r.TokenExpiresAt)
		}
		tokens[r.Token] = true
		time.Sleep(time.Second) // a steady trickle of jobs, not a flood
	}
	r, _ := shared()
	if r.ID != first.ID {
		t.Errorf("GitLab runner %d replaced by %d: an expiring token is rotated, not its runner", first.ID, r.ID)
	}
	t.Logf("%d jobs, %d tokens in %s", jobs, len(tokens), time.Since(start).Round(time.Second))
	// Three rotations are due in 3.5 lives (at 2/3, 4/3 and 2 lives from
	// the creation); the last may still be running.
	if len(tokens) < 3 {
		t.Errorf("%d tokens seen in %s, want at least 3 (rotations ahead of each expiry)", len(tokens), time.Since(start).Round(time.Second))
	}

	key := strings.TrimPrefix(r.Description, contract.EggRunnerDescriptionPrefix+egg.Name+"/")
	var st contract.EggRunnerStatus
	v, err := s.Client.QueryWorkflow(ctx, contract.EggRunnerWorkflowID(egg.Name, key), "", contract.QueryEggRunner)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil || st.Runner == nil {
		t.Fatalf("EggRunner status %+v: %v", st, err)
	}
	stored, err := s.Secrets.Resolve(ctx, fly.SecretRef(st.Runner.TokenRef))
	if err != nil {
		t.Fatal(err)
	}
	if now, _ := s.GitLab.Runner(r.ID); stored != now.Token {
		t.Error("the stored shared token is not GitLab's")
	}
	audits, err := s.Store.ListAudit(ctx, store.AuditFilter{Egg: egg.Name, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	rotations := 0
	for _, rec := range audits {
		if rec.Action == activities.AuditActionRotateToken && strings.Contains(rec.Reason, "expires at") && rec.Actor == contract.ActorMotherGoose {
			rotations++
		}
	}
	if rotations < 2 {
		t.Errorf("%d audited rotations of the expiring token, want one per machine and rotation", rotations)
	}
	writeHistory(t, s, "egg_runner_expiring", contract.EggRunnerWorkflowID(egg.Name, key), "")
}

// `gosling secrets rotate --egg X` of an egg whose machines are all gone
// (a serverless egg after its job) resets the egg's shared runner token:
// GitLab refuses the old token and accepts the stored new one, the CLI
// reports it rotated, and the audit log has its record.
func TestRotateEggWithoutMachines(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := s.Secrets.Put(ctx, "local://ci/deploy_key", deployKey); err != nil {
		t.Fatal(err)
	}
	egg, p := s.projectEgg("idle", fly.RunnerServerless)
	a := s.StartAPI(jobsSecret, egg)
	s.hookProject(a, p)
	pl, err := s.GitLab.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
		{Name: "unit", Tags: []string{"docker"}, Script: []string{"echo ok"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, jobs := s.waitPipeline(ctx, pl.ID); len(jobs) != 1 || jobs[0].Status != "success" {
		t.Fatalf("jobs %+v", jobs)
	}
	for {
		live, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: egg.Name, States: activities.LiveStates})
		if err != nil {
			t.Fatal(err)
		}
		if len(live) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the serverless machines never went: %+v", live)
		case <-time.After(200 * time.Millisecond):
		}
	}
	var before gitlabtest.Runner
	for _, r := range s.GitLab.Runners() {
		if strings.HasPrefix(r.Description, contract.EggRunnerDescriptionPrefix+egg.Name+"/") {
			before = r
		}
	}
	if before.ID == 0 {
		t.Fatal("the egg has no shared GitLab runner")
	}

	res, _ := rotateCLI(t, ctx, s, egg.Name, "no machines")
	key := strings.TrimPrefix(before.Description, contract.EggRunnerDescriptionPrefix+egg.Name+"/")
	name := contract.EggRunnerSecretName(egg.Name, key)
	if res.Rotated != 1 || res.Failed != 0 || len(res.Runners) != 1 || res.Runners[0].RunnerID != name || res.Runners[0].Outcome != contract.RotationRotated {
		t.Fatalf("result = %+v, want %s rotated", res, name)
	}
	after, _ := s.GitLab.Runner(before.ID)
	if after.Token == before.Token {
		t.Fatal("GitLab's token did not change")
	}
	s.Secrets.Purge()
	var st contract.EggRunnerStatus
	v, err := s.Client.QueryWorkflow(ctx, contract.EggRunnerWorkflowID(egg.Name, key), "", contract.QueryEggRunner)
	if err == nil {
		err = v.Get(&st)
	}
	if err != nil || st.Runner == nil {
		t.Fatalf("EggRunner status %+v: %v", st, err)
	}
	stored, err := s.Secrets.Resolve(ctx, fly.SecretRef(st.Runner.TokenRef))
	if err != nil || stored != after.Token {
		t.Errorf("the stored token is not GitLab's new one (%v)", err)
	}
	audits, err := s.Store.ListAudit(ctx, store.AuditFilter{Egg: egg.Name, RunnerID: name})
	if err != nil {
		t.Fatal(err)
	}
	if len(audits) != 1 || audits[0].Action != activities.AuditActionRotateToken || audits[0].Actor != "cli:tester" || audits[0].Reason != "no machines" ||
		strings.Contains(string(audits[0].After), after.Token) {
		t.Errorf("audit records %+v", audits)
	}
	writeHistory(t, s, "rotate_idle_shared_token", contract.RotateWorkflowID, "")
}
