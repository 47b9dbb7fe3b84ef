package gitlab

import (
	"context"
	"fmt"
	"net/http"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// Group is a GitLab group as Gosling sees it.
type Group struct {
	ID int64
	// FullPath is the group's path with its parents, such as acme/platform:
	// its projects' path_with_namespace starts with FullPath + "/".
	FullPath string
}

// GetGroup reads one group (GET /groups/:id), without its projects.
func (c *Client) GetGroup(ctx context.Context, id int64) (Group, error) {
	// with_projects is deprecated, but without it GitLab v4 still embeds up
	// to 100 projects in the answer, which Gosling does not read.
	//lint:ignore SA1019 see above
	opts := &gl.GetGroupOptions{WithProjects: gl.Ptr(false)}
	g, resp, err := c.api.Groups.GetGroup(id, opts, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return Group{}, fmt.Errorf("get group %d: %w", id, fail(http.MethodGet, fmt.Sprintf("/groups/%d", id), resp, err))
	}
	return Group{ID: g.ID, FullPath: g.FullPath}, nil
}
