package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// The hostile tenant: the holder of one egg's webhook secret tries to
// change another egg's jobs and runners. Every attempt is refused and
// audited against the egg whose secret it carried, and the other egg is
// served as if nothing happened.

// TestForgedSuccessDoesNotStarveAnotherEgg: hooks signed with bucket
// multi's secret that mark egg web's next job success (in multi's own
// project, in web's project, or in a project of no egg with a path in a
// bucket's group) change nothing; web's real pending job then gets its
// runner.
func TestForgedSuccessDoesNotStarveAnotherEgg(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	real := e.gitlab.AddJob(e.web.ID, gitlabtest.JobSpec{Name: "unit", Tags: []string{"docker"}})
	future := real.ID + 1

	// In multi's own project: GitLab has no such job there.
	for _, id := range []int64{real.ID, future} {
		forged := gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: e.hookProject(e.multiA), JobID: id, Name: "unit", Status: "success", PipelineID: real.PipelineID})
		if r := e.deliver(gitlabtest.EventJob, multiSecret, forged, ""); r.Status != http.StatusNotFound {
			t.Errorf("forged success for job %d in multi's project: %d %s", id, r.Status, r.Body)
		}
	}
	// In web's project: the token is not web's.
	forged := gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: e.hookProject(e.web), JobID: real.ID, Name: "unit", Status: "success"})
	if r := e.deliver(gitlabtest.EventJob, multiSecret, forged, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("forged success in web's project: %d %s", r.Status, r.Body)
	}
	// Bucket data serves group data: a payload naming a project of no egg
	// (the Nest repository) under a path in that group is matched by its
	// ID, which GitLab places outside the group.
	outside := e.hookProject(e.nestRepo)
	outside.PathWithNamespace = "data/etl"
	forged = gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: outside, JobID: future, Name: "unit", Status: "success"})
	if r := e.deliver(gitlabtest.EventJob, dataSecret, forged, ""); r.Status != http.StatusNotFound {
		t.Errorf("forged success under a group path: %d %s", r.Status, r.Body)
	}
	for _, id := range []int64{real.ID, future} {
		if rec, err := e.store.GetJob(ctx, e.host, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a forged hook left job %d: %+v %v", id, rec, err)
		}
	}

	// web's real job is served.
	spec, _ := e.gitlab.JobHook(real.ID)
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, gitlabtest.JobHookPayload(spec), ""), http.StatusAccepted)
	if hr.Status != api.StatusAccepted || hr.WorkflowID == "" {
		t.Errorf("web's real pending job: %+v", hr)
	}
	if rec, err := e.store.GetJob(ctx, e.host, real.ID); err != nil || rec.Status != "pending" || rec.Egg != "web" {
		t.Errorf("web's job: %+v %v", rec, err)
	}
	// Once recorded, a hook of another project cannot move it.
	forged = gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: e.hookProject(e.multiA), JobID: real.ID, Name: "unit", Status: "success"})
	if r := e.deliver(gitlabtest.EventJob, multiSecret, forged, ""); r.Status != http.StatusConflict {
		t.Errorf("forged success for a recorded job: %d %s", r.Status, r.Body)
	}
	if rec, _ := e.store.GetJob(ctx, e.host, real.ID); rec == nil || rec.Status != "pending" {
		t.Errorf("web's job after the forgery: %+v", rec)
	}

	refused := map[string]int{}
	for _, egg := range []string{"multi", "data", "web"} {
		recs, err := e.store.ListAudit(ctx, store.AuditFilter{Egg: egg})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Action == "webhook-refused" {
				refused[egg]++
			}
		}
	}
	if refused["multi"] != 3 || refused["web"] != 0 {
		t.Errorf("refusals audited per egg: %v, want 3 for multi and none for web", refused)
	}
}

// TestForgedFailuresDoNotCountAgainstAnotherEgg: runner_system_failure hooks
// signed with multi's secret that name web's runner leave its failure count
// at zero, whatever job they name; web's own real failure counts.
func TestForgedFailuresDoNotCountAgainstAnotherEgg(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	gr := e.gitlab.AddRunner(gitlabtest.Runner{ProjectID: e.web.ID, Description: "gosling/web/web-v1"})
	victim := &store.Runner{ID: "web-v1", Egg: "web", Cloud: "local", Kind: "vm", State: store.StateActive, GitLabHost: e.host, GitLabRunnerID: gr.ID}
	if err := e.store.CreateRunner(ctx, victim); err != nil {
		t.Fatal(err)
	}
	failure := func(p gitlabtest.Project, jobID int64) []byte {
		now := time.Now()
		started := now.Add(-time.Minute)
		return gitlabtest.JobHookPayload(gitlabtest.JobHookSpec{Project: e.hookProject(p), JobID: jobID, Name: "unit", Status: "failed",
			StartedAt: &started, FinishedAt: &now, Duration: time.Minute, FailureReason: "runner_system_failure",
			Runner: &gitlabtest.HookRunner{ID: gr.ID, Description: victim.ID}})
	}
	// Three forged failures in multi's own project, on multi's real jobs
	// (which never ran on web's runner).
	for range 3 {
		j := e.gitlab.AddJob(e.multiA.ID, gitlabtest.JobSpec{Name: "unit"})
		e.gitlab.SetJobStatus(e.multiA.ID, j.ID, "failed", 0)
		if r := e.deliver(gitlabtest.EventJob, multiSecret, failure(e.multiA, j.ID), ""); r.Status >= 300 {
			t.Fatalf("multi's failed job: %d %s", r.Status, r.Body)
		}
	}
	if got, _ := e.store.GetRunner(ctx, victim.ID); got.Failures != 0 {
		t.Errorf("web's runner has %d failures after multi's forged hooks", got.Failures)
	}
	recs, _ := e.store.ListAudit(ctx, store.AuditFilter{Egg: "multi"})
	n := 0
	for _, r := range recs {
		if r.Action == "webhook-refused" && strings.Contains(r.Reason, "another egg's") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("refused failures audited for multi: %d, want 3: %+v", n, recs)
	}

	// web's own hook that its job failed on a runner it did not run on
	// counts nothing either; one that did, counts.
	j := e.gitlab.AddJob(e.web.ID, gitlabtest.JobSpec{Name: "unit"})
	e.gitlab.SetJobStatus(e.web.ID, j.ID, "failed", 0)
	if r := e.deliver(gitlabtest.EventJob, webSecret, failure(e.web, j.ID), ""); r.Status >= 300 {
		t.Fatalf("web's failed job: %d %s", r.Status, r.Body)
	}
	if got, _ := e.store.GetRunner(ctx, victim.ID); got.Failures != 0 {
		t.Errorf("a failure GitLab puts on no runner counted: %d", got.Failures)
	}
	j = e.gitlab.AddJob(e.web.ID, gitlabtest.JobSpec{Name: "unit"})
	e.gitlab.SetJobStatus(e.web.ID, j.ID, "failed", gr.ID)
	if r := e.deliver(gitlabtest.EventJob, webSecret, failure(e.web, j.ID), ""); r.Status >= 300 {
		t.Fatalf("web's failed job: %d %s", r.Status, r.Body)
	}
	if got, _ := e.store.GetRunner(ctx, victim.ID); got.Failures != 1 {
		t.Errorf("web's real runner failure: %d failures, want 1", got.Failures)
	}
}

// TestIdempotencyKeyStaysWithItsProject: an Idempotency-Key sent with one
// egg's secret cannot make another egg's delivery with the same key look
// like a duplicate.
func TestIdempotencyKeyStaysWithItsProject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	const key = "7f0b5c1e-0000-4000-8000-000000000001"
	if r := e.deliver(gitlabtest.EventJob, multiSecret, e.jobHook(e.multiA, 9101, "running"), key); r.Status != http.StatusAccepted {
		t.Fatalf("multi's delivery: %d %s", r.Status, r.Body)
	}
	hr := e.hookReply(e.deliver(gitlabtest.EventJob, webSecret, e.jobHook(e.web, 9102, "running"), key), http.StatusAccepted)
	if hr.Status == api.StatusDuplicate {
		t.Errorf("web's delivery with multi's key was dropped as a duplicate: %+v", hr)
	}
	if rec, err := e.store.GetJob(context.Background(), e.host, 9102); err != nil || rec.Egg != "web" {
		t.Errorf("web's job: %+v %v", rec, err)
	}
}
