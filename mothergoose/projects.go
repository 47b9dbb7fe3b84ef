package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
)

// projectRetry is how long after a failed resolution (GitLab unreachable)
// an egg's projects are asked for again while webhooks wait.
const projectRetry = 30 * time.Second

// projectIndex keeps, per GitLab host and egg, what GitLab answered for the
// projects the egg lists (GET /projects/:id with its ID or path): the
// project IDs, and which of the egg's listings GitLab resolved. Hooks are
// matched against it by project ID, so a project GitLab renamed or
// transferred (its old path redirects, its hooks carry the new one) stays
// served. It is rebuilt when a Nest is applied and filled in lazily for
// eggs not resolved yet.
type projectIndex struct {
	mu   sync.Mutex
	eggs map[eggKey]*eggProjects
	// members are GitLab's answers to whether a project lies in the
	// group of a bucket (groupHolds), by bucket version and project ID.
	members map[memberKey]groupMember
}

type memberKey struct {
	egg       eggKey
	version   string
	projectID int64
}

// groupMember is GitLab's answer about one project and a bucket's group.
type groupMember struct {
	in   bool
	path string
	at   time.Time
}

// groupMemberTTL is how long a project found in a bucket's group is taken
// to stay there (one moved out stops being served after at most this);
// maxGroupMembers bounds the answers kept.
const (
	groupMemberTTL  = 10 * time.Minute
	maxGroupMembers = 20000
)

type eggKey struct{ host, egg string }

// eggProjects is what GitLab answered for one version of an egg.
type eggProjects struct {
	version string
	// paths are the current paths of the resolved projects, by ID.
	paths map[int64]string
	// resolved[i] says whether egg.Projects[i] resolved to a project.
	resolved []bool
	// complete is set once GitLab answered for every listing (found or
	// not); tried is when it was last asked.
	complete bool
	tried    time.Time
}

func newProjectIndex() *projectIndex {
	return &projectIndex{eggs: map[eggKey]*eggProjects{}, members: map[memberKey]groupMember{}}
}

// member is the answer kept about a project and a bucket's group, if it
// is still fresh at now.
func (x *projectIndex) member(egg *fly.Egg, projectID int64, now time.Time) (groupMember, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ans, ok := x.members[memberKey{keyOf(egg), egg.Version, projectID}]
	if !ok || now.Sub(ans.at) >= ans.ttl() {
		return groupMember{}, false
	}
	return ans, true
}

func (g groupMember) ttl() time.Duration {
	if g.in {
		return groupMemberTTL
	}
	return projectRetry
}

// putMember keeps an answer of groupHolds. When maxGroupMembers are kept,
// stale answers are dropped first, and all of them if none is stale.
func (x *projectIndex) putMember(egg *fly.Egg, projectID int64, ans groupMember) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.members) >= maxGroupMembers {
		for k, v := range x.members {
			if ans.at.Sub(v.at) >= v.ttl() {
				delete(x.members, k)
			}
		}
		if len(x.members) >= maxGroupMembers {
			clear(x.members)
		}
	}
	x.members[memberKey{keyOf(egg), egg.Version, projectID}] = ans
}

func keyOf(egg *fly.Egg) eggKey {
	return eggKey{strings.ToLower(egg.GitLab.Host), egg.Name}
}

// get is the entry of the egg's current version, nil if there is none.
// The caller holds x.mu.
func (x *projectIndex) get(egg *fly.Egg) *eggProjects {
	if e := x.eggs[keyOf(egg)]; e != nil && e.version == egg.Version {
		return e
	}
	return nil
}

// match finds the egg among eggs that lists the project: by an ID it names
// or GitLab resolved one of its listings to; for a delivery that names no
// project ID only, by a listed path GitLab has not resolved (a path in a
// payload proves nothing about the project ID beside it). nil when none
// does.
func (x *projectIndex) match(eggs []*fly.Egg, projectID int64, path string) *fly.Egg {
	x.mu.Lock()
	defer x.mu.Unlock()
	if projectID != 0 {
		for _, egg := range eggs {
			if e := x.get(egg); e != nil {
				if _, ok := e.paths[projectID]; ok {
					return egg
				}
			}
			for _, p := range egg.Projects {
				if p.ID == projectID {
					return egg
				}
			}
		}
	}
	if path == "" || projectID > 0 {
		return nil
	}
	for _, egg := range eggs {
		e := x.get(egg)
		for i, p := range egg.Projects {
			resolved := e != nil && i < len(e.resolved) && e.resolved[i]
			if !resolved && p.Path != "" && strings.EqualFold(p.Path, path) {
				return egg
			}
		}
	}
	return nil
}

// stale lists the eggs with listed projects whose current version GitLab
// has not answered for and was not asked about within projectRetry.
func (x *projectIndex) stale(eggs []*fly.Egg, now time.Time) []*fly.Egg {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*fly.Egg
	for _, egg := range eggs {
		if len(egg.Projects) == 0 {
			continue
		}
		e := x.get(egg)
		if e == nil || (!e.complete && now.Sub(e.tried) >= projectRetry) {
			out = append(out, egg)
		}
	}
	return out
}

func (x *projectIndex) put(egg *fly.Egg, e *eggProjects) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.eggs[keyOf(egg)] = e
}

// replace puts a whole Nest's entries in force, dropping eggs it lacks.
func (x *projectIndex) replace(entries map[eggKey]*eggProjects) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.eggs = entries
}

// resolveEggProjects asks GitLab for every project an egg lists, by ID when
// it names one, else by path (GitLab follows the redirect of a renamed or
// transferred project). warnings name listings GitLab does not resolve
// (404 or 403: gone, or out of the token's sight) and paths that moved;
// err is a failure that asking again may cure (GitLab or the token's
// secret unreachable), with the listings not asked left unresolved.
func (m *deps) resolveEggProjects(ctx context.Context, egg *fly.Egg) (e *eggProjects, warnings []string, err error) {
	e = &eggProjects{version: egg.Version, paths: map[int64]string{}, resolved: make([]bool, len(egg.Projects)), tried: m.now()}
	c, err := m.gitlabClient(ctx, egg)
	if err != nil {
		return e, nil, err
	}
	for i, ref := range egg.Projects {
		key, named := ref.Path, ref.Path
		if ref.ID != 0 {
			key, named = strconv.FormatInt(ref.ID, 10), fmt.Sprintf("%d", ref.ID)
			if ref.Path != "" {
				named += " (" + ref.Path + ")"
			}
		}
		if key == "" {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
		p, err := c.GetProject(lctx, key)
		cancel()
		switch {
		case gitlab.IsNotFound(err) || gitlab.IsForbidden(err):
			warnings = append(warnings, fmt.Sprintf("egg %s: project %s does not resolve on %s (%v): its hooks are matched by the path as written",
				egg.Name, named, egg.GitLab.Host, err))
			continue
		case err != nil:
			return e, warnings, fmt.Errorf("resolve project %s of egg %s: %w", named, egg.Name, err)
		}
		e.paths[p.ID] = p.PathWithNamespace
		e.resolved[i] = true
		if ref.Path != "" && !strings.EqualFold(ref.Path, p.PathWithNamespace) {
			warnings = append(warnings, fmt.Sprintf("egg %s: project %s is now %s (ID %d) on %s; it is served by its ID: update the Nest",
				egg.Name, named, p.PathWithNamespace, p.ID, egg.GitLab.Host))
		}
	}
	e.complete = true
	return e, warnings, nil
}

// indexProjects resolves the projects of every egg of a Nest being applied
// and puts the index in force. It returns warnings for the ApplyResult;
// each is also logged and audited against its egg. A host whose GitLab
// fails is not asked again in this application: its eggs are resolved
// later, when a webhook needs them.
func (m *deps) indexProjects(ctx context.Context, nest *fly.Nest) []string {
	entries := map[eggKey]*eggProjects{}
	down := map[string]error{}
	var warnings []string
	for i := range nest.Eggs {
		egg := &nest.Eggs[i]
		if len(egg.Projects) == 0 {
			continue
		}
		host := strings.ToLower(egg.GitLab.Host)
		if err, ok := down[host]; ok {
			warnings = append(warnings, m.projectWarning(ctx, egg,
				fmt.Sprintf("egg %s: projects not resolved, GitLab on %s failed (%v); listed paths are matched as written until it answers", egg.Name, egg.GitLab.Host, err)))
			continue
		}
		e, ws, err := m.resolveEggProjects(ctx, egg)
		entries[keyOf(egg)] = e
		for _, w := range ws {
			warnings = append(warnings, m.projectWarning(ctx, egg, w))
		}
		if err != nil {
			down[host] = err
			warnings = append(warnings, m.projectWarning(ctx, egg,
				fmt.Sprintf("egg %s: %v; listed paths are matched as written until GitLab answers", egg.Name, err)))
		}
	}
	m.projects.replace(entries)
	return warnings
}

// resolveStale resolves, while a webhook waits, the eggs on host whose
// projects GitLab has not answered for. It returns the last failure.
func (m *deps) resolveStale(ctx context.Context, host string, eggs []*fly.Egg) error {
	var lastErr error
	for _, egg := range m.projects.stale(eggs, m.now()) {
		e, ws, err := m.resolveEggProjects(ctx, egg)
		m.projects.put(egg, e)
		for _, w := range ws {
			m.projectWarning(ctx, egg, w)
		}
		if err != nil {
			lastErr = err
			m.log.WarnContext(ctx, "resolve an egg's projects", "egg", egg.Name, "host", host, "error", err)
		}
	}
	return lastErr
}

// projectWarning logs and audits a warning about an egg's projects and
// returns it.
func (m *deps) projectWarning(ctx context.Context, egg *fly.Egg, warning string) string {
	m.log.WarnContext(ctx, "egg project", "egg", egg.Name, "warning", warning)
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: "egg-projects", Egg: egg.Name, Reason: warning})
	return warning
}

// projectCreation is a project created in the group of a bucket: the
// bucket serves it once it has a hook.
type projectCreation struct {
	egg       *fly.Egg
	projectID int64
	path      string
}

// projectCreated finds, for a project_create event (group and system
// hooks), the bucket whose group holds the new project and whose webhook
// secret the delivery carries. nil when the event is another one, or no
// bucket serves the project; an error when a group lookup that might have
// found it failed.
func (m *Ingest) projectCreated(ctx context.Context, d *delivery, eggs []*fly.Egg) (*projectCreation, error) {
	h := d.hook
	if h.EventName != "project_create" || h.ProjectID <= 0 || h.ProjectPath == "" {
		return nil, nil
	}
	var lookupErr error
	for _, egg := range eggs {
		if egg.Group == nil {
			continue
		}
		if ok, err := m.cache.Match(ctx, egg.GitLab.WebhookSecret, d.Token); err != nil || !ok {
			continue
		}
		in, path, err := m.groupHolds(ctx, egg, h.ProjectID)
		if err != nil {
			lookupErr = err
			continue
		}
		if in {
			return &projectCreation{egg: egg, projectID: h.ProjectID, path: path}, nil
		}
	}
	return nil, lookupErr
}

// processProjectCreate starts the AddProjectHook workflow of a project
// created in a bucket's group (contract.ProjectHookWorkflowID: a resent
// event joins it), so that the webhook path writes nothing to GitLab. The
// workflow adds the bucket's hook and audits it.
func (m *Ingest) processProjectCreate(ctx context.Context, d *delivery, pc *projectCreation) (*Result, error) {
	wfID := contract.ProjectHookWorkflowID(pc.egg.GitLab.Host, pc.projectID)
	if d.URL == "" {
		m.auditProjectHook(ctx, pc.egg.Name, contract.AuditProjectHookFailed, projectCreationText(pc)+"; its hook was not added: the URL of the webhook endpoint is unknown")
		return &Result{Status: StatusAccepted, Reason: projectCreationText(pc) + "; its hook was not added: the URL of the webhook endpoint is unknown (see the audit log)"}, nil
	}
	in, err := StartIntent(wfID, contract.WorkflowAddProjectHook, contract.ProjectHookInput{
		Egg: *pc.egg, ProjectID: pc.projectID, Path: pc.path, URL: d.URL,
	})
	if err != nil {
		return nil, err
	}
	res, err := m.deliver(ctx, in)
	if err != nil {
		return nil, err
	}
	res.Reason = strings.TrimSuffix(projectCreationText(pc)+"; its hook is added by workflow "+wfID+"; "+res.Reason, "; ")
	if res.Status == StatusQueued {
		res.Reason = projectCreationText(pc) + "; the workflow that adds its hook is queued until Temporal answers"
	}
	return res, nil
}

func projectCreationText(pc *projectCreation) string {
	return fmt.Sprintf("project %s (ID %d) created in the group of bucket %s", truncate(pc.path, 200), pc.projectID, pc.egg.Name)
}

// AddProjectHook gives a project created in a bucket's group the project
// hook the bucket's other projects have (job and pipeline events, the
// bucket's webhook secret, in.URL), unless it has one to that URL already,
// and audits what was done (project-hook-add). It is the AddProjectHook
// workflow's activity. Errors: GitLab's (*gitlab.APIError) and the
// secrets' as they come.
func (m *Operations) AddProjectHook(ctx context.Context, in contract.ProjectHookInput) (contract.ProjectHookResult, error) {
	egg := &in.Egg
	hookID, existed, err := m.addProjectHook(ctx, egg, in.ProjectID, in.URL)
	if err != nil {
		return contract.ProjectHookResult{}, err
	}
	what := projectCreationText(&projectCreation{egg: egg, projectID: in.ProjectID, path: in.Path})
	reason := fmt.Sprintf("%s; project hook %d added", what, hookID)
	if existed {
		reason = fmt.Sprintf("%s; it has its hook %d already", what, hookID)
	}
	m.auditProjectHook(ctx, egg.Name, contract.AuditProjectHookAdd, reason)
	return contract.ProjectHookResult{HookID: hookID, Existed: existed}, nil
}

func (m *deps) auditProjectHook(ctx context.Context, egg, action, reason string) {
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: action, Egg: egg, Reason: reason})
}

// addProjectHook adds the hook to url on a project, or finds the one there.
func (m *Operations) addProjectHook(ctx context.Context, egg *fly.Egg, projectID int64, url string) (id int64, existed bool, err error) {
	if url == "" {
		return 0, false, errors.New("the URL of the webhook endpoint is unknown")
	}
	c, err := m.gitlabClient(ctx, egg)
	if err != nil {
		return 0, false, err
	}
	hooks, err := c.ListProjectHooks(ctx, projectID)
	if err != nil {
		return 0, false, err
	}
	for _, h := range hooks {
		if h.URL == url {
			return h.ID, true, nil
		}
	}
	secret, err := m.cache.get(ctx, egg.GitLab.WebhookSecret)
	if err != nil {
		return 0, false, fmt.Errorf("webhook secret of egg %s: %w", egg.Name, err)
	}
	id, err = c.AddProjectHook(ctx, projectID, gitlab.HookSpec{
		URL: url, Token: secret, JobEvents: true, PipelineEvents: true,
		EnableSSLVerification: strings.HasPrefix(url, "https://"),
	})
	return id, false, err
}
