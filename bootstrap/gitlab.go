package bootstrap

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
)

// GitLabHook is the resource type of a project webhook.
const GitLabHook = "gitlab_project_hook"

// HookProps is a project webhook (gitlab_project_hook). GitLab never
// returns a hook's token, so Token is the secret URI it came from, kept in
// the hook's description; the instance fields (Host, Insecure, APIToken)
// say where the hook lives and with which API token it is changed.
type HookProps struct {
	// Nest marks the Nest repository's push hook.
	Nest     bool   `json:"nest"`
	Host     string `json:"host"`
	Insecure bool   `json:"insecure"`
	// APIToken is the secret URI of the API token that changes the hook.
	APIToken string `json:"api_token"`
	// Project is the project's path with namespace, or its numeric ID.
	Project string `json:"project"`
	URL     string `json:"url"`
	// Token is the secret URI of the webhook secret ("" when the hook has
	// none).
	Token                 string `json:"token"`
	JobEvents             bool   `json:"job_events"`
	PipelineEvents        bool   `json:"pipeline_events"`
	MergeRequestsEvents   bool   `json:"merge_requests_events"`
	PushEvents            bool   `json:"push_events"`
	EnableSSLVerification bool   `json:"enable_ssl_verification"`
}

func (HookProps) isProps() {}

func (h HookProps) instance() fly.GitLab {
	return fly.GitLab{Host: h.Host, Insecure: h.Insecure, Token: fly.SecretRef(h.APIToken)}
}

// WebhookPath is where MotherGoose's API takes GitLab's deliveries.
const WebhookPath = "/webhooks/gitlab"

// hookTokenPrefix starts a hook's description; the token's secret URI
// follows. GitLab never returns a hook's token, so the URI it came from is
// what a plan compares.
const hookTokenPrefix = "token from "

// GitLabClients makes a GitLab client for an egg's instance with its API
// token (resolved from its secret URI).
type GitLabClients func(ctx context.Context, g fly.GitLab) (*gitlab.Client, error)

// Resolver resolves a secret URI to its value.
type Resolver func(ctx context.Context, ref fly.SecretRef) (string, error)

// NewGitLabClients returns GitLabClients that resolve tokens with resolve
// and keep one client per instance and token.
func NewGitLabClients(resolve Resolver, opts ...gitlab.Option) GitLabClients {
	var mu sync.Mutex
	cache := map[string]*gitlab.Client{}
	return func(ctx context.Context, g fly.GitLab) (*gitlab.Client, error) {
		key := g.BaseURL() + " " + string(g.Token)
		mu.Lock()
		defer mu.Unlock()
		if c := cache[key]; c != nil {
			return c, nil
		}
		token, err := resolve(ctx, g.Token)
		if err != nil {
			return nil, fmt.Errorf("resolve the GitLab token of %s: %w", g.Host, err)
		}
		c, err := gitlab.New(g.BaseURL(), token, opts...)
		if err != nil {
			return nil, err
		}
		cache[key] = c
		return c, nil
	}
}

// GitLabProvider keeps the webhook of every egg's project pointing at the
// deployed API, through client-go (internal/gitlab).
type GitLabProvider struct {
	Deployment string
	Clients    GitLabClients
	Resolve    Resolver
}

// hookName labels the deployment's hooks (GitLab 17.1+ keeps a name): the
// Nest repository's push hook has a name of its own, so it can sit beside
// an egg's hook on the same project.
func (p *GitLabProvider) hookName(h HookProps) string {
	if h.Nest {
		return "gosling:" + p.Deployment + ":nest"
	}
	return "gosling:" + p.Deployment
}

// Types implements Provider.
func (p *GitLabProvider) Types() []string { return []string{GitLabHook} }

// GitLabDesired lists one webhook per project of every egg (a bucket's
// group is expanded to its projects through the GitLab API, subgroups
// included when the bucket says so): URL https://<api_gateway.domain>/webhooks/gitlab
// (on AWS without a domain, the HTTP API's endpoint followed by /webhooks/gitlab),
// the egg's webhook secret as token, job, pipeline and merge request
// events on, push events explicitly off (GitLab turns them on by default).
// The Nest repository (mothergoose.nest.project) gets a hook of its own,
// push events only, with the Nest's own webhook secret
// (mothergoose.nest.webhook_secret), so a push reloads the Nest and no
// egg's secret can; without that secret it gets none, and servers follow
// its head by polling.
func GitLabDesired(ctx context.Context, n *fly.Nest, clients GitLabClients) ([]Resource, error) {
	if len(n.Eggs) == 0 {
		return nil, nil
	}
	base := "https://" + n.MotherGoose.APIGateway.Domain
	if n.MotherGoose.APIGateway.Domain == "" {
		if mg := &n.MotherGoose; mg.Cloud != fly.CloudAWS || mg.Providers[fly.CloudAWS].VPCID == "" {
			return nil, fmt.Errorf("mothergoose.api_gateway.domain is not set: GitLab's webhooks need the API's public domain, such as domain = \"ci-runners.example.com\"")
		}
		// The HTTP API's own endpoint (https://<api-id>.execute-api.<region>.amazonaws.com).
		base = Ref(AWSAPI+".api", "api_endpoint")
	}
	var out []Resource
	seen := map[string]string{}
	for _, e := range n.Eggs {
		projects := make([]string, 0, len(e.Projects))
		for _, pr := range e.Projects {
			projects = append(projects, pr.String())
		}
		if e.Group != nil {
			c, err := clients(ctx, e.GitLab)
			if err != nil {
				return nil, fmt.Errorf("egg %s: %w", e.Name, err)
			}
			ps, err := c.ListGroupProjects(ctx, e.Group.ID, e.Group.IncludeSubgroups)
			if err != nil {
				return nil, fmt.Errorf("egg %s: %w", e.Name, err)
			}
			for _, pr := range ps {
				if !pr.Archived {
					projects = append(projects, pr.PathWithNamespace)
				}
			}
		}
		for _, pr := range projects {
			key := e.GitLab.Host + "/" + pr
			if first, dup := seen[key]; dup {
				return nil, fmt.Errorf("project %s on %s is served by eggs %s and %s: one hook cannot carry two webhook secrets", pr, e.GitLab.Host, first, e.Name)
			}
			seen[key] = e.Name
			out = append(out, hookResource(e.GitLab, pr, base, false))
		}
	}
	// The Nest repository's pushes make MotherGoose reload the Nest.
	if src := n.MotherGoose.Nest; src.Project != "" && !src.WebhookSecret.IsZero() {
		host := src.Host
		if host == "" {
			host = n.Eggs[0].GitLab.Host
		}
		var egg *fly.Egg
		for i := range n.Eggs {
			if n.Eggs[i].GitLab.Host == host {
				egg = &n.Eggs[i]
				break
			}
		}
		if egg == nil && src.Token.IsZero() {
			return nil, fmt.Errorf("mothergoose.nest.project %s is on %s, where no egg is: set the nest block's token, an API token that may add its hook", src.Project, host)
		}
		g := fly.GitLab{Host: host, Token: src.Token}
		if egg != nil {
			g.Insecure = egg.GitLab.Insecure
			if g.Token.IsZero() {
				g.Token = egg.GitLab.Token
			}
		}
		g.WebhookSecret = src.WebhookSecret
		out = append(out, hookResource(g, src.Project, base, true))
	}
	return out, nil
}

// hookResource is the webhook of one project: every event MotherGoose
// reads, or only pushes for the Nest repository. base is the API's URL
// without a path (https://<domain>, or a reference to the AWS HTTP API's
// endpoint).
func hookResource(g fly.GitLab, project, base string, nestOnly bool) Resource {
	name := g.Host + "/" + project
	if nestOnly {
		name += " (nest)"
	}
	return Resource{Type: GitLabHook, Name: name, Props: HookProps{
		Nest: nestOnly, Host: g.Host, Insecure: g.Insecure, APIToken: string(g.Token), Project: project,
		URL: base + WebhookPath, Token: string(g.WebhookSecret),
		JobEvents: !nestOnly, PipelineEvents: !nestOnly, MergeRequestsEvents: !nestOnly, PushEvents: nestOnly,
		EnableSSLVerification: true,
	}}
}

// Read implements Provider: the deployment's hooks (named gosling:<deployment>)
// of every project a hint names.
func (p *GitLabProvider) Read(ctx context.Context, hints []Resource) ([]Resource, error) {
	var out []Resource
	done := map[string]bool{}
	for _, h := range hints {
		if h.Type != GitLabHook || done[h.Name] {
			continue
		}
		done[h.Name] = true
		want := as[HookProps](h)
		c, err := p.Clients(ctx, want.instance())
		if err != nil {
			return nil, err
		}
		hooks, err := c.ListProjectHooks(ctx, projectID(want.Project))
		if err != nil {
			return nil, err
		}
		for _, hk := range hooks {
			if hk.Name != p.hookName(want) {
				continue
			}
			props := HookProps{
				Nest: want.Nest, Host: want.Host, Insecure: want.Insecure, APIToken: want.APIToken, Project: want.Project,
				URL: hk.URL, Token: strings.TrimPrefix(hk.Description, hookTokenPrefix),
				JobEvents: hk.JobEvents, PipelineEvents: hk.PipelineEvents, MergeRequestsEvents: hk.MergeRequestsEvents,
				PushEvents: hk.PushEvents, EnableSSLVerification: hk.EnableSSLVerification,
			}
			if !hk.TokenPresent {
				props.Token = ""
			}
			id := strconv.FormatInt(hk.ID, 10)
			out = append(out, Resource{Type: GitLabHook, Name: h.Name, Props: props, ID: id, Outputs: map[string]string{"id": id}})
			break
		}
	}
	return out, nil
}

// projectID passes a numeric project ID as a number, a path as a string.
func projectID(project string) any {
	if id, err := strconv.ParseInt(project, 10, 64); err == nil {
		return id
	}
	return project
}

func (p *GitLabProvider) spec(ctx context.Context, r Resource) (gitlab.HookSpec, error) {
	h := as[HookProps](r)
	spec := gitlab.HookSpec{
		Name: p.hookName(h), Description: hookTokenPrefix + h.Token, URL: h.URL,
		JobEvents: h.JobEvents, PipelineEvents: h.PipelineEvents, PushEvents: h.PushEvents,
		MergeRequestsEvents: h.MergeRequestsEvents, EnableSSLVerification: h.EnableSSLVerification,
	}
	if ref := h.Token; ref != "" {
		v, err := p.Resolve(ctx, fly.SecretRef(ref))
		if err != nil {
			return spec, fmt.Errorf("resolve the webhook secret of %s: %w", r.Name, err)
		}
		spec.Token = v
	}
	return spec, nil
}

// Create implements Provider.
func (p *GitLabProvider) Create(ctx context.Context, r Resource) (Resource, error) {
	c, err := p.Clients(ctx, as[HookProps](r).instance())
	if err != nil {
		return r, err
	}
	spec, err := p.spec(ctx, r)
	if err != nil {
		return r, err
	}
	id, err := c.AddProjectHook(ctx, projectID(as[HookProps](r).Project), spec)
	if err != nil {
		return r, err
	}
	r.ID = strconv.FormatInt(id, 10)
	r.Outputs = map[string]string{"id": r.ID}
	return r, nil
}

// Update implements Provider. The token is sent again every time: GitLab
// cannot say whether the one it has is current.
func (p *GitLabProvider) Update(ctx context.Context, before, after Resource) (Resource, error) {
	c, err := p.Clients(ctx, as[HookProps](after).instance())
	if err != nil {
		return after, err
	}
	spec, err := p.spec(ctx, after)
	if err != nil {
		return after, err
	}
	id, _ := strconv.ParseInt(before.ID, 10, 64)
	if err := c.EditProjectHook(ctx, projectID(as[HookProps](after).Project), id, spec); err != nil {
		return after, err
	}
	after.ID, after.Outputs = before.ID, before.Outputs
	return after, nil
}

// Delete implements Provider.
func (p *GitLabProvider) Delete(ctx context.Context, r Resource) error {
	c, err := p.Clients(ctx, as[HookProps](r).instance())
	if err != nil {
		return err
	}
	id, _ := strconv.ParseInt(r.ID, 10, 64)
	return c.DeleteProjectHook(ctx, projectID(as[HookProps](r).Project), id)
}
