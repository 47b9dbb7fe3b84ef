package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
)

// outageSweep is the sweep interval of the outage run.
const outageSweep = 2 * time.Second

// outageLength is how long the outage run keeps the API down:
// $GOSLING_E2E_OUTAGE (a Go duration), else 15 seconds in `make test`;
// BenchmarkOutageRecovery takes a minute.
func outageLength(t testing.TB, def time.Duration) time.Duration {
	v := os.Getenv("GOSLING_E2E_OUTAGE")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("GOSLING_E2E_OUTAGE=%q: want a positive Go duration such as 1m", v)
	}
	return d
}

// outageReport is what an outage run measured.
type outageReport struct {
	Jobs int
	// Failed counts the deliveries GitLab logged as failed during the
	// outage, Redelivered those the sweep resent and the API took.
	Failed, Redelivered int
	Outage              time.Duration
	// Recovery is from the API's return to the last job's runner.
	Recovery time.Duration
}

// runOutage takes the webhook API down while jobs are created on two eggs
// whose pools hold no runner (each job needs its pending hook to get one),
// brings it back after outage, and waits until every job ran. The sweep
// runs with the pending-job part off: only GitLab's log of failed
// deliveries can bring the jobs back. GitLab is self-managed here, with
// its automatic disabling of failing hooks off (the default there): on
// GitLab.com a hook that failed 4 times is disabled and the deliveries
// made meanwhile are not logged, which leaves them to the pending-job
// sweep.
func runOutage(t testing.TB, outage time.Duration) outageReport {
	const secret = "outage-secret"
	s := Start(t, Options{NoWorker: true, GitLab: []gitlabtest.Option{gitlabtest.WithoutWebhookAutoDisabling()}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute+outage)
	defer cancel()
	gl := s.GitLab
	other := gl.AddProject("acme/api", s.Group.ID)
	cold := func(name string, p gitlabtest.Project) fly.Egg {
		e := s.Egg(name, fly.RunnerVM)
		e.Projects = []fly.ProjectRef{{ID: p.ID, Path: p.PathWithNamespace}}
		e.Runner.MaxConcurrent, e.Runner.JobsPerRunner = 2, 1
		e.Apex = fly.Pool{Min: 0, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
		return e
	}
	nest := &fly.Nest{Eggs: []fly.Egg{cold("alpha", s.Project), cold("beta", other)}}
	nest.MotherGoose.Sweep.NoPendingJobs = true
	api := s.StartSweepAPI(secret, outageSweep, nest)
	projects := []gitlabtest.Project{s.Project, other}
	waitFor(t, ctx, "hooks on both projects", func() bool {
		return len(gl.Hooks(s.Project.ID)) == 1 && len(gl.Hooks(other.ID)) == 1
	})

	api.Stop()
	down := time.Now()
	var jobs []gitlabtest.Job
	for i, p := range []gitlabtest.Project{s.Project, s.Project, other} {
		pl, err := gl.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: fmt.Sprintf("job-%d", i), Stage: "test", Tags: []string{"docker"}, Script: []string{"true"}}}})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, gl.PipelineJobs(pl.ID)...)
	}
	// pendingKey is the Idempotency-Key of a job's pending hook.
	pendingKey := func(j gitlabtest.Job) (key string, failed bool) {
		for _, p := range projects {
			for _, h := range gl.Hooks(p.ID) {
				for _, e := range gl.HookEvents(h.ID) {
					var d struct {
						ID     int64  `json:"build_id"`
						Status string `json:"build_status"`
					}
					if json.Unmarshal(e.RequestData, &d) == nil && d.ID == j.ID && d.Status == "pending" {
						return e.RequestHeaders["Idempotency-Key"], e.ResponseStatus == "internal error"
					}
				}
			}
		}
		return "", false
	}
	waitFor(t, ctx, "every pending hook failed", func() bool {
		for _, j := range jobs {
			if _, failed := pendingKey(j); !failed {
				return false
			}
		}
		return true
	})
	select {
	case <-time.After(time.Until(down.Add(outage))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	api.Restart()
	up := time.Now()
	rep := outageReport{Jobs: len(jobs), Outage: up.Sub(down)}
	waitFor(t, ctx, "every job served", func() bool {
		for _, j := range jobs {
			if got, _ := gl.Job(j.ID); got.RunnerID == 0 {
				return false
			}
		}
		return true
	})
	rep.Recovery = time.Since(up)
	waitFor(t, ctx, "every job finished", func() bool {
		for _, j := range jobs {
			if got, _ := gl.Job(j.ID); got.Status != "success" {
				return false
			}
		}
		return true
	})

	// Each job's pending hook came back through the normal path: GitLab's
	// log holds an accepted delivery with its Idempotency-Key, made after
	// the API's return; the pending-job sweep found nothing, being off.
	failedKeys, resentKeys := map[string]bool{}, map[string]bool{}
	for _, p := range projects {
		for _, h := range gl.Hooks(p.ID) {
			for _, e := range gl.HookEvents(h.ID) {
				key := e.RequestHeaders["Idempotency-Key"]
				switch {
				case e.ResponseStatus == "internal error" && e.CreatedAt.Before(up):
					failedKeys[key] = true
				case e.Successful() && !e.CreatedAt.Before(up):
					resentKeys[key] = true
				}
			}
		}
	}
	rep.Failed = len(failedKeys)
	for key := range failedKeys {
		if resentKeys[key] {
			rep.Redelivered++
		}
	}
	for _, j := range jobs {
		if key, _ := pendingKey(j); !resentKeys[key] {
			t.Errorf("job %d: its pending hook (Idempotency-Key %s) was never delivered again", j.ID, key)
		}
	}
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	audited := 0
	for _, r := range recs {
		switch r.Action {
		case contract.AuditSweepFound:
			t.Errorf("the pending-job sweep is off, yet: %s", r.Reason)
		case contract.AuditRedelivered:
			audited++
		}
	}
	if audited == 0 {
		t.Error("no webhook-redelivered audit record")
	}
	return rep
}

// With the API down, the jobs created meanwhile lose their pending hooks;
// once it is back, the sweep resends them from GitLab's delivery log and
// every job is served, with the pending-job sweep off.
func TestOutageDeliveriesResent(t *testing.T) {
	rep := runOutage(t, outageLength(t, 15*time.Second))
	t.Logf("%d jobs, API down %s, %d deliveries failed, %d resent and accepted; API back to every job's runner: %s",
		rep.Jobs, rep.Outage.Round(time.Second), rep.Failed, rep.Redelivered, rep.Recovery.Round(100*time.Millisecond))
}

// BenchmarkOutageRecovery reports how long after a minute-long API outage
// every job created during it has a runner, through resends alone.
func BenchmarkOutageRecovery(b *testing.B) {
	for b.Loop() {
		rep := runOutage(b, outageLength(b, time.Minute))
		b.ReportMetric(rep.Recovery.Seconds(), "recovery-s")
		b.ReportMetric(float64(rep.Redelivered), "redelivered")
		b.ReportMetric(rep.Outage.Seconds(), "outage-s")
	}
}
