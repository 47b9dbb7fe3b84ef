package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// Webhook answer statuses.
const (
	StatusAccepted  = "accepted"
	StatusQueued    = "queued"
	StatusDuplicate = "duplicate"
	StatusIgnored   = "ignored"
)

// HookResponse is the answer to an accepted delivery.
type HookResponse struct {
	Status     string `json:"status"`
	WorkflowID string `json:"workflow_id,omitempty"`
	OutboxID   int64  `json:"outbox_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// delivery is one webhook delivery on its way through the checks.
type delivery struct {
	header http.Header
	hook   *Webhook
	host   string
	nest   *fly.Nest
	egg    *fly.Egg
	key    string
}

func (s *Server) webhook(c *gin.Context) {
	event := c.GetHeader("X-Gitlab-Event")
	resp, err := s.handleWebhook(c.Writer, c.Request)
	if err != nil {
		ae := toAPIError(err)
		result := ae.Result
		if result == "" {
			result = "error"
		}
		s.cfg.Metrics.ObserveWebhook(eventLabel(event), result)
		s.fail(c, ae)
		return
	}
	s.cfg.Metrics.ObserveWebhook(eventLabel(event), resp.Status)
	code := http.StatusAccepted
	if resp.Status == StatusDuplicate {
		code = http.StatusOK
	}
	c.JSON(code, resp)
}

// handleWebhook runs a delivery through the checks, in the documented
// order, and processes it. A delivery that fails a check leaves no trace.
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) (*HookResponse, error) {
	if r.ContentLength > maxWebhookBody {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, &apiError{Status: http.StatusBadRequest, Msg: "bad payload", Detail: "reading the body failed", Result: "bad_request", Err: err}
	}
	hook, err := DecodeWebhook(r.Header.Get("X-Gitlab-Event"), body)
	if err != nil {
		return nil, err
	}
	d := &delivery{header: r.Header, hook: hook, nest: s.nest()}
	if d.host = hostOf(r.Header.Get("X-Gitlab-Instance")); d.host == "" {
		d.host = hostOf(hook.ProjectWebURL)
	}
	if d.host == "" {
		return nil, &apiError{Status: http.StatusBadRequest, Msg: "bad payload", Detail: "no GitLab instance: send X-Gitlab-Instance or project.web_url", Result: "bad_request"}
	}
	// GitLab gives up after 10 seconds; what is accepted is finished even
	// if GitLab hangs up first.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), webhookDeadline)
	defer cancel()
	if err := s.authenticate(ctx, d, r.Header.Get("X-Gitlab-Token")); err != nil {
		return nil, err
	}
	if hook.Ignored {
		return &HookResponse{Status: StatusIgnored, Reason: fmt.Sprintf("Gosling does not act on %s events", hook.Event)}, nil
	}
	if d.egg == nil && !(hook.Push != nil && isNestRepo(d.nest, hook.ProjectID, hook.ProjectPath)) {
		// authenticate only lets a push to the Nest repository through
		// without an egg; anything else is a bug.
		return nil, fmt.Errorf("delivery of %s for project %d has no egg", hook.Event, hook.ProjectID)
	}

	d.key = deliveryKey(d)
	first, err := s.cfg.Store.RecordDelivery(ctx, d.key, s.now())
	if err != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable", Detail: "the delivery could not be recorded; resend it", Result: "unavailable", Err: err}
	}
	if !first {
		return &HookResponse{Status: StatusDuplicate}, nil
	}
	// A delivery whose processing fails on our side (a 5xx, or a panic) is
	// forgotten, so GitLab's resend is processed, not dropped as a duplicate.
	forget := true
	defer func() {
		if !forget {
			return
		}
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer fcancel()
		if ferr := s.cfg.Store.ForgetDelivery(fctx, d.key); ferr != nil {
			s.log.ErrorContext(ctx, "forget failed delivery", "error", ferr)
		}
	}()
	resp, err := s.process(ctx, d)
	forget = err != nil && toAPIError(err).Status >= 500
	return resp, err
}

func tooLarge() error {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Msg: "payload too large", Detail: fmt.Sprintf("webhook bodies are limited to %d MB", maxWebhookBody>>20), Result: "too_large"}
}

// authenticate checks the delivery's token and finds its egg: the token
// must belong to some egg on the host (else 401) before the project is
// matched (else 404), and then to the matched egg (else 401). A push to
// the Nest repository that no egg claims needs only the first check.
func (s *Server) authenticate(ctx context.Context, d *delivery, token string) error {
	unauthorized := func(detail string) error {
		return &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: detail, Result: "unauthorized"}
	}
	if token == "" {
		return unauthorized("the X-Gitlab-Token header is missing: set the hook's secret token")
	}
	eggs := eggsOn(d.nest, d.host)
	refs := make([]fly.SecretRef, 0, len(eggs))
	seen := map[fly.SecretRef]bool{}
	for _, egg := range eggs {
		if ref := egg.GitLab.WebhookSecret; !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	match, resolved, err := s.secrets.matchAny(ctx, refs, token)
	if !match {
		if resolved < len(refs) && err != nil {
			// The token may belong to the egg whose secret is out of reach.
			return fmt.Errorf("webhook secrets: %w", err)
		}
		return unauthorized("the token is not the webhook secret of any egg on " + d.host)
	}
	if d.hook.ProjectID == 0 {
		// An ignored event without a project (a system or group event):
		// the token is one of ours, which is all there is to check.
		return nil
	}
	egg, err := s.matchEgg(ctx, eggs, d.hook.ProjectID, d.hook.ProjectPath)
	if err != nil {
		return &apiError{Status: http.StatusServiceUnavailable, Msg: "gitlab unavailable", Detail: "a group of an egg could not be looked up; resend later", Result: "unavailable", Err: err}
	}
	if egg == nil {
		if d.hook.Push != nil && isNestRepo(d.nest, d.hook.ProjectID, d.hook.ProjectPath) {
			return nil
		}
		return &apiError{Status: http.StatusNotFound, Msg: "unknown project",
			Detail: fmt.Sprintf("no egg on %s serves project %d %s", d.host, d.hook.ProjectID, truncate(d.hook.ProjectPath, 200)), Result: "unknown_project"}
	}
	ok, err := s.secrets.match(ctx, egg.GitLab.WebhookSecret, token)
	if err != nil {
		return fmt.Errorf("webhook secret of egg %s: %w", egg.Name, err)
	}
	if !ok {
		return unauthorized("the token is not the webhook secret of the project's egg")
	}
	d.egg = egg
	return nil
}

// deliveryKey is the deduplication key of a delivery: its Idempotency-Key,
// which GitLab keeps across retries and resends, or else what identifies
// the event. Keys are hashed with the host, so instances never collide.
func deliveryKey(d *delivery) string {
	parts := []string{d.host}
	if k := d.header.Get("Idempotency-Key"); k != "" {
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
		}
		parts = append(parts, "derived", h.Event, h.ObjectKind, strconv.FormatInt(h.ProjectID, 10), id, status, d.header.Get("X-Gitlab-Event-UUID"))
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])
}

// process acts on an authenticated, first delivery.
func (s *Server) process(ctx context.Context, d *delivery) (*HookResponse, error) {
	switch h := d.hook; {
	case h.Job != nil:
		return s.processJob(ctx, d)
	case h.Pipeline != nil:
		return s.processPipeline(ctx, d)
	default:
		return s.processPush(ctx, d)
	}
}

func (s *Server) processJob(ctx context.Context, d *delivery) (*HookResponse, error) {
	j, egg := d.hook.Job, d.egg
	now := s.now()
	rec := store.JobRecord{
		GitLabHost: d.host, JobID: j.ID, ProjectID: d.hook.ProjectID, Egg: egg.Name, Name: j.Name, Ref: j.Ref,
		PipelineID: j.PipelineID, Status: j.Status, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, UpdatedAt: now,
	}
	switch {
	case j.StartedAt != nil && j.QueuedDuration > 0:
		queued := j.StartedAt.Add(-j.QueuedDuration)
		rec.QueuedAt = &queued
	case j.Status == "pending":
		rec.QueuedAt = &now
	}
	if err := s.cfg.Store.RecordJob(ctx, rec); err != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable", Detail: "the job could not be recorded; resend it", Result: "unavailable", Err: err}
	}
	switch j.Status {
	case "running":
		if j.QueuedDuration > 0 {
			s.cfg.Metrics.ObserveJobQueue(egg.Name, j.QueuedDuration)
		}
	case "success", "failed":
		if j.Duration > 0 {
			s.cfg.Metrics.ObserveJobDuration(egg.Name, j.Status, j.Duration)
		}
	}
	if j.Status == "failed" && runnerFailures[j.FailureReason] && j.RunnerID != 0 {
		if err := s.countFailure(ctx, d.host, j.RunnerID, j.ID, j.FailureReason); err != nil {
			return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable", Detail: "the runner's failure could not be recorded; resend it", Result: "unavailable", Err: err}
		}
	}
	in, ok, err := s.cfg.Dispatch(d.nest, egg, JobEvent{
		Host: d.host, ProjectID: d.hook.ProjectID, ProjectPath: d.hook.ProjectPath,
		JobID: j.ID, Name: j.Name, Status: j.Status, At: now,
	})
	if err != nil {
		return nil, fmt.Errorf("dispatch job %d of egg %s: %w", j.ID, egg.Name, err)
	}
	if !ok {
		return &HookResponse{Status: StatusAccepted, Reason: "recorded; status " + j.Status + " needs no runner"}, nil
	}
	return s.deliver(ctx, in)
}

// deliver makes an intent's Temporal call, or queues it in the outbox when
// Temporal cannot be reached in time, or when earlier calls about the same
// workflow wait there (they go first).
func (s *Server) deliver(ctx context.Context, in Intent) (*HookResponse, error) {
	queue := func(cause error) (*HookResponse, error) {
		id, err := s.enqueue(ctx, in, cause)
		if err != nil {
			return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "temporal and store unavailable",
				Detail: "the event could be neither delivered nor queued; resend it", Result: "unavailable", Err: err}
		}
		return &HookResponse{Status: StatusQueued, WorkflowID: in.WorkflowID, OutboxID: id}, nil
	}
	pending, err := s.cfg.Store.OutboxPending(ctx, in.WorkflowID)
	if err != nil {
		return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable", Detail: "resend the event", Result: "unavailable", Err: err}
	}
	if pending {
		return queue(nil)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.TemporalTimeout)
	defer cancel()
	res, err := call(cctx, s.Temporal(), in)
	switch {
	case err != nil && unreachable(err):
		return queue(err)
	case err != nil:
		return nil, err
	}
	resp := &HookResponse{Status: StatusAccepted, WorkflowID: in.WorkflowID}
	switch res {
	case outcomeNoWorkflow:
		resp.Reason = "no workflow is waiting for this job"
	case outcomeFinished:
		resp.Reason = "the job's workflow has finished already"
	}
	return resp, nil
}

func (s *Server) processPipeline(ctx context.Context, d *delivery) (*HookResponse, error) {
	p := d.hook.Pipeline
	now := s.now()
	for _, b := range p.Builds {
		rec := store.JobRecord{
			GitLabHost: d.host, JobID: b.ID, ProjectID: d.hook.ProjectID, Egg: d.egg.Name, Name: b.Name, Ref: p.Ref,
			PipelineID: p.ID, Status: b.Status, StartedAt: b.StartedAt, FinishedAt: b.FinishedAt, UpdatedAt: now,
		}
		if b.StartedAt != nil && b.QueuedDuration > 0 {
			queued := b.StartedAt.Add(-b.QueuedDuration)
			rec.QueuedAt = &queued
		}
		if err := s.cfg.Store.RecordJob(ctx, rec); err != nil {
			return nil, &apiError{Status: http.StatusServiceUnavailable, Msg: "store unavailable", Detail: "the pipeline's jobs could not be recorded; resend it", Result: "unavailable", Err: err}
		}
	}
	return &HookResponse{Status: StatusAccepted, Reason: fmt.Sprintf("recorded %d jobs", len(p.Builds))}, nil
}

func (s *Server) processPush(ctx context.Context, d *delivery) (*HookResponse, error) {
	push := d.hook.Push
	src := d.nest.MotherGoose.Nest
	ref := src.Ref
	if ref == "" {
		ref = "main"
	}
	if !isNestRepo(d.nest, d.hook.ProjectID, d.hook.ProjectPath) || push.Ref != "refs/heads/"+ref {
		return &HookResponse{Status: StatusIgnored, Reason: "not a push to the Nest repository's " + ref + " branch"}, nil
	}
	if s.cfg.Reload == nil {
		return &HookResponse{Status: StatusIgnored, Reason: "this server does not reload the Nest"}, nil
	}
	audit := store.AuditRecord{At: s.now(), Actor: contract.ActorMotherGoose, Action: "nest-reload", Reason: "push of " + truncate(push.After, 40) + " to " + push.Ref}
	if err := s.cfg.Reload(ctx); err != nil {
		audit.Reason += ": failed: " + truncate(err.Error(), 500)
		if _, aerr := s.cfg.Store.AppendAudit(ctx, audit); aerr != nil {
			s.log.ErrorContext(ctx, "audit nest reload", "error", aerr)
		}
		return nil, fmt.Errorf("reload the Nest: %w", err)
	}
	if err := s.syncEggConfigs(ctx); err != nil {
		return nil, fmt.Errorf("store the reloaded eggs: %w", err)
	}
	if err := s.SyncPools(ctx); err != nil {
		s.log.WarnContext(ctx, "give pools the reloaded eggs", "error", err)
	}
	if _, err := s.cfg.Store.AppendAudit(ctx, audit); err != nil {
		return nil, fmt.Errorf("audit the reload: %w", err)
	}
	return &HookResponse{Status: StatusAccepted, Reason: "the Nest was reloaded"}, nil
}

// runnerFailures are the GitLab failure reasons that blame the runner rather
// than the job; UglyFox's failed policy counts them.
var runnerFailures = map[string]bool{"runner_system_failure": true, "runner_unsupported": true}

// countFailure adds one failure to the Gosling runner GitLab knows by
// runnerID, and audits it. A runner that is not Gosling's is left alone.
func (s *Server) countFailure(ctx context.Context, host string, runnerID, jobID int64, reason string) error {
	rs, err := s.cfg.Store.ListRunners(ctx, store.RunnerFilter{GitLabHost: host, GitLabRunnerID: runnerID, Limit: 1})
	if err != nil || len(rs) == 0 {
		return err
	}
	for range 5 {
		r, err := s.cfg.Store.GetRunner(ctx, rs[0].ID)
		if err != nil {
			return err
		}
		r.Failures++
		if window := s.cfg.Nest().UglyFox.Failed.Window.D(); window > 0 {
			// Only failures within UglyFox's window count.
			n, err := s.recentFailures(ctx, r.ID, s.now().Add(-window))
			if err != nil {
				return err
			}
			r.Failures = n + 1
		}
		err = s.cfg.Store.UpdateRunner(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return err
		}
		_, err = s.cfg.Store.AppendAudit(ctx, store.AuditRecord{
			At: s.now(), Actor: contract.ActorMotherGoose, Action: "runner-failure", Egg: r.Egg, RunnerID: r.ID,
			Reason: fmt.Sprintf("job %d failed with %s (%d failures)", jobID, reason, r.Failures),
		})
		return err
	}
	return fmt.Errorf("count failure of runner %s: it keeps changing", rs[0].ID)
}

// recentFailures counts the runner's recorded failures since a time.
func (s *Server) recentFailures(ctx context.Context, runnerID string, since time.Time) (int, error) {
	n := 0
	for after := int64(0); ; {
		recs, err := s.cfg.Store.ListAudit(ctx, store.AuditFilter{RunnerID: runnerID, Since: since, AfterID: after, Limit: 500})
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
