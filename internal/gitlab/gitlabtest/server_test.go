package gitlabtest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

type call struct {
	t     *testing.T
	s     *gitlabtest.Server
	token string
}

// do sends a request and returns status, headers and body.
func (c call) do(method, path string, body any) (int, http.Header, string) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.s.URL()+"/api/v4"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("PRIVATE-TOKEN", c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(b))
}

func setup(t *testing.T, opts ...gitlabtest.Option) (*gitlabtest.Server, call) {
	t.Helper()
	s := gitlabtest.New(opts...)
	t.Cleanup(s.Close)
	return s, call{t: t, s: s, token: s.Token()}
}

func TestAuthentication(t *testing.T) {
	s, admin := setup(t)
	anon := call{t: t, s: s}
	wrong := call{t: t, s: s, token: "glpat-wrong"}

	for _, c := range []call{anon, wrong} {
		status, _, body := c.do(http.MethodGet, "/runners", nil)
		if status != http.StatusUnauthorized || body != `{"message":"401 Unauthorized"}` {
			t.Errorf("token %q: %d %s", c.token, status, body)
		}
	}
	if status, _, _ := admin.do(http.MethodGet, "/runners", nil); status != http.StatusOK {
		t.Errorf("PRIVATE-TOKEN: %d", status)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/v4/runners", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("Authorization: Bearer: %d", resp.StatusCode)
	}

	s.AddUser("glpat-user")
	user := call{t: t, s: s, token: "glpat-user"}
	if status, _, body := user.do(http.MethodGet, "/runners/all", nil); status != http.StatusForbidden || body != `{"message":"403 Forbidden"}` {
		t.Errorf("non-admin /runners/all: %d %s", status, body)
	}
	if status, _, body := user.do(http.MethodPost, "/user/runners", map[string]any{"runner_type": "instance_type"}); status != http.StatusForbidden || !strings.Contains(body, "Insufficient permissions") {
		t.Errorf("non-admin instance runner: %d %s", status, body)
	}
	if status, _, body := admin.do(http.MethodGet, "/nope", nil); status != http.StatusNotFound || body != `{"error":"404 Not Found"}` {
		t.Errorf("unknown route: %d %s", status, body)
	}
}

func TestRunnerLifecycleShapes(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)

	status, _, body := c.do(http.MethodPost, "/user/runners", map[string]any{
		"runner_type": "project_type", "project_id": p.ID, "description": "r1", "tag_list": []string{"a", "b"}, "run_untagged": false, "maximum_timeout": 3600,
	})
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	var created map[string]any
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	token, _ := created["token"].(string)
	if !strings.HasPrefix(token, "glrt-") || created["token_expires_at"] != nil || len(created) != 3 {
		t.Errorf("create answer %s, want exactly id, glrt- token, null expiry", body)
	}
	id := int64(created["id"].(float64))

	_, _, body = c.do(http.MethodGet, fmt.Sprintf("/runners/%d", id), nil)
	var details map[string]any
	if err := json.Unmarshal([]byte(body), &details); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"description": "r1", "paused": false, "active": true, "is_shared": false, "runner_type": "project_type",
		"online": false, "status": "never_contacted", "run_untagged": false, "maximum_timeout": 3600.0, "contacted_at": nil,
	} {
		if details[key] != want {
			t.Errorf("details[%q] = %v, want %v", key, details[key], want)
		}
	}
	if fmt.Sprint(details["tag_list"]) != "[a b]" {
		t.Errorf("tag_list = %v", details["tag_list"])
	}
	if _, ok := details["token"]; ok {
		t.Errorf("details show the token")
	}

	// The list entity has no tags.
	_, _, body = c.do(http.MethodGet, "/runners", nil)
	if strings.Contains(body, "tag_list") || !strings.Contains(body, `"description":"r1"`) {
		t.Errorf("list = %s", body)
	}

	// Verify by runner token, no user auth; it counts as contact.
	anon := call{t: t, s: s}
	if status, _, body := anon.do(http.MethodPost, "/runners/verify", map[string]string{"token": token}); status != http.StatusOK || !strings.Contains(body, token) {
		t.Errorf("verify: %d %s", status, body)
	}
	if status, _, body := anon.do(http.MethodPost, "/runners/verify", map[string]string{"token": "glrt-bogus"}); status != http.StatusForbidden || body != `{"message":"403 Forbidden"}` {
		t.Errorf("verify bogus: %d %s", status, body)
	}
	if r, _ := s.Runner(id); r.ContactedAt == nil {
		t.Errorf("verify did not record contact")
	}
	if _, _, body := c.do(http.MethodGet, "/runners?status=online", nil); !strings.Contains(body, `"status":"online"`) {
		t.Errorf("online filter: %s", body)
	}

	status, _, body = c.do(http.MethodPost, fmt.Sprintf("/runners/%d/reset_authentication_token", id), nil)
	if status != http.StatusCreated || strings.Contains(body, token) || !strings.Contains(body, `"token":"glrt-`) || strings.Contains(body, `"id"`) {
		t.Errorf("reset: %d %s", status, body)
	}

	if status, _, body := c.do(http.MethodPut, fmt.Sprintf("/runners/%d", id), map[string]any{"paused": true}); status != http.StatusOK || !strings.Contains(body, `"paused":true`) {
		t.Errorf("pause: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodPut, fmt.Sprintf("/runners/%d", id), map[string]any{}); status != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
		t.Errorf("empty update: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodPut, fmt.Sprintf("/runners/%d", id), map[string]any{"tag_list": []string{}}); status != http.StatusBadRequest || !strings.Contains(body, `"tags_list"`) {
		t.Errorf("untaggable update: %d %s", status, body)
	}

	if status, _, _ := c.do(http.MethodDelete, fmt.Sprintf("/runners/%d", id), nil); status != http.StatusNoContent {
		t.Errorf("delete: %d", status)
	}
	if status, _, body := c.do(http.MethodDelete, fmt.Sprintf("/runners/%d", id), nil); status != http.StatusNotFound || body != `{"message":"404 Not found"}` {
		t.Errorf("delete again: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodGet, "/runners/abc", nil); status != http.StatusBadRequest || body != `{"error":"id is invalid"}` {
		t.Errorf("bad id: %d %s", status, body)
	}
}

func TestCreateRunnerValidation(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	cases := []struct {
		body   map[string]any
		status int
		want   string
	}{
		{map[string]any{}, 400, `{"error":"runner_type is missing"}`},
		{map[string]any{"runner_type": "shared"}, 400, `{"error":"runner_type does not have a valid value"}`},
		{map[string]any{"runner_type": "project_type", "project_id": 999}, 403, `{"message":"403 Forbidden - Insufficient permissions"}`},
		{map[string]any{"runner_type": "group_type"}, 403, `{"message":"403 Forbidden - Insufficient permissions"}`},
		{map[string]any{"runner_type": "project_type", "project_id": p.ID, "run_untagged": false}, 400, `{"message":"400 Bad request - Tags list can not be empty when runner is not allowed to pick untagged jobs"}`},
		{map[string]any{"runner_type": "project_type", "project_id": p.ID, "maximum_timeout": 60}, 400, `{"message":"400 Bad request - Maximum timeout needs to be at least 10 minutes"}`},
		{map[string]any{"runner_type": "project_type", "project_id": p.ID, "paused": "maybe"}, 400, `{"error":"paused is invalid"}`},
	}
	for _, tc := range cases {
		status, _, body := c.do(http.MethodPost, "/user/runners", tc.body)
		if status != tc.status || body != tc.want {
			t.Errorf("%v: %d %s, want %d %s", tc.body, status, body, tc.status, tc.want)
		}
	}
	if n := len(s.Runners()); n != 0 {
		t.Errorf("%d runners created by invalid requests", n)
	}
}

func TestPaginationHeaders(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	for range 45 {
		s.AddJob(p.ID, gitlabtest.JobSpec{})
	}
	get := func(query string) (http.Header, []map[string]any) {
		t.Helper()
		status, h, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs%s", p.ID, query), nil)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %s", query, status, body)
		}
		var items []map[string]any
		if err := json.Unmarshal([]byte(body), &items); err != nil {
			t.Fatal(err)
		}
		return h, items
	}
	check := func(query string, items int, want map[string]string) http.Header {
		t.Helper()
		h, got := get(query)
		if len(got) != items {
			t.Errorf("%s: %d items, want %d", query, len(got), items)
		}
		for k, v := range want {
			if vs, ok := h[http.CanonicalHeaderKey(k)]; !ok || vs[0] != v {
				t.Errorf("%s: %s = %q (present %t), want %q", query, k, h.Get(k), ok, v)
			}
		}
		return h
	}

	h := check("", 20, map[string]string{"x-page": "1", "x-per-page": "20", "x-next-page": "2", "x-prev-page": "", "x-total": "45", "x-total-pages": "3"})
	link := h.Get("Link")
	if !strings.Contains(link, `page=2&per_page=20>; rel="next"`) || !strings.Contains(link, `rel="first"`) || !strings.Contains(link, `page=3&per_page=20>; rel="last"`) || strings.Contains(link, `rel="prev"`) {
		t.Errorf("Link = %s", link)
	}
	h = check("?page=3", 5, map[string]string{"x-page": "3", "x-next-page": "", "x-prev-page": "2", "x-total-pages": "3"})
	if link := h.Get("Link"); strings.Contains(link, `rel="next"`) || !strings.Contains(link, `page=2&per_page=20>; rel="prev"`) {
		t.Errorf("last page Link = %s", link)
	}
	check("?page=4", 0, map[string]string{"x-page": "4", "x-next-page": "", "x-prev-page": "3"})
	check("?per_page=500", 45, map[string]string{"x-per-page": "100", "x-total-pages": "1", "x-next-page": ""})
	check("?per_page=0", 20, map[string]string{"x-per-page": "20"})
	check("?per_page=45", 45, map[string]string{"x-total-pages": "1", "x-next-page": ""})
	check("?per_page=44", 44, map[string]string{"x-total-pages": "2", "x-next-page": "2"})

	// Newest first, with the filters kept in Link.
	_, items := get("?per_page=2&scope[]=pending")
	if items[0]["id"].(float64) <= items[1]["id"].(float64) {
		t.Errorf("jobs not newest first: %v, %v", items[0]["id"], items[1]["id"])
	}
	if status, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?page=x", p.ID), nil); status != 400 || body != `{"error":"page is invalid"}` {
		t.Errorf("bad page: %d %s", status, body)
	}
}

func TestPaginationPastTenThousand(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	for range 10000 {
		s.AddJob(p.ID, gitlabtest.JobSpec{})
	}
	_, h, _ := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?per_page=100&page=100", p.ID), nil)
	if h.Get("X-Total") != "10000" || h.Get("X-Total-Pages") != "100" || h.Get("X-Next-Page") != "" {
		t.Errorf("10,000 records: total %q pages %q next %q", h.Get("X-Total"), h.Get("X-Total-Pages"), h.Get("X-Next-Page"))
	}

	s.AddJob(p.ID, gitlabtest.JobSpec{})
	_, h, _ = c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?per_page=100&page=100", p.ID), nil)
	if _, ok := h["X-Total"]; ok {
		t.Errorf("X-Total sent past 10,000 records")
	}
	if _, ok := h["X-Total-Pages"]; ok {
		t.Errorf("X-Total-Pages sent past 10,000 records")
	}
	if h.Get("X-Next-Page") != "101" || strings.Contains(h.Get("Link"), `rel="last"`) || !strings.Contains(h.Get("Link"), `rel="next"`) {
		t.Errorf("next %q Link %s", h.Get("X-Next-Page"), h.Get("Link"))
	}
	_, h, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?per_page=100&page=101", p.ID), nil)
	if h.Get("X-Next-Page") != "" || strings.Count(body, `"tag_list"`) != 1 {
		t.Errorf("page 101: next %q, want the one remaining job", h.Get("X-Next-Page"))
	}
}

func TestProjectsAndGroups(t *testing.T) {
	s, c := setup(t)
	acme := s.AddGroup("acme", 0)
	sub := s.AddGroup("platform", acme.ID)
	other := s.AddGroup("other", 0)
	api := s.AddProject("acme/api", acme.ID)
	tool := s.AddProject("tool", sub.ID)
	ext := s.AddProject("other/ext", other.ID)
	s.ShareProject(ext.ID, acme.ID)
	if tool.PathWithNamespace != "acme/platform/tool" {
		t.Errorf("tool path = %s", tool.PathWithNamespace)
	}

	status, _, body := c.do(http.MethodGet, "/projects/"+url.PathEscape("acme/platform/tool"), nil)
	if status != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"id":%d`, tool.ID)) ||
		!strings.Contains(body, `"name_with_namespace":"acme / platform / tool"`) || !strings.Contains(body, `"full_path":"acme/platform"`) {
		t.Errorf("project by path: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodGet, "/projects/"+url.PathEscape("acme/nope"), nil); status != 404 || body != `{"message":"404 Project Not Found"}` {
		t.Errorf("missing project: %d %s", status, body)
	}

	ids := func(query string) string {
		t.Helper()
		_, _, body := c.do(http.MethodGet, fmt.Sprintf("/groups/%d/projects%s", acme.ID, query), nil)
		var items []struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal([]byte(body), &items); err != nil {
			t.Fatalf("%s: %v: %s", query, err, body)
		}
		return fmt.Sprint(items)
	}
	// GitLab's defaults: no subgroups, shared projects included.
	if got, want := ids(""), fmt.Sprintf("[{%d} {%d}]", ext.ID, api.ID); got != want {
		t.Errorf("defaults: %s, want %s", got, want)
	}
	if got, want := ids("?with_shared=false"), fmt.Sprintf("[{%d}]", api.ID); got != want {
		t.Errorf("with_shared=false: %s, want %s", got, want)
	}
	if got, want := ids("?with_shared=false&include_subgroups=true"), fmt.Sprintf("[{%d} {%d}]", tool.ID, api.ID); got != want {
		t.Errorf("with subgroups: %s, want %s", got, want)
	}
	if status, _, body := c.do(http.MethodGet, "/groups/"+url.PathEscape("acme/platform")+"/projects", nil); status != 200 || !strings.Contains(body, "acme/platform/tool") {
		t.Errorf("group by path: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodGet, "/groups/999/projects", nil); status != 404 || body != `{"message":"404 Group Not Found"}` {
		t.Errorf("missing group: %d %s", status, body)
	}
}

func TestHooks(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)

	status, _, body := c.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": "http://127.0.0.1:9/hook", "token": "s3cret", "job_events": true})
	if status != http.StatusCreated || strings.Contains(body, "s3cret") || !strings.Contains(body, `"push_events":true`) || !strings.Contains(body, `"job_events":true`) || !strings.Contains(body, `"enable_ssl_verification":true`) {
		t.Errorf("add hook with defaults: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"job_events": true}); status != 400 || body != `{"error":"url is missing"}` {
		t.Errorf("no url: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodPost, fmt.Sprintf("/projects/%d/hooks", p.ID), map[string]any{"url": "gopher://x"}); status != 422 || !strings.Contains(body, `{"message":{"url":[`) {
		t.Errorf("bad url: %d %s", status, body)
	}
	hooks := s.Hooks(p.ID)
	if len(hooks) != 1 || hooks[0].Token != "s3cret" || !hooks[0].PushEvents || hooks[0].PipelineEvents {
		t.Errorf("hooks = %+v", hooks)
	}
	if _, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/hooks", p.ID), nil); !strings.Contains(body, "127.0.0.1:9/hook") {
		t.Errorf("list hooks: %s", body)
	}
}

func TestJobShapes(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	j := s.AddJob(p.ID, gitlabtest.JobSpec{Name: "build", Tags: []string{"gosling", "docker"}, PipelineID: 5})

	_, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs/%d", p.ID, j.ID), nil)
	for _, want := range []string{`"runner":null`, `"tag_list":["gosling","docker"]`, `"status":"pending"`, `"pipeline":{"id":5,`, `"started_at":null`, `"project":{"ci_job_token_scope_enabled":false}`} {
		if !strings.Contains(body, want) {
			t.Errorf("job lacks %s: %s", want, body)
		}
	}

	_, _, created := c.do(http.MethodPost, "/user/runners", map[string]any{"runner_type": "project_type", "project_id": p.ID, "description": "r"})
	var r struct{ ID int64 }
	if err := json.Unmarshal([]byte(created), &r); err != nil {
		t.Fatal(err)
	}
	s.SetJobStatus(p.ID, j.ID, "running", r.ID)
	_, _, body = c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs/%d", p.ID, j.ID), nil)
	if !strings.Contains(body, fmt.Sprintf(`"runner":{"id":%d,`, r.ID)) || strings.Contains(body, `"started_at":null`) {
		t.Errorf("picked job: %s", body)
	}
	_, _, body = c.do(http.MethodGet, fmt.Sprintf("/runners/%d/jobs?status=running", r.ID), nil)
	if !strings.Contains(body, fmt.Sprintf(`"id":%d`, j.ID)) || !strings.Contains(body, `"path_with_namespace":"acme/api"`) {
		t.Errorf("runner jobs: %s", body)
	}
	if _, _, body := c.do(http.MethodGet, fmt.Sprintf("/runners/%d/jobs?status=success", r.ID), nil); body != "[]" {
		t.Errorf("runner jobs success: %s", body)
	}
	if _, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?scope[]=pending", p.ID), nil); body != "[]" {
		t.Errorf("pending jobs after pick: %s", body)
	}
	if _, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?scope[]=pending&scope[]=running", p.ID), nil); !strings.Contains(body, `"tag_list":["gosling","docker"]`) {
		t.Errorf("pending or running: %s", body)
	}
	if status, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs?scope[]=bogus", p.ID), nil); status != 400 || !strings.Contains(body, "scope") {
		t.Errorf("bad scope: %d %s", status, body)
	}
	if status, _, body := c.do(http.MethodGet, fmt.Sprintf("/projects/%d/jobs/999", p.ID), nil); status != 404 || body != `{"message":"404 Not found"}` {
		t.Errorf("missing job: %d %s", status, body)
	}
}

func TestFaultsAndRecording(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	create := map[string]any{"runner_type": "project_type", "project_id": p.ID, "run_untagged": true}

	s.FailNext(http.MethodPost, "/api/v4/user/runners", http.StatusInternalServerError, 1, true)
	if status, _, body := c.do(http.MethodPost, "/user/runners", create); status != 500 || body != `{"message":"500 Internal Server Error"}` {
		t.Errorf("after-effect failure: %d %s", status, body)
	}
	if n := len(s.Runners()); n != 1 {
		t.Errorf("after-effect failure left %d runners, want 1", n)
	}
	s.FailNext("*", "/user/*", http.StatusBadGateway, 2, false)
	for range 2 {
		if status, _, _ := c.do(http.MethodPost, "/user/runners", create); status != 502 {
			t.Errorf("before-effect failure: %d", status)
		}
	}
	if n := len(s.Runners()); n != 1 {
		t.Errorf("before-effect failures created runners: %d", n)
	}
	if status, _, _ := c.do(http.MethodPost, "/user/runners", create); status != 201 {
		t.Errorf("fault outlived its count: %d", status)
	}

	reset := time.Now().Add(time.Minute)
	s.RateLimitNext(http.MethodGet, "/runners", 1, gitlabtest.RateLimitHeaders{RetryAfter: "60", Reset: reset, Limit: 600})
	status, h, body := c.do(http.MethodGet, "/runners", nil)
	if status != 429 || body != "Retry later" || h.Get("Retry-After") != "60" || h.Get("RateLimit-Reset") != fmt.Sprint(reset.Unix()) ||
		h.Get("RateLimit-Limit") != "600" || h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-ResetTime") != reset.UTC().Format(http.TimeFormat) {
		t.Errorf("rate limited: %d %q %v", status, body, h)
	}
	s.RateLimitNext(http.MethodGet, "/runners", 1, gitlabtest.RateLimitHeaders{})
	if status, h, _ := c.do(http.MethodGet, "/runners", nil); status != 429 || h.Get("Retry-After") != "" || h.Get("RateLimit-Reset") != "" {
		t.Errorf("bare 429: %d %v", status, h)
	}

	s.FailNext(http.MethodGet, "/runners", gitlabtest.DropConnection, 1, false)
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/api/v4/runners", nil)
	req.Header.Set("PRIVATE-TOKEN", s.Token())
	if resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("dropped connection answered %d", resp.StatusCode)
	}

	recs := s.Requests()
	var statuses []int
	for _, r := range recs {
		statuses = append(statuses, r.Status)
	}
	if want := "[500 502 502 201 429 429 0]"; fmt.Sprint(statuses) != want {
		t.Errorf("recorded statuses %v, want %s", statuses, want)
	}
	if recs[0].Method != http.MethodPost || recs[0].Path != "/api/v4/user/runners" {
		t.Errorf("first record = %+v", recs[0])
	}
	if n := s.CountRequests(http.MethodPost, "/user/runners"); n != 4 {
		t.Errorf("CountRequests = %d, want 4", n)
	}
}

func TestRunnerStatusFollowsClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	s, c := setup(t, gitlabtest.WithClock(clock), gitlabtest.WithToken("glpat-fixed"))
	if s.Token() != "glpat-fixed" {
		t.Errorf("Token() = %q", s.Token())
	}
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	_, _, body := c.do(http.MethodPost, "/user/runners", map[string]any{"runner_type": "project_type", "project_id": p.ID, "run_untagged": true})
	var r struct{ ID int64 }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		_, _, body := c.do(http.MethodGet, fmt.Sprintf("/runners/%d", r.ID), nil)
		var d struct{ Status string }
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		return d.Status
	}
	if got := status(); got != "never_contacted" {
		t.Errorf("new runner: %s", got)
	}
	s.SetRunnerContactedAt(r.ID, clock())
	if got := status(); got != "online" {
		t.Errorf("just contacted: %s", got)
	}
	advance(3 * time.Hour)
	if got := status(); got != "offline" {
		t.Errorf("after 3h: %s", got)
	}
	advance(8 * 24 * time.Hour)
	if got := status(); got != "stale" {
		t.Errorf("after 8 days: %s", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	s, c := setup(t)
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			c.do(http.MethodPost, "/user/runners", map[string]any{"runner_type": "project_type", "project_id": p.ID, "description": fmt.Sprint(i), "run_untagged": true})
			c.do(http.MethodGet, "/runners", nil)
			s.Runners()
			s.AddJob(p.ID, gitlabtest.JobSpec{})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range s.Runners() {
		if seen[r.Token] {
			t.Errorf("token reused")
		}
		seen[r.Token] = true
	}
	if len(seen) != 20 {
		t.Errorf("%d runners, want 20", len(seen))
	}
}

func TestHandlerMounts(t *testing.T) {
	s := gitlabtest.NewServer(gitlabtest.WithToken("glpat-dev"))
	if s.URL() != "" {
		t.Errorf("URL before Start = %q", s.URL())
	}
	p := s.AddProject("acme/api", s.AddGroup("acme", 0).ID)
	outer := httptest.NewServer(s.Handler())
	defer outer.Close()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v4/projects/%d", outer.URL, p.ID), nil)
	req.Header.Set("PRIVATE-TOKEN", "glpat-dev")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"web_url":"`+outer.URL+`/acme/api"`) {
		t.Errorf("mounted handler: %d %s", resp.StatusCode, body)
	}
}
