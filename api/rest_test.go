package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/mothergoose"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

func TestRESTAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	for _, tc := range []struct {
		name, header string
		status       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token of another scheme", "Basic " + apiToken, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + apiToken, http.StatusOK},
		{"scheme in lower case", "bearer " + apiToken, http.StatusOK},
	} {
		req := mustRequest(t, "GET", e.url("/api/v1/eggs"))
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		r := do(t, req)
		if r.Status != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, r.Status, tc.status, r.Body)
		}
		if r.Status == http.StatusUnauthorized {
			if msg, _ := r.errorBody(t); msg != "unauthorized" || r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: %q, WWW-Authenticate %q", tc.name, msg, r.Header.Get("WWW-Authenticate"))
			}
		}
	}
	// The open routes need no token.
	for _, path := range []string{"/healthz", "/metrics"} {
		if r := e.call("GET", path, ""); r.Status != http.StatusOK {
			t.Errorf("%s: %d", path, r.Status)
		}
	}

	ctx := context.Background()
	if err := e.srv.Authorize(ctx, "Bearer "+apiToken); err != nil {
		t.Errorf("Authorize: %v", err)
	}
	if err := e.srv.Authorize(ctx, "Bearer x"); !errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("Authorize wrong: %v", err)
	}
	a := api.NewAuthorizer(mothergoose.NewSecretCache(e.secrets, time.Minute), []fly.SecretRef{"local://missing/token", "local://api/token"})
	if err := a.Authorize(ctx, "Bearer "+apiToken); err != nil {
		t.Errorf("one unresolvable token must not lock the others out: %v", err)
	}
	if err := api.NewAuthorizer(mothergoose.NewSecretCache(e.secrets, time.Minute), []fly.SecretRef{"local://missing/token"}).Authorize(ctx, "Bearer "+apiToken); err == nil || errors.Is(err, api.ErrUnauthorized) {
		t.Errorf("nothing resolvable: %v, want a secrets error", err)
	}
	if err := api.NewAuthorizer(mothergoose.NewSecretCache(e.secrets, time.Minute), nil).Authorize(ctx, "Bearer "+apiToken); !errors.Is(err, api.ErrAPIDisabled) {
		t.Errorf("no tokens: %v", err)
	}

	disabled := newEnv(t, envOptions{noTemporal: true, tokens: []fly.SecretRef{}})
	r := disabled.get("/api/v1/runners")
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("disabled API: %d", r.Status)
	}
	if msg, detail := r.errorBody(t); msg != "api disabled" || !strings.Contains(detail, "tokens") {
		t.Errorf("disabled API: %q %q", msg, detail)
	}
}

func addRunner(t *testing.T, s store.Store, id, egg, cloud string, state store.RunnerState, glID int64) *store.Runner {
	t.Helper()
	r := &store.Runner{ID: id, Egg: egg, Cloud: cloud, Kind: "vm", State: state, GitLabHost: "h", GitLabRunnerID: glID}
	if err := s.CreateRunner(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRESTRunners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	for i := range 7 {
		egg, state := "web", store.StateActive
		if i%2 == 1 {
			egg, state = "data", store.StateDormant
		}
		addRunner(t, e.store, fmt.Sprintf("r-%02d", i), egg, "local", state, 0)
	}
	addRunner(t, e.store, "r-aws", "web", "aws", store.StateFailed, 0)

	var page api.RunnerList
	e.get("/api/v1/runners").json(t, &page)
	if len(page.Runners) != 8 || page.Next != "" {
		t.Errorf("all runners: %d, next %q", len(page.Runners), page.Next)
	}
	var ids []string
	for after := ""; ; {
		var p api.RunnerList
		r := e.get("/api/v1/runners?limit=3&after=" + after)
		if r.Status != http.StatusOK {
			t.Fatalf("page: %d %s", r.Status, r.Body)
		}
		r.json(t, &p)
		for _, x := range p.Runners {
			ids = append(ids, x.ID)
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if want := "r-00,r-01,r-02,r-03,r-04,r-05,r-06,r-aws"; strings.Join(ids, ",") != want {
		t.Errorf("paged %v", ids)
	}
	e.get("/api/v1/runners?egg=web&state=active,failed").json(t, &page)
	if len(page.Runners) != 5 {
		t.Errorf("egg+state filter: %d runners", len(page.Runners))
	}
	e.get("/api/v1/runners?cloud=aws").json(t, &page)
	if len(page.Runners) != 1 || page.Runners[0].ID != "r-aws" {
		t.Errorf("cloud filter: %+v", page.Runners)
	}
	e.get("/api/v1/runners?egg=nobody").json(t, &page)
	if page.Runners == nil || len(page.Runners) != 0 {
		t.Errorf("empty list must be [] not null: %+v", page)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=x", "state=sleeping"} {
		r := e.get("/api/v1/runners?" + q)
		if r.Status != http.StatusBadRequest {
			t.Errorf("%s: %d", q, r.Status)
		}
		r.errorBody(t)
	}

	var one store.Runner
	e.get("/api/v1/runners/r-aws").json(t, &one)
	if one.ID != "r-aws" || one.State != store.StateFailed {
		t.Errorf("get: %+v", one)
	}
	r := e.get("/api/v1/runners/nope")
	if r.Status != http.StatusNotFound {
		t.Errorf("missing runner: %d", r.Status)
	}
	if msg, _ := r.errorBody(t); msg != "not found" {
		t.Errorf("missing runner: %q", msg)
	}
	if r := e.get("/api/v1/nothing"); r.Status != http.StatusNotFound {
		t.Errorf("unknown route: %d", r.Status)
	}
	if r := e.call("PUT", "/api/v1/runners/r-aws", apiToken); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("wrong method: %d", r.Status)
	}
}

func TestRESTDrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{worker: true})
	ctx := context.Background()
	gl, err := gitlab.New(e.gitlab.URL(), e.gitlab.Token())
	if err != nil {
		t.Fatal(err)
	}
	glr, err := gl.CreateRunner(ctx, gitlab.RunnerSpec{Type: gitlab.RunnerTypeProject, ProjectID: e.web.ID, Description: "gosling/web/r-1", Tags: []string{"docker"}})
	if err != nil {
		t.Fatal(err)
	}
	addRunner(t, e.store, "r-1", "web", "local", store.StateActive, glr.ID)
	addRunner(t, e.store, "r-new", "web", "local", store.StateProvisioning, 0)

	r := e.call("POST", "/api/v1/runners/r-1/drain", apiToken)
	if r.Status != http.StatusOK {
		t.Fatalf("drain: %d %s", r.Status, r.Body)
	}
	var got store.Runner
	r.json(t, &got)
	if got.State != store.StateDraining {
		t.Errorf("drained runner: %+v", got)
	}
	if g, _ := e.gitlab.Runner(glr.ID); !g.Paused {
		t.Error("the GitLab runner was not paused")
	}
	if r := e.call("POST", "/api/v1/runners/r-1/drain", apiToken); r.Status != http.StatusOK {
		t.Errorf("drain again: %d", r.Status)
	}
	r = e.call("POST", "/api/v1/runners/r-new/drain", apiToken)
	if r.Status != http.StatusConflict {
		t.Errorf("drain a provisioning runner: %d %s", r.Status, r.Body)
	}
	if _, detail := r.errorBody(t); !strings.Contains(detail, "provisioning") {
		t.Errorf("conflict detail %q", detail)
	}
	if r := e.call("POST", "/api/v1/runners/nope/drain", apiToken); r.Status != http.StatusNotFound {
		t.Errorf("drain a missing runner: %d", r.Status)
	}
	addRunner(t, e.store, "r-orphan", "gone", "local", store.StateActive, 0)
	if r := e.call("POST", "/api/v1/runners/r-orphan/drain", apiToken); r.Status != http.StatusConflict {
		t.Errorf("drain a runner of an unknown egg: %d", r.Status)
	}
	history, err := e.store.RunnerHistory(ctx, "r-1")
	if err != nil || len(history) != 1 || history[0].To != store.StateDraining || history[0].Actor != api.ActorAPI {
		t.Errorf("history: %+v %v", history, err)
	}
	// The transition, then the record of the drain workflow that made it.
	audit, _ := e.store.ListAudit(ctx, store.AuditFilter{RunnerID: "r-1"})
	if len(audit) != 2 || audit[0].Action != "drained" || audit[0].Actor != api.ActorAPI || audit[1].Action != "drain" {
		t.Errorf("audit: %+v", audit)
	}
	if !strings.Contains(string(e.get("/metrics").Body), `gosling_runner_transitions_total{from="active",to="draining"} 1`) {
		t.Error("transition not counted")
	}
}

func TestRESTDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tc := devServer(t).Client()
	id := "r-del-" + strings.ReplaceAll(e.host, ":", "-")
	addRunner(t, e.store, id, "web", "local", store.StateActive, 0)
	wfID := contract.DeprovisionWorkflowID(id)
	terminate(t, tc, wfID)
	for range 2 {
		r := e.call("DELETE", "/api/v1/runners/"+id, apiToken)
		if r.Status != http.StatusAccepted {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		var ws api.WorkflowStarted
		r.json(t, &ws)
		if ws.WorkflowID != wfID {
			t.Errorf("workflow %q, want %q", ws.WorkflowID, wfID)
		}
	}
	var in contract.DeprovisionRunnerInput
	if name := started(t, history(t, tc, wfID), &in); name != "DeprovisionRunner" || in.RunnerID != id || in.GitLab.Host != e.host || in.Actor != api.ActorAPI {
		t.Errorf("started %s with %+v", name, in)
	}
	if r := e.call("DELETE", "/api/v1/runners/nope", apiToken); r.Status != http.StatusNotFound {
		t.Errorf("delete a missing runner: %d", r.Status)
	}

	down := newEnv(t, envOptions{temporal: unreachableTemporal(t), mutate: func(c *mothergoose.Config) { c.TemporalTimeout = 300 * time.Millisecond }})
	addRunner(t, down.store, "r-x", "web", "local", store.StateActive, 0)
	if r := down.call("DELETE", "/api/v1/runners/r-x", apiToken); r.Status != http.StatusServiceUnavailable {
		t.Errorf("delete with Temporal down: %d %s", r.Status, r.Body)
	}
}

func TestRESTEggsJobsAudit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	addRunner(t, e.store, "r-1", "web", "local", store.StateActive, 0)
	addRunner(t, e.store, "r-2", "web", "local", store.StateDormant, 0)

	var eggs struct{ Eggs []api.EggView }
	e.get("/api/v1/eggs").json(t, &eggs)
	if len(eggs.Eggs) != 3 {
		t.Fatalf("eggs: %+v", eggs)
	}
	var web api.EggView
	e.get("/api/v1/eggs/web").json(t, &web)
	if web.ConfigVersion != "web-v1" || web.Kind != fly.KindEgg || web.Runners[store.StateActive] != 1 || web.Runners[store.StateDormant] != 1 ||
		web.Runner.Type != fly.RunnerVM || len(web.Projects) != 1 || web.GitLabHost != e.host {
		t.Errorf("egg web: %+v", web)
	}
	if body := string(e.get("/api/v1/eggs").Body); strings.Contains(body, "local://") {
		t.Errorf("egg answers carry secret references: %s", body)
	}
	var data api.EggView
	e.get("/api/v1/eggs/data").json(t, &data)
	if data.Group == nil || data.Group.ID != e.dataGroup.ID || data.Runners == nil {
		t.Errorf("egg data: %+v", data)
	}
	if r := e.get("/api/v1/eggs/nope"); r.Status != http.StatusNotFound {
		t.Errorf("missing egg: %d", r.Status)
	}

	for id := int64(1); id <= 12; id++ {
		j := store.JobRecord{GitLabHost: e.host, JobID: id, Egg: "web", Status: "success"}
		if id%3 == 0 {
			j.Egg, j.Status = "data", "failed"
		}
		if _, err := e.store.RecordJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	var jobs api.JobList
	var seen []int64
	for before := ""; ; {
		r := e.get("/api/v1/jobs?limit=5&before=" + before)
		if r.Status != http.StatusOK {
			t.Fatalf("jobs: %d %s", r.Status, r.Body)
		}
		r.json(t, &jobs)
		for _, j := range jobs.Jobs {
			seen = append(seen, j.JobID)
		}
		if before = jobs.Next; before == "" {
			break
		}
	}
	if len(seen) != 12 || seen[0] != 12 || !slices.IsSortedFunc(seen, func(a, b int64) int { return int(b - a) }) {
		t.Errorf("jobs newest first: %v", seen)
	}
	e.get("/api/v1/jobs?egg=data&status=failed").json(t, &jobs)
	if len(jobs.Jobs) != 4 {
		t.Errorf("filtered jobs: %d", len(jobs.Jobs))
	}
	e.get("/api/v1/eggs/web/jobs?limit=2").json(t, &jobs)
	if len(jobs.Jobs) != 2 || jobs.Jobs[0].JobID != 11 || jobs.Next != "10" {
		t.Errorf("egg jobs: %+v", jobs)
	}
	if r := e.get("/api/v1/eggs/nope/jobs"); r.Status != http.StatusNotFound {
		t.Errorf("jobs of a missing egg: %d", r.Status)
	}
	if r := e.get("/api/v1/jobs?before=-1"); r.Status != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", r.Status)
	}

	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := range 6 {
		egg := "web"
		if i%2 == 1 {
			egg = "data"
		}
		if _, err := e.store.AppendAudit(ctx, store.AuditRecord{At: base.Add(time.Duration(i) * time.Minute), Actor: "uglyfox", Action: "demote", Egg: egg, RunnerID: fmt.Sprint("r-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var audit api.AuditList
	e.get("/api/v1/audit?egg=web&limit=2").json(t, &audit)
	if len(audit.Audit) != 2 || audit.Next == "" {
		t.Fatalf("audit page: %+v", audit)
	}
	e.get("/api/v1/audit?egg=web&after="+audit.Next).json(t, &audit)
	if len(audit.Audit) != 1 || audit.Next != "" {
		t.Errorf("audit second page: %+v", audit)
	}
	e.get("/api/v1/audit?since="+base.Add(3*time.Minute).Format(time.RFC3339)).json(t, &audit)
	if len(audit.Audit) != 3 {
		t.Errorf("audit since: %d records", len(audit.Audit))
	}
	e.get("/api/v1/audit?runner=r-2").json(t, &audit)
	if len(audit.Audit) != 1 {
		t.Errorf("audit by runner: %+v", audit)
	}
	if r := e.get("/api/v1/audit?since=yesterday"); r.Status != http.StatusBadRequest {
		t.Errorf("bad since: %d", r.Status)
	}
}

// TestOpenAPIDescribesEveryRoute keeps the hand-written document and the
// registered routes in step, both ways.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	r := e.get("/api/v1/openapi.json")
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, rt := range e.srv.Handler().(*gin.Engine).Routes() {
		parts := strings.Split(rt.Path, "/")
		for i, p := range parts {
			if strings.HasPrefix(p, ":") {
				parts[i] = "{" + p[1:] + "}"
			}
		}
		registered[rt.Method+" "+strings.Join(parts, "/")] = true
	}
	for route := range registered {
		if !documented[route] {
			t.Errorf("route %s is not in openapi.json", route)
		}
	}
	for route := range documented {
		if !registered[route] {
			t.Errorf("openapi.json documents %s, which is not served", route)
		}
	}
	if !json.Valid(api.OpenAPI()) {
		t.Error("OpenAPI() is not JSON")
	}
}

// TestMetricsToken: with a metrics token, /metrics answers only a request
// that carries it; without one it is open.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true, metricsToken: "local://api/token"})
	for token, want := range map[string]int{"": http.StatusUnauthorized, "wrong": http.StatusUnauthorized, apiToken: http.StatusOK} {
		if got := e.call("GET", "/metrics", token); got.Status != want {
			t.Errorf("/metrics with token %q: %d, want %d", token, got.Status, want)
		}
	}
	open := newEnv(t, envOptions{noTemporal: true})
	if got := open.call("GET", "/metrics", ""); got.Status != http.StatusOK {
		t.Errorf("/metrics without a configured token: %d", got.Status)
	}
}

// TestScalePoolRefusesUnknownFields: a misspelt limit is a 400 that names
// it, not a scale that silently changes nothing.
func TestScalePoolRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	req, err := http.NewRequest(http.MethodPost, e.url("/api/v1/pools/web/scale"), strings.NewReader(`{"apex_mni": 2}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	got := do(t, req)
	if _, detail := got.errorBody(t); got.Status != http.StatusBadRequest || !strings.Contains(detail, `unknown field "apex_mni"`) {
		t.Errorf("misspelt limit: %d %s", got.Status, got.Body)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if r := e.call("GET", "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("healthz: %d", r.Status)
	}
	var ready api.Readiness
	r := e.call("GET", "/readyz", "")
	r.json(t, &ready)
	if r.Status != http.StatusOK || ready.Checks["store"] != "ok" || ready.Checks["temporal"] != "ok" {
		t.Errorf("readyz: %d %+v", r.Status, ready)
	}
	down := newEnv(t, envOptions{temporal: unreachableTemporal(t)})
	start := time.Now()
	r = down.call("GET", "/readyz", "")
	r.json(t, &ready)
	if r.Status != http.StatusServiceUnavailable || ready.Checks["store"] != "ok" || !strings.HasPrefix(ready.Checks["temporal"], "failed") {
		t.Errorf("readyz with Temporal down: %d %+v", r.Status, ready)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("readyz took %s", took)
	}
	if r := down.call("GET", "/healthz", ""); r.Status != http.StatusOK {
		t.Errorf("healthz with Temporal down: %d", r.Status)
	}
	metrics := string(e.call("GET", "/metrics", "").Body)
	for _, want := range []string{"gosling_outbox_depth 0", "go_goroutines", `gosling_http_request_duration_seconds_count{code="200",method="GET",route="/readyz"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	if r := do(t, mustRequest(t, "GET", "http://"+ln.Addr().String()+"/healthz")); r.Status != http.StatusOK {
		t.Errorf("healthz: %d", r.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("still listening after shutdown")
	}
}

// TestRESTPlainTextParameters: path parameters and query strings that are
// not UTF-8 text or hold a NUL byte are refused with 400 before a store
// sees them (PostgreSQL fails a query with them: schemathesis found
// GET /api/v1/jobs?status=%07%00 answered 500).
func TestRESTPlainTextParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	for _, path := range []string{
		"/api/v1/jobs?status=%07%00", "/api/v1/eggs/web/jobs?status=%00", "/api/v1/audit?egg=%FF", "/api/v1/runners?%00=x",
		"/api/v1/runners/r%00-1", "/api/v1/eggs/%C3", "/api/v1/pools/web%00",
	} {
		if r := e.get(path); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "NUL") {
			t.Errorf("GET %s: %d %s", path, r.Status, r.Body)
		}
	}
	if r := e.call("GET", "/api/v1/jobs?status=%00", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", r.Status)
	}
	if r := e.call("POST", "/agent/v1/runners/r%00/heartbeat", ""); r.Status != http.StatusBadRequest {
		t.Errorf("agent heartbeat of r%%00: %d %s", r.Status, r.Body)
	}
	if r := e.get("/api/v1/jobs?status=success"); r.Status != http.StatusOK {
		t.Errorf("a plain status: %d %s", r.Status, r.Body)
	}
}

func TestRESTCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noTemporal: true})
	ctx := context.Background()
	done := time.Now().Add(-time.Hour)
	for id, egg := range map[int64]string{1: "web", 2: "web", 3: "data"} {
		if _, err := e.store.RecordJob(ctx, store.JobRecord{GitLabHost: e.host, JobID: id, Egg: egg, ProjectPath: egg + "/p", Status: "success",
			RunnerID: "r", FinishedAt: &done, QueueSeconds: float64(id), MachineSeconds: 60, Cost: 0.5, IdleCost: 0.25}); err != nil {
			t.Fatal(err)
		}
	}
	var rep apiv1.CostReport
	e.get("/api/v1/cost").json(t, &rep)
	if rep.By != "egg" || rep.Currency == "" || len(rep.Rows) != 2 || rep.Rows[0].Egg != "web" || rep.Rows[0].Jobs != 2 ||
		rep.Rows[0].Cost != 1.5 || rep.Rows[0].QueueMeanSeconds != 1.5 || rep.Rows[1].Cost != 0.75 {
		t.Errorf("cost by egg: %+v", rep)
	}
	e.get("/api/v1/cost?by=project&since="+url.QueryEscape(time.Now().Add(-2*time.Hour).Format(time.RFC3339))).json(t, &rep)
	if rep.By != "project" || len(rep.Rows) != 2 || rep.Rows[0].Project != "web/p" {
		t.Errorf("cost by project: %+v", rep)
	}
	e.get("/api/v1/cost?since="+url.QueryEscape(time.Now().Format(time.RFC3339))).json(t, &rep)
	if len(rep.Rows) != 0 || rep.Rows == nil {
		t.Errorf("no job since now: %+v", rep)
	}
	for _, q := range []string{"?by=runner", "?since=yesterday"} {
		if r := e.get("/api/v1/cost" + q); r.Status != http.StatusBadRequest {
			t.Errorf("%s: %d", q, r.Status)
		}
	}
}
