package mothergoose

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

// GitLab's resend endpoint takes five requests a minute per project and
// user (check_rate_limit! :web_hook_event_resend); the sweep keeps within
// it and waits a window out after a 429.
const (
	resendPerWindow = 5
	resendWindow    = time.Minute
	// maxResendAttempts: a delivery Gosling's API failed this many times
	// on resend too is left to the pending-job sweep.
	maxResendAttempts = 3
	// resendProbeSpacing: after a resend found the API down (no answer,
	// or a 5xx), the project's next resend waits this long, so an outage
	// spends at most three of GitLab's five a minute on probes and the
	// window still has resends when the API is back.
	resendProbeSpacing = resendWindow / 3
)

// resendMemory is what this process remembers of the hooks' delivery
// logs between sweeps: per hook, the newest logged event it has read and
// the failed deliveries still to resend; per project, the resends of the
// current window. Another process starts from the log's beginning (seven
// days) once; what it resends again is a duplicate to the API, which
// answers it 200 and does nothing.
type resendMemory struct {
	mu      sync.Mutex
	hooks   map[string]*hookBacklog
	budgets map[string]*resendBudget
}

// hookBacklog is one hook's log as read so far.
type hookBacklog struct {
	// cursor is the newest event read: the next look reads newer ones.
	cursor int64
	// waiting are the failed deliveries to resend, the latest one per
	// subject (deliverySubject.key).
	waiting map[string]failedDelivery
	// attempts counts failed resends per Idempotency-Key.
	attempts map[string]int
}

type failedDelivery struct {
	event   gitlab.HookEvent
	subject deliverySubject
}

// resendBudget counts one project's resends in the current window.
type resendBudget struct {
	start        time.Time
	used         int
	blockedUntil time.Time
}

// deliverySubject is what a logged delivery is about, read from its
// payload: a job's status change (object_kind build), a pipeline's, or
// anything else, which stands for itself.
type deliverySubject struct {
	key string
	// rank orders deliveries of one subject: only the latest status of a
	// job or pipeline is worth resending (store.JobStatusRank).
	rank int
	// class orders the resends within the rate limit: a pending job's
	// hook (it gets the job a runner) first, then other job hooks, then
	// pipeline hooks, then the rest.
	class int
}

func subjectOf(e gitlab.HookEvent) deliverySubject {
	var d struct {
		ObjectKind  string `json:"object_kind"`
		BuildID     int64  `json:"build_id"`
		BuildStatus string `json:"build_status"`
		Attributes  struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"object_attributes"`
	}
	_ = json.Unmarshal(e.RequestData, &d)
	switch {
	case d.ObjectKind == "build" && d.BuildID > 0:
		class := 1
		if d.BuildStatus == "pending" {
			class = 0
		}
		return deliverySubject{key: "job/" + strconv.FormatInt(d.BuildID, 10), rank: store.JobStatusRank(d.BuildStatus), class: class}
	case d.ObjectKind == "pipeline" && d.Attributes.ID > 0:
		return deliverySubject{key: "pipeline/" + strconv.FormatInt(d.Attributes.ID, 10), rank: store.JobStatusRank(d.Attributes.Status), class: 2}
	}
	key := e.IdempotencyKey()
	if key == "" {
		key = strconv.FormatInt(e.ID, 10)
	}
	return deliverySubject{key: "delivery/" + key, class: 3}
}

// attemptKey names a delivery across its resends.
func attemptKey(e gitlab.HookEvent) string {
	if k := e.IdempotencyKey(); k != "" {
		return k
	}
	return "event/" + strconv.FormatInt(e.ID, 10)
}

// add takes a hook's events newer than its cursor (newest first) into its
// backlog and returns those given up on.
func (r *resendMemory) add(hook string, events []gitlab.HookEvent) (gaveUp []gitlab.HookEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backlog(hook)
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		b.cursor = max(b.cursor, e.ID)
		if b.attempts[attemptKey(e)] >= maxResendAttempts {
			gaveUp = append(gaveUp, e)
			continue
		}
		s := subjectOf(e)
		if cur, ok := b.waiting[s.key]; ok && cur.subject.rank > s.rank {
			continue // a later status of the same job failed too: that one tells it
		}
		b.waiting[s.key] = failedDelivery{event: e, subject: s}
	}
	return gaveUp
}

func (r *resendMemory) backlog(hook string) *hookBacklog {
	if r.hooks == nil {
		r.hooks = map[string]*hookBacklog{}
	}
	b := r.hooks[hook]
	if b == nil {
		b = &hookBacklog{waiting: map[string]failedDelivery{}, attempts: map[string]int{}}
		r.hooks[hook] = b
	}
	return b
}

// cursor is the newest event of the hook read so far.
func (r *resendMemory) cursor(hook string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backlog(hook).cursor
}

// queue lists a hook's waiting deliveries in the order they are resent.
func (r *resendMemory) queue(hook string) []failedDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backlog(hook)
	out := make([]failedDelivery, 0, len(b.waiting))
	for _, d := range b.waiting {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b failedDelivery) int {
		return cmp.Or(cmp.Compare(a.subject.class, b.subject.class), cmp.Compare(a.event.ID, b.event.ID))
	})
	return out
}

// done takes a delivery off its hook's backlog; failed counts a resend
// that did not get through.
func (r *resendMemory) done(hook string, d failedDelivery, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.backlog(hook)
	if cur, ok := b.waiting[d.subject.key]; ok && cur.event.ID == d.event.ID {
		delete(b.waiting, d.subject.key)
	}
	if failed {
		b.attempts[attemptKey(d.event)]++
	}
}

// waitingCount is how many deliveries wait to be resent on a hook.
func (r *resendMemory) waitingCount(hook string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.backlog(hook).waiting)
}

// spend takes one resend from a project's budget, false when the window's
// are spent or GitLab asked to wait.
func (r *resendMemory) spend(project string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.budgets == nil {
		r.budgets = map[string]*resendBudget{}
	}
	b := r.budgets[project]
	if b == nil {
		b = &resendBudget{}
		r.budgets[project] = b
	}
	if now.Before(b.blockedUntil) {
		return false
	}
	if now.Sub(b.start) >= resendWindow {
		b.start, b.used = now, 0
	}
	if b.used >= resendPerWindow {
		return false
	}
	b.used++
	return true
}

// block makes a project's resends wait until until (GitLab answered 429:
// another process with the same token spent the window; or the API is
// down).
func (r *resendMemory) block(project string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.budgets[project]; b != nil && until.After(b.blockedUntil) {
		b.blockedUntil = until
	}
}

// resendFailed resends the deliveries GitLab could not make to Gosling's
// hook of a project, from GitLab's own log of them (GET
// /projects/:id/hooks/:hook_id/events?status=server_failure: the API
// answered 5xx, or could not be reached), so an event refused or missed
// during an outage comes back through the normal path with its original
// payload. GitLab keeps the delivery's Idempotency-Key on a resend and the
// API forgets the key of a delivery it failed to process, so each is
// processed once.
//
// It reads the events logged since it last looked (the log lists newest
// first; the read stops at the last event seen), keeps of each job's or
// pipeline's failed deliveries only the latest status, and resends them
// (POST .../events/:id/resend) oldest first, a pending job's first, at
// most five a minute per project as GitLab allows; the rest wait for the
// next pass (see resent for when a pass stops early). A delivery that
// fails again is logged by GitLab as a new event, read on the next pass;
// one the API answered 5xx maxResendAttempts times is given up (audited
// webhook-redelivery-gave-up) and left to the pending-job sweep. A hook
// GitLab disabled is re-enabled first (keepHook); while it stays disabled
// nothing is resent. Instances before GitLab 17.3 have no log (404):
// nothing happens.
func (sw *sweep) resendFailed(ctx context.Context, p sweepProject, hook *gitlab.ProjectHook) {
	m, egg := sw.m, &sw.in.Egg
	key := sw.host + "/" + strconv.FormatInt(hook.ID, 10)
	projectID := cmp.Or(hook.ProjectID, p.id)
	budgetKey := sw.host + "/" + strconv.FormatInt(projectID, 10)
	events, _, err := sw.c.ListHookEvents(ctx, p.ref, hook.ID, gitlab.HookEventFilter{
		Status: []string{gitlab.HookEventsServerFailure}, After: m.resends.cursor(key),
	})
	switch {
	case gitlab.IsNotFound(err):
		return
	case err != nil:
		sw.fail(p, "delivery log", err)
		return
	}
	for _, e := range m.resends.add(key, events) {
		m.metrics.ObserveRedelivery(egg.Name, "gave_up")
		sw.add(func(r *contract.SweepResult) { r.RedeliveryGaveUp++ })
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditRedeliveryGaveUp, Egg: egg.Name,
			Reason: fmt.Sprintf("delivery %s to hook %d of project %s failed again after %d resends (last: %s); the pending-job sweep serves its job",
				e.IdempotencyKey(), hook.ID, p.label(), maxResendAttempts, e.ResponseStatus),
			Key: "redelivery-gave-up/" + key + "/" + attemptKey(e)})
	}
	var resent, failed []string
	for _, d := range m.resends.queue(key) {
		if !m.resends.spend(budgetKey, m.now()) {
			break
		}
		code, err := sw.c.ResendHookEvent(ctx, p.ref, hook.ID, d.event.ID)
		if sw.resent(ctx, p, key, budgetKey, d, code, err, &resent, &failed) {
			break
		}
	}
	waiting := m.resends.waitingCount(key)
	sw.add(func(r *contract.SweepResult) {
		r.Redelivered += len(resent)
		r.RedeliveryFailed += len(failed)
		r.RedeliveryWaiting += waiting
	})
	if len(resent)+len(failed) > 0 {
		m.log.InfoContext(ctx, "sweep: failed deliveries resent from GitLab's log", "egg", egg.Name, "project", p.label(), "hook", hook.ID,
			"accepted", len(resent), "failed", len(failed), "waiting", waiting)
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditRedelivered, Egg: egg.Name,
			Reason: fmt.Sprintf("resent from GitLab's delivery log of hook %d of project %s: %d accepted (%s), %d failed again (%s), %d waiting",
				hook.ID, p.label(), len(resent), truncate(strings.Join(resent, ", "), 400), len(failed), truncate(strings.Join(failed, ", "), 400), waiting)})
	}
}

// resent acts on the answer to one resend and says whether the pass over
// the hook's backlog stops: on any sign that Gosling's API is still not
// well (a 5xx, no answer: the project's next resend then waits
// resendProbeSpacing), on GitLab's rate limit, and while the hook is
// disabled, the remaining deliveries wait rather than spend the window. Only a 5xx counts toward maxResendAttempts: a delivery
// the API keeps failing on is given up, one it could not be reached for
// is not.
func (sw *sweep) resent(ctx context.Context, p sweepProject, key, budgetKey string, d failedDelivery, code int, err error, resent, failed *[]string) (stop bool) {
	m, egg := sw.m, sw.in.Egg.Name
	var apiErr *gitlab.APIError
	switch {
	case err == nil && code >= 200 && code < 400:
		m.resends.done(key, d, false)
		m.metrics.ObserveRedelivery(egg, "accepted")
		*resent = append(*resent, d.subject.key)
		return false
	case err == nil && code < 500:
		// The API refused it on purpose (a token or project it does not
		// know): resending it again changes nothing.
		m.resends.done(key, d, false)
		m.metrics.ObserveRedelivery(egg, "refused")
		*failed = append(*failed, fmt.Sprintf("%s (%d)", d.subject.key, code))
		return false
	case err == nil:
		// GitLab logged it as a new failed event, read next time.
		m.resends.done(key, d, true)
		m.resends.block(budgetKey, m.now().Add(resendProbeSpacing))
		m.metrics.ObserveRedelivery(egg, "failed")
		*failed = append(*failed, fmt.Sprintf("%s (%d)", d.subject.key, code))
	case gitlab.IsRateLimited(err):
		wait := resendWindow
		if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
			wait = apiErr.RetryAfter
		}
		m.resends.block(budgetKey, m.now().Add(wait))
		m.metrics.ObserveRedelivery(egg, "rate_limited")
	case errors.Is(err, gitlab.ErrResendRefused) && strings.Contains(err.Error(), "Hook disabled"):
		// Re-enabled by a later pass (keepHook); the delivery waits.
	case errors.Is(err, gitlab.ErrResendRefused) && strings.Contains(err.Error(), "URL has changed"), gitlab.IsNotFound(err):
		// It cannot be resent any more (another URL, or expired).
		m.resends.done(key, d, false)
		m.metrics.ObserveRedelivery(egg, "expired")
		return false
	case errors.Is(err, gitlab.ErrResendRefused):
		// No answer: the API is still down. GitLab logged the attempt
		// as a new failed event; the delivery waits.
		m.resends.block(budgetKey, m.now().Add(resendProbeSpacing))
		m.metrics.ObserveRedelivery(egg, "unreachable")
		*failed = append(*failed, d.subject.key+" ("+gitlab.HookEventInternalError+")")
	default:
		sw.fail(p, "resend", err)
	}
	return true
}
