package bootstrap

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
)

// mapResolver resolves secret URIs from a map.
func mapResolver(values map[fly.SecretRef]string) Resolver {
	return func(_ context.Context, ref fly.SecretRef) (string, error) {
		v, ok := values[ref]
		if !ok {
			return "", fmt.Errorf("secret %s not found", ref)
		}
		return v, nil
	}
}

// gitlabNest points the test Nest's egg at a GitLab test server and adds a
// bucket for a whole group.
func gitlabNest(t *testing.T, gl *gitlabtest.Server) (*fly.Nest, Resolver, gitlabtest.Project) {
	t.Helper()
	n := loadNest(t, "testdata/aws-nest")
	host := strings.TrimPrefix(gl.URL(), "http://")
	g := fly.GitLab{Host: host, Insecure: true, Token: "local://gitlab/token", WebhookSecret: "local://gitlab/hook"}
	n.Eggs[0].GitLab = g
	grp := gl.AddGroup("data", 0)
	gl.AddProject("data/etl", grp.ID)
	gl.AddProject("data/models", grp.ID)
	n.Eggs = append(n.Eggs, fly.Egg{Name: "data", Kind: fly.KindBucket, GitLab: g, Group: &fly.GroupRef{ID: grp.ID}})
	nestRepo := gl.AddProject("platform/nest", 0)
	n.MotherGoose.Nest = fly.NestSource{Project: "platform/nest", Ref: "main", WebhookSecret: "local://gitlab/nest-hook"}
	return n, mapResolver(map[fly.SecretRef]string{"local://gitlab/token": gl.Token(), "local://gitlab/hook": "hook-secret-1", "local://gitlab/nest-hook": "nest-secret-2"}), nestRepo
}

func TestGitLabHooks(t *testing.T) {
	ctx := context.Background()
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	web := gl.AddProject("acme/web", 0)
	n, resolve, nestRepo := gitlabNest(t, gl)
	clients := NewGitLabClients(resolve, gitlab.WithRetry(0, time.Millisecond, time.Millisecond))
	prov := &GitLabProvider{Deployment: DeploymentName(n), Clients: clients, Resolve: resolve}
	e := &Engine{Deployment: DeploymentName(n), Cloud: "aws", Providers: []Provider{prov},
		Journal: BlobJournal{FileBlob{filepath.Join(t.TempDir(), "journal")}}}
	deploy := func(n *fly.Nest) *Plan {
		t.Helper()
		desired, err := GitLabDesired(ctx, n, clients)
		if err != nil {
			t.Fatal(err)
		}
		p, actual, err := e.Plan(ctx, desired)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Apply(ctx, p, actual, ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p := deploy(n); p.Count(Create) != 4 {
		t.Fatalf("first deploy: %+v", p.Changes)
	}
	hooks := gl.Hooks(web.ID)
	if len(hooks) != 1 {
		t.Fatalf("hooks of acme/web: %+v", hooks)
	}
	h := hooks[0]
	if h.URL != "https://ci-runners.example.com/webhooks/gitlab" || h.Token != "hook-secret-1" || !h.JobEvents || !h.PipelineEvents || !h.MergeRequestsEvents || h.PushEvents {
		t.Errorf("hook: %+v", h)
	}
	if strings.Contains(h.Description, "hook-secret-1") {
		t.Error("the secret's value is in the hook's description")
	}

	if nestHook := gl.Hooks(nestRepo.ID); len(nestHook) != 1 || !nestHook[0].PushEvents || nestHook[0].JobEvents || nestHook[0].Token != "nest-secret-2" {
		t.Errorf("the Nest repository's hook, with the Nest's own secret: %+v", nestHook)
	}

	// Deploying again changes no hook.
	if p := deploy(n); !p.Empty() {
		t.Fatalf("second deploy changed: %+v", p.Changes)
	}
	if again := gl.Hooks(web.ID); len(again) != 1 || again[0] != h {
		t.Errorf("hook changed by an empty deploy: %+v", again)
	}

	// A new domain updates the hooks in place; a rollback puts them back.
	n.MotherGoose.APIGateway.Domain = "ci.example.org"
	if p := deploy(n); p.Count(Update) != 4 || p.Changes[0].Fields[0].Path != "url" {
		t.Fatalf("domain change: %+v", p.Changes)
	}
	if got := gl.Hooks(web.ID); got[0].ID != h.ID || got[0].URL != "https://ci.example.org/webhooks/gitlab" {
		t.Fatalf("after the domain change: %+v", got)
	}
	entries, _ := e.Journal.Entries(ctx)
	to, _ := PreviousEntry(entries)
	rp, actual, err := e.RollbackPlan(ctx, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Rollback(ctx, rp, actual, to, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := gl.Hooks(web.ID); got[0].URL != h.URL || got[0].Token != "hook-secret-1" {
		t.Fatalf("after rollback: %+v", got)
	}
}

func TestGitLabHooksWithoutDomainUseTheHTTPAPI(t *testing.T) {
	ctx := context.Background()
	gl := gitlabtest.New()
	t.Cleanup(gl.Close)
	gl.AddProject("acme/web", 0)
	n, resolve, _ := gitlabNest(t, gl)
	clients := NewGitLabClients(resolve, gitlab.WithRetry(0, time.Millisecond, time.Millisecond))
	n.MotherGoose.APIGateway.Domain = ""
	desired, err := GitLabDesired(ctx, n, clients)
	if err != nil {
		t.Fatal(err)
	}
	want := "${aws_apigatewayv2_api.api.api_endpoint}" + WebhookPath
	for _, r := range desired {
		if got := as[HookProps](r).URL; got != want {
			t.Errorf("%s: url %v, want %s", r.Address(), got, want)
		}
	}
	// Without the gateway (no vpc_id) there is no URL to use.
	aws := n.MotherGoose.Providers[fly.CloudAWS]
	aws.VPCID = ""
	n.MotherGoose.Providers[fly.CloudAWS] = aws
	if _, err := GitLabDesired(ctx, n, clients); err == nil || !strings.Contains(err.Error(), "domain is not set") {
		t.Errorf("without a gateway: %v", err)
	}
}
