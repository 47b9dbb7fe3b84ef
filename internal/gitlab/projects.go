package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

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
	// Name and Description label the hook (GitLab 17.1 and later keep
	// them; older versions ignore them).
	Name                string
	Description         string
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

// AddProjectHook adds a webhook to a project (its numeric ID or its path
// with namespace) and returns its ID. It is a POST and not retried: a
// failed call may still have added the hook.
func (c *Client) AddProjectHook(ctx context.Context, project any, spec HookSpec) (int64, error) {
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
	if spec.Name != "" {
		opts.Name = gl.Ptr(spec.Name)
	}
	if spec.Description != "" {
		opts.Description = gl.Ptr(spec.Description)
	}
	h, resp, err := c.api.Projects.AddProjectHook(project, opts, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		return 0, fmt.Errorf("add hook to project %v: %w", project, fail(http.MethodPost, fmt.Sprintf("/projects/%v/hooks", project), resp, err))
	}
	return h.ID, nil
}

// ProjectHook is a project webhook as GitLab lists it. GitLab never
// returns the secret token, only whether one is set. Instances before
// GitLab 15.x send no alert_status: AlertStatus is then empty.
type ProjectHook struct {
	ID                    int64
	ProjectID             int64
	Name                  string
	Description           string
	URL                   string
	JobEvents             bool
	PipelineEvents        bool
	PushEvents            bool
	MergeRequestsEvents   bool
	EnableSSLVerification bool
	TokenPresent          bool
	// AlertStatus is executable, temporarily_disabled or disabled, and
	// DisabledUntil is set while the hook is temporarily disabled.
	AlertStatus   string
	DisabledUntil *time.Time
}

// ListProjectHooks lists a project's webhooks (GET /projects/:id/hooks,
// every page); project is its numeric ID or its path with namespace.
func (c *Client) ListProjectHooks(ctx context.Context, project any) ([]ProjectHook, error) {
	opts := &gl.ListProjectHooksOptions{ListOptions: gl.ListOptions{PerPage: perPage}}
	hooks, err := collect(func(page int64) ([]*gl.ProjectHook, *gl.Response, error) {
		opts.Page = page
		hs, resp, err := c.api.Projects.ListProjectHooks(project, opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, fmt.Sprintf("/projects/%v/hooks", project), resp, err)
		}
		return hs, resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list hooks of project %v: %w", project, err)
	}
	out := make([]ProjectHook, 0, len(hooks))
	for _, h := range hooks {
		out = append(out, ProjectHook{
			ID: h.ID, Name: h.Name, Description: h.Description, URL: h.URL, JobEvents: h.JobEvents, PipelineEvents: h.PipelineEvents,
			PushEvents: h.PushEvents, MergeRequestsEvents: h.MergeRequestsEvents, EnableSSLVerification: h.EnableSSLVerification,
			TokenPresent: h.TokenPresent, ProjectID: h.ProjectID, AlertStatus: h.AlertStatus, DisabledUntil: h.DisabledUntil,
		})
	}
	return out, nil
}

// EditProjectHook changes a project webhook to spec (PUT
// /projects/:id/hooks/:hook_id); every event flag is sent, and the token,
// name and description when spec has them. Saving a hook also clears
// GitLab's record of its failures, which re-enables a disabled hook. It is
// idempotent and retried like every PUT.
func (c *Client) EditProjectHook(ctx context.Context, project any, hookID int64, spec HookSpec) error {
	opts := &gl.EditProjectHookOptions{
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
	if spec.Name != "" {
		opts.Name = gl.Ptr(spec.Name)
	}
	if spec.Description != "" {
		opts.Description = gl.Ptr(spec.Description)
	}
	_, resp, err := c.api.Projects.EditProjectHook(project, hookID, opts, c.opts(ctx, http.MethodPut)...)
	if err != nil {
		return fmt.Errorf("edit hook %d of project %v: %w", hookID, project, fail(http.MethodPut, fmt.Sprintf("/projects/%v/hooks/%d", project, hookID), resp, err))
	}
	return nil
}

// DeleteProjectHook removes a project webhook (DELETE
// /projects/:id/hooks/:hook_id).
func (c *Client) DeleteProjectHook(ctx context.Context, project any, hookID int64) error {
	resp, err := c.api.Projects.DeleteProjectHook(project, hookID, c.opts(ctx, http.MethodDelete)...)
	if err != nil {
		return fmt.Errorf("delete hook %d of project %v: %w", hookID, project, fail(http.MethodDelete, fmt.Sprintf("/projects/%v/hooks/%d", project, hookID), resp, err))
	}
	return nil
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

// ListPipelineJobs lists the jobs of a pipeline of a project, every page,
// retried jobs included (GET /projects/:id/pipelines/:pipeline_id/jobs
// with include_retried=true). 404 (IsNotFound) when the project has no
// such pipeline, or the token may not see it.
func (c *Client) ListPipelineJobs(ctx context.Context, projectID, pipelineID int64) ([]Job, error) {
	opts := &gl.ListJobsOptions{ListOptions: gl.ListOptions{PerPage: perPage}, IncludeRetried: gl.Ptr(true)}
	path := fmt.Sprintf("/projects/%d/pipelines/%d/jobs", projectID, pipelineID)
	jobs, err := collect(func(page int64) ([]*gl.Job, *gl.Response, error) {
		opts.Page = page
		js, resp, err := c.api.Jobs.ListPipelineJobs(projectID, pipelineID, opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, path, resp, err)
		}
		return js, resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs of pipeline %d of project %d: %w", pipelineID, projectID, err)
	}
	out := make([]Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, jobFrom(j, projectID))
	}
	return out, nil
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

// GetProject reads a project by numeric ID or full path (GET
// /projects/:id). GitLab follows redirect routes for a path, so the old
// path of a renamed or transferred project answers with the project as it
// is now: compare PathWithNamespace with the path asked for to tell.
// 404 (IsNotFound) when no project is there or the token may not see it.
// project may also be an int64 ID.
func (c *Client) GetProject(ctx context.Context, project any) (Project, error) {
	if s, ok := project.(string); ok {
		project = projectRef(s)
	}
	p, resp, err := c.api.Projects.GetProject(project, nil, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return Project{}, fmt.Errorf("get project %v: %w", project, fail(http.MethodGet, "/projects/:id", resp, err))
	}
	out := Project{ID: p.ID, Name: p.Name, PathWithNamespace: p.PathWithNamespace, WebURL: p.WebURL, Archived: p.Archived}
	if p.Namespace != nil {
		out.NamespaceID = p.Namespace.ID
	}
	return out, nil
}

// ErrJobNotRetryable: GitLab refused to retry a job (403 "Job is not
// retryable": it is not finished, or a retry replaced it already). The
// *APIError is wrapped too.
var ErrJobNotRetryable = errors.New("job is not retryable")

// RetryJob retries a finished job (POST /projects/:id/jobs/:job_id/retry)
// and returns the new job GitLab made for it: a new ID, pending, the old
// job left as it was. Errors: ErrJobNotRetryable (403: the job is still
// pending or running, or was retried already; a token that may not update
// the project's jobs gets a 403 too); IsNotFound (404). It is a POST and
// not retried: a lost answer may have made the new job.
func (c *Client) RetryJob(ctx context.Context, projectID, jobID int64) (Job, error) {
	j, resp, err := c.api.Jobs.RetryJob(projectID, jobID, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		err = fail(http.MethodPost, fmt.Sprintf("/projects/%d/jobs/%d/retry", projectID, jobID), resp, err)
		if IsForbidden(err) {
			return Job{}, fmt.Errorf("retry job %d of project %d: %w: %w", jobID, projectID, ErrJobNotRetryable, err)
		}
		return Job{}, fmt.Errorf("retry job %d of project %d: %w", jobID, projectID, err)
	}
	return jobFrom(j, projectID), nil
}

// CancelJob cancels a job that is not finished (POST
// /projects/:id/jobs/:job_id/cancel) and returns it as GitLab answers;
// a finished job is returned as it is. Errors: IsNotFound (404),
// IsForbidden (403).
func (c *Client) CancelJob(ctx context.Context, projectID, jobID int64) (Job, error) {
	j, resp, err := c.api.Jobs.CancelJob(projectID, jobID, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		return Job{}, fmt.Errorf("cancel job %d of project %d: %w", jobID, projectID, fail(http.MethodPost, fmt.Sprintf("/projects/%d/jobs/%d/cancel", projectID, jobID), resp, err))
	}
	return jobFrom(j, projectID), nil
}
