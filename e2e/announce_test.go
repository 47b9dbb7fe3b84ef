package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// warmEgg is a VM egg with one Nadir runner that its pool promotes ahead
// of announced jobs for warmFor.
func (s *Stack) warmEgg(name string, warmFor time.Duration) fly.Egg {
	egg := s.Egg(name, fly.RunnerVM)
	egg.Runner.MaxConcurrent = 2
	egg.Apex = fly.Pool{Min: 0, Max: 2, IdleTimeout: fly.Duration(time.Hour), WarmFor: fly.Duration(warmFor)}
	egg.Nadir = fly.Pool{Min: 1, Max: 1, IdleTimeout: fly.Duration(time.Hour)}
	return egg
}

// deliver sends a webhook body to the stack's API as GitLab does.
func (s *Stack) deliver(ctx context.Context, a *API, event, secret string, body []byte) api.HookResponse {
	s.T.Helper()
	resp, err := s.GitLab.Deliver(ctx, a.URL+"/webhooks/gitlab", event, secret, body, gitlabtest.NewUUID())
	if err != nil {
		s.T.Fatal(err)
	}
	defer resp.Body.Close()
	var hr api.HookResponse
	if err := json.NewDecoder(resp.Body).Decode(&hr); err != nil || resp.StatusCode != http.StatusAccepted {
		s.T.Fatalf("%s: %d %+v %v", event, resp.StatusCode, hr, err)
	}
	return hr
}

// nadirReady says a pool has its one Nadir runner asleep and nothing else.
func nadirReady(st contract.PoolStatus) bool {
	return st.Counts[contract.PoolNadir] == 1 && len(st.Runners) == 1
}

// settled says a pool has one idle Apex runner and one Nadir runner, and
// nothing on the way: an Apex runner demoted then is retired (Nadir full).
func settled(st contract.PoolStatus) bool {
	return st.Counts[contract.PoolApex] == 1 && st.Counts[contract.PoolNadir] == 1 && len(st.Runners) == 2
}

// servedFromApex says the job's runner is Apex and holds it.
func servedFromApex(jobID int64) func(contract.PoolStatus) bool {
	return func(st contract.PoolStatus) bool {
		for _, r := range st.Runners {
			if r.State == contract.PoolApex && slices.Contains(r.Jobs, jobID) {
				return true
			}
		}
		return false
	}
}

// demoteIdle asks a pool to put its idle Apex runners to sleep (they are
// retired when Nadir is full), so a round starts from Nadir alone.
func (s *Stack) demoteIdle(ctx context.Context, egg string) {
	s.T.Helper()
	st, err := s.PoolStatus(ctx, egg)
	if err != nil {
		s.T.Fatal(err)
	}
	for _, r := range st.Runners {
		if r.State != contract.PoolApex || len(r.Jobs) > 0 {
			continue
		}
		if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(egg), "", contract.SignalRunnerAction,
			contract.RunnerAction{RunnerID: r.ID, Action: contract.ActionDemote, Reason: "round over"}); err != nil {
			s.T.Fatal(err)
		}
	}
}

// TestPushWarmsThePool: through the webhook path, a push to a warming
// egg's project promotes its Nadir runner before any job asks; the job
// that follows is served by that Apex runner at once; a push whose
// pipeline never comes puts the runner back in Nadir after warm_for.
func TestPushWarmsThePool(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const secret = "webhook-secret-warm"
	egg := s.warmEgg("warmed", 3*time.Second)
	a := s.StartAPI(secret, egg)
	s.StartPool(ctx, egg, 200*time.Millisecond)
	s.waitPool(ctx, egg.Name, "has its Nadir runner", nadirReady)

	project := s.GitLab.HookProject(s.Project)
	hr := s.deliver(ctx, a, gitlabtest.EventPush, secret, gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: project, After: "aa11"}))
	if hr.Status != api.StatusAccepted || hr.WorkflowID != contract.PoolWorkflowID(egg.Name) {
		t.Fatalf("push: %+v", hr)
	}
	s.waitPool(ctx, egg.Name, "promoted ahead of the pipeline", func(st contract.PoolStatus) bool {
		return st.Counts[contract.PoolApex] == 1 && st.Stats.Warmed == 1
	})
	// The Apex runner's gitlab-runner takes the job at once; it runs until
	// the test has seen it held.
	release := filepath.Join(t.TempDir(), "release")
	job := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"},
		Script: []string{"until [ -e " + release + " ]; do sleep 0.1; done"}})
	if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
		t.Fatalf("pending: %d %+v %v", code, hr, err)
	}
	st := s.waitPool(ctx, egg.Name, "serving the job", servedFromApex(job.ID))
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st.Stats.Served[contract.ServedByApex] != 1 || st.Stats.Promotions != 1 {
		t.Errorf("served %+v after %d promotions", st.Stats.Served, st.Stats.Promotions)
	}
	if by := s.waitJobRunBy(ctx, job.ID); by != st.Runners[0].GitLabRunnerID {
		t.Errorf("job ran on GitLab runner %d, want the warmed one %d", by, st.Runners[0].GitLabRunnerID)
	}
	if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
		t.Fatalf("success: %d %+v %v", code, hr, err)
	}
	s.waitPool(ctx, egg.Name, "done with the job, Nadir refilled", func(st contract.PoolStatus) bool { return st.Stats.JobsFinished == 1 && settled(st) })
	s.demoteIdle(ctx, egg.Name)
	s.waitPool(ctx, egg.Name, "back to its Nadir runner", nadirReady)

	// A second runner's worth: announced, never asked for.
	s.deliver(ctx, a, gitlabtest.EventPush, secret, gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: project, Ref: "refs/heads/topic", After: "bb22"}))
	s.waitPool(ctx, egg.Name, "promoted for the second push", func(st contract.PoolStatus) bool { return st.Stats.Warmed == 2 })
	st = s.waitPool(ctx, egg.Name, "back to Nadir after warm_for", func(st contract.PoolStatus) bool {
		return st.Stats.Cooled == 1 && nadirReady(st)
	})
	if len(st.Expected) != 0 || st.Stats.Provisioned != 2 {
		t.Errorf("after the unused announcement: expected %+v, %d runners made", st.Expected, st.Stats.Provisioned)
	}
	writeHistory(t, s, "pool_warm", contract.PoolWorkflowID(egg.Name), "")
}

// BenchmarkAnnouncedPipeline measures, on the local provider through the
// webhook path, a job's pending-to-runner time (from its pending hook to
// an Apex runner holding it) when a push announced its pipeline, as a
// ratio to the same job unannounced (its pending hook finds only a Nadir
// runner, which it promotes). The push comes gap before the pending hook
// (GitLab makes the pipeline and its first jobs in between); gap 0 is
// the worst case for the announcement.
func BenchmarkAnnouncedPipeline(b *testing.B) {
	const rounds = 5
	const secret = "webhook-secret-bench"
	for b.Loop() {
		s := Start(b, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		egg := s.warmEgg("announced", time.Minute)
		a := s.StartAPI(secret, egg)
		s.StartPool(ctx, egg, 100*time.Millisecond)
		project := s.GitLab.HookProject(s.Project)
		round := 0
		measure := func(gap time.Duration, announce bool) time.Duration {
			s.waitPool(ctx, egg.Name, "has only its Nadir runner", nadirReady)
			round++
			if announce {
				s.deliver(ctx, a, gitlabtest.EventPush, secret, gitlabtest.PushHookPayload(gitlabtest.PushHookSpec{Project: project, After: fmt.Sprintf("%040x", round)}))
				time.Sleep(gap)
			}
			job := s.GitLab.AddJob(s.Project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}})
			start := time.Now()
			if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
				b.Fatalf("pending: %d %+v %v", code, hr, err)
			}
			s.waitPoolFast(ctx, egg.Name, servedFromApex(job.ID))
			took := time.Since(start)
			s.GitLab.SetJobStatus(s.Project.ID, job.ID, "success", 0)
			if code, hr, err := s.DeliverJobHook(ctx, a, job.ID, secret, gitlabtest.NewUUID()); err != nil || code != http.StatusAccepted {
				b.Fatalf("success: %d %+v %v", code, hr, err)
			}
			// Back to one Nadir runner before the next round.
			s.waitPool(ctx, egg.Name, "done with the job, Nadir refilled", func(st contract.PoolStatus) bool { return !servedFromApex(job.ID)(st) && settled(st) })
			s.demoteIdle(ctx, egg.Name)
			return took
		}
		var cold, gap0, gap3 time.Duration
		for range rounds {
			cold += measure(0, false)
			gap0 += measure(0, true)
			gap3 += measure(3*time.Second, true)
		}
		b.ReportMetric(ms(cold)/rounds, "unannounced-ms")
		b.ReportMetric(ms(gap0)/rounds, "announced-gap0-ms")
		b.ReportMetric(ms(gap3)/rounds, "announced-gap3s-ms")
		b.ReportMetric(float64(gap0)/float64(cold), "gap0/unannounced")
		b.ReportMetric(float64(gap3)/float64(cold), "gap3s/unannounced")
		cancel()
	}
}
