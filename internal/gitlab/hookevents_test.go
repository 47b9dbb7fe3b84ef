package gitlab

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

func TestHookEventsAndResend(t *testing.T) {
	s := gitlabtest.New(gitlabtest.WithLongPolling(0), gitlabtest.WithoutWebhookAutoDisabling())
	t.Cleanup(s.Close)
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	var (
		mu   sync.Mutex
		keys []string
	)
	lastKey := func(i int) string {
		mu.Lock()
		defer mu.Unlock()
		return keys[(i+len(keys))%len(keys)]
	}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(recv.Close)
	c, _ := newClient(t, s)
	ctx := context.Background()
	hookID, err := c.AddProjectHook(ctx, p.PathWithNamespace, HookSpec{URL: recv.URL, JobEvents: true, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	jobs := make([]gitlabtest.JobSpec, 25)
	for i := range jobs {
		jobs[i] = gitlabtest.JobSpec{Name: "job"}
	}
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: jobs}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(s.HookEvents(hookID)) < 25 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	// Every page, by path or ID; the filter goes to GitLab.
	all, pages, err := c.ListHookEvents(ctx, p.PathWithNamespace, hookID, HookEventFilter{Status: []string{HookEventsServerFailure}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 25 || pages != 2 {
		t.Fatalf("%d events in %d pages, want 25 in 2", len(all), pages)
	}
	e := all[len(all)-1]
	if e.ResponseStatus != "500" || e.Code() != 500 || e.Accepted() || e.IdempotencyKey() != lastKey(0) || e.Trigger != "job_hooks" || len(e.RequestData) == 0 {
		t.Errorf("oldest event = %+v", e)
	}
	// After stops at the events already seen: one page.
	newer, pages, err := c.ListHookEvents(ctx, p.ID, hookID, HookEventFilter{After: all[3].ID})
	if err != nil || len(newer) != 3 || pages != 1 {
		t.Errorf("events after %d: %d in %d pages (%v)", all[3].ID, len(newer), pages, err)
	}
	for _, rec := range s.Requests() {
		if strings.HasSuffix(rec.Path, "/events") {
			if q, _ := url.ParseQuery(rec.Query); q.Get("per_page") != "20" {
				t.Errorf("query %q: per_page must be GitLab's most, 20", rec.Query)
			}
		}
	}

	status.Store(http.StatusOK)
	code, err := c.ResendHookEvent(ctx, p.PathWithNamespace, hookID, e.ID)
	if err != nil || code != http.StatusOK || lastKey(-1) != e.IdempotencyKey() {
		t.Fatalf("resend: %d %v, key %q", code, err, lastKey(-1))
	}
	for range 4 {
		if _, err := c.ResendHookEvent(ctx, p.ID, hookID, e.ID); err != nil {
			t.Fatal(err)
		}
	}
	var apiErr *APIError
	if _, err := c.ResendHookEvent(ctx, p.ID, hookID, e.ID); !IsRateLimited(err) || !errors.As(err, &apiErr) || apiErr.Method != http.MethodPost {
		t.Errorf("sixth resend in a minute: %v", err)
	}
	if n := countRequests(s, "/resend"); n != 6 {
		t.Errorf("%d resend requests: a POST is never retried", n)
	}
	if _, _, err := c.ListHookEvents(ctx, p.ID, 424242, HookEventFilter{}); !IsNotFound(err) {
		t.Errorf("unknown hook: %v", err)
	}
}

func TestResendRefused(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/web", s.AddGroup("acme", 0).ID)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	c, _ := newClient(t, s)
	ctx := context.Background()
	hookID, err := c.AddProjectHook(ctx, p.ID, HookSpec{URL: gone.URL, JobEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePipeline(p.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "a"}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(s.HookEvents(hookID)) < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evs, _, err := c.ListHookEvents(ctx, p.ID, hookID, HookEventFilter{Status: []string{HookEventsServerFailure}})
	if err != nil || len(evs) != 1 || evs[0].ResponseStatus != HookEventInternalError || evs[0].Code() != 0 {
		t.Fatalf("events: %+v %v", evs, err)
	}
	if _, err := c.ResendHookEvent(ctx, p.ID, hookID, evs[0].ID); !errors.Is(err, ErrResendRefused) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("resend to a refusing endpoint: %v", err)
	}
}

func countRequests(s *gitlabtest.Server, suffix string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}
