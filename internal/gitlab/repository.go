package gitlab

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

var commitSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// projectRef is how client-go names a project: its numeric ID, or its
// path (URL-escaped by client-go).
func projectRef(project string) any {
	if id, err := strconv.ParseInt(project, 10, 64); err == nil {
		return id
	}
	return project
}

// ResolveRef returns the commit SHA a ref names: a full SHA as it is, a
// branch through GET /projects/:id/repository/branches/:branch. project is
// a numeric ID or a path such as platform/nest.
func (c *Client) ResolveRef(ctx context.Context, project, ref string) (string, error) {
	if commitSHA.MatchString(ref) {
		return ref, nil
	}
	b, resp, err := c.api.Branches.GetBranch(projectRef(project), ref, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return "", fmt.Errorf("read branch %s of %s: %w", ref, project, fail(http.MethodGet, "/projects/:id/repository/branches/:branch", resp, err))
	}
	if b.Commit == nil || b.Commit.ID == "" {
		return "", fmt.Errorf("branch %s of %s has no commit", ref, project)
	}
	return b.Commit.ID, nil
}

// Archive downloads a project's tree at a commit as a gzipped tarball (GET
// /projects/:id/repository/archive.tar.gz?sha=...), whose entries sit under
// one top-level directory.
func (c *Client) Archive(ctx context.Context, project, sha string) ([]byte, error) {
	b, resp, err := c.api.Repositories.Archive(projectRef(project), &gl.ArchiveOptions{Format: gl.Ptr("tar.gz"), SHA: gl.Ptr(sha)}, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return nil, fmt.Errorf("download %s at %s: %w", project, sha, fail(http.MethodGet, "/projects/:id/repository/archive.tar.gz", resp, err))
	}
	return b, nil
}
