package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

// Sweep defaults.
const (
	defaultSweepConcurrency = 4
	// staleSweeps: a demand recorded this many intervals ago for a job
	// GitLab still lists as pending is sent again (see SweepEgg).
	staleSweeps = 3
)

// sweepProject is one project a sweep looks at.
type sweepProject struct {
	// ref is the project's ID, or its path when the Nest names only that.
	ref  any
	id   int64
	path string
}

// label names the project in metrics and records: its path, or its ID
// when the Nest names it by ID only.
func (p sweepProject) label() string {
	if p.path != "" {
		return p.path
	}
	return fmt.Sprint(p.ref)
}

// SweepEgg is one pass of an egg's pending-job sweep, so that no job waits
// for a webhook that never came. GitLab does not resend a failed delivery,
// drops deliveries past its limits and disables a hook that keeps failing,
// without telling anyone: the sweep asks instead.
//
// It lists the egg's projects: those it names and, for a bucket of a
// group, every project of the group (and its subgroups when asked) as the
// API lists them now, so a project made later is served too. For each
// project it keeps Gosling's webhook in place (see keepHook) when
// in.WebhookURL is set, resends the deliveries GitLab logged as failed
// (see resendFailed; not with in.SkipResend), and, unless
// in.SkipPendingJobs, lists the pending jobs (GET
// /projects/:id/jobs?scope[]=pending, every page; 429s are waited out as
// Retry-After says). A pending job whose tags the egg's runners carry, and
// for which no demand is recorded in the job history (no Job Hook with
// status pending or later was taken), is served exactly as if its hook had
// arrived: recorded, then dispatched with the same Temporal call and
// workflow ID, so the hook, should it come late, is a duplicate. It is
// audited (sweep-found) and counted (gosling_sweep_jobs_found_total).
// Whether the demand is recorded is asked of the egg's pool when it has one
// (one query a pass: the jobs it holds, waiting or on a runner); for eggs
// of per-job runners, of the job history: a taken pending Job Hook leaves
// the job's queued time (a Pipeline Hook does not). A demand recorded
// longer ago than in.StaleAfter for a job that is still pending is sent
// again, which the runner workflow ignores if it has it, so a delivery that
// was recorded but whose Temporal call was lost is not left waiting
// either.
//
// A project that cannot be read is reported in the result's Errors and
// the pass goes on; the error returned is only for a pass that could not
// start (no token, no project list).
func (m *Operations) SweepEgg(ctx context.Context, in contract.SweepInput) (contract.SweepResult, error) {
	egg := in.Egg
	res := contract.SweepResult{Egg: egg.Name}
	calls := &atomic.Int64{}
	c, err := m.sweepClient(ctx, &egg, calls)
	if err != nil {
		return res, err
	}
	projects, err := m.sweepProjects(ctx, c, &egg)
	if err != nil {
		m.metrics.ObserveSweepPass(egg.Name, "failed")
		res.APICalls = int(calls.Load())
		return res, err
	}
	res.Projects = len(projects)
	var secret string
	if in.WebhookURL != "" {
		if secret, err = m.cache.get(ctx, egg.GitLab.WebhookSecret); err != nil {
			return res, fmt.Errorf("webhook secret of egg %s: %w", egg.Name, err)
		}
	}
	stale := in.StaleAfter
	if stale <= 0 {
		stale = staleSweeps * max(in.Interval, time.Second)
	}
	sw := &sweep{m: m, in: in, c: c, secret: secret, stale: stale, host: strings.ToLower(egg.GitLab.Host),
		nest: &fly.Nest{Eggs: []fly.Egg{egg}, MotherGoose: fly.MotherGoose{Providers: in.Providers}}}
	if contract.UsesPool(egg) {
		// The pool says exactly which jobs it holds: one query a pass.
		st, running, err := m.PoolStatusIfRunning(ctx, egg.Name)
		switch {
		case err != nil:
			m.log.WarnContext(ctx, "sweep: the pool cannot say which jobs it holds; judging by the job history", "egg", egg.Name, "error", err)
		case running:
			sw.held = poolJobs(st)
		default:
			sw.held = map[int64]bool{}
		}
	}
	conc := in.Concurrency
	if conc <= 0 {
		conc = defaultSweepConcurrency
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, p := range projects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sw.project(ctx, p)
		}()
	}
	wg.Wait()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	out := sw.res
	out.Egg, out.Projects, out.APICalls = egg.Name, len(projects), int(calls.Load())
	res = out
	result := "ok"
	if len(res.Errors) > 0 {
		result = "partial"
	}
	m.metrics.ObserveSweepPass(egg.Name, result)
	m.metrics.ObserveSweepFound(egg.Name, res.Found)
	if res.Found > 0 || res.Resent > 0 || res.Redelivered > 0 || len(res.Errors) > 0 {
		m.log.InfoContext(ctx, "sweep", "egg", egg.Name, "projects", res.Projects, "pending", res.Pending,
			"found", res.Found, "resent", res.Resent, "redelivered", res.Redelivered, "errors", len(res.Errors))
	}
	return res, nil
}

// sweep is one pass in progress.
type sweep struct {
	m      *Operations
	in     contract.SweepInput
	c      *gitlab.Client
	nest   *fly.Nest
	secret string
	host   string
	stale  time.Duration

	// held are the jobs the egg's pool holds (waiting or on a runner); nil
	// for an egg without a pool, whose demands are judged by the history.
	held map[int64]bool

	mu  sync.Mutex
	res contract.SweepResult
}

// poolJobs are the jobs a pool holds.
func poolJobs(st contract.PoolStatus) map[int64]bool {
	held := map[int64]bool{}
	for _, r := range st.Runners {
		for _, j := range r.Jobs {
			held[j] = true
		}
	}
	for _, w := range st.WaitingJobs {
		held[w] = true
	}
	return held
}

func (sw *sweep) fail(p sweepProject, what string, err error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if len(sw.res.Errors) < 20 {
		sw.res.Errors = append(sw.res.Errors, fmt.Sprintf("project %s: %s: %v", p.label(), what, err))
	}
}

func (sw *sweep) add(f func(r *contract.SweepResult)) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	f(&sw.res)
}

// project sweeps one project: its hook, the deliveries GitLab failed to
// make to it, then its pending jobs.
func (sw *sweep) project(ctx context.Context, p sweepProject) {
	if sw.in.WebhookURL != "" {
		hook, err := sw.keepHook(ctx, p)
		if err != nil {
			sw.fail(p, "webhook", err)
		}
		if hook != nil && !sw.in.SkipResend {
			sw.resendFailed(ctx, p, hook)
		}
	}
	if sw.in.SkipPendingJobs {
		return
	}
	jobs, _, err := sw.c.ListPendingJobs(ctx, p.ref)
	if err != nil {
		sw.fail(p, "pending jobs", err)
		return
	}
	egg := &sw.in.Egg
	for _, j := range jobs {
		if ok, _ := contract.TagsMatch(egg.Runner, j.TagList); !ok {
			sw.add(func(r *contract.SweepResult) { r.Pending++; r.Foreign++ })
			continue
		}
		sw.add(func(r *contract.SweepResult) { r.Pending++ })
		if err := sw.serve(ctx, p, j); err != nil {
			sw.fail(p, fmt.Sprintf("job %d", j.ID), err)
		}
	}
}

// serve serves a pending job whose demand is not recorded, or is stale.
func (sw *sweep) serve(ctx context.Context, p sweepProject, j gitlab.PendingJob) error {
	m, egg := sw.m, &sw.in.Egg
	now := m.now()
	rec, err := m.store.GetJob(ctx, sw.host, j.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = nil
	case err != nil:
		return fmt.Errorf("read the job's history: %w", err)
	}
	// A Job Hook with status pending, once taken, leaves a record with the
	// time the job was queued; a Pipeline Hook records its jobs without.
	heard := rec != nil && !beforePending(rec.Status) && rec.QueuedAt != nil
	resend := false
	switch {
	case sw.held != nil && sw.held[j.ID]:
		return nil // the pool has it
	case sw.held != nil:
		resend = heard // the pool lost it, or never got the call
	case heard && (rec.Status != "pending" || now.Sub(rec.UpdatedAt) < sw.stale):
		return nil // its hook came: the demand is recorded
	case heard:
		resend = true
	}
	path := j.ProjectPath
	if path == "" {
		path = p.path
	}
	projectID := j.ProjectID
	if projectID == 0 {
		projectID = p.id
	}
	jr := store.JobRecord{
		GitLabHost: sw.host, JobID: j.ID, ProjectID: projectID, ProjectPath: path, Egg: egg.Name, Name: j.Name, Ref: j.Ref,
		PipelineID: j.PipelineID, Status: "pending", UpdatedAt: now,
	}
	if !j.CreatedAt.IsZero() {
		created := j.CreatedAt
		jr.QueuedAt = &created
	}
	merged, err := m.store.RecordJob(ctx, jr)
	if err != nil {
		return fmt.Errorf("record the job: %w", err)
	}
	if merged.Status != "pending" {
		return nil // a hook told of a later status meanwhile: no runner to make
	}
	in, ok, err := m.cfg.Dispatch(sw.nest, egg, JobEvent{
		Host: sw.host, ProjectID: projectID, ProjectPath: path, JobID: j.ID, Name: j.Name, Status: "pending", At: now,
	})
	if err != nil || !ok {
		return fmt.Errorf("dispatch: %w", err)
	}
	in = demandWithTags(in, j.TagList)
	if _, err := m.deliver(ctx, in); err != nil {
		return fmt.Errorf("dispatch to %s: %w", in.WorkflowID, err)
	}
	waited := time.Duration(0)
	if !j.CreatedAt.IsZero() {
		waited = now.Sub(j.CreatedAt)
	}
	if resend {
		sw.add(func(r *contract.SweepResult) { r.Resent++ })
		m.log.InfoContext(ctx, "sweep: demand sent again", "egg", egg.Name, "job", j.ID, "workflow_id", in.WorkflowID)
		return nil
	}
	sw.add(func(r *contract.SweepResult) {
		r.Found++
		r.OldestPending = max(r.OldestPending, waited)
	})
	m.audit(ctx, store.AuditRecord{
		Actor: contract.ActorMotherGoose, Action: contract.AuditSweepFound, Egg: egg.Name,
		Reason: fmt.Sprintf("job %d (%s) of project %s was pending for %s and no Job Hook had brought it: found by the sweep and served as %s",
			j.ID, truncate(j.Name, 100), truncate(path, 200), waited.Round(time.Second), in.WorkflowID),
		Key: "sweep-found/" + sw.host + "/" + fmt.Sprint(j.ID),
	})
	return nil
}

// sweepProjects lists the projects an egg serves now: those it names and
// the current projects of its group (archived ones left out).
func (m *Operations) sweepProjects(ctx context.Context, c *gitlab.Client, egg *fly.Egg) ([]sweepProject, error) {
	var out []sweepProject
	seen := map[string]bool{}
	for _, p := range egg.Projects {
		sp := sweepProject{id: p.ID, path: p.Path}
		if p.ID != 0 {
			sp.ref = p.ID
		} else {
			sp.ref = p.Path
		}
		key := fmt.Sprint(sp.ref)
		if !seen[key] {
			seen[key] = true
			out = append(out, sp)
		}
	}
	if egg.Group != nil {
		ps, err := c.ListGroupProjects(ctx, egg.Group.ID, egg.Group.IncludeSubgroups)
		if err != nil {
			return nil, fmt.Errorf("list the projects of group %d of egg %s: %w", egg.Group.ID, egg.Name, err)
		}
		for _, p := range ps {
			if p.Archived || seen[fmt.Sprint(p.ID)] || seen[p.PathWithNamespace] {
				continue
			}
			seen[fmt.Sprint(p.ID)] = true
			out = append(out, sweepProject{ref: p.ID, id: p.ID, path: p.PathWithNamespace})
		}
	}
	return out, nil
}

// sweepClient is a GitLab client with the egg's token that counts the HTTP
// requests it makes (retries included) in calls.
func (m *Operations) sweepClient(ctx context.Context, egg *fly.Egg, calls *atomic.Int64) (*gitlab.Client, error) {
	token, err := m.cache.get(ctx, egg.GitLab.Token)
	if err != nil {
		return nil, fmt.Errorf("GitLab token of egg %s: %w", egg.Name, err)
	}
	hc := &http.Client{Transport: countingTransport{base: http.DefaultTransport, n: calls}, Timeout: gitlab.DefaultHTTPTimeout}
	opts := append([]gitlab.Option{gitlab.WithLogger(m.log)}, m.cfg.GitLabOptions...)
	return gitlab.New(egg.GitLab.BaseURL(), token, append(opts, gitlab.WithHTTPClient(hc))...)
}

// countingTransport counts the requests sent through it.
type countingTransport struct {
	base http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.base.RoundTrip(r)
}

// demandWithTags gives a pool's demand the job's tags, which the Jobs API
// listed with it: the pool need not read them again.
func demandWithTags(in Intent, tags []string) Intent {
	if in.Signal != contract.SignalDemand {
		return in
	}
	var d contract.Demand
	if json.Unmarshal(in.SignalArg, &d) != nil {
		return in
	}
	if tags == nil {
		tags = []string{}
	}
	d.Job.Tags = tags
	if b, err := json.Marshal(d); err == nil {
		in.SignalArg = b
	}
	return in
}
