package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// onlyRunner asserts the server holds exactly one runner and returns it.
func onlyRunner(t *testing.T, s *gitlabtest.Server) gitlabtest.Runner {
	t.Helper()
	rs := s.Runners()
	if len(rs) != 1 {
		t.Fatalf("server has %d runners, want exactly 1: %+v", len(rs), rs)
	}
	return rs[0]
}

func TestCreateRunnerProject(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	spec := projectSpec(p.ID, "gosling:acme/api:r1")
	spec.Locked = true
	spec.Paused = true
	r, err := c.CreateRunner(ctx, spec)
	if err != nil {
		t.Fatalf("CreateRunner: %v", err)
	}
	got := onlyRunner(t, s)
	if r.ID != got.ID || r.Token != got.Token || !strings.HasPrefix(r.Token, "glrt-") {
		t.Errorf("returned runner %d token %q, server has %d with its own token", r.ID, r.Token, got.ID)
	}
	if r.TokenExpiresAt != nil {
		t.Errorf("TokenExpiresAt = %v, want nil (GitLab's null)", r.TokenExpiresAt)
	}
	if got.Type != RunnerTypeProject || got.ProjectID != p.ID || got.Description != spec.Description ||
		!slices.Equal(got.Tags, spec.Tags) || got.RunUntagged || !got.Paused || !got.Locked || got.MaximumTimeout != 3600 {
		t.Errorf("server runner = %+v, want it to match %+v", got, spec)
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 1 {
		t.Errorf("%d POST /user/runners, want 1", n)
	}
	if err := c.VerifyRunner(ctx, r.Token, ""); err != nil {
		t.Errorf("VerifyRunner with the new token: %v", err)
	}
}

func TestCreateRunnerGroupAndInstance(t *testing.T) {
	s := newServer(t)
	g := s.AddGroup("acme", 0)
	c, _ := newClient(t, s)
	ctx := context.Background()

	gr, err := c.CreateRunner(ctx, RunnerSpec{Type: RunnerTypeGroup, GroupID: g.ID, Description: "group-runner", RunUntagged: true})
	if err != nil {
		t.Fatalf("create group runner: %v", err)
	}
	ir, err := c.CreateRunner(ctx, RunnerSpec{Type: RunnerTypeInstance, Description: "instance-runner", Tags: []string{"x"}})
	if err != nil {
		t.Fatalf("create instance runner: %v", err)
	}
	if got, _ := s.Runner(gr.ID); got.Type != RunnerTypeGroup || got.GroupID != g.ID || !got.RunUntagged || len(got.Tags) != 0 {
		t.Errorf("group runner on server = %+v", got)
	}
	if got, _ := s.Runner(ir.ID); got.Type != RunnerTypeInstance {
		t.Errorf("instance runner on server = %+v", got)
	}

	// Instance runners are not in GET /runners; ListRunners goes to /runners/all.
	all, err := c.ListRunners(ctx, ListRunnersFilter{Type: RunnerTypeInstance})
	if err != nil {
		t.Fatalf("ListRunners(instance): %v", err)
	}
	if len(all) != 1 || all[0].ID != ir.ID {
		t.Errorf("instance runners = %+v, want just %d", all, ir.ID)
	}
}

func TestCreateRunnerRejected(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	invalid := map[string]RunnerSpec{
		"no description":     {Type: RunnerTypeProject, ProjectID: p.ID, RunUntagged: true},
		"unknown type":       {Type: "shared", Description: "d", RunUntagged: true},
		"project without ID": {Type: RunnerTypeProject, Description: "d", RunUntagged: true},
		"group without ID":   {Type: RunnerTypeGroup, Description: "d", RunUntagged: true},
		"timeout too short":  {Type: RunnerTypeProject, ProjectID: p.ID, Description: "d", RunUntagged: true, MaximumTimeout: time.Minute},
		"no tags, no jobs":   {Type: RunnerTypeProject, ProjectID: p.ID, Description: "d"},
	}
	for name, spec := range invalid {
		if _, err := c.CreateRunner(ctx, spec); err == nil {
			t.Errorf("%s: CreateRunner succeeded, want an error", name)
		}
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 0 {
		t.Errorf("invalid specs sent %d requests, want 0", n)
	}

	// GitLab refuses: a 4xx is an answer, not an unknown outcome.
	s.AddUser("glpat-plain-user")
	plain, err := New(s.URL(), "glpat-plain-user", WithRetry(testRetryMax, testWaitMin, testWaitMax))
	if err != nil {
		t.Fatal(err)
	}
	_, err = plain.CreateRunner(ctx, RunnerSpec{Type: RunnerTypeInstance, Description: "d", RunUntagged: true})
	if !IsForbidden(err) {
		t.Fatalf("non-admin instance runner: err = %v, want 403", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Message != "403 Forbidden - Insufficient permissions" || apiErr.Path != "/user/runners" {
		t.Errorf("APIError = %+v", apiErr)
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 1 {
		t.Errorf("%d POST /user/runners after a 403, want 1", n)
	}
	if strings.Contains(err.Error(), "glpat-plain-user") {
		t.Errorf("error %q contains the token", err)
	}
}

// The create succeeds on the server but its answer is lost: the client must
// find the runner, not make a second one, and hand back a working token.
func TestCreateRunnerReconcilesLostAnswer(t *testing.T) {
	for name, status := range map[string]int{"500": http.StatusInternalServerError, "dropped connection": gitlabtest.DropConnection} {
		t.Run(name, func(t *testing.T) {
			s := newServer(t)
			p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
			c, logs := newClient(t, s)
			ctx := context.Background()

			s.FailNext(http.MethodPost, "/user/runners", status, 1, true)
			r, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:lost"))
			if err != nil {
				t.Fatalf("CreateRunner: %v", err)
			}
			got := onlyRunner(t, s)
			if r.ID != got.ID || r.Token != got.Token {
				t.Errorf("returned runner %d, server has %d; tokens equal: %t", r.ID, got.ID, r.Token == got.Token)
			}
			if !slices.Equal(r.Tags, []string{"gosling", "linux"}) || r.Description != "gosling:lost" {
				t.Errorf("adopted runner = %+v", r)
			}
			if err := c.VerifyRunner(ctx, r.Token, ""); err != nil {
				t.Errorf("VerifyRunner with the reset token: %v", err)
			}
			if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 1 {
				t.Errorf("%d POST /user/runners, want 1 (no blind retry)", n)
			}
			if n := s.CountRequests(http.MethodPost, "/runners/*/reset_authentication_token"); n != 1 {
				t.Errorf("%d token resets, want 1", n)
			}
			if !strings.Contains(logs.String(), "adopted runner") {
				t.Errorf("no adoption logged:\n%s", logs)
			}
		})
	}
}

// The create fails before it takes effect: after looking and finding
// nothing, the client creates again.
func TestCreateRunnerRetriesWhenNothingWasCreated(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	s.FailNext(http.MethodPost, "/user/runners", http.StatusBadGateway, 2, false)
	r, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:retry"))
	if err != nil {
		t.Fatalf("CreateRunner: %v", err)
	}
	got := onlyRunner(t, s)
	if r.ID != got.ID || r.Token != got.Token {
		t.Errorf("returned runner %d, server has %d", r.ID, got.ID)
	}
	if err := c.VerifyRunner(ctx, r.Token, ""); err != nil {
		t.Errorf("VerifyRunner: %v", err)
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 3 {
		t.Errorf("%d POST /user/runners, want 3", n)
	}
	// Every create after the first was preceded by a look.
	var order []string
	for _, rec := range s.Requests() {
		switch {
		case rec.Method == http.MethodPost && strings.HasSuffix(rec.Path, "/user/runners"):
			order = append(order, "create")
		case rec.Method == http.MethodGet && strings.HasSuffix(rec.Path, "/runners"):
			order = append(order, "list")
		}
	}
	if want := []string{"create", "list", "create", "list", "create"}; !slices.Equal(order, want) {
		t.Errorf("request order %v, want %v", order, want)
	}
}

func TestCreateRunnerRateLimited(t *testing.T) {
	headers := map[string]func() gitlabtest.RateLimitHeaders{
		"Retry-After": func() gitlabtest.RateLimitHeaders { return gitlabtest.RateLimitHeaders{RetryAfter: "1"} },
		"RateLimit-Reset": func() gitlabtest.RateLimitHeaders {
			return gitlabtest.RateLimitHeaders{Reset: time.Now().Add(time.Second)}
		},
		"no headers": func() gitlabtest.RateLimitHeaders { return gitlabtest.RateLimitHeaders{} },
	}
	for name, h := range headers {
		t.Run(name, func(t *testing.T) {
			s := newServer(t)
			p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
			c, _ := newClient(t, s)
			ctx := context.Background()

			s.RateLimitNext(http.MethodPost, "/user/runners", 2, h())
			r, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:limited"))
			if err != nil {
				t.Fatalf("CreateRunner: %v", err)
			}
			if got := onlyRunner(t, s); got.ID != r.ID {
				t.Errorf("returned runner %d, server has %d", r.ID, got.ID)
			}
			if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 3 {
				t.Errorf("%d POST /user/runners, want 3 (two 429s, one create)", n)
			}
		})
	}
}

func TestCreateRunnerGivesUp(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)

	s.FailNext(http.MethodPost, "/user/runners", http.StatusServiceUnavailable, 100, false)
	_, err := c.CreateRunner(context.Background(), projectSpec(p.ID, "gosling:down"))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want the last 503", err)
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != testRetryMax+1 {
		t.Errorf("%d POST /user/runners, want %d", n, testRetryMax+1)
	}
	if n := len(s.Runners()); n != 0 {
		t.Errorf("%d runners exist, want 0", n)
	}
}

// The token reset during reconciliation loses its answer too: the next look
// resets again, and the last token is the one returned.
func TestCreateRunnerResetAnswerLost(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	s.FailNext(http.MethodPost, "/user/runners", http.StatusInternalServerError, 1, true)
	s.FailNext(http.MethodPost, "/runners/*/reset_authentication_token", http.StatusBadGateway, 1, true)
	r, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:reset-lost"))
	if err != nil {
		t.Fatalf("CreateRunner: %v", err)
	}
	if got := onlyRunner(t, s); got.Token != r.Token {
		t.Errorf("returned token is not the runner's current one")
	}
	if err := c.VerifyRunner(ctx, r.Token, ""); err != nil {
		t.Errorf("VerifyRunner: %v", err)
	}
	if n := s.CountRequests(http.MethodPost, "/runners/*/reset_authentication_token"); n != 2 {
		t.Errorf("%d resets, want 2", n)
	}
}

func TestCreateRunnerAmbiguousDescription(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	// The caller broke the uniqueness promise; reconciliation must not guess.
	for range 2 {
		if _, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:dup")); err != nil {
			t.Fatal(err)
		}
	}
	s.FailNext(http.MethodPost, "/user/runners", http.StatusInternalServerError, 1, false)
	_, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:dup"))
	if !errors.Is(err, ErrAmbiguousDescription) {
		t.Fatalf("err = %v, want ErrAmbiguousDescription", err)
	}
	if n := len(s.Runners()); n != 2 {
		t.Errorf("%d runners, want the 2 that were there", n)
	}
}

func TestCreateRunnerStopsWithContext(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s, WithRetry(3, time.Minute, time.Minute))

	s.FailNext(http.MethodPost, "/user/runners", http.StatusInternalServerError, 1, false)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.CreateRunner(ctx, projectSpec(p.ID, "gosling:ctx"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func createRunners(t *testing.T, c *Client, projectID int64, n int, tags []string, prefix string) []*Runner {
	t.Helper()
	out := make([]*Runner, 0, n)
	for i := range n {
		r, err := c.CreateRunner(context.Background(), RunnerSpec{
			Type: RunnerTypeProject, ProjectID: projectID, Description: prefix + strconv.Itoa(i), Tags: tags,
		})
		if err != nil {
			t.Fatalf("create runner %d: %v", i, err)
		}
		out = append(out, r)
	}
	return out
}

func TestListRunnersPaginatesAndFilters(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	createRunners(t, c, p.ID, 230, []string{"gosling", "linux"}, "linux-")
	mac := createRunners(t, c, p.ID, 3, []string{"gosling", "macos"}, "mac-")
	if err := c.SetRunnerPaused(ctx, mac[1].ID, true); err != nil {
		t.Fatal(err)
	}

	before := s.CountRequests(http.MethodGet, "/runners")
	all, err := c.ListRunners(ctx, ListRunnersFilter{})
	if err != nil {
		t.Fatalf("ListRunners: %v", err)
	}
	if len(all) != 233 {
		t.Errorf("listed %d runners, want 233", len(all))
	}
	if n := s.CountRequests(http.MethodGet, "/runners") - before; n != 3 {
		t.Errorf("%d pages fetched, want 3 of 100", n)
	}
	seen := map[int64]bool{}
	for _, r := range all {
		if seen[r.ID] {
			t.Errorf("runner %d listed twice", r.ID)
		}
		seen[r.ID] = true
		if r.Token != "" {
			t.Errorf("a listed runner carries a token")
		}
	}

	tagged, err := c.ListRunners(ctx, ListRunnersFilter{Type: RunnerTypeProject, Tags: []string{"gosling", "macos"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tagged) != 3 {
		t.Errorf("macos runners = %d, want 3", len(tagged))
	}
	paused := true
	ps, err := c.ListRunners(ctx, ListRunnersFilter{Paused: &paused})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].ID != mac[1].ID || !ps[0].Paused {
		t.Errorf("paused runners = %+v, want just %d", ps, mac[1].ID)
	}
	none, err := c.ListRunners(ctx, ListRunnersFilter{Type: RunnerTypeGroup})
	if err != nil || len(none) != 0 {
		t.Errorf("group runners = %v, %v; want none", none, err)
	}
}

func TestFindRunnersByDescription(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()

	rs := createRunners(t, c, p.ID, 120, []string{"gosling"}, "runner-")
	found, err := c.FindRunnersByDescription(ctx, "runner-113")
	if err != nil {
		t.Fatalf("FindRunnersByDescription: %v", err)
	}
	if len(found) != 1 || found[0].ID != rs[113].ID || !slices.Equal(found[0].Tags, []string{"gosling"}) || found[0].Type != RunnerTypeProject {
		t.Errorf("found %+v, want runner %d with its tags", found, rs[113].ID)
	}
	if found[0].Status != "never_contacted" {
		t.Errorf("status = %q, want never_contacted", found[0].Status)
	}
	none, err := c.FindRunnersByDescription(ctx, "runner-1")
	if err != nil || len(none) != 1 {
		t.Errorf("exact match for runner-1: %v, %v", none, err)
	}
	none, err = c.FindRunnersByDescription(ctx, "nope")
	if err != nil || len(none) != 0 {
		t.Errorf("no match: %v, %v", none, err)
	}
}

func TestDeleteRunnerIsIdempotent(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	rs := createRunners(t, c, p.ID, 3, []string{"gosling"}, "del-")

	if err := c.DeleteRunner(ctx, rs[0].ID); err != nil {
		t.Fatalf("DeleteRunner: %v", err)
	}
	if _, ok := s.Runner(rs[0].ID); ok {
		t.Errorf("runner %d still exists", rs[0].ID)
	}
	if err := c.DeleteRunner(ctx, rs[0].ID); err != nil {
		t.Errorf("second DeleteRunner: %v, want nil", err)
	}
	s.DeleteRunnerBehindBack(rs[1].ID)
	if err := c.DeleteRunner(ctx, rs[1].ID); err != nil {
		t.Errorf("DeleteRunner of a runner deleted in GitLab's UI: %v, want nil", err)
	}
	// A DELETE whose answer is lost is retried, finds nothing, and succeeds.
	s.FailNext(http.MethodDelete, "/runners/*", http.StatusBadGateway, 1, true)
	if err := c.DeleteRunner(ctx, rs[2].ID); err != nil {
		t.Errorf("DeleteRunner after a lost answer: %v", err)
	}
	if n := len(s.Runners()); n != 0 {
		t.Errorf("%d runners left", n)
	}
	// Other errors are still errors.
	s.FailNext(http.MethodDelete, "/runners/*", http.StatusForbidden, 1, false)
	if err := c.DeleteRunner(ctx, 999); !IsForbidden(err) {
		t.Errorf("DeleteRunner on 403: %v", err)
	}
}

func TestResetRunnerToken(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	r := createRunners(t, c, p.ID, 1, []string{"gosling"}, "reset-")[0]

	token, expires, err := c.ResetRunnerToken(ctx, r.ID)
	if err != nil {
		t.Fatalf("ResetRunnerToken: %v", err)
	}
	if token == r.Token || !strings.HasPrefix(token, "glrt-") || expires != nil {
		t.Errorf("new token %q (expires %v) vs old", token, expires)
	}
	err = c.VerifyRunner(ctx, r.Token, "")
	if !errors.Is(err, ErrInvalidRunnerToken) || !IsForbidden(err) {
		t.Errorf("old token: err = %v, want ErrInvalidRunnerToken and 403", err)
	}
	if err != nil && strings.Contains(err.Error(), r.Token) {
		t.Errorf("error %q contains the runner token", err)
	}
	if err := c.VerifyRunner(ctx, token, ""); err != nil {
		t.Errorf("new token: %v", err)
	}
	if _, _, err := c.ResetRunnerToken(ctx, 4242); !IsNotFound(err) {
		t.Errorf("unknown runner: err = %v, want 404", err)
	}
	// A POST is not retried by client-go.
	s.FailNext(http.MethodPost, "/runners/*/reset_authentication_token", http.StatusBadGateway, 1, false)
	before := s.CountRequests(http.MethodPost, "/runners/*/reset_authentication_token")
	if _, _, err := c.ResetRunnerToken(ctx, r.ID); err == nil {
		t.Errorf("ResetRunnerToken on 502 succeeded")
	}
	if n := s.CountRequests(http.MethodPost, "/runners/*/reset_authentication_token") - before; n != 1 {
		t.Errorf("%d reset requests for one call, want 1", n)
	}
}

func TestSetRunnerPaused(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	r := createRunners(t, c, p.ID, 1, []string{"gosling"}, "pause-")[0]

	s.FailNext(http.MethodPut, "/runners/*", http.StatusInternalServerError, 1, false)
	if err := c.SetRunnerPaused(ctx, r.ID, true); err != nil {
		t.Fatalf("pause (PUT retried after a 500): %v", err)
	}
	if got, _ := s.Runner(r.ID); !got.Paused {
		t.Errorf("runner not paused")
	}
	if err := c.SetRunnerPaused(ctx, r.ID, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Runner(r.ID); got.Paused {
		t.Errorf("runner still paused")
	}
	if err := c.SetRunnerPaused(ctx, 4242, true); !IsNotFound(err) {
		t.Errorf("unknown runner: %v", err)
	}
}

func TestRunnerJobs(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	rs := createRunners(t, c, p.ID, 2, []string{"gosling"}, "jobs-")

	running := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "build", Stage: "build", Tags: []string{"gosling"}})
	s.SetJobStatus(p.ID, running.ID, "running", rs[0].ID)
	done := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "test", Tags: []string{"gosling"}})
	s.SetJobStatus(p.ID, done.ID, "success", rs[0].ID)
	other := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "lint"})
	s.SetJobStatus(p.ID, other.ID, "running", rs[1].ID)
	s.AddJob(p.ID, gitlabtest.JobSpec{Name: "pending"})

	jobs, err := c.RunnerJobs(ctx, rs[0].ID, "running")
	if err != nil {
		t.Fatalf("RunnerJobs: %v", err)
	}
	want := Job{ID: running.ID, Status: "running", Name: "build", Ref: "main", Stage: "build", TagList: []string{"gosling"}, RunnerID: rs[0].ID, PipelineID: running.PipelineID, ProjectID: p.ID}
	if len(jobs) != 1 || fmt.Sprint(jobs[0]) != fmt.Sprint(want) {
		t.Errorf("running jobs = %+v, want [%+v]", jobs, want)
	}
	all, err := c.RunnerJobs(ctx, rs[0].ID, "")
	if err != nil || len(all) != 2 {
		t.Errorf("all jobs of runner: %+v, %v", all, err)
	}
	if _, err := c.RunnerJobs(ctx, 4242, "running"); !IsNotFound(err) {
		t.Errorf("unknown runner: %v", err)
	}
}

// headerRecorder remembers the auth headers of every request it carries.
type headerRecorder struct {
	mu   sync.Mutex
	auth map[string]string // path -> PRIVATE-TOKEN
}

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.auth[r.URL.Path] = r.Header.Get("PRIVATE-TOKEN") + r.Header.Get("Authorization")
	h.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func TestVerifyRunnerSpeaksAsTheRunner(t *testing.T) {
	s := newServer(t)
	rec := &headerRecorder{auth: map[string]string{}}
	c, _ := newClient(t, s, WithHTTPClient(&http.Client{Transport: rec}))

	err := c.VerifyRunner(context.Background(), "glrt-not-a-real-token", "")
	if !errors.Is(err, ErrInvalidRunnerToken) || !IsForbidden(err) {
		t.Fatalf("err = %v, want ErrInvalidRunnerToken", err)
	}
	if strings.Contains(err.Error(), "glrt-not-a-real-token") {
		t.Errorf("error %q contains the token", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got, ok := rec.auth["/api/v4/runners/verify"]; !ok || got != "" {
		t.Errorf("verify sent auth header %q (seen: %t), want none: a runner has no user token", got, ok)
	}
}

func TestClientConcurrentUse(t *testing.T) {
	s := newServer(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	c, _ := newClient(t, s)
	ctx := context.Background()
	s.FailNext(http.MethodPost, "/user/runners", http.StatusInternalServerError, 3, true)

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			r, err := c.CreateRunner(ctx, projectSpec(p.ID, fmt.Sprintf("concurrent-%d", i)))
			if err == nil {
				err = c.VerifyRunner(ctx, r.Token, "")
			}
			if err == nil {
				_, err = c.ListRunners(ctx, ListRunnersFilter{Tags: []string{"gosling"}})
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := len(s.Runners()); n != 16 {
		t.Errorf("%d runners, want 16 (no duplicates from the 3 lost answers)", n)
	}
}
