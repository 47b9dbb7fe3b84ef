package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/api"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/secretstore"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/mothergoose"
	"github.com/gosling-ci/gosling/worker"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
)

// Secrets of the test eggs. The API token and webhook secrets must never
// reach a log line.
const (
	webSecret   = "web-hook-secret-0001"
	multiSecret = "multi-hook-secret-0002"
	dataSecret  = "data-hook-secret-0003"
	apiToken    = "api-token-0004"
	nestSecret  = "nest-hook-secret-0007"
)

var shared struct {
	once sync.Once
	dev  *testsuite.DevServer
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dev != nil {
		_ = shared.dev.Stop()
	}
	os.Exit(code)
}

// devServer is a Temporal dev server shared by the package's tests; every
// test's workflow IDs differ (they carry the test's GitLab host).
func devServer(t *testing.T) *testsuite.DevServer {
	t.Helper()
	shared.once.Do(func() { shared.dev, shared.err = startDev(t) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.dev
}

func startDev(t *testing.T) (*testsuite.DevServer, error) {
	return testsuite.StartDevServer(context.Background(), testsuite.DevServerOptions{
		ExistingPath:  testbin.Temporal(t),
		ClientOptions: &client.Options{Logger: quietLogger{}},
		LogLevel:      "error",
		Stdout:        io.Discard, Stderr: io.Discard,
	})
}

type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// unreachableTemporal is a client of a Temporal that is not there.
func unreachableTemporal(t *testing.T) client.Client {
	c, err := client.NewLazyClient(client.Options{HostPort: closedAddr(t), Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// syncBuffer collects log output across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one API server with its GitLab, store, secrets and Nest.
type env struct {
	t       *testing.T
	gitlab  *gitlabtest.Server
	store   store.Store
	secrets *secretstore.Resolver
	// secretsDir holds the local secret store, for a second process's view.
	secretsDir string
	metrics    *metrics.Metrics
	mg         *mothergoose.MotherGoose
	srv        *api.Server
	http       *httptest.Server
	logs       *syncBuffer
	host       string

	nest    atomic.Pointer[fly.Nest]
	reloads atomic.Int32
	// fetchedRef is the ref the last Nest fetch asked for.
	fetchedRef atomic.Pointer[string]

	web, multiA, multiB, etl, ml, nestRepo gitlabtest.Project
	dataGroup                              gitlabtest.Group
	// extra are eggs a test adds to the test Nest (see envOptions.eggs).
	extra func(e *env) []fly.Egg
}

type envOptions struct {
	temporal client.Client
	// noTemporal gives MotherGoose a Temporal that is not there.
	noTemporal bool
	// worker runs the test on a Temporal dev server of its own, with a
	// MotherGoose worker over the test's store, secrets and GitLab.
	worker   bool
	tokens   []fly.SecretRef
	dispatch mothergoose.Dispatch
	mutate   func(*mothergoose.Config)
	// eggs adds eggs to the test Nest; secrets adds local secrets they use.
	eggs    func(e *env) []fly.Egg
	secrets map[fly.SecretRef]string
	// metricsToken guards /metrics (api.Config.MetricsToken).
	metricsToken fly.SecretRef
	// instances are GitLab hosts (gitlab.example.com) whose API the test
	// server answers too, as if it ran there.
	instances []string
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, logs: &syncBuffer{}}
	e.gitlab = gitlabtest.New()
	t.Cleanup(e.gitlab.Close)
	u, _ := url.Parse(e.gitlab.URL())
	e.host = u.Host

	acme := e.gitlab.AddGroup("acme", 0)
	e.web = e.gitlab.AddProject("web", acme.ID)
	e.multiA = e.gitlab.AddProject("api", acme.ID)
	e.multiB = e.gitlab.AddProject("docs", acme.ID)
	e.dataGroup = e.gitlab.AddGroup("data", 0)
	sub := e.gitlab.AddGroup("science", e.dataGroup.ID)
	e.etl = e.gitlab.AddProject("etl", e.dataGroup.ID)
	e.ml = e.gitlab.AddProject("ml", sub.ID)
	ops := e.gitlab.AddGroup("ops", 0)
	e.nestRepo = e.gitlab.AddProject("nest", ops.ID)

	e.secretsDir = filepath.Join(t.TempDir(), "secrets")
	local, err := secretstore.OpenLocal(e.secretsDir)
	if err != nil {
		t.Fatal(err)
	}
	e.secrets = secretstore.NewResolver(local)
	for ref, v := range map[fly.SecretRef]string{
		"local://gitlab/token": e.gitlab.Token(), "local://hooks/web": webSecret, "local://hooks/multi": multiSecret,
		"local://hooks/data": dataSecret, "local://api/token": apiToken, "local://hooks/nest": nestSecret,
	} {
		if _, err := e.secrets.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	for ref, v := range o.secrets {
		if _, err := e.secrets.Put(ctx, ref, v); err != nil {
			t.Fatal(err)
		}
	}
	e.extra = o.eggs
	e.nest.Store(e.makeNest("v1"))

	e.store, err = store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "gosling.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })

	tc := o.temporal
	if o.worker {
		dev, err := startDev(t)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = dev.Stop() })
		tc = dev.Client()
	}
	if tc == nil && !o.noTemporal {
		tc = devServer(t).Client()
	}
	tokens := o.tokens
	if tokens == nil {
		tokens = []fly.SecretRef{"local://api/token"}
	}
	e.metrics = metrics.New()
	if o.dispatch == nil {
		// Most tests follow a job's own workflow; TestPoolRouting covers
		// the default.
		o.dispatch = mothergoose.PerJobRunner
	}
	cfg := mothergoose.Config{
		Nest:     e.nest.Load(),
		Store:    e.store,
		Temporal: tc,
		Secrets:  e.secrets,
		Metrics:  e.metrics,
		Logger:   slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		FetchNest: func(_ context.Context, ref string) (*fly.Nest, string, error) {
			e.fetchedRef.Store(&ref)
			e.reloads.Add(1)
			e.nest.Store(e.makeNest("v2"))
			return e.nest.Load(), "0123456789abcdef0123456789abcdef01234567", nil
		},
		Dispatch:         o.dispatch,
		TemporalTimeout:  2 * time.Second,
		OutboxInterval:   50 * time.Millisecond,
		OutboxMaxBackoff: 200 * time.Millisecond,
	}
	if len(o.instances) > 0 {
		cfg.GitLabOptions = append(cfg.GitLabOptions, gitlab.WithHTTPClient(&http.Client{Transport: instanceTransport{hosts: o.instances, to: u}}))
	}
	if o.noTemporal {
		cfg.LazyTemporal = true
		cfg.TemporalConnection = mothergoose.TemporalConnection{Address: closedAddr(t)}
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	e.mg, err = mothergoose.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.worker {
		acts := &activities.Activities{Store: e.store, Secrets: e.secrets, Metrics: e.metrics, Logger: slog.New(slog.DiscardHandler), MotherGoose: e.mg.Operations()}
		w, err := worker.New(tc, contract.TaskQueueMotherGoose, acts, worker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
	}
	e.srv, err = api.New(api.Config{MotherGoose: e.mg, APITokens: tokens, MetricsToken: o.metricsToken})
	if err != nil {
		t.Fatal(err)
	}
	e.http = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.http.Close)
	t.Cleanup(func() {
		logs := e.logs.String()
		for _, secret := range []string{webSecret, multiSecret, dataSecret, apiToken, nestSecret, e.gitlab.Token()} {
			if strings.Contains(logs, secret) {
				t.Errorf("a secret reached the log:\n%s", logs)
			}
		}
	})
	return e
}

// instanceTransport sends GitLab API requests for the hosts it names to the
// test server at to.
type instanceTransport struct {
	hosts []string
	to    *url.URL
}

func (t instanceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	for _, h := range t.hosts {
		if strings.EqualFold(r.URL.Host, h) {
			r = r.Clone(r.Context())
			r.URL.Scheme, r.URL.Host, r.Host = t.to.Scheme, t.to.Host, t.to.Host
			break
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// makeNest is the test Nest: egg "web" (one project), bucket "multi" (two
// projects by path, one spelled in another case), bucket "data" (group data
// with its subgroups). The Nest repository is ops/nest.
func (e *env) makeNest(version string) *fly.Nest {
	gl := func(secret fly.SecretRef) fly.GitLab {
		return fly.GitLab{Host: e.host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: secret}
	}
	runner := fly.Runner{Type: fly.RunnerVM, Clouds: []string{fly.CloudLocal}, CPU: 1, Memory: fly.GiB, Disk: 10 * fly.GiB,
		MaxConcurrent: 4, JobsPerRunner: 1, Tags: []string{"docker"}, Image: "alpine:3.20"}
	n := &fly.Nest{
		Eggs: []fly.Egg{
			{Name: "data", Kind: fly.KindBucket, Version: "data-" + version, GitLab: gl("local://hooks/data"),
				Group: &fly.GroupRef{ID: e.dataGroup.ID, IncludeSubgroups: true}, Runner: runner},
			{Name: "multi", Kind: fly.KindBucket, Version: "multi-" + version, GitLab: gl("local://hooks/multi"),
				Projects: []fly.ProjectRef{{Path: "ACME/API"}, {Path: e.multiB.PathWithNamespace}}, Runner: runner},
			{Name: "web", Kind: fly.KindEgg, Version: "web-" + version, File: "Eggs/web/config.fly", GitLab: gl("local://hooks/web"),
				Projects: []fly.ProjectRef{{ID: e.web.ID, Path: e.web.PathWithNamespace}}, Runner: runner,
				Apex: fly.Pool{Max: 4}, Nadir: fly.Pool{Max: 1}},
		},
		MotherGoose: fly.MotherGoose{
			Providers: map[string]fly.Provider{fly.CloudLocal: {Name: "local", StateDir: "/tmp/gosling-test"}},
			Nest:      fly.NestSource{Project: e.nestRepo.PathWithNamespace, Ref: "main", WebhookSecret: "local://hooks/nest"},
		},
	}
	if e.extra != nil {
		n.Eggs = append(n.Eggs, e.extra(e)...)
	}
	return n
}

// apply puts a new Nest in force, as a Nest update does.
func (e *env) apply(n *fly.Nest) {
	e.t.Helper()
	e.nest.Store(n)
	if _, err := e.mg.NestSync().ApplyNest(context.Background(), n, "", "test"); err != nil {
		e.t.Fatal(err)
	}
}

// url is a URL of the API server.
func (e *env) url(path string) string { return e.http.URL + path }

// hookProject describes a project for payloads.
func (e *env) hookProject(p gitlabtest.Project) gitlabtest.HookProject {
	return e.gitlab.HookProject(p)
}

// jobHook is a Job Hook body for a project's job. The job is added to the
// GitLab test server first, unless it has it: MotherGoose confirms a job
// new to it through the Jobs API.
func (e *env) jobHook(p gitlabtest.Project, jobID int64, status string) []byte {
	e.ensureJob(p, jobID)
	spec := gitlabtest.JobHookSpec{Project: e.hookProject(p), JobID: jobID, Name: "unit", Status: status, PipelineID: 900 + jobID}
	now := time.Now()
	switch status {
	case "running":
		started := now.Add(-time.Second)
		spec.StartedAt, spec.QueuedDuration = &started, 4*time.Second
	case "success", "failed":
		started, finished := now.Add(-time.Minute), now
		spec.StartedAt, spec.FinishedAt, spec.Duration, spec.QueuedDuration = &started, &finished, time.Minute, 2*time.Second
	}
	return gitlabtest.JobHookPayload(spec)
}

// ensureJob adds a job with this ID to a project of the GitLab test
// server, unless the server has a job with that ID.
func (e *env) ensureJob(p gitlabtest.Project, jobID int64) {
	if _, ok := e.gitlab.JobHook(jobID); !ok {
		e.gitlab.AddJob(p.ID, gitlabtest.JobSpec{ID: jobID, Name: "unit", Tags: []string{"docker"}})
	}
}

// reply is an answer of the API.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v\n%s", r.Status, err, r.Body)
	}
}

// errorBody decodes an error answer and checks its shape.
func (r reply) errorBody(t *testing.T) (string, string) {
	t.Helper()
	var b struct{ Error, Detail string }
	r.json(t, &b)
	if b.Error == "" {
		t.Fatalf("error answer %d without error: %s", r.Status, r.Body)
	}
	return b.Error, b.Detail
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// deliver sends a webhook as GitLab does.
func (e *env) deliver(event, token string, body []byte, key string) reply {
	e.t.Helper()
	req, err := e.gitlab.HookRequest(context.Background(), e.url("/webhooks/gitlab"), event, token, body, key)
	if err != nil {
		e.t.Fatal(err)
	}
	return do(e.t, req)
}

// hookReply decodes a webhook's success answer.
func (e *env) hookReply(r reply, wantStatus int) api.HookResponse {
	e.t.Helper()
	if r.Status != wantStatus {
		e.t.Fatalf("status %d, want %d: %s", r.Status, wantStatus, r.Body)
	}
	var hr api.HookResponse
	r.json(e.t, &hr)
	return hr
}

// call calls the REST API with a token.
func (e *env) call(method, path, token string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url(path), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(e.t, req)
}

func (e *env) get(path string) reply { return e.call("GET", path, apiToken) }

// eventually polls cond until it holds or the wait ends.
func eventually(t *testing.T, wait time.Duration, what string, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, wait, what, cond)
}
