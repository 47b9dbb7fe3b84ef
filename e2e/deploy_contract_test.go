package e2e

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/bootstrap"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/testbin"
)

// queueConsumers are the cloud queues Gosling's code reads: none. What
// the API accepts while Temporal is unreachable waits in the store's
// outbox, which the API and the mothergoose workers deliver; a queue
// deploy made would have no consumer.
var queueConsumers = map[string]bool{}

// deployedCalls is every call the resources of both clouds' deploys make
// to Gosling: examples/nest on Yandex Cloud and bootstrap's AWS Nest,
// each with its GitLab webhooks.
func deployedCalls(t *testing.T) []bootstrap.Call {
	t.Helper()
	ctx := context.Background()
	var all []bootstrap.Resource
	yc := loadNestDir(t, "../examples/nest")
	desired, err := bootstrap.YandexDesired(yc, bootstrap.YandexFolder(yc))
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, desired...)
	aws := loadNestDir(t, "../bootstrap/testdata/aws-nest")
	desired, err = bootstrap.AWSDesired(aws, bootstrap.AWSAccount{ID: "123456789012", Region: aws.MotherGoose.Region, Partition: "aws"})
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, desired...)
	for _, n := range []*fly.Nest{yc, aws} {
		// Group eggs list their projects through GitLab's API; their hooks
		// are the same as a project egg's.
		n.Eggs = slices.DeleteFunc(n.Eggs, func(e fly.Egg) bool { return e.Group != nil })
		hooks, err := bootstrap.GitLabDesired(ctx, n, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(hooks) == 0 {
			t.Fatalf("%s: no GitLab hook to check", n.MotherGoose.Cloud)
		}
		all = append(all, hooks...)
	}
	calls, err := bootstrap.Calls(all)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

func loadNestDir(t *testing.T, dir string) *fly.Nest {
	t.Helper()
	n, diags := fly.LoadNest(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return n
}

// covers tells whether a gateway route (method, path with a trailing /*
// for a prefix) takes a request.
func covers(c bootstrap.Call, method, p string) bool {
	if c.Method != "ANY" && c.Method != method {
		return false
	}
	if prefix, ok := strings.CutSuffix(c.Path, "*"); ok {
		return strings.HasPrefix(p, prefix)
	}
	return c.Path == p
}

// isGatewayRoute tells whether c is a route of an API gateway (the Yandex
// gateway's spec, an AWS HTTP API's routes) in front of the API.
func isGatewayRoute(c bootstrap.Call) bool {
	return c.Kind == bootstrap.CallHTTP && c.Component == "api" && (c.Auth == bootstrap.AuthBearer || c.Auth == bootstrap.AuthPassThrough)
}

// route is the most specific route of cloud's gateway that takes the
// request, as API Gateway and the Yandex gateway choose it.
func route(calls []bootstrap.Call, cloud, method, p string) (bootstrap.Call, bool) {
	var best bootstrap.Call
	found := false
	for _, c := range calls {
		if isGatewayRoute(c) && cloudOf(c.Resource) == cloud && covers(c, method, p) && (!found || len(c.Path) > len(best.Path)) {
			best, found = c, true
		}
	}
	return best, found
}

// localAddrs replaces the listen addresses a command pins (--addr,
// --metrics-addr) with free ones on this machine, and returns them by flag.
func localAddrs(t *testing.T, args []string) ([]string, map[string]string) {
	out, addrs := slices.Clone(args), map[string]string{}
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "--addr" || out[i] == "--metrics-addr" {
			addrs[out[i]] = FreeAddr(t)
			out[i+1] = addrs[out[i]]
		}
	}
	return out, addrs
}

// TestDeployedResourcesReachGosling holds every resource `gosling deploy`
// makes that calls Gosling against the code, run as the cloud runs it:
// each command a runtime starts is the real binary's (the API's on
// Serverless Containers given only $PORT), every route a gateway, a
// health check, a trigger or a GitLab webhook sends to is served, with
// the authentication it sends, and every queue has a consumer. Before the
// workers became instance groups it failed: the timer triggers posted to
// /triggers, which nothing served, and the queues had no consumer.
func TestDeployedResourcesReachGosling(t *testing.T) {
	calls := deployedCalls(t)
	f := startFleet(t, fleetOptions{NoWorkers: true})
	ctx := context.Background()
	gosling := testbin.Gosling(t)

	// Start each command once, as its runtime would, on free ports.
	type served struct {
		proc  *Process
		addrs map[string]string
	}
	byResource := map[string]served{}
	started := map[string]served{}
	for _, c := range calls {
		if c.Kind != bootstrap.CallCommand {
			continue
		}
		switch c.Component {
		case "api", "mothergoose-worker", "uglyfox-worker":
		default:
			// The Lambda authorizer runs under Lambda's runtime API: its
			// command must exist and take no flag it does not know.
			out, err := exec.Command(gosling, append(slices.Clone(c.Args), "--help")...).CombinedOutput()
			if err != nil || strings.Contains(string(out), "unknown command") {
				t.Errorf("%s runs gosling %v, which the binary refuses: %v\n%s", c.Resource, c.Args, err, out)
			}
			continue
		}
		args, addrs := localAddrs(t, c.Args)
		env := slices.Clone(f.env)
		for _, e := range c.Env {
			if strings.HasPrefix(e, "PORT=") {
				addrs["$PORT"] = FreeAddr(t)
				_, port, _ := strings.Cut(addrs["$PORT"], "127.0.0.1:")
				e = "PORT=" + port
			}
			env = append(env, e)
		}
		if c.Component != "api" && addrs["--metrics-addr"] == "" {
			// The worker's default metrics address, :9090, may be taken here.
			addrs["--metrics-addr"] = FreeAddr(t)
			env = append(env, "GOSLING_METRICS_ADDR="+addrs["--metrics-addr"])
		}
		key := strings.Join(c.Args, " ") + "|" + strings.Join(c.Env, " ")
		s, ok := started[key]
		if !ok {
			s = served{proc: StartProcess(t, strings.ReplaceAll(c.Resource, "/", "-"), f.stateDir, env, args...), addrs: addrs}
			started[key] = s
		}
		byResource[c.Resource] = s
	}
	// The servers answer where their runtime sends requests: the API on
	// $PORT or its --addr, a worker's /healthz on its metrics port. They
	// are found by cloud (the resource type's prefix) and component.
	servers := map[string]string{}
	for res, s := range byResource {
		var addr string
		if strings.HasSuffix(res, ".api") {
			addr = cmp.Or(s.addrs["$PORT"], s.addrs["--addr"])
		} else {
			addr = s.addrs["--metrics-addr"]
		}
		if addr == "" {
			t.Fatalf("%s: its command listens nowhere this test can reach: %v", res, s.addrs)
		}
		if !answers("http://"+addr+"/healthz", time.Minute, s.proc) {
			t.Errorf("%s: gosling %v does not listen where its runtime sends requests (%s): %v", res, s.proc.Args, addr, s.addrs)
			continue
		}
		_, name, _ := strings.Cut(res, ".")
		servers[cloudOf(res)+"/"+name] = "http://" + addr
	}
	// serversOf are the URLs of component in the cloud of resource; a
	// GitLab hook reaches the API of either cloud.
	serversOf := func(resource, component string) []string {
		var out []string
		for key, u := range servers {
			cloud, comp, _ := strings.Cut(key, "/")
			if comp == component && (cloud == cloudOf(resource) || cloudOf(resource) == "gitlab") {
				out = append(out, u)
			}
		}
		if len(out) == 0 {
			t.Errorf("%s calls %s, which no deployed command of its cloud runs", resource, component)
		}
		return out
	}

	send := func(method, url string, header map[string]string, body string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	job := f.gitlab.AddJob(f.project.ID, gitlabtest.JobSpec{Name: "unit", Stage: "test", Ref: "main", Tags: []string{"docker"}, Status: "success"})
	spec, _ := f.gitlab.JobHook(job.ID)
	hookBody := string(gitlabtest.JobHookPayload(spec))

	checked := 0
	for _, c := range calls {
		switch c.Kind {
		case bootstrap.CallQueue:
			if !queueConsumers[c.Queue] {
				t.Errorf("%s: queue %s has no consumer in the code", c.Resource, c.Queue)
			}
			checked++
		case bootstrap.CallHTTP:
			if c.Auth == bootstrap.AuthGitLabToken {
				// Each cloud's gateway lets GitLab's hook, which carries no
				// bearer token, through to the API.
				for _, cloud := range []string{"yandex", "aws"} {
					if r, found := route(calls, cloud, c.Method, c.Path); !found || r.Auth == bootstrap.AuthBearer {
						t.Errorf("%s: the %s gateway routes GitLab's %s %s to %+v (found %v), which demands a bearer token", c.Resource, cloud, c.Method, c.Path, r, found)
					}
				}
			}
			for _, u := range serversOf(c.Resource, c.Component) {
				checked++
				checkCall(t, c, u, calls, send, hookBody)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no call was checked")
	}
	t.Logf("%d calls checked against %d processes", checked, len(started))
}

// answers waits until url answers 200, or p exits, or wait passes.
func answers(url string, wait time.Duration, p *Process) bool {
	for deadline := time.Now().Add(wait); time.Now().Before(deadline) && !p.Exited(); time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}

// cloudOf is the cloud of a resource address: yandex, aws or gitlab.
func cloudOf(address string) string {
	prefix, _, _ := strings.Cut(address, "_")
	return prefix
}

// checkCall sends c's request to the server at u, as the resource sends
// it, and the same without its credential where it carries one.
func checkCall(t *testing.T, c bootstrap.Call, u string, calls []bootstrap.Call, send func(method, url string, header map[string]string, body string) (int, string), hookBody string) {
	t.Helper()
	ok := func(code int) bool { return code >= 200 && code < 300 }
	switch c.Auth {
	case bootstrap.AuthNone:
		// Health checks and triggers send no credential.
		if code, body := send(c.Method, u+c.Path, nil, "{}"); !ok(code) {
			t.Errorf("%s sends %s %s to %s without credentials: %d %s", c.Resource, c.Method, c.Path, c.Component, code, body)
		}
	case bootstrap.AuthGitLabToken:
		if code, _ := send(c.Method, u+c.Path, map[string]string{"X-Gitlab-Event": gitlabtest.EventJob}, hookBody); code != http.StatusUnauthorized {
			t.Errorf("%s: %s %s without X-Gitlab-Token answered %d, want 401", c.Resource, c.Method, c.Path, code)
		}
		if code, body := send(c.Method, u+c.Path, map[string]string{"X-Gitlab-Event": gitlabtest.EventJob, "X-Gitlab-Token": fleetWebhookSecret}, hookBody); !ok(code) {
			t.Errorf("%s: %s %s with the egg's secret answered %d %s", c.Resource, c.Method, c.Path, code, body)
		}
	case bootstrap.AuthBearer:
		// The gateway's authorizer checked the token and passes it on:
		// the API serves the prefix and checks it too.
		p := path.Join(strings.TrimSuffix(c.Path, "*"), "v1/eggs")
		method := c.Method
		if method == "ANY" {
			method = "GET"
		}
		if code, _ := send(method, u+p, nil, ""); code != http.StatusUnauthorized {
			t.Errorf("%s: %s %s without a token answered %d, want 401", c.Resource, method, p, code)
		}
		if code, body := send(method, u+p, map[string]string{"Authorization": "Bearer " + APIToken}, ""); code != http.StatusOK {
			t.Errorf("%s: %s %s with the API token answered %d %s", c.Resource, method, p, code, body)
		}
	case bootstrap.AuthPassThrough:
		// A catch-all route: the API's public routes (webhooks, agents,
		// probes) are under it, each with its own checks.
		if code, body := send("GET", u+"/readyz", nil, ""); code != http.StatusOK {
			t.Errorf("%s: GET /readyz through the catch-all answered %d %s", c.Resource, code, body)
		}
	default:
		t.Errorf("%s: unknown authentication %q", c.Resource, c.Auth)
	}
}
