package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

// hookTestSpacing bounds how often a disabled hook is tested: GitLab allows
// five test deliveries a minute per project and user.
const hookTestSpacing = 12 * time.Second

// hookMemory remembers, per hook, when it was last tested and since when
// this process has seen it disabled.
type hookMemory struct {
	mu     sync.Mutex
	tested map[string]time.Time
	since  map[string]time.Time
}

// disabledSince notes a hook seen disabled and returns since when it has
// been; enabled forgets it.
func (h *hookMemory) disabledSince(key string, now time.Time, disabled bool) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !disabled {
		delete(h.since, key)
		return time.Time{}
	}
	if h.since == nil {
		h.since = map[string]time.Time{}
	}
	if s, ok := h.since[key]; ok {
		return s
	}
	h.since[key] = now
	return now
}

// mayTest says whether a hook may be tested now, and notes that it is.
func (h *hookMemory) mayTest(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tested == nil {
		h.tested = map[string]time.Time{}
	}
	if last, ok := h.tested[key]; ok && now.Sub(last) < hookTestSpacing {
		return false
	}
	h.tested[key] = now
	return true
}

// keepHook keeps Gosling's webhook on a project in service, as GitLab's
// delivery health allows (docs.gitlab.com/user/project/integrations/
// webhooks: after 4 consecutive failures a hook is disabled for a while,
// after 40 for good, and nobody is told):
//
//   - no hook posts to the webhook URL: one is made (job and pipeline
//     events, push events for the Nest repository), audited
//     webhook-missing;
//   - the hook is disabled (alert_status temporarily_disabled or
//     disabled): GitLab is asked for a test delivery (POST
//     /projects/:id/hooks/:hook_id/test/job_events), which re-enables the
//     hook when Gosling's endpoint takes it, so the hook comes back once
//     the cause is gone (audited webhook-reenabled); while it fails, the
//     hook stays disabled, gosling_webhook_disabled{egg,project} is 1 and
//     the disabling is audited once (webhook-disabled). A project without
//     a job to test with has its hook saved again instead, which
//     re-enables it as well;
//   - the hook no longer sends job or pipeline events: it is saved again
//     with them (webhook-repaired).
//
// It returns Gosling's hook when GitLab delivers to it and it may have
// deliveries in its log (nil for a hook just made or still disabled).
func (sw *sweep) keepHook(ctx context.Context, p sweepProject) (*gitlab.ProjectHook, error) {
	m, egg := sw.m, &sw.in.Egg
	hooks, err := sw.c.ListProjectHooks(ctx, p.ref)
	if err != nil {
		return nil, err
	}
	spec := gitlab.HookSpec{
		URL: sw.in.WebhookURL, Token: sw.secret, JobEvents: true, PipelineEvents: true,
		PushEvents:            isNestRepo(m.Nest(), p.id, p.path),
		EnableSSLVerification: strings.HasPrefix(sw.in.WebhookURL, "https://"),
	}
	var ours *gitlab.ProjectHook
	for i := range hooks {
		if sameHookURL(hooks[i].URL, sw.in.WebhookURL) {
			ours = &hooks[i]
			break
		}
	}
	label := p.label()
	switch {
	case ours == nil:
		id, err := sw.c.AddProjectHook(ctx, p.ref, spec)
		if err != nil {
			m.metrics.SetWebhookDisabled(egg.Name, label, true)
			return nil, fmt.Errorf("make the missing hook: %w", err)
		}
		m.metrics.SetWebhookDisabled(egg.Name, label, false)
		sw.add(func(r *contract.SweepResult) { r.HooksCreated++ })
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditWebhookMissing, Egg: egg.Name,
			Reason: fmt.Sprintf("project %s had no hook posting to %s: made hook %d", label, sw.in.WebhookURL, id)})
		return nil, nil // a new hook has no deliveries to resend
	case ours.Disabled():
		enabled, err := sw.reenable(ctx, p, *ours, spec)
		if !enabled {
			return nil, err
		}
	case !ours.JobEvents || !ours.PipelineEvents:
		if err := sw.c.EditProjectHook(ctx, p.ref, ours.ID, spec); err != nil {
			return nil, err
		}
		m.metrics.SetWebhookDisabled(egg.Name, label, false)
		sw.add(func(r *contract.SweepResult) { r.HooksRepaired++ })
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditWebhookRepaired, Egg: egg.Name,
			Reason: fmt.Sprintf("hook %d of project %s did not send job and pipeline events: saved again with them", ours.ID, label)})
	default:
		m.metrics.SetWebhookDisabled(egg.Name, label, false)
	}
	return ours, nil
}

// reenable brings a disabled hook back once Gosling's endpoint takes a
// test delivery again.
func (sw *sweep) reenable(ctx context.Context, p sweepProject, h gitlab.ProjectHook, spec gitlab.HookSpec) (enabled bool, err error) {
	m, egg, label := sw.m, &sw.in.Egg, p.label()
	key := fmt.Sprintf("%s/%d", sw.host, h.ID)
	state := "disabled for good (40 failed deliveries in a row)"
	if h.AlertStatus == gitlab.HookTemporarilyDisabled {
		state = "disabled for a while (4 or more failed deliveries in a row)"
		if h.DisabledUntil != nil {
			state = "disabled until " + h.DisabledUntil.UTC().Format(time.RFC3339) + " (4 or more failed deliveries in a row)"
		}
	}
	stillOff := func(cause error) (bool, error) {
		m.metrics.SetWebhookDisabled(egg.Name, label, true)
		sw.add(func(r *contract.SweepResult) { r.HooksDisabled++ })
		// One record per disabling (and per state: a temporary disabling
		// that becomes permanent is recorded again).
		since := m.hooks.disabledSince(key+"/"+h.AlertStatus, m.now(), true)
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditWebhookDisabled, Egg: egg.Name,
			Reason: fmt.Sprintf("GitLab stopped delivering to hook %d of project %s: %s; the sweep serves its jobs meanwhile. Test delivery: %v", h.ID, label, state, cause),
			Key:    fmt.Sprintf("webhook-disabled/%s/%s/%d", key, h.AlertStatus, since.Unix())})
		return false, nil
	}
	if !m.hooks.mayTest(key, m.now()) {
		return stillOff(errors.New("not tried again yet"))
	}
	err = sw.c.TestProjectHook(ctx, p.ref, h.ID, "job_events")
	how := "a test delivery reached Gosling"
	if errors.Is(err, gitlab.ErrHookTestFailed) && strings.Contains(err.Error(), "Ensure the project has CI jobs") {
		// Nothing to test with: saving the hook re-enables it too.
		err, how = sw.c.EditProjectHook(ctx, p.ref, h.ID, spec), "saved again (the project has no job to test with)"
	}
	if err != nil {
		return stillOff(err)
	}
	m.hooks.disabledSince(key+"/"+gitlab.HookTemporarilyDisabled, m.now(), false)
	m.hooks.disabledSince(key+"/"+gitlab.HookDisabled, m.now(), false)
	m.metrics.SetWebhookDisabled(egg.Name, label, false)
	sw.add(func(r *contract.SweepResult) { r.HooksEnabled++ })
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: contract.AuditWebhookEnabled, Egg: egg.Name,
		Reason: fmt.Sprintf("hook %d of project %s was %s; %s and GitLab delivers to it again", h.ID, label, state, how)})
	return true, nil
}

// sameHookURL compares hook URLs, ignoring a trailing slash and the case
// of scheme and host.
func sameHookURL(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}
