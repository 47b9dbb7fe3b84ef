package mothergoose

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// webhookDeadline bounds the processing of one delivery: GitLab gives up
// after 10 seconds.
const webhookDeadline = 8 * time.Second

// truncate bounds a string taken from a request before it is echoed.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Webhook answer statuses (Result.Status).
const (
	StatusAccepted  = "accepted"
	StatusQueued    = "queued"
	StatusDuplicate = "duplicate"
	StatusIgnored   = "ignored"
)

// Result is what MotherGoose did with a delivery.
type Result struct {
	Status     string `json:"status"`
	WorkflowID string `json:"workflow_id,omitempty"`
	OutboxID   int64  `json:"outbox_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// Event is a decoded webhook delivery: what every event has, and the details of
// the events Gosling acts on (exactly one of Job, Pipeline, Push and
// MergeRequest is set for those).
type Event struct {
	// Event is the X-Gitlab-Event value, with Build Hook read as Job Hook.
	Event string
	// Ignored is set for GitLab events Gosling does not act on.
	Ignored    bool
	ObjectKind string
	// EventName is the event_name of group and system hook events
	// (project_create, ...); "" for the rest.
	EventName string
	// ProjectID is 0 only for ignored events without a project.
	ProjectID int64
	// ProjectPath is the project's full path (group/sub/project) as the
	// body names it in any of the fields GitLab has used; "" when none.
	ProjectPath string
	// InstanceURL is the GitLab instance's base URL as the body's project
	// or repository URLs give it; "" when they give none.
	InstanceURL string

	Job          *JobHook
	Pipeline     *PipelineHook
	Push         *PushHook
	MergeRequest *MergeRequestHook
}

// JobHook is the part of a Job Hook Gosling uses.
type JobHook struct {
	ID         int64
	Name       string
	Stage      string
	Status     string
	Ref        string
	Tag        bool
	PipelineID int64
	CreatedAt  *time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Duration and QueuedDuration are zero when GitLab sent null.
	Duration       time.Duration
	QueuedDuration time.Duration
	AllowFailure   bool
	FailureReason  string
	RetriesCount   int64
	// RunnerID is 0 until a runner picks the job (runner is null).
	RunnerID int64
}

// PipelineHook is the part of a Pipeline Hook Gosling uses.
type PipelineHook struct {
	ID     int64
	Status string
	Ref    string
	// SHA is the pipeline's commit; Source what made it (push,
	// merge_request_event, web, schedule, ...).
	SHA    string
	Source string
	// MergeRequest is the merge request a merge request pipeline runs
	// for; nil for others (GitLab sends null).
	MergeRequest *PipelineMergeRequest
	Builds       []PipelineBuild
}

// PipelineMergeRequest is the merge_request object of a Pipeline Hook.
type PipelineMergeRequest struct {
	ID  int64
	IID int64
	URL string
}

// MergeRequestHook is the part of a Merge Request Hook Gosling uses
// (object_attributes).
type MergeRequestHook struct {
	ID  int64
	IID int64
	// Action is open, reopen, update, close, merge, approved, ...; State
	// opened, closed, merged, locked.
	Action       string
	State        string
	SourceBranch string
	TargetBranch string
	// LastCommit is the SHA of the source branch's head; OldRev the
	// previous head, set on an update that brought new commits.
	LastCommit string
	OldRev     string
	// HeadPipelineID is the merge request's latest pipeline, 0 before one.
	HeadPipelineID int64
	URL            string
}

// PipelineBuild is one job of a Pipeline Hook.
type PipelineBuild struct {
	ID             int64
	Stage          string
	Name           string
	Status         string
	CreatedAt      *time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	Duration       time.Duration
	QueuedDuration time.Duration
	RunnerID       int64
}

// PushHook is the part of a Push Hook Gosling uses.
type PushHook struct {
	Ref         string
	Before      string
	After       string
	CheckoutSHA string
	// HeadMessage is the head commit's message; SkipCIOption is set when
	// the push sent the ci.skip push option.
	HeadMessage  string
	SkipCIOption bool
}

// Delivery is one webhook delivery as the API received it.
type Delivery struct {
	// Host is the GitLab instance (host[:port], lower case) that sent it:
	// the host of X-Gitlab-Instance, or of the event's project URL; "" when
	// neither names one (old instances' project and system events).
	Host string
	// URL is where the delivery was sent (the hook's URL), used for the
	// hooks Gosling adds to projects created in a bucket's group.
	URL string
	// Token is the X-Gitlab-Token header.
	Token string
	// IdempotencyKey (GitLab keeps it across retries and resends) and
	// EventUUID (X-Gitlab-Event-UUID) deduplicate deliveries.
	IdempotencyKey string
	EventUUID      string
	Event          *Event
}

// delivery is one webhook delivery on its way through the checks.
type delivery struct {
	Delivery
	hook *Event
	nest *fly.Nest
	egg  *fly.Egg
	key  string
	// created is set for a project_create Gosling acts on.
	created *projectCreation
}

// Receive runs a decoded delivery through the checks, in this order, and
// acts on it. A push to the Nest repository must carry the Nest's own
// webhook secret (KindUnauthorized). Any other delivery's token must be
// some egg's on the host (on any host when the delivery names none;
// KindUnauthorized); events Gosling does not act on, on any project, are
// then answered StatusIgnored (GitLab counts every non-2xx against the
// hook, which also carries the jobs' events), but for a project_create in
// a bucket's group (as GitLab says, asked with the bucket's token), which
// gets the bucket's project hook; a push to anything but the Nest
// repository, and a merge request, are ignored too unless an egg serves
// the project (they announce its jobs: announce.go), when the token must
// be that egg's; the project of a job or pipeline event must be served,
// matched by its ID (KindNotFound, Result "unknown_project"), and the token
// its egg's (KindUnauthorized); a delivery seen before is
// StatusDuplicate. Every job a hook names must then be its project's
// (scope.go: KindNotFound "unknown_job", KindConflict "foreign_job", both
// audited). A delivery refused by a check leaves no trace, and one whose
// processing fails is forgotten, so GitLab's resend is processed, not
// dropped as a duplicate. The work accepted is finished even if the
// caller's context ends first (GitLab hangs up after 10 seconds), within
// webhookDeadline.
func (m *Ingest) Receive(ctx context.Context, in Delivery) (*Result, error) {
	hook := in.Event
	if hook == nil {
		return nil, errorf(KindInvalid, "bad payload", "no event")
	}
	if in.Host == "" && !hook.Ignored {
		return nil, &Error{Kind: KindInvalid, Msg: "bad payload", Detail: "no GitLab instance: send X-Gitlab-Instance, or a body with project.web_url or repository.homepage", Result: "bad_request"}
	}
	d := &delivery{Delivery: in, hook: hook, nest: m.Nest()}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), webhookDeadline)
	defer cancel()
	nestPush := hook.Push != nil && isNestRepo(d.nest, hook.ProjectID, hook.ProjectPath)
	var eggs []*fly.Egg
	var err error
	if nestPush {
		err = m.authenticateNestPush(ctx, d)
	} else {
		eggs, err = m.authenticateHost(ctx, d)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case nestPush:
	case hook.Ignored:
		pc, err := m.projectCreated(ctx, d, eggs)
		if err != nil {
			return nil, unavailable("gitlab unavailable", "a group of a bucket could not be looked up; resend later", err)
		}
		if pc == nil {
			return &Result{Status: StatusIgnored, Reason: fmt.Sprintf("Gosling does not act on %s events", hook.Event)}, nil
		}
		d.created = pc
	case hook.Push != nil || hook.MergeRequest != nil:
		// They announce jobs of a project an egg serves (announce.go).
		ok, why, err := m.announcingEgg(ctx, d, eggs)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &Result{Status: StatusIgnored, Reason: why}, nil
		}
	default:
		if err := m.authenticateProject(ctx, d, eggs); err != nil {
			return nil, err
		}
	}

	d.key = deliveryKey(d)
	first, err := m.store.RecordDelivery(ctx, d.key, m.now())
	if err != nil {
		return nil, unavailable("store unavailable", "the delivery could not be recorded; resend it", err)
	}
	if !first {
		return &Result{Status: StatusDuplicate}, nil
	}
	forget := true
	defer func() {
		if !forget {
			return
		}
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer fcancel()
		if ferr := m.store.ForgetDelivery(fctx, d.key); ferr != nil {
			m.log.ErrorContext(ctx, "forget failed delivery", "error", ferr)
		}
	}()
	resp, err := m.process(ctx, d)
	// A failed delivery is processed again when resent; a refused one
	// leaves no key behind either.
	forget = err != nil
	return resp, err
}

func unauthorized(detail string) error {
	return &Error{Kind: KindUnauthorized, Msg: "unauthorized", Detail: detail, Result: "unauthorized"}
}

// authenticateHost checks that the delivery's token is the webhook secret
// of some egg on its host (of any egg when it names no host) and returns
// the eggs on the host.
func (m *Ingest) authenticateHost(ctx context.Context, d *delivery) ([]*fly.Egg, error) {
	if d.Token == "" {
		return nil, unauthorized("the X-Gitlab-Token header is missing: set the hook's secret token")
	}
	eggs := eggsOn(d.nest, d.Host)
	refs := make([]fly.SecretRef, 0, len(eggs))
	seen := map[fly.SecretRef]bool{}
	for _, egg := range eggs {
		if ref := egg.GitLab.WebhookSecret; !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	match, resolved, err := m.cache.MatchAny(ctx, refs, d.Token)
	if !match {
		if resolved < len(refs) && err != nil {
			// The token may belong to the egg whose secret is out of reach.
			return nil, unavailable("secrets unavailable", "a webhook secret could not be resolved; see the server log", err)
		}
		where := "any egg on " + d.Host
		if d.Host == "" {
			where = "any egg (the delivery names no GitLab instance: send X-Gitlab-Instance)"
		}
		return nil, unauthorized("the token is not the webhook secret of " + where)
	}
	return eggs, nil
}

// authenticateNestPush checks that a push to the Nest repository carries
// the Nest's own webhook secret (mothergoose.nest.webhook_secret): no
// egg's secret may make MotherGoose apply the Nest. Without that secret
// configured, every push to the Nest is refused (KindUnauthorized).
func (m *Ingest) authenticateNestPush(ctx context.Context, d *delivery) error {
	if d.Token == "" {
		return unauthorized("the X-Gitlab-Token header is missing: set the hook's secret token")
	}
	ref := d.nest.MotherGoose.Nest.WebhookSecret
	if ref.IsZero() {
		return unauthorized("pushes to the Nest repository are not applied: MG/config.fly sets no nest.webhook_secret (servers follow its head every --nest-sync)")
	}
	ok, err := m.cache.Match(ctx, ref, d.Token)
	if err != nil {
		return unavailable("secrets unavailable", "the Nest repository's webhook secret could not be resolved; see the server log", err)
	}
	if !ok {
		return unauthorized("the token is not the Nest repository's webhook secret (mothergoose.nest.webhook_secret)")
	}
	return nil
}

// AuthenticateToken checks, from a delivery's headers alone and before its
// body is read, that token is the webhook secret of some egg on host, or
// the Nest repository's (host is the X-Gitlab-Instance header's host; ""
// when it names none, which admits the secret of any egg). It costs no
// more than resolving the secrets, which are cached. Errors: a
// KindUnauthorized *Error when the token is missing or no one's,
// KindUnavailable when a secret that might match could not be resolved.
// Receive checks the token again against the one egg the body names.
func (m *Ingest) AuthenticateToken(ctx context.Context, host, token string) error {
	if token == "" {
		return unauthorized("the X-Gitlab-Token header is missing: set the hook's secret token")
	}
	nest := m.Nest()
	eggs := eggsOn(nest, host)
	refs := make([]fly.SecretRef, 0, len(eggs)+1)
	seen := map[fly.SecretRef]bool{}
	for _, egg := range eggs {
		if ref := egg.GitLab.WebhookSecret; !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	if ref := nest.MotherGoose.Nest.WebhookSecret; !ref.IsZero() && !seen[ref] {
		refs = append(refs, ref)
	}
	match, resolved, err := m.cache.MatchAny(ctx, refs, token)
	switch {
	case match:
		return nil
	case resolved < len(refs) && err != nil:
		return unavailable("secrets unavailable", "a webhook secret could not be resolved; see the server log", err)
	case host == "":
		return unauthorized("the token is not the webhook secret of any egg (the delivery names no GitLab instance: send X-Gitlab-Instance)")
	}
	return unauthorized("the token is not the webhook secret of any egg on " + host)
}

// authenticateProject finds the egg that serves the delivery's project
// (else 404) and checks that the token is that egg's (else 401).
func (m *Ingest) authenticateProject(ctx context.Context, d *delivery, eggs []*fly.Egg) error {
	egg, err := m.matchEgg(ctx, d, eggs)
	if egg == nil && err != nil {
		return unavailable("gitlab unavailable", "a group or project of an egg could not be looked up; resend later", err)
	}
	if egg == nil {
		return &Error{Kind: KindNotFound, Msg: "unknown project",
			Detail: fmt.Sprintf("no egg on %s serves project %d %s", d.Host, d.hook.ProjectID, truncate(d.hook.ProjectPath, 200)), Result: "unknown_project"}
	}
	ok, err := m.cache.Match(ctx, egg.GitLab.WebhookSecret, d.Token)
	if err != nil {
		return unavailable("secrets unavailable", "the webhook secret of egg "+egg.Name+" could not be resolved; see the server log", err)
	}
	if !ok {
		return unauthorized("the token is not the webhook secret of the project's egg")
	}
	d.egg = egg
	return nil
}

// deliveryKey is the deduplication key of a delivery: its Idempotency-Key,
// which GitLab keeps across retries and resends, or else what identifies
// the event. Keys are hashed with the host and the project, so instances
// never collide, and a key sent with one egg's secret cannot stand for a
// delivery of another egg's project.
func deliveryKey(d *delivery) string {
	parts := []string{d.Host, strconv.FormatInt(d.hook.ProjectID, 10)}
	if k := d.IdempotencyKey; k != "" {
		parts = append(parts, "idempotency-key", k)
	} else {
		h := d.hook
		var id, status string
		switch {
		case h.Job != nil:
			id, status = strconv.FormatInt(h.Job.ID, 10), h.Job.Status
		case h.Pipeline != nil:
			id, status = strconv.FormatInt(h.Pipeline.ID, 10), h.Pipeline.Status
		case h.Push != nil:
			id, status = h.Push.Ref, h.Push.After
		case h.MergeRequest != nil:
			id, status = strconv.FormatInt(h.MergeRequest.IID, 10), h.MergeRequest.Action+"/"+h.MergeRequest.LastCommit
		}
		parts = append(parts, "derived", h.Event, h.ObjectKind, strconv.FormatInt(h.ProjectID, 10), id, status, d.EventUUID)
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

// process acts on an authenticated, first delivery.
func (m *Ingest) process(ctx context.Context, d *delivery) (*Result, error) {
	switch h := d.hook; {
	case d.created != nil:
		return m.processProjectCreate(ctx, d, d.created)
	case h.Job != nil:
		return m.processJob(ctx, d)
	case h.Pipeline != nil:
		return m.processPipeline(ctx, d)
	case h.MergeRequest != nil:
		return m.processMergeRequest(ctx, d)
	case d.egg != nil:
		return m.processPushAnnouncement(ctx, d)
	default:
		return m.processPush(ctx, d)
	}
}

func (m *Ingest) processJob(ctx context.Context, d *delivery) (*Result, error) {
	j, egg := d.hook.Job, d.egg
	if _, err := m.confirmJob(ctx, d, j.ID); err != nil {
		return nil, err
	}
	now := m.now()
	rec := store.JobRecord{
		GitLabHost: d.Host, JobID: j.ID, ProjectID: d.hook.ProjectID, ProjectPath: d.hook.ProjectPath, Egg: egg.Name, Name: j.Name, Ref: j.Ref,
		PipelineID: j.PipelineID, Status: j.Status, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, UpdatedAt: now,
	}
	switch {
	case j.StartedAt != nil && j.QueuedDuration > 0:
		queued := j.StartedAt.Add(-j.QueuedDuration)
		rec.QueuedAt = &queued
	case j.Status == "pending":
		rec.QueuedAt = &now
	}
	stored, err := m.store.RecordJob(ctx, rec)
	if err != nil {
		return nil, unavailable("store unavailable", "the job could not be recorded; resend it", err)
	}
	if stored.ProjectID != d.hook.ProjectID {
		// Recorded meanwhile in another project (store.MergeJob).
		return nil, m.refuse(ctx, d, KindConflict, "foreign_job",
			fmt.Sprintf("job %d belongs to another project; a hook of project %d cannot change it", j.ID, d.hook.ProjectID))
	}
	// A pending hook that comes after the runner's start completes the
	// job's queue time (cost.go).
	if err := m.noteQueueTime(ctx, stored); err != nil {
		return nil, unavailable("store unavailable", "the job's queue time could not be recorded; resend it", err)
	}
	switch j.Status {
	case "success", "failed":
		if j.Duration > 0 {
			m.metrics.ObserveJobDuration(egg.Name, j.Status, j.Duration)
		}
	}
	if j.Status == "failed" && runnerFailures[j.FailureReason] && j.RunnerID != 0 {
		if err := m.countFailure(ctx, d, j.RunnerID, j.ID, j.FailureReason); err != nil {
			return nil, unavailable("store unavailable", "the runner's failure could not be recorded; resend it", err)
		}
	}
	if stored.Status != j.Status {
		// GitLab does not deliver in order: this status is behind what
		// the job is known to have reached, and a workflow must not act
		// on it (a late pending would ask for a runner for a job that
		// has one, or is over).
		return &Result{Status: StatusAccepted, Reason: fmt.Sprintf("recorded; the job is %s already, so a late %s changes nothing", stored.Status, j.Status)}, nil
	}
	in, ok, err := m.cfg.Dispatch(d.nest, egg, JobEvent{
		Host: d.Host, ProjectID: d.hook.ProjectID, ProjectPath: d.hook.ProjectPath,
		JobID: j.ID, Name: j.Name, Status: j.Status, At: now,
	})
	if err != nil {
		return nil, fmt.Errorf("dispatch job %d of egg %s: %w", j.ID, egg.Name, err)
	}
	if !ok {
		return &Result{Status: StatusAccepted, Reason: "recorded; status " + j.Status + " needs no runner"}, nil
	}
	return m.deliver(ctx, in)
}

func (m *Ingest) processPipeline(ctx context.Context, d *delivery) (*Result, error) {
	p := d.hook.Pipeline
	now := m.now()
	builds, dropped, err := m.confirmBuilds(ctx, d)
	if err != nil {
		return nil, err
	}
	// What follows (the announcement) sees the project's builds only.
	p.Builds = builds
	for _, b := range builds {
		rec := store.JobRecord{
			GitLabHost: d.Host, JobID: b.ID, ProjectID: d.hook.ProjectID, ProjectPath: d.hook.ProjectPath, Egg: d.egg.Name, Name: b.Name, Ref: p.Ref,
			PipelineID: p.ID, Status: b.Status, StartedAt: b.StartedAt, FinishedAt: b.FinishedAt, UpdatedAt: now,
		}
		if b.StartedAt != nil && b.QueuedDuration > 0 {
			queued := b.StartedAt.Add(-b.QueuedDuration)
			rec.QueuedAt = &queued
		}
		if _, err := m.store.RecordJob(ctx, rec); err != nil {
			return nil, unavailable("store unavailable", "the pipeline's jobs could not be recorded; resend it", err)
		}
	}
	reason := fmt.Sprintf("recorded %d jobs", len(builds))
	if dropped > 0 {
		reason += fmt.Sprintf("; %d builds are not the project's jobs and were left out", dropped)
	}
	what, err := m.announcePipeline(ctx, d)
	if err != nil {
		return nil, err
	}
	if what != "" {
		reason += "; " + what
	}
	return &Result{Status: StatusAccepted, Reason: reason}, nil
}

func (m *Ingest) processPush(ctx context.Context, d *delivery) (*Result, error) {
	push := d.hook.Push
	src := d.nest.MotherGoose.Nest
	ref := src.Ref
	if ref == "" {
		ref = "main"
	}
	if push.Ref != "refs/heads/"+ref {
		return &Result{Status: StatusIgnored, Reason: "not a push to the Nest repository's " + ref + " branch"}, nil
	}
	if job, ok := ScheduledNestUpdate(d.nest); ok {
		return &Result{Status: StatusIgnored, Reason: "the Nest changes on the schedule of job " + job + " (nest_update); run it now with `gosling jobs schedule trigger " + job + "`"}, nil
	}
	if after := push.After; after != "" && strings.Trim(after, "0") == "" {
		return &Result{Status: StatusIgnored, Reason: "the push deleted the branch; the Nest in force stays"}, nil
	}
	// The payload only says that the branch moved: what is applied is its
	// head as GitLab's API reads it, never a ref or SHA the payload names.
	res, err := m.nests.ReloadNest(ctx, ref, "push to "+push.Ref)
	var invalid *InvalidNestError
	switch {
	case errors.As(err, &invalid):
		// Not GitLab's failure: answering 2xx keeps the hook healthy.
		return &Result{Status: StatusAccepted, Reason: "the Nest at the head of " + ref + " (" + shortSHA(invalid.Commit) + ") is invalid and was not applied; the Nest in force stays (see the audit log)"}, nil
	case err != nil:
		return nil, err
	}
	reason := fmt.Sprintf("the Nest at %s was applied: %d eggs, %d pools", shortSHA(res.Commit), res.Eggs, res.Pools)
	if len(res.Warnings) > 0 {
		reason += fmt.Sprintf(" (%d warnings, see the audit log)", len(res.Warnings))
	}
	return &Result{Status: StatusAccepted, Reason: reason}, nil
}

// runnerFailures are the GitLab failure reasons that blame the runner rather
// than the job; UglyFox's failed policy counts them.
var runnerFailures = map[string]bool{"runner_system_failure": true, "runner_unsupported": true}

// countFailure adds one failure to the Gosling runner (machine) that ran
// the job on the GitLab runner GitLab names by runnerID, and audits it,
// when the failure may count against it (failureBlamesRunner: the runner is
// the delivery's egg's, and GitLab says the job ran on its GitLab runner).
// The machine is the one whose agent reported the job (store.JobRecord's
// RunnerID, from RunnerJob); without a report, the one machine with that
// GitLab runner, when only one has it. A runner that is not Gosling's is
// left alone; a failure that may not count, or whose machine cannot be
// told, is audited as refused and counts nothing. The error is a failure
// of the store or of GitLab.
func (m *Ingest) countFailure(ctx context.Context, d *delivery, runnerID, jobID int64, reason string) error {
	rs, err := m.store.ListRunners(ctx, store.RunnerFilter{GitLabHost: d.Host, GitLabRunnerID: runnerID, Limit: 2})
	if err != nil || len(rs) == 0 {
		return err
	}
	machine, why, err := m.jobMachine(ctx, d.Host, jobID, runnerID, rs)
	if err != nil {
		return err
	}
	if machine == nil {
		m.auditRefusal(ctx, d, fmt.Sprintf("the %s of job %d counts against no machine of runner %d: %s", reason, jobID, runnerID, why))
		return nil
	}
	rs = []store.Runner{*machine}
	ok, why, err := m.failureBlamesRunner(ctx, d, &rs[0], jobID, runnerID)
	if err != nil {
		return err
	}
	if !ok {
		m.auditRefusal(ctx, d, fmt.Sprintf("the %s of job %d does not count against runner %d: %s", reason, jobID, runnerID, why))
		return nil
	}
	for range 5 {
		r, err := m.store.GetRunner(ctx, rs[0].ID)
		if err != nil {
			return err
		}
		r.Failures++
		if window := m.Nest().UglyFox.Failed.Window.D(); window > 0 {
			// Only failures within UglyFox's window count.
			n, err := m.recentFailures(ctx, r.ID, m.now().Add(-window))
			if err != nil {
				return err
			}
			r.Failures = n + 1
		}
		err = m.store.UpdateRunner(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return err
		}
		_, err = m.store.AppendAudit(ctx, store.AuditRecord{
			At: m.now(), Actor: contract.ActorMotherGoose, Action: "runner-failure", Egg: r.Egg, RunnerID: r.ID,
			Reason: fmt.Sprintf("job %d failed with %s (%d failures)", jobID, reason, r.Failures),
		})
		return err
	}
	return fmt.Errorf("count failure of runner %s: it keeps changing", rs[0].ID)
}

// jobMachine is the machine that ran a job on GitLab runner runnerID:
// the one whose agent reported the job, if it runs that GitLab runner;
// else the only machine of sharing (up to two of them, read by the
// caller), if there is one. nil with why when none can be told.
func (m *Ingest) jobMachine(ctx context.Context, host string, jobID, runnerID int64, sharing []store.Runner) (*store.Runner, string, error) {
	rec, err := m.store.GetJob(ctx, host, jobID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, "", err
	case rec.RunnerID != "":
		r, err := m.store.GetRunner(ctx, rec.RunnerID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Sprintf("runner %s reported the job and is gone", rec.RunnerID), nil
		}
		if err != nil {
			return nil, "", err
		}
		if r.GitLabHost != host || r.GitLabRunnerID != runnerID {
			return nil, fmt.Sprintf("runner %s reported the job but runs GitLab runner %d", r.ID, r.GitLabRunnerID), nil
		}
		return r, "", nil
	}
	if len(sharing) == 1 {
		return &sharing[0], "", nil
	}
	return nil, "several machines run that GitLab runner and none reported the job", nil
}

// recentFailures counts the runner's recorded failures since a time.
func (m *Ingest) recentFailures(ctx context.Context, runnerID string, since time.Time) (int, error) {
	n := 0
	for after := int64(0); ; {
		recs, err := m.store.ListAudit(ctx, store.AuditFilter{RunnerID: runnerID, Since: since, AfterID: after, Limit: 500})
		if err != nil {
			return 0, err
		}
		for _, rec := range recs {
			if rec.Action == "runner-failure" {
				n++
			}
		}
		if len(recs) < 500 {
			return n, nil
		}
		after = recs[len(recs)-1].ID
	}
}
