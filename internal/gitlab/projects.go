package gitlab

import (
	"context"
	"fmt"
	"net/http"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// Project is a GitLab project as Gosling sees it.
type Project struct {
	ID                int64
	Name              string
	PathWithNamespace string
	WebURL            string
	NamespaceID       int64
	Archived          bool
}

// ListGroupProjects lists the projects of a group (and of its subgroups with
// includeSubgroups), every page. Projects merely shared into the group are
// left out (with_shared=false): Gosling must not claim another group's
// project.
func (c *Client) ListGroupProjects(ctx context.Context, groupID int64, includeSubgroups bool) ([]Project, error) {
	opts := &gl.ListGroupProjectsOptions{
		ListOptions:      gl.ListOptions{PerPage: perPage},
		IncludeSubGroups: gl.Ptr(includeSubgroups),
		WithShared:       gl.Ptr(false),
	}
	path := fmt.Sprintf("/groups/%d/projects", groupID)
	projects, err := collect(func(page int64) ([]*gl.Project, *gl.Response, error) {
		opts.Page = page
		ps, resp, err := c.api.Groups.ListGroupProjects(groupID, opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, path, resp, err)
		}
		return ps, resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list projects of group %d: %w", groupID, err)
	}
	out := make([]Project, 0, len(projects))
	for _, p := range projects {
		pr := Project{ID: p.ID, Name: p.Name, PathWithNamespace: p.PathWithNamespace, WebURL: p.WebURL, Archived: p.Archived}
		if p.Namespace != nil {
			pr.NamespaceID = p.Namespace.ID
		}
		out = append(out, pr)
	}
	return out, nil
}

// HookSpec describes a project webhook.
type HookSpec struct {
	URL                 string
	Token               string // sent back by GitLab in X-Gitlab-Token
	JobEvents           bool
	PipelineEvents      bool
	PushEvents          bool // GitLab defaults it to true; always sent
	MergeRequestsEvents bool
	// EnableSSLVerification is sent as given: false turns TLS certificate
	// checks off for this hook, so leave it false only for a self-signed
	// endpoint.
	EnableSSLVerification bool
}

// AddProjectHook adds a webhook to a project (an ID or a path with
// namespace) and returns its ID. It is a POST and not retried: a failed
// call may still have added the hook.
func (c *Client) AddProjectHook(ctx context.Context, projectID any, spec HookSpec) (int64, error) {
	opts := &gl.AddProjectHookOptions{
		URL:                   gl.Ptr(spec.URL),
		JobEvents:             gl.Ptr(spec.JobEvents),
		PipelineEvents:        gl.Ptr(spec.PipelineEvents),
		PushEvents:            gl.Ptr(spec.PushEvents),
		MergeRequestsEvents:   gl.Ptr(spec.MergeRequestsEvents),
		EnableSSLVerification: gl.Ptr(spec.EnableSSLVerification),
	}
	if spec.Token != "" {
		opts.Token = gl.Ptr(spec.Token)
	}
	h, resp, err := c.api.Projects.AddProjectHook(projectID, opts, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		return 0, fmt.Errorf("add hook to project %v: %w", projectID, fail(http.MethodPost, fmt.Sprintf("/projects/%v/hooks", projectID), resp, err))
	}
	return h.ID, nil
}

// Job is a CI job as Gosling sees it. RunnerID is 0 until a runner picks it.
type Job struct {
	ID         int64
	Status     string
	Name       string
	Ref        string
	Stage      string
	TagList    []string
	RunnerID   int64
	PipelineID int64
	ProjectID  int64
}

// jobFrom converts client-go's job; projectID is used when the answer does
// not say (GET /projects/:id/jobs/:job_id embeds no project ID).
func jobFrom(j *gl.Job, projectID int64) Job {
	out := Job{
		ID:         j.ID,
		Status:     j.Status,
		Name:       j.Name,
		Ref:        j.Ref,
		Stage:      j.Stage,
		TagList:    j.TagList,
		RunnerID:   j.Runner.ID, // client-go decodes "runner": null as a zero struct
		PipelineID: j.Pipeline.ID,
		ProjectID:  j.Pipeline.ProjectID,
	}
	if j.Project != nil && j.Project.ID != 0 {
		out.ProjectID = j.Project.ID
	}
	if out.ProjectID == 0 {
		out.ProjectID = projectID
	}
	return out
}

// GetJob reads one job of a project.
func (c *Client) GetJob(ctx context.Context, projectID, jobID int64) (*Job, error) {
	j, resp, err := c.api.Jobs.GetJob(projectID, jobID, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return nil, fmt.Errorf("get job %d of project %d: %w", jobID, projectID, fail(http.MethodGet, fmt.Sprintf("/projects/%d/jobs/%d", projectID, jobID), resp, err))
	}
	out := jobFrom(j, projectID)
	return &out, nil
}

// JobTags returns a job's tags. Webhooks never carry them (a Job Hook's
// runner.tags are the runner's), so this is the one place to learn them.
func (c *Client) JobTags(ctx context.Context, projectID, jobID int64) ([]string, error) {
	j, err := c.GetJob(ctx, projectID, jobID)
	if err != nil {
		return nil, err
	}
	return j.TagList, nil
}
