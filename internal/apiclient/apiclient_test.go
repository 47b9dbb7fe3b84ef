package apiclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/store"
)

// fakeAPI answers like the API and records what it was asked.
type fakeAPI struct {
	mu       sync.Mutex
	requests []string
	auth     []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer good" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized","detail":"missing or wrong token"}`))
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/runners":
		_, _ = w.Write([]byte(`{"runners":[{"id":"r-1","egg":"web","state":"active","cloud":"local","kind":"vm","gitlab_host":"h","failures":0,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","version":2}],"next":"r-1"}`))
	case r.Method == "GET" && r.URL.Path == "/api/v1/runners/r-1":
		_, _ = w.Write([]byte(`{"id":"r-1","state":"active"}`))
	case r.Method == "POST" && r.URL.Path == "/api/v1/runners/r-1/drain":
		_, _ = w.Write([]byte(`{"id":"r-1","state":"draining"}`))
	case r.Method == "POST" && r.URL.Path == "/api/v1/runners/r-2/drain":
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":"conflict","detail":"runner r-2 is provisioning"}`))
	case r.Method == "DELETE" && r.URL.Path == "/api/v1/runners/r-1":
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"accepted","workflow_id":"deprovision/r-1"}`))
	case r.URL.Path == "/api/v1/jobs":
		_, _ = w.Write([]byte(`{"jobs":[{"gitlab_host":"h","job_id":9,"project_id":1,"egg":"web","status":"success","updated_at":"2025-01-01T00:00:00Z"}],"next":""}`))
	case r.URL.Path == "/api/v1/audit":
		_, _ = w.Write([]byte(`{"audit":[{"id":3,"at":"2025-01-01T00:00:00Z","actor":"api","action":"drain"}],"next":"3"}`))
	case r.URL.Path == "/api/v1/eggs":
		_, _ = w.Write([]byte(`{"eggs":[{"name":"web","kind":"egg","config_version":"v1","gitlab_host":"h","runners":{"active":2},"apex":{"max":3}}]}`))
	case r.URL.Path == "/api/v1/runners/html":
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`<html>proxy error</html>`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not found","detail":"no runner nope"}`))
	}
}

func setup(t *testing.T, token string) (*apiclient.Client, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := apiclient.New(srv.URL+"/", token)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func TestClient(t *testing.T) {
	c, f := setup(t, "good")
	ctx := context.Background()
	page, err := c.ListRunners(ctx, apiclient.RunnerFilter{Egg: "web", State: "active,dormant", Cloud: "local", Limit: 10, After: "r-0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Runners) != 1 || page.Runners[0].State != string(store.StateActive) || page.Next != "r-1" || page.Runners[0].Version != 2 {
		t.Errorf("page = %+v", page)
	}
	if r, err := c.GetRunner(ctx, "r-1"); err != nil || r.ID != "r-1" {
		t.Errorf("get: %+v %v", r, err)
	}
	if r, err := c.DrainRunner(ctx, "r-1"); err != nil || r.State != string(store.StateDraining) {
		t.Errorf("drain: %+v %v", r, err)
	}
	if wf, err := c.DeleteRunner(ctx, "r-1"); err != nil || wf != "deprovision/r-1" {
		t.Errorf("delete: %q %v", wf, err)
	}
	if jobs, err := c.ListJobs(ctx, apiclient.JobFilter{Egg: "web", Status: "success", Limit: 5, Before: "100"}); err != nil || len(jobs.Jobs) != 1 || jobs.Jobs[0].JobID != 9 {
		t.Errorf("jobs: %+v %v", jobs, err)
	}
	since := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if audit, err := c.ListAudit(ctx, apiclient.AuditFilter{Egg: "web", Runner: "r-1", Since: since, Limit: 1, After: "2"}); err != nil || len(audit.Audit) != 1 || audit.Next != "3" {
		t.Errorf("audit: %+v %v", audit, err)
	}
	eggs, err := c.ListEggs(ctx)
	if err != nil || len(eggs) != 1 || eggs[0].Runners[store.StateActive] != 2 || !json.Valid(eggs[0].Raw) || !strings.Contains(string(eggs[0].Raw), "apex") {
		t.Errorf("eggs: %+v %v", eggs, err)
	}
	want := []string{
		"GET /api/v1/runners?after=r-0&cloud=local&egg=web&limit=10&state=active%2Cdormant",
		"GET /api/v1/runners/r-1",
		"POST /api/v1/runners/r-1/drain",
		"DELETE /api/v1/runners/r-1",
		"GET /api/v1/jobs?before=100&egg=web&limit=5&status=success",
		"GET /api/v1/audit?after=2&egg=web&limit=1&runner=r-1&since=2025-01-02T03%3A04%3A05Z",
		"GET /api/v1/eggs",
	}
	if strings.Join(f.requests, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(f.requests, "\n"), strings.Join(want, "\n"))
	}
	for _, a := range f.auth {
		if a != "Bearer good" {
			t.Errorf("Authorization %q", a)
		}
	}
}

func TestErrors(t *testing.T) {
	c, _ := setup(t, "good")
	ctx := context.Background()
	_, err := c.DrainRunner(ctx, "r-2")
	var apiErr *apiclient.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 409 || apiErr.Message != "conflict" || apiErr.Detail != "runner r-2 is provisioning" {
		t.Errorf("conflict: %#v", err)
	}
	if err.Error() != "api: 409 conflict: runner r-2 is provisioning" {
		t.Errorf("message %q", err)
	}
	if _, err := c.GetRunner(ctx, "html"); !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Message != "Bad Gateway" || apiErr.Detail != "" {
		t.Errorf("proxy page: %#v", err)
	}
	if _, err := c.GetRunner(ctx, "nope"); !apiclient.IsNotFound(err) || apiclient.IsAuth(err) {
		t.Errorf("not found: %v", err)
	}

	bad, _ := setup(t, "bad")
	if _, err := bad.ListRunners(ctx, apiclient.RunnerFilter{}); !apiclient.IsAuth(err) {
		t.Errorf("wrong token: %v", err)
	}
	none, f := setup(t, "")
	if _, err := none.ListJobs(ctx, apiclient.JobFilter{}); !apiclient.IsAuth(err) || f.auth[0] != "" {
		t.Errorf("no token: %v, header %q", err, f.auth[0])
	}

	if _, err := apiclient.New("localhost:8080", "x"); err == nil {
		t.Error("a base URL without scheme was accepted")
	}
	down, err := apiclient.New("http://127.0.0.1:1", "good", apiclient.WithHTTPClient(&http.Client{Timeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.ListRunners(ctx, apiclient.RunnerFilter{}); err == nil || apiclient.IsAuth(err) || !strings.Contains(err.Error(), "/api/v1/runners") {
		t.Errorf("unreachable server: %v", err)
	}
}
