package gitlabtest

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A hook's delivery log, as GitLab keeps it (WebHookLog, and
// docs.gitlab.com/api/project_webhooks): every delivery GitLab made to a
// hook is logged with what was sent and how the endpoint answered, and kept
// for seven days. GET /projects/:id/hooks/:hook_id/events (GitLab 17.3)
// lists them newest first, 20 a page at most (per_page 1..20, as
// API::Hooks::Events declares it; more is a 400), optionally filtered by
// status: a response code, or successful (200-299), client_failure
// (400-499) or server_failure (500-599 and "internal error", the status
// GitLab logs when the endpoint could not be reached). POST
// .../events/:hook_event_id/resend (GitLab 17.4) delivers an event again
// now, with its logged payload and its Idempotency-Key, as
// WebHooks::Events::ResendService does: 201 with {"response_status": code}
// when a request was made, whatever the endpoint answered; 422 when none
// could be made (the endpoint unreachable, the hook disabled, or its URL
// changed since); 429 past five resends a minute for the project and user
// (check_rate_limit! :web_hook_event_resend, scoped to the hook's parent
// and the user), a fixed window from the first request.
//
// Deliveries GitLab never made (a disabled hook's, those dropped past a
// plan's limit: DropNextDeliveries, DropDeliveriesAtRandom) are not logged,
// as GitLab logs none: a resend cannot bring them back.

// Hook log limits, as WebHookService keeps a delivery's answer.
const (
	hookLogRetention      = 7 * 24 * time.Hour
	hookLogMaxPerPage     = 20
	hookLogBodyLimit      = 8 << 10
	hookLogHeaderLimit    = 1 << 10
	hookLogHeadersLimit   = 50
	hookResendLimit       = 5
	hookResendWindow      = time.Minute
	hookLogInternalError  = "internal error"
	hookRedacted          = "[REDACTED]"
	hookResendURLChanged  = "The hook URL has changed, and this log entry cannot be retried"
	hookResendDisabled    = "Hook disabled"
	hookResendRateLimited = "This endpoint has been requested too many times. Try again later."
)

// HookEvent is one logged delivery, as GET .../hooks/:hook_id/events
// shows it, plus when it was made.
type HookEvent struct {
	ID     int64
	HookID int64
	URL    string
	// Trigger is the hook's event list the delivery came from: job_hooks,
	// pipeline_hooks, push_hooks, ...
	Trigger string
	// RequestHeaders are the headers sent, X-Gitlab-Token redacted.
	RequestHeaders  map[string]string
	RequestData     json.RawMessage
	ResponseHeaders map[string]string
	ResponseBody    string
	// ResponseStatus is the answer's code ("200"), or "internal error"
	// when the endpoint could not be reached.
	ResponseStatus string
	// ExecutionDuration is in seconds.
	ExecutionDuration float64
	CreatedAt         time.Time
}

// Successful tells whether the endpoint accepted the delivery (2xx).
func (e HookEvent) Successful() bool { return strings.HasPrefix(e.ResponseStatus, "2") }

// HookEvents returns a hook's logged deliveries, oldest first, expired
// ones included until the next listing prunes them.
func (s *Server) HookEvents(hookID int64) []HookEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []HookEvent
	for _, e := range s.hookLogs {
		if e.HookID == hookID {
			out = append(out, e)
		}
	}
	return out
}

// triggers maps X-Gitlab-Event to the hook name GitLab logs as the
// trigger, and back (WebHookService.hook_to_event).
var triggers = map[string]string{
	EventJob: "job_hooks", EventPipeline: "pipeline_hooks", EventPush: "push_hooks",
	EventMergeRequest: "merge_request_hooks", EventTagPush: "tag_push_hooks",
}

func eventOfTrigger(trigger string) string {
	for ev, tr := range triggers {
		if tr == trigger {
			return ev
		}
	}
	return ""
}

// emailRE is what WebHookLog#redact_user_emails replaces in logged payloads.
var emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)

// redactEmails replaces every string value that is an e-mail address with
// [REDACTED], as GitLab does before it saves a log (so a resend sends the
// redacted payload).
func redactEmails(body []byte) json.RawMessage {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return json.RawMessage(`{}`)
	}
	var walk func(any) any
	walk = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = walk(e)
			}
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
		case string:
			if emailRE.MatchString(t) {
				return hookRedacted
			}
		}
		return x
	}
	return mustJSON(walk(v))
}

// execution is one delivery to make to a hook.
type execution struct {
	hookID         int64
	url            string
	token          string
	event          string
	body           []byte
	idempotencyKey string
}

// execute makes one delivery and logs it, as WebHookService#execute does:
// the request, the answer (or "internal error" when the endpoint could not
// be reached) and how long it took; the outcome counts toward the hook's
// health. It returns the delivery's record.
func (s *Server) execute(ctx context.Context, x execution) DeliveryRecord {
	rec := DeliveryRecord{HookID: x.hookID, URL: x.url, Event: x.event, IdempotencyKey: x.idempotencyKey}
	if rec.IdempotencyKey == "" {
		rec.IdempotencyKey = NewUUID()
	}
	log := HookEvent{HookID: x.hookID, URL: x.url, Trigger: triggers[x.event], RequestData: redactEmails(x.body),
		ResponseHeaders: map[string]string{}, ResponseStatus: hookLogInternalError}
	start := time.Now()
	req, err := s.HookRequest(ctx, x.url, x.event, x.token, x.body, rec.IdempotencyKey)
	if err == nil {
		log.RequestHeaders = map[string]string{}
		for k := range req.Header {
			log.RequestHeaders[k] = req.Header.Get(k)
		}
		if _, ok := log.RequestHeaders["X-Gitlab-Token"]; ok {
			log.RequestHeaders["X-Gitlab-Token"] = hookRedacted
		}
	}
	if err == nil && s.takeDeliveryFailure(x.hookID) {
		err = errInjectedFailure
	} else if err == nil {
		var resp *http.Response
		if resp, err = s.deliveries.client.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, hookLogBodyLimit))
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			rec.Status = resp.StatusCode
			log.ResponseStatus = strconv.Itoa(resp.StatusCode)
			log.ResponseBody = string(body)
			keys := make([]string, 0, len(resp.Header))
			for k := range resp.Header {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys[:min(len(keys), hookLogHeadersLimit)] {
				v := resp.Header.Get(k)
				log.ResponseHeaders[k] = v[:min(len(v), hookLogHeaderLimit)]
			}
		}
	}
	if err != nil {
		rec.Err = err.Error()
	}
	log.ExecutionDuration = time.Since(start).Seconds()
	rec.At = time.Now().UTC()
	s.hookOutcome(x.hookID, rec.Status >= 200 && rec.Status < 400)
	s.mu.Lock()
	log.ID = s.newID("hook_log")
	log.CreatedAt = s.now().UTC()
	if log.RequestHeaders == nil {
		log.RequestHeaders = map[string]string{}
	}
	s.hookLogs = append(s.hookLogs, log)
	s.mu.Unlock()
	s.deliveries.record(rec)
	return rec
}

// recentHookLogs drops logs past the retention and returns a hook's logs
// from the start of the day seven days ago (WebHookLog.recent(7)), newest
// first. The caller holds s.mu.
func (s *Server) recentHookLogs(hookID int64) []HookEvent {
	now := s.now().UTC()
	cutoff := now.Add(-hookLogRetention).Truncate(24 * time.Hour)
	s.hookLogs = slices.DeleteFunc(s.hookLogs, func(e HookEvent) bool { return e.CreatedAt.Before(cutoff) })
	var out []HookEvent
	for _, e := range s.hookLogs {
		if e.HookID == hookID {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b HookEvent) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	return out
}

// statusFilter is WebHooks::WebHookLogsFinder's status filter: a list of
// codes and categories; ok is false for a value API::Hooks::Events does
// not accept.
func statusFilter(values []string) (match func(string) bool, ok bool) {
	if len(values) == 0 {
		return func(string) bool { return true }, true
	}
	var preds []func(string) bool
	for _, v := range values {
		inRange := func(lo, hi int) func(string) bool {
			return func(status string) bool {
				n, err := strconv.Atoi(status)
				return err == nil && n >= lo && n <= hi
			}
		}
		switch v {
		case "successful":
			preds = append(preds, inRange(200, 299))
		case "client_failure":
			preds = append(preds, inRange(400, 499))
		case "server_failure":
			r := inRange(500, 599)
			preds = append(preds, func(s string) bool { return r(s) || s == hookLogInternalError })
		default:
			n, err := strconv.Atoi(v)
			if err != nil || http.StatusText(n) == "" {
				return nil, false
			}
			preds = append(preds, func(s string) bool { return s == v })
		}
	}
	return func(s string) bool {
		for _, p := range preds {
			if p(s) {
				return true
			}
		}
		return false
	}, true
}

// hookEventJSON is Entities::WebHookLog.
type hookEventJSON struct {
	ID                int64             `json:"id"`
	URL               string            `json:"url"`
	Trigger           string            `json:"trigger"`
	RequestHeaders    map[string]string `json:"request_headers"`
	RequestData       json.RawMessage   `json:"request_data"`
	ResponseHeaders   map[string]string `json:"response_headers"`
	ResponseBody      string            `json:"response_body"`
	ExecutionDuration float64           `json:"execution_duration"`
	ResponseStatus    string            `json:"response_status"`
}

// listHookEvents is GET /projects/:id/hooks/:hook_id/events.
func (s *Server) listHookEvents(w http.ResponseWriter, r *http.Request, _ *user) {
	q := r.URL.Query()
	if v := q.Get("per_page"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > hookLogMaxPerPage {
			writeParamError(w, "per_page does not have a valid value")
			return
		}
	}
	p, _ := readParams(r)
	match, ok := statusFilter(p.list("status"))
	if !ok {
		writeParamError(w, "status does not have a valid value")
		return
	}
	s.mu.Lock()
	h, found := s.lookupHook(w, r)
	if !found {
		s.mu.Unlock()
		return
	}
	var logs []HookEvent
	for _, e := range s.recentHookLogs(h.ID) {
		if match(e.ResponseStatus) {
			logs = append(logs, e)
		}
	}
	s.mu.Unlock()
	page, ok := paginate(w, r, logs)
	if !ok {
		return
	}
	out := make([]hookEventJSON, len(page))
	for i, e := range page {
		out[i] = hookEventJSON{ID: e.ID, URL: e.URL, Trigger: e.Trigger, RequestHeaders: e.RequestHeaders, RequestData: e.RequestData,
			ResponseHeaders: e.ResponseHeaders, ResponseBody: e.ResponseBody, ExecutionDuration: e.ExecutionDuration, ResponseStatus: e.ResponseStatus}
	}
	writeJSON(w, http.StatusOK, out)
}

// resendHookEvent is POST /projects/:id/hooks/:hook_id/events/:hook_event_id/resend.
func (s *Server) resendHookEvent(w http.ResponseWriter, r *http.Request, u *user) {
	s.mu.Lock()
	h, found := s.lookupHook(w, r)
	if !found {
		s.mu.Unlock()
		return
	}
	id, ok := pathID(w, r, "hook_event_id")
	if !ok {
		s.mu.Unlock()
		return
	}
	now := s.now()
	key := strconv.FormatInt(h.ProjectID, 10) + "/" + strconv.FormatInt(u.id, 10)
	c := s.resendCounts[key]
	if c == nil || now.Sub(c.start) >= hookResendWindow {
		c = &rateCount{start: now}
		s.resendCounts[key] = c
	}
	c.n++
	if c.n > hookResendLimit {
		s.mu.Unlock()
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": map[string]string{"error": hookResendRateLimited}})
		return
	}
	var log *HookEvent
	for i := range s.hookLogs {
		if s.hookLogs[i].ID == id && s.hookLogs[i].HookID == h.ID {
			log = &s.hookLogs[i]
		}
	}
	if log == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, "404 Not found")
		return
	}
	x := execution{hookID: h.ID, url: h.URL, token: h.Token, event: eventOfTrigger(log.Trigger),
		body: log.RequestData, idempotencyKey: log.RequestHeaders["Idempotency-Key"]}
	urlChanged, executable := log.URL != h.URL, s.executable(h)
	s.mu.Unlock()
	switch {
	case urlChanged:
		writeMessage(w, http.StatusUnprocessableEntity, hookResendURLChanged)
		return
	case !executable:
		writeMessage(w, http.StatusUnprocessableEntity, hookResendDisabled)
		return
	}
	rec := s.execute(r.Context(), x)
	if rec.Status == 0 {
		writeMessage(w, http.StatusUnprocessableEntity, rec.Err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"response_status": rec.Status})
}
