package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/mothergoose"
)

// lostHooksSweep is the sweep interval of the lost-hooks run: short, so
// the run fits in `make test`.
const lostHooksSweep = 2 * time.Second

// SweepAPI is MotherGoose and its API on the stack with the sweep on: its
// Schedules are made by ApplyNest, and the worker's activities run its
// logic.
type SweepAPI struct {
	URL  string
	MG   *mothergoose.MotherGoose
	Nest *fly.Nest

	mu      sync.Mutex
	t       testing.TB
	handler http.Handler
	addr    string
	hs      *http.Server
}

// serve starts an HTTP server for the API on its address.
func (a *SweepAPI) serve(ln net.Listener) {
	hs := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	a.mu.Lock()
	a.hs = hs
	a.mu.Unlock()
	go func() { _ = hs.Serve(ln) }()
}

// Stop takes the API down: its port refuses connections, as GitLab sees
// an API that is not running.
func (a *SweepAPI) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.hs.Close()
}

// Restart brings the API back on the same address.
func (a *SweepAPI) Restart() {
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", a.addr); err == nil {
			a.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("listen on %s again: %v", a.addr, err)
}

// StartSweepAPI serves the eggs with sweeps every interval keeping their
// hooks on the API, starts the worker and applies the Nest (pools, sweep
// schedules). The stack must have been started with NoWorker.
func (s *Stack) StartSweepAPI(secret string, interval time.Duration, nest *fly.Nest) *SweepAPI {
	t := s.T
	ctx := context.Background()
	for ref, v := range map[fly.SecretRef]string{"local://gitlab/webhook": secret, "local://api/token": APIToken} {
		if _, err := s.Secrets.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	if nest.MotherGoose.Providers == nil {
		nest.MotherGoose.Providers = map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	mg, err := mothergoose.Open(ctx, mothergoose.Config{
		Nest: nest, Store: s.Store, Temporal: s.Client, Secrets: s.Secrets, Logger: slog.New(slog.DiscardHandler),
		WebhookURL: url + "/webhooks/gitlab", SweepInterval: interval,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{MotherGoose: mg, APITokens: []fly.SecretRef{"local://api/token"}})
	if err != nil {
		t.Fatal(err)
	}
	a := &SweepAPI{URL: url, MG: mg, Nest: nest, t: t, handler: srv.Handler(), addr: ln.Addr().String()}
	a.serve(ln)
	t.Cleanup(a.Stop)
	actx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go mg.RunOutbox(actx)
	s.Acts.MotherGoose = mg.Operations()
	s.StartWorker()
	if _, err := mg.NestSync().ApplyNest(ctx, nest, "", "e2e"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		_, _ = mothergoose.EnsureNestSchedules(cctx, s.Client.ScheduleClient(), nil)
		for _, e := range nest.Eggs {
			_ = s.Client.TerminateWorkflow(cctx, contract.PoolWorkflowID(e.Name), "", "test over")
		}
	})
	return a
}

// lostHooksReport is what a lost-hooks run measured.
type lostHooksReport struct {
	Jobs          int
	Dropped       int
	FoundBySweep  int
	Worst, Median time.Duration
	// WorstHooked is the worst wait of the jobs whose hook came;
	// WorstFound of those the sweep found.
	WorstHooked, WorstFound time.Duration
	Interval                time.Duration
	Wall                    time.Duration
}

// runLostHooks runs 100 jobs across 3 eggs while 30% of the webhooks are
// lost (seeded) and one project's hook is disabled by GitLab's rule in the
// middle of the run; a project made in a group during the run has jobs
// too. Every job must get a runner; the report says how long the slowest
// waited from pending to runner.
func runLostHooks(t testing.TB) lostHooksReport {
	const (
		jobs   = 100
		secret = "lost-hooks-secret"
	)
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	gl := s.GitLab
	acme, _ := gl.GroupByFullPath("acme")
	b1 := gl.AddProject("acme/b1", acme.ID)
	b2 := gl.AddProject("acme/b2", acme.ID)
	data := gl.AddGroup("data", 0)
	c1 := gl.AddProject("data/c1", data.ID)

	pooled := func(name string) fly.Egg {
		e := s.Egg(name, fly.RunnerVM)
		// One runner taking one job at a time: jobs wait in GitLab's
		// queue, where only a hook or the sweep tells the pool of them.
		e.Runner.MaxConcurrent, e.Runner.JobsPerRunner = 1, 1
		e.Apex = fly.Pool{Min: 1, Max: 1, IdleTimeout: fly.Duration(time.Hour)}
		return e
	}
	alpha := pooled("alpha")
	beta := pooled("beta")
	beta.Kind, beta.Projects = fly.KindBucket, []fly.ProjectRef{{ID: b1.ID, Path: b1.PathWithNamespace}, {Path: b2.PathWithNamespace}}
	gamma := pooled("gamma")
	gamma.Kind, gamma.Projects, gamma.Group = fly.KindBucket, nil, &fly.GroupRef{ID: data.ID}
	nest := &fly.Nest{Eggs: []fly.Egg{alpha, beta, gamma}}
	s.StartSweepAPI(secret, lostHooksSweep, nest)

	// The first sweeps make every project's hook; each pool makes its runner.
	projects := []gitlabtest.Project{s.Project, b1, b2, c1}
	waitFor(t, ctx, "hooks on every project", func() bool {
		for _, p := range projects {
			if len(gl.Hooks(p.ID)) != 1 {
				return false
			}
		}
		return true
	})
	for _, e := range nest.Eggs {
		s.waitPool(ctx, e.Name, "a runner ready", func(st contract.PoolStatus) bool { return st.Counts[contract.PoolApex] == 1 })
	}

	// A job is served once a runner of its egg took it from GitLab (the
	// machines' gitlab-runners run the jobs; their agents report the ends,
	// whatever webhooks are lost).
	var mu sync.Mutex
	created := map[int64]time.Time{}
	projectOf := map[int64]int64{}
	served := map[int64]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			mu.Lock()
			for id := range created {
				if _, seen := served[id]; seen {
					continue
				}
				if j, ok := gl.Job(id); ok && j.RunnerID != 0 {
					served[id] = time.Now()
				}
			}
			n := len(served)
			mu.Unlock()
			if n >= jobs || ctx.Err() != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	gl.DropDeliveriesAtRandom(0.3, 42)
	start := time.Now()
	var c2 gitlabtest.Project
	alphaHook := gl.Hooks(s.Project.ID)[0].ID
	for i := range jobs {
		switch i {
		case 40:
			// GitLab's rule: 4 failed deliveries in a row disable a hook.
			gl.FailNextDeliveries(alphaHook, 4)
		case 50:
			c2 = gl.AddProject("data/c2", data.ID)
			projects = append(projects, c2)
		}
		p := projects[i%len(projects)]
		pl, err := gl.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: fmt.Sprintf("job-%d", i), Stage: "test", Tags: []string{"docker"}, Script: []string{"sleep 0.5"}}}})
		if err != nil {
			t.Fatal(err)
		}
		j := gl.PipelineJobs(pl.ID)[0]
		mu.Lock()
		created[j.ID], projectOf[j.ID] = j.CreatedAt, p.ID
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	rep := lostHooksReport{Jobs: jobs, Dropped: gl.DroppedAtRandom(), Interval: lostHooksSweep, Wall: time.Since(start)}
	mu.Lock()
	var delays []time.Duration
	for id, c := range created {
		if at, ok := served[id]; ok {
			delays = append(delays, at.Sub(c))
		}
	}
	mu.Unlock()
	if len(delays) != jobs {
		t.Fatalf("%d of %d jobs got a runner (%d webhooks dropped)", len(delays), jobs, rep.Dropped)
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	rep.Worst, rep.Median = delays[len(delays)-1], delays[len(delays)/2]

	// What the sweep did is on record.
	recs, err := s.Store.ListAudit(ctx, store.AuditFilter{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, r := range recs {
		actions[r.Action]++
	}
	rep.FoundBySweep = actions[contract.AuditSweepFound]
	foundJobs := map[int64]bool{}
	foundAt := map[int64]time.Time{}
	for _, r := range recs {
		var id int64
		if r.Action == contract.AuditSweepFound {
			if _, err := fmt.Sscanf(r.Reason, "job %d ", &id); err == nil {
				foundJobs[id], foundAt[id] = true, r.At
			}
		}
	}
	var toSweep, toRunner time.Duration
	for id, at := range foundAt {
		toSweep = max(toSweep, at.Sub(created[id]))
		toRunner = max(toRunner, served[id].Sub(at))
	}
	t.Logf("found jobs: pending to sweep at most %s, sweep to runner at most %s", toSweep, toRunner)
	mu.Lock()
	for id, c := range created {
		d := served[id].Sub(c)
		if foundJobs[id] {
			rep.WorstFound = max(rep.WorstFound, d)
		} else {
			rep.WorstHooked = max(rep.WorstHooked, d)
		}
	}
	mu.Unlock()
	if rep.Dropped == 0 || rep.FoundBySweep == 0 {
		t.Errorf("%d deliveries dropped, %d jobs found by the sweep: the run lost nothing", rep.Dropped, rep.FoundBySweep)
	}
	// The disabled hook came back; the project made during the run has one.
	waitFor(t, ctx, "alpha's hook enabled again", func() bool {
		h := gl.Hooks(s.Project.ID)[0]
		return h.DisabledUntil == nil && !h.PermanentlyDisabled
	})
	if actions[contract.AuditWebhookEnabled] == 0 {
		t.Errorf("no webhook-reenabled audit record: %v", actions)
	}
	if len(gl.Hooks(c2.ID)) != 1 {
		t.Errorf("the project made during the run has %d hooks", len(gl.Hooks(c2.ID)))
	}
	var c2Jobs int
	for id, pid := range projectOf {
		if pid == c2.ID && !served[id].IsZero() {
			c2Jobs++
		}
	}
	if c2Jobs == 0 {
		t.Error("no job of the project made during the run was served")
	}
	return rep
}

// With 30% of webhooks lost and a hook disabled mid-run, every job of 100
// across 3 eggs gets a runner, the disabled hook is re-enabled, and a
// project made in a group during the run is served.
func TestLostHooksAllJobsServed(t *testing.T) {
	rep := runLostHooks(t)
	t.Logf("%d jobs, %d webhooks dropped, %d found by the sweep; pending to runner: median %s, worst %s (%.1f sweep intervals of %s; hooked %s, found %s); wall %s",
		rep.Jobs, rep.Dropped, rep.FoundBySweep, rep.Median.Round(time.Millisecond), rep.Worst.Round(time.Millisecond),
		float64(rep.Worst)/float64(rep.Interval), rep.Interval, rep.WorstHooked.Round(time.Millisecond), rep.WorstFound.Round(time.Millisecond), rep.Wall.Round(time.Second))
}

// BenchmarkLostHooks reports the lost-hooks run's worst wait from pending
// to runner, in seconds and in sweep intervals (target: at most one
// interval plus provisioning; the runners here are made before the jobs).
func BenchmarkLostHooks(b *testing.B) {
	for b.Loop() {
		rep := runLostHooks(b)
		b.ReportMetric(rep.Worst.Seconds(), "worst-wait-s")
		b.ReportMetric(rep.Median.Seconds(), "median-wait-s")
		b.ReportMetric(float64(rep.Worst)/float64(rep.Interval), "worst/interval")
		b.ReportMetric(float64(rep.Dropped), "hooks-dropped")
		b.ReportMetric(float64(rep.FoundBySweep), "found-by-sweep")
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	testbin.WaitForContext(t, ctx, what, cond)
}
