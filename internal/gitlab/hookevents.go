package gitlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// A project hook's delivery log (GitLab 17.3+) and its resend (17.4+):
// GitLab keeps every delivery it made to a hook for seven days with the
// answer it got, and sends one again on request with its original payload
// and Idempotency-Key. client-go has no methods for them; these are made
// with its raw requests, retried and reported like every other call.

// HookEventStatus values filter ListHookEvents: a response code ("500"),
// or one of these categories.
const (
	HookEventsSuccessful    = "successful"     // 200-299
	HookEventsClientFailure = "client_failure" // 400-499
	// HookEventsServerFailure is 500-599 and "internal error": the
	// endpoint could not be reached.
	HookEventsServerFailure = "server_failure"
)

// HookEventInternalError is the response status GitLab logs for a
// delivery that got no answer (connection refused, timeout, TLS).
const HookEventInternalError = "internal error"

// hookEventsPerPage is the most GitLab lists a page (API::Hooks::Events
// declares per_page 1..20 and answers 400 beyond).
const hookEventsPerPage = 20

// HookEvent is one delivery GitLab made to a project hook, as its log keeps
// it (GET /projects/:id/hooks/:hook_id/events).
type HookEvent struct {
	ID  int64  `json:"id"`
	URL string `json:"url"`
	// Trigger is the hook's event list the delivery came from: job_hooks,
	// pipeline_hooks, push_hooks, merge_request_hooks, ...
	Trigger string `json:"trigger"`
	// RequestHeaders are the headers GitLab sent, X-Gitlab-Token
	// redacted; Idempotency-Key among them.
	RequestHeaders map[string]string `json:"request_headers"`
	// RequestData is the payload sent (e-mail addresses redacted), which a
	// resend sends again.
	RequestData json.RawMessage `json:"request_data"`
	// ResponseStatus is the answer's code ("200", "502"), or
	// HookEventInternalError when there was no answer.
	ResponseStatus string `json:"response_status"`
	ResponseBody   string `json:"response_body"`
	// ExecutionDuration is how long the delivery took, in seconds.
	ExecutionDuration float64 `json:"execution_duration"`
}

// IdempotencyKey is the delivery's Idempotency-Key header, which GitLab
// keeps across resends; empty when it sent none (before GitLab 17.4).
func (e HookEvent) IdempotencyKey() string {
	for k, v := range e.RequestHeaders {
		if textproto.CanonicalMIMEHeaderKey(k) == "Idempotency-Key" {
			return v
		}
	}
	return ""
}

// Code is the answer's status code, 0 when there was no answer.
func (e HookEvent) Code() int {
	n, err := strconv.Atoi(e.ResponseStatus)
	if err != nil {
		return 0
	}
	return n
}

// Accepted tells whether the endpoint accepted the delivery: GitLab counts
// 2xx and 3xx as success.
func (e HookEvent) Accepted() bool {
	c := e.Code()
	return c >= 200 && c < 400
}

// HookEventFilter selects a hook's logged deliveries.
type HookEventFilter struct {
	// Status are codes or categories (HookEventsServerFailure, ...); none
	// lists every delivery.
	Status []string
	// After stops the listing at the first event whose ID is at most
	// After: GitLab lists newest first, so the events made since a look
	// that saw event After are read, and no more pages.
	After int64
}

type hookEventsOptions struct {
	Page    int64  `url:"page,omitempty"`
	PerPage int64  `url:"per_page,omitempty"`
	Status  string `url:"status,omitempty"`
}

// ListHookEvents lists the deliveries GitLab logged for a project hook in
// the last seven days, newest first, every page (20 a page, GitLab's
// most) until f.After: GET /projects/:id/hooks/:hook_id/events, GitLab
// 17.3+; earlier instances answer 404 (IsNotFound), as does a hook that is
// gone. project is a numeric ID or a path with namespace. pages reports
// how many requests it took.
func (c *Client) ListHookEvents(ctx context.Context, project any, hookID int64, f HookEventFilter) (events []HookEvent, pages int, err error) {
	path := fmt.Sprintf("projects/%s/hooks/%d/events", projectSegment(project), hookID)
	opts := &hookEventsOptions{PerPage: hookEventsPerPage, Status: strings.Join(f.Status, ",")}
	for page := int64(1); ; {
		opts.Page = page
		pages++
		req, err := c.api.NewRequest(http.MethodGet, path, opts, c.opts(ctx, http.MethodGet))
		if err != nil {
			return nil, pages, fmt.Errorf("list events of hook %d of project %v: %w", hookID, project, err)
		}
		var batch []HookEvent
		resp, err := c.api.Do(req, &batch)
		if err != nil {
			return nil, pages, fmt.Errorf("list events of hook %d of project %v: %w", hookID, project, fail(http.MethodGet, "/"+path, resp, err))
		}
		for _, e := range batch {
			if f.After > 0 && e.ID <= f.After {
				return events, pages, nil
			}
			events = append(events, e)
		}
		if resp == nil || resp.NextPage == 0 {
			return events, pages, nil
		}
		if resp.NextPage <= page {
			return nil, pages, fmt.Errorf("list events of hook %d of project %v: pagination went from page %d back to %d", hookID, project, page, resp.NextPage)
		}
		page = resp.NextPage
	}
}

// ErrResendRefused is ResendHookEvent's error when GitLab made no request
// (422): the endpoint could not be reached, the hook is disabled, or its
// URL changed since the delivery. The *APIError is wrapped too, with
// GitLab's reason.
var ErrResendRefused = errors.New("GitLab did not resend the event")

// ResendHookEvent asks GitLab to deliver a logged event again now, with its
// original payload and Idempotency-Key (POST
// /projects/:id/hooks/:hook_id/events/:hook_event_id/resend, GitLab 17.4+),
// and returns the status code the endpoint answered (GitLab answers 201
// whatever it was; the new delivery is logged as an event of its own).
// Errors: ErrResendRefused (422); IsRateLimited (429: GitLab allows five
// resends a minute per project and user); IsNotFound (the event expired,
// or the instance is older). It is a POST and not retried.
func (c *Client) ResendHookEvent(ctx context.Context, project any, hookID, eventID int64) (int, error) {
	path := fmt.Sprintf("projects/%s/hooks/%d/events/%d/resend", projectSegment(project), hookID, eventID)
	req, err := c.api.NewRequest(http.MethodPost, path, nil, c.opts(ctx, http.MethodPost))
	if err != nil {
		return 0, fmt.Errorf("resend event %d of hook %d of project %v: %w", eventID, hookID, project, err)
	}
	var out struct {
		ResponseStatus int `json:"response_status"`
	}
	resp, err := c.api.Do(req, &out)
	if err != nil {
		err = fail(http.MethodPost, "/"+path, resp, err)
		if hasStatus(err, http.StatusUnprocessableEntity) {
			return 0, fmt.Errorf("resend event %d of hook %d of project %v: %w: %w", eventID, hookID, project, ErrResendRefused, err)
		}
		return 0, fmt.Errorf("resend event %d of hook %d of project %v: %w", eventID, hookID, project, err)
	}
	return out.ResponseStatus, nil
}

// projectSegment is a project's ID, or its path escaped as one path
// segment, for a raw request's path.
func projectSegment(project any) string {
	if s, ok := project.(string); ok {
		return gl.PathEscape(s)
	}
	return fmt.Sprint(project)
}
