package gitlab

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

func TestIdempotentRequestsRetryOn429(t *testing.T) {
	cases := map[string]func() gitlabtest.RateLimitHeaders{
		"Retry-After seconds": func() gitlabtest.RateLimitHeaders { return gitlabtest.RateLimitHeaders{RetryAfter: "1"} },
		"Retry-After date": func() gitlabtest.RateLimitHeaders {
			return gitlabtest.RateLimitHeaders{RetryAfter: time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)}
		},
		"RateLimit-Reset": func() gitlabtest.RateLimitHeaders {
			return gitlabtest.RateLimitHeaders{Reset: time.Now().Add(time.Second), Limit: 2000}
		},
		"no headers": func() gitlabtest.RateLimitHeaders { return gitlabtest.RateLimitHeaders{} },
	}
	for name, headers := range cases {
		t.Run(name, func(t *testing.T) {
			s := newServer(t)
			p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
			j := s.AddJob(p.ID, gitlabtest.JobSpec{Tags: []string{"gosling"}})
			c, logs := newClient(t, s)

			s.RateLimitNext(http.MethodGet, "/projects/*/jobs/*", 3, headers())
			tags, err := c.JobTags(context.Background(), p.ID, j.ID)
			if err != nil {
				t.Fatalf("JobTags: %v", err)
			}
			if len(tags) != 1 {
				t.Errorf("tags = %v", tags)
			}
			if n := s.CountRequests(http.MethodGet, "/projects/*/jobs/*"); n != 4 {
				t.Errorf("%d GETs, want 4", n)
			}
			if got := strings.Count(logs.String(), "retrying request"); got != 3 {
				t.Errorf("%d retries logged, want 3", got)
			}
		})
	}
}

func TestIdempotentRequestsRetryOn5xxAndDrops(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	createRunners(t, c, p.ID, 3, []string{"gosling"}, "r-")

	s.FailNext(http.MethodGet, "/runners", http.StatusBadGateway, 1, false)
	s.FailNext(http.MethodGet, "/runners", gitlabtest.DropConnection, 1, false)
	s.FailNext(http.MethodGet, "/runners", http.StatusServiceUnavailable, 1, false)
	rs, err := c.ListRunners(ctx, ListRunnersFilter{})
	if err != nil || len(rs) != 3 {
		t.Fatalf("ListRunners = %d runners, %v", len(rs), err)
	}
	// 501 says the server cannot do it at all: no retry.
	s.FailNext(http.MethodGet, "/runners", http.StatusNotImplemented, 1, false)
	if _, err := c.ListRunners(ctx, ListRunnersFilter{}); err == nil {
		t.Errorf("501 was retried into success")
	}
}

func TestRetriesGiveUp(t *testing.T) {
	s := newServer(t)
	c, _ := newClient(t, s)

	s.RateLimitNext(http.MethodGet, "/runners", 100, gitlabtest.RateLimitHeaders{RetryAfter: "30"})
	_, err := c.ListRunners(context.Background(), ListRunnersFilter{})
	if !IsRateLimited(err) {
		t.Fatalf("err = %v, want 429", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RetryAfter != 30*time.Second || apiErr.Message != "Retry later" {
		t.Errorf("APIError = %+v, want RetryAfter 30s and GitLab's body", apiErr)
	}
	if n := s.CountRequests(http.MethodGet, "/runners"); n != testRetryMax+1 {
		t.Errorf("%d GETs, want %d", n, testRetryMax+1)
	}
}

func TestRetryDisabled(t *testing.T) {
	s := newServer(t)
	c, _ := newClient(t, s, WithRetry(0, testWaitMin, testWaitMax))
	s.FailNext(http.MethodGet, "/runners", http.StatusBadGateway, 1, false)
	if _, err := c.ListRunners(context.Background(), ListRunnersFilter{}); err == nil {
		t.Fatal("succeeded with retries disabled")
	}
	if n := s.CountRequests(http.MethodGet, "/runners"); n != 1 {
		t.Errorf("%d GETs, want 1", n)
	}
}

func TestServerWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		headers map[string]string
		want    time.Duration
		ok      bool
	}{
		{"retry-after seconds", map[string]string{"Retry-After": "7"}, 7 * time.Second, true},
		{"retry-after date", map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second, true},
		{"retry-after date passed", map[string]string{"Retry-After": now.Add(-time.Minute).Format(http.TimeFormat)}, 0, true},
		{"reset unix time", map[string]string{"RateLimit-Reset": strconv.FormatInt(now.Add(42*time.Second).Unix(), 10)}, 42 * time.Second, true},
		{"reset as seconds", map[string]string{"RateLimit-Reset": "5"}, 5 * time.Second, true},
		{"retry-after wins", map[string]string{"Retry-After": "3", "RateLimit-Reset": strconv.FormatInt(now.Add(time.Hour).Unix(), 10)}, 3 * time.Second, true},
		{"garbage", map[string]string{"Retry-After": "soon"}, 0, false},
		{"none", nil, 0, false},
	}
	for _, tc := range cases {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		got, ok := serverWait(h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: serverWait = %s, %t; want %s, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestWait(t *testing.T) {
	p := retryPolicy{max: 5, minWait: 100 * time.Millisecond, maxWait: 10 * time.Second}
	now := time.Now()

	asked := &http.Response{Header: http.Header{"Retry-After": {"2"}}}
	for range 50 {
		if d := p.wait(0, asked, now); d < 2*time.Second || d >= 2*time.Second+p.minWait {
			t.Fatalf("Retry-After 2: wait %s, want [2s, 2.1s)", d)
		}
		if d := p.wait(0, &http.Response{Header: http.Header{"Retry-After": {"3600"}}}, now); d != p.maxWait {
			t.Fatalf("Retry-After 3600: wait %s, want the cap %s", d, p.maxWait)
		}
	}
	// Without headers: exponential, jittered within [base/2, base], capped.
	for attempt, base := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		for range 50 {
			d := p.wait(attempt, &http.Response{Header: http.Header{}}, now)
			if d < base/2 || d > base {
				t.Fatalf("attempt %d: wait %s outside [%s, %s]", attempt, d, base/2, base)
			}
		}
	}
	for _, attempt := range []int{10, 40, 100} {
		if d := p.wait(attempt, nil, now); d < p.maxWait/2 || d > p.maxWait {
			t.Errorf("attempt %d: wait %s outside [%s, %s]", attempt, d, p.maxWait/2, p.maxWait)
		}
	}
	apiErr := &APIError{StatusCode: 429, RetryAfter: 3 * time.Second}
	if d := p.waitAfter(0, apiErr); d < 3*time.Second || d > 3*time.Second+p.minWait {
		t.Errorf("waitAfter(RetryAfter 3s) = %s", d)
	}
}

func TestNewValidates(t *testing.T) {
	bad := map[string]func() (*Client, error){
		"no scheme":   func() (*Client, error) { return New("gitlab.com", "t") },
		"ftp":         func() (*Client, error) { return New("ftp://gitlab.com", "t") },
		"empty token": func() (*Client, error) { return New("https://gitlab.com", "") },
		"negative max": func() (*Client, error) {
			return New("https://gitlab.com", "t", WithRetry(-1, time.Second, time.Second))
		},
		"zero min wait": func() (*Client, error) { return New("https://gitlab.com", "t", WithRetry(1, 0, time.Second)) },
		"max below min": func() (*Client, error) {
			return New("https://gitlab.com", "t", WithRetry(1, time.Second, time.Millisecond))
		},
	}
	for name, f := range bad {
		if _, err := f(); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	c, err := New("https://gitlab.example.com/gitlab", "glpat-secret")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.api.BaseURL().String(); got != "https://gitlab.example.com/gitlab/api/v4/" {
		t.Errorf("base URL = %s", got)
	}
}
