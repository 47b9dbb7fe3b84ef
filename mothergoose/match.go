package mothergoose

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
)

// sameHost compares an egg's host with a delivery's.
func sameHost(eggHost, host string) bool {
	return strings.EqualFold(eggHost, host)
}

// eggsOn returns the eggs on a GitLab host; every egg when host is ""
// (a delivery that names no instance).
func eggsOn(nest *fly.Nest, host string) []*fly.Egg {
	var out []*fly.Egg
	for i := range nest.Eggs {
		if host == "" || sameHost(nest.Eggs[i].GitLab.Host, host) {
			out = append(out, &nest.Eggs[i])
		}
	}
	return out
}

// matchEgg finds the one egg that serves a delivery's project on its host,
// by the project's ID, never by the path the payload claims: an egg or
// bucket listing the project (an ID it names, or one GitLab resolved its
// listed paths to, so a renamed or transferred project is still served),
// else a bucket whose group holds it as GitLab says (groupHolds). Only the
// buckets whose webhook secret the delivery carries are looked up, with
// their own tokens: a delivery makes GitLab be asked nothing with another
// egg's token. fly rejects two eggs listing one project, and a listing wins
// over a group, so at most one matches. A delivery without a project ID
// (events of old instances) is matched by a listed path GitLab has not
// resolved. nil when none serves the project; an error when a GitLab
// lookup that might have found the match failed.
func (m *Ingest) matchEgg(ctx context.Context, d *delivery, eggs []*fly.Egg) (*fly.Egg, error) {
	projectID, path := d.hook.ProjectID, d.hook.ProjectPath
	if egg := m.projects.match(eggs, projectID, path); egg != nil {
		return egg, nil
	}
	// Eggs whose paths GitLab has not resolved yet, or not lately: one of
	// them may list the project under an old path.
	lookupErr := m.resolveStale(ctx, d.Host, eggs)
	if egg := m.projects.match(eggs, projectID, path); egg != nil {
		return egg, nil
	}
	if projectID <= 0 {
		return nil, lookupErr
	}
	for _, egg := range eggs {
		if egg.Group == nil {
			continue
		}
		if ok, err := m.cache.Match(ctx, egg.GitLab.WebhookSecret, d.Token); err != nil || !ok {
			if err != nil {
				lookupErr = err
			}
			continue
		}
		in, _, err := m.groupHolds(ctx, egg, projectID)
		if err != nil {
			lookupErr = err
			continue
		}
		if in {
			return egg, nil
		}
	}
	// A lookup that failed might have found the match.
	return nil, lookupErr
}

// groupHolds tells whether the project with ID projectID lies in the group
// of a bucket (directly, or in its subgroups when include_subgroups is
// set), as GitLab says: GET /projects/:id with the bucket's token, its
// path_with_namespace against the group's full path. path is the
// project's path as GitLab gave it. A project GitLab does not show the
// token (404, 403) is not in the group. Answers are kept for the bucket's
// version, a while (groupMemberTTL, or projectRetry for a project not in
// the group), so a new project of the group is found by the first hook
// that names it. err is a GitLab failure.
func (m *Ingest) groupHolds(ctx context.Context, egg *fly.Egg, projectID int64) (in bool, path string, err error) {
	now := m.now()
	if ans, ok := m.projects.member(egg, projectID, now); ok {
		return ans.in, ans.path, nil
	}
	full, err := m.groups.fullPath(ctx, m.deps, egg)
	if err != nil {
		return false, "", err
	}
	c, err := m.gitlabClient(ctx, egg)
	if err != nil {
		return false, "", err
	}
	lctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
	defer cancel()
	p, err := c.GetProject(lctx, projectID)
	switch {
	case gitlab.IsNotFound(err) || gitlab.IsForbidden(err):
	case err != nil:
		return false, "", fmt.Errorf("look up project %d for the group of egg %s: %w", projectID, egg.Name, err)
	default:
		path = p.PathWithNamespace
		in = inGroup(path, full, egg.Group.IncludeSubgroups)
	}
	m.projects.putMember(egg, projectID, groupMember{in: in, path: path, at: now})
	return in, path, nil
}

// inGroup tells whether a project path lies in the group with full path
// full (directly, or in its subgroups too).
func inGroup(path, full string, subgroups bool) bool {
	rest, ok := cutPrefixFold(path, full+"/")
	return ok && rest != "" && (subgroups || !strings.Contains(rest, "/"))
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// groupLookupTimeout bounds one GitLab group lookup.
const groupLookupTimeout = 3 * time.Second

// groupCache keeps group full paths by host, group and egg version: a
// group is looked up once per version of the egg that names it.
type groupCache struct {
	mu    sync.Mutex
	paths map[groupKey]string
}

type groupKey struct {
	host    string
	id      int64
	version string
}

func (g *groupCache) fullPath(ctx context.Context, m *deps, egg *fly.Egg) (string, error) {
	key := groupKey{strings.ToLower(egg.GitLab.Host), egg.Group.ID, egg.Version}
	g.mu.Lock()
	p, ok := g.paths[key]
	g.mu.Unlock()
	if ok {
		return p, nil
	}
	c, err := m.gitlabClient(ctx, egg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, groupLookupTimeout)
	defer cancel()
	group, err := c.GetGroup(ctx, egg.Group.ID)
	if err != nil {
		return "", fmt.Errorf("look up group %d of egg %s: %w", egg.Group.ID, egg.Name, err)
	}
	g.mu.Lock()
	g.paths[key] = group.FullPath
	g.mu.Unlock()
	return group.FullPath, nil
}

// gitlabClient is a GitLab client with the egg's API token.
func (m *deps) gitlabClient(ctx context.Context, egg *fly.Egg) (*gitlab.Client, error) {
	token, err := m.cache.get(ctx, egg.GitLab.Token)
	if err != nil {
		return nil, fmt.Errorf("GitLab token of egg %s: %w", egg.Name, err)
	}
	opts := append([]gitlab.Option{gitlab.WithLogger(m.log)}, m.cfg.GitLabOptions...)
	return gitlab.New(egg.GitLab.BaseURL(), token, opts...)
}

// isNestRepo tells whether a project is the Nest repository, named in
// MG/config.fly by path or ID.
func isNestRepo(nest *fly.Nest, projectID int64, path string) bool {
	p := strings.TrimSpace(nest.MotherGoose.Nest.Project)
	if p == "" {
		return false
	}
	if id, err := strconv.ParseInt(p, 10, 64); err == nil {
		return id == projectID
	}
	return strings.EqualFold(p, path)
}
