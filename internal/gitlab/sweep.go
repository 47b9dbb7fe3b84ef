package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// PendingJob is a job waiting for a runner, as the Jobs API lists it:
// unlike a Job Hook, it carries the job's own tags.
type PendingJob struct {
	Job
	ProjectPath string
	// CreatedAt is when GitLab created the job (zero when not sent).
	CreatedAt time.Time
}

// ListPendingJobs lists a project's pending jobs (GET
// /projects/:id/jobs?scope[]=pending, 100 a page), every page, following
// x-next-page. project is a numeric ID or a path with namespace. GitLab
// limits this endpoint on its own (600 requests a minute per user on
// GitLab.com); a 429 is retried after Retry-After or RateLimit-Reset, as
// every GET of this client is. pages reports how many requests it took.
func (c *Client) ListPendingJobs(ctx context.Context, project any) (jobs []PendingJob, pages int, err error) {
	scope := []gl.BuildStateValue{gl.Pending}
	opts := &gl.ListJobsOptions{ListOptions: gl.ListOptions{PerPage: perPage}, Scope: &scope}
	path := fmt.Sprintf("/projects/%v/jobs", project)
	list, err := collect(func(page int64) ([]*gl.Job, *gl.Response, error) {
		pages++
		opts.Page = page
		js, resp, err := c.api.Jobs.ListProjectJobs(project, opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, path, resp, err)
		}
		return js, resp, nil
	})
	if err != nil {
		return nil, pages, fmt.Errorf("list pending jobs of project %v: %w", project, err)
	}
	id, _ := project.(int64)
	out := make([]PendingJob, 0, len(list))
	for _, j := range list {
		if j.Status != string(gl.Pending) {
			continue // changed between pages; the next sweep sees it again
		}
		pj := PendingJob{Job: jobFrom(j, id)}
		if j.CreatedAt != nil {
			pj.CreatedAt = *j.CreatedAt
		}
		if j.Project != nil {
			pj.ProjectPath = j.Project.PathWithNamespace
		}
		out = append(out, pj)
	}
	return out, pages, nil
}

// Hook alert states (alert_status of GET /projects/:id/hooks): GitLab's
// WebHooks::AutoDisabling disables a hook for a while after 4 consecutive
// failed deliveries (1 minute, doubling up to a day) and for good after 40.
const (
	HookExecutable          = "executable"
	HookTemporarilyDisabled = "temporarily_disabled"
	HookDisabled            = "disabled"
)

// Disabled says whether GitLab stopped delivering to the hook.
func (h ProjectHook) Disabled() bool {
	return h.AlertStatus == HookTemporarilyDisabled || h.AlertStatus == HookDisabled
}

// ErrHookTestFailed is TestProjectHook's error when GitLab made the test
// delivery and the endpoint did not accept it (GitLab answers 422).
var ErrHookTestFailed = errors.New("the test delivery was not accepted")

// TestProjectHook asks GitLab to deliver a test event of the given trigger
// (job_events, pipeline_events, push_events) to a hook now (POST
// /projects/:id/hooks/:hook_id/test/:trigger). GitLab answers 201 when the
// endpoint accepted the delivery, which also re-enables a disabled hook, and
// 422 when it did not (ErrHookTestFailed) or when the project has nothing
// to test with. GitLab rate-limits this call (five a minute per project and
// user); it is a POST and not retried.
func (c *Client) TestProjectHook(ctx context.Context, project any, hookID int64, trigger string) error {
	resp, err := c.api.Projects.TriggerTestProjectHook(project, hookID, gl.ProjectHookEvent(trigger), c.opts(ctx, http.MethodPost)...)
	if err != nil {
		err = fail(http.MethodPost, fmt.Sprintf("/projects/%v/hooks/%d/test/%s", project, hookID, trigger), resp, err)
		if hasStatus(err, http.StatusUnprocessableEntity) {
			return fmt.Errorf("test hook %d of project %v: %w: %w", hookID, project, ErrHookTestFailed, err)
		}
		return fmt.Errorf("test hook %d of project %v: %w", hookID, project, err)
	}
	return nil
}

// Pipeline is a CI pipeline as Gosling sees it.
type Pipeline struct {
	ID        int64
	ProjectID int64
	Ref       string
	SHA       string
	// Status is created, waiting_for_resource, preparing, pending, running,
	// success, failed, canceled, skipped, manual or scheduled.
	Status string
	WebURL string
}

// Finished tells whether a pipeline status is final.
func (p Pipeline) Finished() bool {
	switch p.Status {
	case "success", "failed", "canceled", "skipped":
		return true
	}
	return false
}

// CreatePipeline runs a new pipeline for ref with the given variables
// (POST /projects/:id/pipeline); GitLab builds its jobs from the project's
// .gitlab-ci.yml at ref. It is a POST and not retried: a failed call may
// still have made the pipeline.
func (c *Client) CreatePipeline(ctx context.Context, project any, ref string, variables map[string]string) (Pipeline, error) {
	vars := make([]*gl.PipelineVariableOptions, 0, len(variables))
	for k, v := range variables {
		vars = append(vars, &gl.PipelineVariableOptions{Key: gl.Ptr(k), Value: gl.Ptr(v), VariableType: gl.Ptr(gl.EnvVariableType)})
	}
	opts := &gl.CreatePipelineOptions{Ref: gl.Ptr(ref), Variables: &vars}
	p, resp, err := c.api.Pipelines.CreatePipeline(project, opts, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		return Pipeline{}, fmt.Errorf("create a pipeline in project %v: %w", project, fail(http.MethodPost, fmt.Sprintf("/projects/%v/pipeline", project), resp, err))
	}
	return pipelineFrom(p), nil
}

// GetPipeline reads a pipeline (GET /projects/:id/pipelines/:pipeline_id).
func (c *Client) GetPipeline(ctx context.Context, project any, id int64) (Pipeline, error) {
	p, resp, err := c.api.Pipelines.GetPipeline(project, id, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return Pipeline{}, fmt.Errorf("get pipeline %d of project %v: %w", id, project, fail(http.MethodGet, fmt.Sprintf("/projects/%v/pipelines/%d", project, id), resp, err))
	}
	return pipelineFrom(p), nil
}

func pipelineFrom(p *gl.Pipeline) Pipeline {
	return Pipeline{ID: p.ID, ProjectID: p.ProjectID, Ref: p.Ref, SHA: p.SHA, Status: p.Status, WebURL: p.WebURL}
}
