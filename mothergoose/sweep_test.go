package mothergoose

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// sweepEnv is MotherGoose with a GitLab test server, a SQLite store, local
// secrets and a Temporal that cannot be reached: what a sweep dispatches
// waits in the outbox, where the test reads it.
type sweepEnv struct {
	t       testing.TB
	gl      *gitlabtest.Server
	mg      *MotherGoose
	st      store.Store
	metrics *metrics.Metrics
	host    string
	// endpoint stands for Gosling's webhook endpoint; up says whether it
	// answers 200.
	endpoint *httptest.Server
	up       atomic.Bool
	// received are the Idempotency-Keys of the deliveries it took.
	mu       sync.Mutex
	received []string
}

func newSweepEnv(t testing.TB) *sweepEnv {
	t.Helper()
	return newSweepEnvWith(t, time.Now)
}

// newSweepEnvWith is newSweepEnv on a clock of the test's, which
// MotherGoose and GitLab (with automatic disabling off, as self-managed
// instances have it) share.
func newSweepEnvWith(t testing.TB, now func() time.Time, glOpts ...gitlabtest.Option) *sweepEnv {
	t.Helper()
	ctx := context.Background()
	e := &sweepEnv{t: t, gl: gitlabtest.New(append([]gitlabtest.Option{gitlabtest.WithClock(now)}, glOpts...)...)}
	t.Cleanup(e.gl.Close)
	u, _ := url.Parse(e.gl.URL())
	e.host = u.Host
	e.up.Store(true)
	e.endpoint = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		e.mu.Lock()
		e.received = append(e.received, r.Header.Get("Idempotency-Key"))
		e.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(e.endpoint.Close)
	dir := t.TempDir()
	var err error
	if e.st, err = store.Open(ctx, "sqlite://"+filepath.Join(dir, "gosling.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	local, err := secretstore.OpenLocal(filepath.Join(dir, "secrets"))
	if err != nil {
		t.Fatal(err)
	}
	res := secretstore.NewResolver(local)
	for ref, v := range map[fly.SecretRef]string{"local://gitlab/token": e.gl.Token(), "local://gitlab/webhook": "hook-secret"} {
		if _, err := res.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tc, err := client.NewLazyClient(client.Options{HostPort: addr, Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	e.metrics = metrics.New()
	e.mg, err = Open(ctx, Config{Nest: &fly.Nest{}, Store: e.st, Secrets: res, Temporal: tc, Metrics: e.metrics, Now: now,
		TemporalTimeout: 300 * time.Millisecond, GitLabOptions: []gitlab.Option{gitlab.WithRetry(2, time.Millisecond, 10*time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.mg.Close() })
	return e
}

func (e *sweepEnv) egg(name string) fly.Egg {
	return fly.Egg{
		Name: name, Kind: fly.KindEgg,
		GitLab: fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://gitlab/webhook"},
		Runner: fly.Runner{Type: fly.RunnerServerless, Clouds: []string{fly.CloudLocal}, Tags: []string{"docker"}, CPU: 1, Memory: fly.GiB,
			ExpectedJobDuration: fly.Duration(time.Minute)},
	}
}

func (e *sweepEnv) sweep(egg fly.Egg) contract.SweepResult {
	e.t.Helper()
	res, err := e.mg.ops.SweepEgg(context.Background(), contract.SweepInput{
		Egg: egg, Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
		WebhookURL: e.endpoint.URL + "/webhooks/gitlab", Interval: time.Minute,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// queued lists the runner workflow IDs of the jobs waiting in the outbox,
// whichever workflow (a pool, a gate, the job's own) the call goes to.
func (e *sweepEnv) queued() []string {
	e.t.Helper()
	due, err := e.st.DueOutbox(context.Background(), time.Now().Add(time.Hour), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, d := range due {
		var in Intent
		if err := json.Unmarshal(d.Payload, &in); err != nil {
			e.t.Fatal(err)
		}
		var arg struct {
			Job   contract.JobRef `json:"job"`
			JobID int64           `json:"job_id"`
		}
		if err := json.Unmarshal(in.SignalArg, &arg); err != nil {
			e.t.Fatal(err)
		}
		id := arg.JobID
		if id == 0 {
			id = arg.Job.JobID
		}
		ids = append(ids, contract.RunnerWorkflowID(e.host, id))
	}
	slices.Sort(ids)
	return ids
}

func (e *sweepEnv) audits(action string) []store.AuditRecord {
	e.t.Helper()
	recs, err := e.st.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditRecord
	for _, r := range recs {
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

// A pending job no hook brought is served as its hook would have been
// (recorded, the same workflow ID); one whose hook came is left alone
// unless its demand is stale; jobs of other tags are not this egg's.
func TestSweepServesPendingJobsWithoutDemand(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	g := e.gl.AddGroup("acme", 0)
	p := e.gl.AddProject("acme/web", g.ID)
	egg := e.egg("web")
	egg.Projects = []fly.ProjectRef{{Path: p.PathWithNamespace}}
	lost := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "lost", Tags: []string{"docker"}})
	heard := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "heard", Tags: []string{"docker"}})
	stale := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "stale", Tags: []string{"docker"}})
	created := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "created-only", Tags: []string{"docker"}})
	foreign := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "gpu", Tags: []string{"gpu"}})
	piped := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "pipeline-hook-only", Tags: []string{"docker"}})
	running := e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "running", Tags: []string{"docker"}})
	e.gl.SetJobStatus(p.ID, running.ID, "running", 0)
	now := time.Now()
	// A taken pending Job Hook records when the job was queued; a Pipeline
	// Hook records its jobs without.
	for _, r := range []store.JobRecord{
		{GitLabHost: e.host, JobID: heard.ID, ProjectID: p.ID, Egg: "web", Status: "pending", QueuedAt: &now, UpdatedAt: now},
		{GitLabHost: e.host, JobID: stale.ID, ProjectID: p.ID, Egg: "web", Status: "pending", QueuedAt: &now, UpdatedAt: now.Add(-time.Hour)},
		{GitLabHost: e.host, JobID: created.ID, ProjectID: p.ID, Egg: "web", Status: "created", UpdatedAt: now},
		{GitLabHost: e.host, JobID: piped.ID, ProjectID: p.ID, Egg: "web", Status: "pending", UpdatedAt: now},
	} {
		if _, err := e.st.RecordJob(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	before := len(e.gl.Requests())
	res := e.sweep(egg)
	if res.Projects != 1 || res.Pending != 6 || res.Found != 3 || res.Resent != 1 || res.Foreign != 1 || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	if res.APICalls != len(e.gl.Requests())-before {
		t.Errorf("counted %d API calls, the server answered %d", res.APICalls, len(e.gl.Requests())-before)
	}
	want := []string{contract.RunnerWorkflowID(e.host, lost.ID), contract.RunnerWorkflowID(e.host, stale.ID), contract.RunnerWorkflowID(e.host, created.ID),
		contract.RunnerWorkflowID(e.host, piped.ID)}
	slices.Sort(want)
	if got := e.queued(); !slices.Equal(got, want) {
		t.Errorf("dispatched %v, want %v", got, want)
	}
	rec, err := e.st.GetJob(ctx, e.host, lost.ID)
	if err != nil || rec.Status != "pending" || rec.Egg != "web" || rec.Name != "lost" || rec.QueuedAt == nil || rec.ProjectID != p.ID {
		t.Errorf("history of the found job: %+v, %v", rec, err)
	}
	if found := e.audits(contract.AuditSweepFound); len(found) != 3 || !strings.Contains(found[0].Reason, "found by the sweep") {
		t.Errorf("sweep-found audits %+v", found)
	}
	if n := metricValue(t, e.metrics, "gosling_sweep_jobs_found_total", "egg", "web"); n != 3 {
		t.Errorf("gosling_sweep_jobs_found_total{egg=web} = %v, want 3", n)
	}
	// The next pass finds the demand recorded.
	if res := e.sweep(egg); res.Found != 0 || res.Resent != 0 {
		t.Errorf("second pass %+v", res)
	}
	_ = foreign
}

// metricValue reads one sample of a counter or gauge, -1 when absent.
func metricValue(t *testing.T, m *metrics.Metrics, name string, labels ...string) float64 {
	t.Helper()
	// The pools' gauges cannot be read without Temporal: the rest can.
	mfs, _ := m.Registry().Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, s := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range s.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if c := s.GetCounter(); c != nil {
				return c.GetValue()
			}
			return s.GetGauge().GetValue()
		}
	}
	return -1
}

// The sweep keeps Gosling's hook on each project: made when missing,
// brought back once GitLab disabled it and the endpoint answers again
// (alerting while it does not), saved again when it lost its events.
func TestSweepKeepsWebhooks(t *testing.T) {
	e := newSweepEnv(t)
	ctx := context.Background()
	g := e.gl.AddGroup("acme", 0)
	p := e.gl.AddProject("acme/web", g.ID)
	egg := e.egg("web")
	egg.Projects = []fly.ProjectRef{{ID: p.ID}}
	hookURL := e.endpoint.URL + "/webhooks/gitlab"

	if res := e.sweep(egg); res.HooksCreated != 1 {
		t.Fatalf("first pass %+v", res)
	}
	hooks := e.gl.Hooks(p.ID)
	if len(hooks) != 1 || hooks[0].URL != hookURL || hooks[0].Token != "hook-secret" || !hooks[0].JobEvents || !hooks[0].PipelineEvents || hooks[0].PushEvents {
		t.Fatalf("hooks %+v", hooks)
	}
	if len(e.audits(contract.AuditWebhookMissing)) != 1 {
		t.Error("the missing hook was not audited")
	}
	if res := e.sweep(egg); res.HooksCreated+res.HooksEnabled+res.HooksRepaired+res.HooksDisabled != 0 {
		t.Errorf("second pass changed hooks: %+v", res)
	}

	// GitLab disables the hook after 4 failed deliveries; while the
	// endpoint fails, the hook stays disabled and an alert is raised.
	e.up.Store(false)
	e.gl.PutFile(p.ID, gitlabtest.CIConfigPath, []byte("build:\n  tags: [docker]\n  script: [make]\n"))
	for i := 0; i < 20 && !e.gl.Hooks(p.ID)[0].PermanentlyDisabled && e.gl.Hooks(p.ID)[0].DisabledUntil == nil; i++ {
		if _, err := e.gl.CreatePipelineFromCIConfig(p.ID, "main", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.gl.Hooks(p.ID)[0].DisabledUntil == nil {
		t.Fatal("the hook was never disabled")
	}
	res := e.sweep(egg)
	if res.HooksDisabled != 1 || res.Found == 0 {
		t.Fatalf("pass with the hook disabled %+v", res)
	}
	if v := metricValue(t, e.metrics, "gosling_webhook_disabled", "egg", "web", "project", fmt.Sprint(p.ID)); v != 1 {
		t.Errorf("gosling_webhook_disabled = %v, want 1", v)
	}
	e.sweep(egg) // not tested again so soon; not audited twice
	if n := len(e.audits(contract.AuditWebhookDisabled)); n != 1 {
		t.Errorf("%d webhook-disabled audits, want 1", n)
	}
	// Once the endpoint answers, a test delivery brings the hook back.
	e.up.Store(true)
	e.mg.ops.hooks = hookMemory{}
	if res := e.sweep(egg); res.HooksEnabled != 1 {
		t.Fatalf("pass with the endpoint back %+v", res)
	}
	if h := e.gl.Hooks(p.ID)[0]; h.DisabledUntil != nil || h.PermanentlyDisabled || h.RecentFailures != 0 {
		t.Errorf("hook after the pass %+v", h)
	}
	if v := metricValue(t, e.metrics, "gosling_webhook_disabled", "egg", "web", "project", fmt.Sprint(p.ID)); v != 0 {
		t.Errorf("gosling_webhook_disabled = %v, want 0", v)
	}
	if len(e.audits(contract.AuditWebhookEnabled)) != 1 {
		t.Error("the re-enabling was not audited")
	}
	// A hook that lost its job events is saved again with them.
	c, err := gitlab.New(e.gl.URL(), e.gl.Token())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EditProjectHook(ctx, p.ID, hooks[0].ID, gitlab.HookSpec{URL: hookURL, PipelineEvents: true}); err != nil {
		t.Fatal(err)
	}
	if res := e.sweep(egg); res.HooksRepaired != 1 || !e.gl.Hooks(p.ID)[0].JobEvents {
		t.Errorf("repair pass %+v, hook %+v", res, e.gl.Hooks(p.ID)[0])
	}
}

// A bucket of a group serves the projects the group has at each pass: a
// project made later gets a hook and its jobs are served.
func TestSweepCoversGroupProjectsMadeLater(t *testing.T) {
	e := newSweepEnv(t)
	g := e.gl.AddGroup("data", 0)
	sub := e.gl.AddGroup("etl", g.ID)
	p1 := e.gl.AddProject("data/a", g.ID)
	p2 := e.gl.AddProject("data/etl/b", sub.ID)
	egg := e.egg("data")
	egg.Kind, egg.Group = fly.KindBucket, &fly.GroupRef{ID: g.ID, IncludeSubgroups: true}
	if res := e.sweep(egg); res.Projects != 2 || res.HooksCreated != 2 {
		t.Fatalf("first pass %+v", res)
	}
	p3 := e.gl.AddProject("data/etl/c", sub.ID)
	job := e.gl.AddJob(p3.ID, gitlabtest.JobSpec{Name: "late", Tags: []string{"docker"}})
	res := e.sweep(egg)
	if res.Projects != 3 || res.HooksCreated != 1 || res.Found != 1 {
		t.Fatalf("pass after a new project %+v", res)
	}
	if len(e.gl.Hooks(p3.ID)) != 1 || len(e.gl.Hooks(p1.ID)) != 1 || len(e.gl.Hooks(p2.ID)) != 1 {
		t.Error("a project of the group has no hook")
	}
	if got := e.queued(); !slices.Equal(got, []string{contract.RunnerWorkflowID(e.host, job.ID)}) {
		t.Errorf("dispatched %v", got)
	}
}

// BenchmarkSweepPass measures one sweep pass of a group bucket of 200
// projects with 2,000 pending jobs: the first pass finds (and dispatches,
// here to the outbox) every job, a second one is the steady state where
// every demand is recorded. It reports GitLab API calls and seconds.
func BenchmarkSweepPass(b *testing.B) {
	const projects, perProject = 200, 10
	for b.Loop() {
		e := newSweepEnv(b)
		g := e.gl.AddGroup("big", 0)
		for i := range projects {
			p := e.gl.AddProject(fmt.Sprintf("big/p%03d", i), g.ID)
			for range perProject {
				e.gl.AddJob(p.ID, gitlabtest.JobSpec{Name: "build", Tags: []string{"docker"}})
			}
		}
		egg := e.egg("big")
		egg.Kind, egg.Group = fly.KindBucket, &fly.GroupRef{ID: g.ID}
		in := contract.SweepInput{Egg: egg, Providers: map[string]fly.Provider{fly.CloudLocal: {Name: fly.CloudLocal}},
			WebhookURL: e.endpoint.URL + "/webhooks/gitlab", Interval: time.Minute}
		ctx := context.Background()
		start := time.Now()
		first, err := e.mg.ops.SweepEgg(ctx, in)
		firstTook := time.Since(start)
		if err != nil || first.Found != projects*perProject || first.HooksCreated != projects {
			b.Fatalf("first pass %+v, %v", first, err)
		}
		start = time.Now()
		steady, err := e.mg.ops.SweepEgg(ctx, in)
		steadyTook := time.Since(start)
		if err != nil || steady.Found != 0 || steady.Pending != projects*perProject {
			b.Fatalf("second pass %+v, %v", steady, err)
		}
		b.ReportMetric(float64(first.APICalls), "first-api-calls")
		b.ReportMetric(firstTook.Seconds(), "first-s")
		b.ReportMetric(float64(steady.APICalls), "steady-api-calls")
		b.ReportMetric(steadyTook.Seconds(), "steady-s")
	}
}
