package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// clock is a settable time for the server under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type loggedEvent struct {
	ID             int64             `json:"id"`
	URL            string            `json:"url"`
	Trigger        string            `json:"trigger"`
	RequestHeaders map[string]string `json:"request_headers"`
	RequestData    map[string]any    `json:"request_data"`
	ResponseStatus string            `json:"response_status"`
	ResponseBody   string            `json:"response_body"`
	Duration       *float64          `json:"execution_duration"`
}

func listEvents(t *testing.T, c call, path, query string) (int, http.Header, []loggedEvent, string) {
	t.Helper()
	status, h, body := c.do(http.MethodGet, path+query, nil)
	var evs []loggedEvent
	if status == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &evs); err != nil {
			t.Fatalf("events: %v: %s", err, body)
		}
	}
	return status, h, evs, body
}

func TestHookEventsLogAndResend(t *testing.T) {
	clk := &clock{t: time.Date(2025, 6, 2, 12, 0, 0, 0, time.UTC)}
	s, admin := setup(t, gitlabtest.WithLongPolling(0), gitlabtest.WithClock(clk.now))
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	recv, srv := newHookLog(t)
	recv.status = http.StatusBadGateway
	st, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": srv.URL, "job_events": true, "token": "hook-secret"})
	if st != http.StatusCreated {
		t.Fatalf("add hook: %d %s", st, body)
	}
	hookID := s.Hooks(p.ID)[0].ID
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "three logged deliveries", func() bool { return len(s.HookEvents(hookID)) == 3 })
	path := fmt.Sprintf("/projects/%d/hooks/%d/events", p.ID, hookID)

	status, _, evs, body := listEvents(t, admin, path, "")
	if status != http.StatusOK || len(evs) != 3 {
		t.Fatalf("events: %d %s", status, body)
	}
	if !(evs[0].ID > evs[1].ID && evs[1].ID > evs[2].ID) {
		t.Errorf("events not newest first: %d %d %d", evs[0].ID, evs[1].ID, evs[2].ID)
	}
	first := evs[2]
	if first.ResponseStatus != "502" || first.Trigger != "job_hooks" || first.URL != srv.URL || first.Duration == nil ||
		first.RequestHeaders["X-Gitlab-Token"] != "[REDACTED]" || first.RequestHeaders["Idempotency-Key"] == "" ||
		first.RequestHeaders["X-Gitlab-Event"] != "Job Hook" || first.RequestData["build_name"] != "a" {
		t.Errorf("logged event = %+v", first)
	}
	for q, want := range map[string]int{"?status=server_failure": 3, "?status=502": 3, "?status=successful": 0, "?status=client_failure,server_failure": 3, "?status=200": 0} {
		if status, _, evs, body := listEvents(t, admin, path, q); status != http.StatusOK || len(evs) != want {
			t.Errorf("%s: %d, %d events, want %d: %s", q, status, len(evs), want, body)
		}
	}
	for _, q := range []string{"?status=failed", "?per_page=21", "?per_page=0"} {
		if status, _, _, body := listEvents(t, admin, path, q); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, status, body)
		}
	}
	if status, h, evs, _ := listEvents(t, admin, path, "?per_page=2"); status != http.StatusOK || len(evs) != 2 || h.Get("X-Next-Page") != "2" {
		t.Errorf("per_page=2: %d, %d events, next %q", status, len(evs), h.Get("X-Next-Page"))
	}

	// The endpoint is back: a resend delivers the same payload with the
	// same Idempotency-Key, and is logged as an event of its own.
	recv.mu.Lock()
	recv.status = http.StatusOK
	before := len(recv.events)
	recv.mu.Unlock()
	resend := func(id int64) (int, string) {
		st, _, body := admin.do(http.MethodPost, fmt.Sprintf("%s/%d/resend", path, id), nil)
		return st, body
	}
	if st, body := resend(first.ID); st != http.StatusCreated || body != `{"response_status":200}` {
		t.Fatalf("resend: %d %s", st, body)
	}
	evsRecv, heads := recv.snapshot()
	if len(evsRecv) != before+1 || evsRecv[before]["build_name"] != "a" || heads[before].Get("Idempotency-Key") != first.RequestHeaders["Idempotency-Key"] ||
		heads[before].Get("X-Gitlab-Token") != "hook-secret" {
		t.Errorf("resent delivery: %v %v", evsRecv[before], heads[before])
	}
	if _, _, evs, _ := listEvents(t, admin, path, "?status=successful"); len(evs) != 1 || evs[0].RequestHeaders["Idempotency-Key"] != first.RequestHeaders["Idempotency-Key"] {
		t.Errorf("the resend's event: %+v", evs)
	}

	// Five resends a minute for the project and user, then 429.
	for i := range 4 {
		if st, body := resend(evs[0].ID); st != http.StatusCreated {
			t.Fatalf("resend %d: %d %s", i+2, st, body)
		}
	}
	if st, body := resend(evs[0].ID); st != http.StatusTooManyRequests || !strings.Contains(body, "too many times") {
		t.Errorf("sixth resend in a minute: %d %s", st, body)
	}
	clk.add(61 * time.Second)
	if st, body := resend(999999); st != http.StatusNotFound {
		t.Errorf("unknown event: %d %s", st, body)
	}

	// An unreachable endpoint: no request made (422), logged as an
	// internal error.
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	admin.do(http.MethodPut, fmt.Sprintf("/projects/%d/hooks/%d", p.ID, hookID), map[string]any{"url": gone.URL, "job_events": true})
	if st, body := resend(first.ID); st != http.StatusUnprocessableEntity || !strings.Contains(body, "URL has changed") {
		t.Errorf("resend after the URL changed: %d %s", st, body)
	}
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "d"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused delivery's log", func() bool {
		_, _, evs, _ := listEvents(t, admin, path, "?status=server_failure")
		return len(evs) == 4 && evs[0].ResponseStatus == "internal error"
	})
	_, _, evs, _ = listEvents(t, admin, path, "?status=server_failure")
	if st, body := resend(evs[0].ID); st != http.StatusUnprocessableEntity || !strings.Contains(body, "connection refused") {
		t.Errorf("resend to a refusing endpoint: %d %s", st, body)
	}
	if n := len(s.HookEvents(hookID)); n != 10 {
		t.Errorf("%d events logged, want 10 (3 failed, 5 resent, 1 refused, its refused resend)", n)
	}

	// Seven days on, the log has forgotten them.
	clk.add(8 * 24 * time.Hour)
	if status, _, evs, _ := listEvents(t, admin, path, ""); status != http.StatusOK || len(evs) != 0 {
		t.Errorf("events after 8 days: %d", len(evs))
	}
	if st, _ := resend(first.ID); st != http.StatusNotFound {
		t.Errorf("resend of an expired event: %d", st)
	}
}

func TestResendToADisabledHook(t *testing.T) {
	for _, autoDisable := range []bool{true, false} {
		t.Run(fmt.Sprintf("auto-disabling=%v", autoDisable), func(t *testing.T) {
			opts := []gitlabtest.Option{gitlabtest.WithLongPolling(0)}
			if !autoDisable {
				opts = append(opts, gitlabtest.WithoutWebhookAutoDisabling())
			}
			s, admin := setup(t, opts...)
			p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
			recv, srv := newHookLog(t)
			recv.status = http.StatusServiceUnavailable
			admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": srv.URL, "job_events": true})
			hookID := s.Hooks(p.ID)[0].ID
			if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "a"}, {Name: "b"}, {Name: "c"}, {Name: "d"}, {Name: "e"}}}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "five deliveries ended", func() bool { return len(s.Deliveries()) == 5 })
			logged := s.HookEvents(hookID)
			_, _, hook := admin.do(http.MethodGet, fmt.Sprintf("/projects/%d/hooks/%d", p.ID, hookID), nil)
			st, _, body := admin.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks/%d/events/%d/resend", p.ID, hookID, logged[0].ID), nil)
			if autoDisable {
				// Four failures disable the hook: the fifth delivery is
				// dropped, unlogged, and nothing can be resent.
				if len(logged) != 4 || !strings.Contains(hook, `"temporarily_disabled"`) || st != http.StatusUnprocessableEntity || !strings.Contains(body, "Hook disabled") {
					t.Errorf("%d logged, hook %s, resend %d %s", len(logged), hook, st, body)
				}
				return
			}
			if len(logged) != 5 || !strings.Contains(hook, `"alert_status":"executable"`) || st != http.StatusCreated || body != `{"response_status":503}` {
				t.Errorf("%d logged, hook %s, resend %d %s", len(logged), hook, st, body)
			}
		})
	}
}
