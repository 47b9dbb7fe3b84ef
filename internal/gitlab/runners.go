package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	gl "gitlab.com/gitlab-org/api/client-go/v2"
)

// Runner types, as GitLab names them.
const (
	RunnerTypeInstance = "instance_type"
	RunnerTypeGroup    = "group_type"
	RunnerTypeProject  = "project_type"
)

// minMaximumTimeout is the least maximum_timeout GitLab accepts.
const minMaximumTimeout = 10 * time.Minute

// RunnerSpec describes a runner for CreateRunner.
//
// Description must be unique among the runners the token's user owns: it is
// how CreateRunner finds a runner whose creation answer was lost. Making it
// unique (for example with the Gosling runner's ID in it) is the caller's
// responsibility.
type RunnerSpec struct {
	Type           string // RunnerTypeProject, RunnerTypeGroup or RunnerTypeInstance
	ProjectID      int64  // for RunnerTypeProject
	GroupID        int64  // for RunnerTypeGroup
	Description    string
	Tags           []string
	RunUntagged    bool
	Paused         bool
	Locked         bool
	MaximumTimeout time.Duration // whole seconds, at least 10 minutes; 0 for none
}

func (s RunnerSpec) validate() error {
	switch {
	case s.Description == "":
		return errors.New("a runner needs a description, which must be unique")
	case s.Type == RunnerTypeProject && s.ProjectID <= 0:
		return errors.New("a project runner needs a project ID")
	case s.Type == RunnerTypeGroup && s.GroupID <= 0:
		return errors.New("a group runner needs a group ID")
	case s.Type != RunnerTypeProject && s.Type != RunnerTypeGroup && s.Type != RunnerTypeInstance:
		return fmt.Errorf("runner type %q is not one of %s, %s, %s", s.Type, RunnerTypeProject, RunnerTypeGroup, RunnerTypeInstance)
	case s.MaximumTimeout != 0 && s.MaximumTimeout < minMaximumTimeout:
		return fmt.Errorf("maximum timeout %s is below GitLab's minimum of %s", s.MaximumTimeout, minMaximumTimeout)
	case len(s.Tags) == 0 && !s.RunUntagged:
		return errors.New("a runner without tags must run untagged jobs")
	}
	return nil
}

func (s RunnerSpec) createOptions() *gl.CreateUserRunnerOptions {
	opts := &gl.CreateUserRunnerOptions{
		RunnerType:  gl.Ptr(s.Type),
		Description: gl.Ptr(s.Description),
		Paused:      gl.Ptr(s.Paused),
		Locked:      gl.Ptr(s.Locked),
		RunUntagged: gl.Ptr(s.RunUntagged),
	}
	switch s.Type {
	case RunnerTypeProject:
		opts.ProjectID = gl.Ptr(s.ProjectID)
	case RunnerTypeGroup:
		opts.GroupID = gl.Ptr(s.GroupID)
	}
	if len(s.Tags) > 0 {
		opts.TagList = gl.Ptr(slices.Clone(s.Tags))
	}
	if s.MaximumTimeout > 0 {
		opts.MaximumTimeout = gl.Ptr(int64(s.MaximumTimeout / time.Second))
	}
	return opts
}

// Runner is a GitLab runner as Gosling sees it.
type Runner struct {
	ID int64
	// Token is set only by CreateRunner: GitLab shows it once.
	Token          string
	TokenExpiresAt *time.Time
	Description    string
	// Tags are empty from ListRunners: GitLab's runner lists leave them out.
	Tags   []string
	Paused bool
	Type   string
	Status string // online, offline, stale or never_contacted
}

func runnerFromList(r *gl.Runner) Runner {
	return Runner{ID: r.ID, Description: r.Description, Paused: r.Paused, Type: r.RunnerType, Status: r.Status}
}

func runnerFromDetails(d *gl.RunnerDetails) Runner {
	return Runner{ID: d.ID, Description: d.Description, Tags: d.TagList, Paused: d.Paused, Type: d.RunnerType, Status: d.Status}
}

// CreateRunner creates a runner through POST /user/runners and returns it
// with its authentication token.
//
// The create is never repeated blindly. When it fails in a way that leaves
// its outcome unknown (5xx, 429, a transport error or timeout), CreateRunner
// waits (honouring Retry-After) and looks for a runner with spec's
// description among the user's runners of that type and tags. If one exists
// the lost answer had created it: its token, shown only in that answer, is
// reset and the runner returned with the new one. Only if none exists is the
// create sent again, at most the configured number of retries.
//
// A create still in flight on the server when the reconciling list runs can
// go unseen; the wait before the list makes that unlikely, not impossible.
func (c *Client) CreateRunner(ctx context.Context, spec RunnerSpec) (*Runner, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("create runner %q: %w", spec.Description, err)
	}
	opts := spec.createOptions()
	for attempt := 0; ; attempt++ {
		created, resp, err := c.api.Users.CreateUserRunner(opts, c.opts(ctx, http.MethodPost)...)
		if err == nil {
			return &Runner{
				ID:             created.ID,
				Token:          created.Token,
				TokenExpiresAt: created.TokenExpiresAt,
				Description:    spec.Description,
				Tags:           slices.Clone(spec.Tags),
				Paused:         spec.Paused,
				Type:           spec.Type,
				Status:         "never_contacted",
			}, nil
		}
		err = fail(http.MethodPost, "/user/runners", resp, err)
		if !outcomeUnknown(ctx, err) {
			return nil, fmt.Errorf("create runner %q: %w", spec.Description, err)
		}
		c.log.WarnContext(ctx, "gitlab: runner create outcome unknown, reconciling", "description", spec.Description, "attempt", attempt+1, "error", err)
		found, rerr := c.reconcile(ctx, spec, attempt, err)
		switch {
		case rerr != nil:
			return nil, fmt.Errorf("create runner %q: %w; reconciling: %w", spec.Description, err, rerr)
		case found != nil:
			c.log.InfoContext(ctx, "gitlab: adopted runner whose create answer was lost; token reset", "description", spec.Description, "runner_id", found.ID)
			return found, nil
		case attempt >= c.retry.max:
			return nil, fmt.Errorf("create runner %q: no runner after %d attempts: %w", spec.Description, attempt+1, err)
		}
	}
}

// reconcile waits, then looks for the runner an unanswered create may have
// made, retrying the look itself while its outcome is unknown too (the token
// reset is a POST). It returns nil, nil when no such runner exists.
func (c *Client) reconcile(ctx context.Context, spec RunnerSpec, attempt int, cause error) (*Runner, error) {
	for try := 0; ; try++ {
		if err := sleep(ctx, c.retry.waitAfter(attempt+try, cause)); err != nil {
			return nil, err
		}
		found, err := c.adopt(ctx, spec)
		if err == nil {
			return found, nil
		}
		if !outcomeUnknown(ctx, err) || try >= c.retry.max {
			return nil, err
		}
		cause = err
	}
}

// adopt finds the runner with spec's description and resets its token.
func (c *Client) adopt(ctx context.Context, spec RunnerSpec) (*Runner, error) {
	matches, err := c.findRunners(ctx, spec.Description, ListRunnersFilter{Type: spec.Type, Tags: spec.Tags})
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 0:
		return nil, nil
	case 1:
	default:
		ids := make([]int64, len(matches))
		for i, m := range matches {
			ids[i] = m.ID
		}
		return nil, fmt.Errorf("%w: runners %v are all described %q", ErrAmbiguousDescription, ids, spec.Description)
	}
	r := matches[0]
	token, expires, err := c.ResetRunnerToken(ctx, r.ID)
	if IsNotFound(err) {
		// Deleted since the list: as good as never created.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r.Token, r.TokenExpiresAt = token, expires
	return &r, nil
}

// ListRunnersFilter narrows ListRunners. Zero fields do not filter.
type ListRunnersFilter struct {
	Type   string
	Tags   []string // runners carrying all of them
	Paused *bool
}

// ListRunners lists the runners the token's user owns (GET /runners, every
// page). GET /runners never returns instance runners, so a filter for
// RunnerTypeInstance lists GET /runners/all instead, which needs an
// administrator. Tags are not filled in: GitLab's lists leave them out.
func (c *Client) ListRunners(ctx context.Context, filter ListRunnersFilter) ([]Runner, error) {
	runners, err := c.listRunners(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return runners, nil
}

func (c *Client) listRunners(ctx context.Context, filter ListRunnersFilter) ([]Runner, error) {
	opts := &gl.ListRunnersOptions{ListOptions: gl.ListOptions{PerPage: perPage}, Paused: filter.Paused}
	if filter.Type != "" {
		opts.Type = gl.Ptr(filter.Type)
	}
	if len(filter.Tags) > 0 {
		opts.TagList = gl.Ptr(slices.Clone(filter.Tags))
	}
	list, path := c.api.Runners.ListRunners, "/runners"
	if filter.Type == RunnerTypeInstance {
		list, path = c.api.Runners.ListAllRunners, "/runners/all"
	}
	found, err := collect(func(page int64) ([]*gl.Runner, *gl.Response, error) {
		opts.Page = page
		rs, resp, err := list(opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, path, resp, err)
		}
		return rs, resp, nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Runner, 0, len(found))
	for _, r := range found {
		out = append(out, runnerFromList(r))
	}
	return out, nil
}

// FindRunnersByDescription returns the project and group runners the
// token's user owns whose description is exactly description, with their
// tags. Instance runners are not searched (see ListRunners).
func (c *Client) FindRunnersByDescription(ctx context.Context, description string) ([]Runner, error) {
	found, err := c.findRunners(ctx, description, ListRunnersFilter{})
	if err != nil {
		return nil, fmt.Errorf("find runners described %q: %w", description, err)
	}
	return found, nil
}

func (c *Client) findRunners(ctx context.Context, description string, filter ListRunnersFilter) ([]Runner, error) {
	all, err := c.listRunners(ctx, filter)
	if err != nil {
		return nil, err
	}
	var out []Runner
	for _, r := range all {
		if r.Description != description {
			continue
		}
		d, resp, err := c.api.Runners.GetRunnerDetails(r.ID, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			err = fail(http.MethodGet, fmt.Sprintf("/runners/%d", r.ID), resp, err)
			if IsNotFound(err) {
				continue // deleted since the list
			}
			return nil, err
		}
		out = append(out, runnerFromDetails(d))
	}
	return out, nil
}

// DeleteRunner deletes a runner. A runner that does not exist counts as
// deleted, so the call can be repeated safely.
func (c *Client) DeleteRunner(ctx context.Context, id int64) error {
	resp, err := c.api.Runners.DeleteRegisteredRunnerByID(id, c.opts(ctx, http.MethodDelete)...)
	if err != nil {
		err = fail(http.MethodDelete, fmt.Sprintf("/runners/%d", id), resp, err)
		if IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete runner %d: %w", id, err)
	}
	return nil
}

// ResetRunnerToken gives a runner a new authentication token; the old one
// stops working. It is a POST and not retried here, but repeating it is
// harmless: the last reset's token is the valid one.
func (c *Client) ResetRunnerToken(ctx context.Context, id int64) (token string, expiresAt *time.Time, err error) {
	t, resp, err := c.api.Runners.ResetRunnerAuthenticationToken(id, c.opts(ctx, http.MethodPost)...)
	if err != nil {
		return "", nil, fmt.Errorf("reset token of runner %d: %w", id, fail(http.MethodPost, fmt.Sprintf("/runners/%d/reset_authentication_token", id), resp, err))
	}
	if t == nil || t.Token == nil || *t.Token == "" {
		return "", nil, fmt.Errorf("reset token of runner %d: answer has no token", id)
	}
	return *t.Token, t.TokenExpiresAt, nil
}

// SetRunnerPaused pauses a runner (it takes no new jobs, running ones
// finish) or resumes it.
func (c *Client) SetRunnerPaused(ctx context.Context, id int64, paused bool) error {
	_, resp, err := c.api.Runners.UpdateRunnerDetails(id, &gl.UpdateRunnerDetailsOptions{Paused: gl.Ptr(paused)}, c.opts(ctx, http.MethodPut)...)
	if err != nil {
		return fmt.Errorf("set runner %d paused=%t: %w", id, paused, fail(http.MethodPut, fmt.Sprintf("/runners/%d", id), resp, err))
	}
	return nil
}

// RunnerJobs lists the jobs assigned to a runner, newest first, with the
// given status ("running", "success", "failed", "canceled"; "" for all).
func (c *Client) RunnerJobs(ctx context.Context, id int64, status string) ([]Job, error) {
	opts := &gl.ListRunnerJobsOptions{ListOptions: gl.ListOptions{PerPage: perPage}}
	if status != "" {
		opts.Status = gl.Ptr(status)
	}
	path := fmt.Sprintf("/runners/%d/jobs", id)
	jobs, err := collect(func(page int64) ([]*gl.Job, *gl.Response, error) {
		opts.Page = page
		js, resp, err := c.api.Runners.ListRunnerJobs(id, opts, c.opts(ctx, http.MethodGet)...)
		if err != nil {
			return nil, resp, fail(http.MethodGet, path, resp, err)
		}
		return js, resp, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs of runner %d: %w", id, err)
	}
	out := make([]Job, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, jobFrom(j, 0))
	}
	return out, nil
}

// VerifyRunner checks a runner authentication token the way a runner agent
// does at start (POST /runners/verify, authenticated by the token alone),
// as the runner manager systemID: GitLab records contact from that manager
// (from `<legacy>` when systemID is empty), so a machine checks with the
// system_id its gitlab-runner sends (runnerapi.RunnerSystemID). A rejected token
// yields an error matching ErrInvalidRunnerToken and IsForbidden.
func (c *Client) VerifyRunner(ctx context.Context, token, systemID string) error {
	// client-go's VerifyRegisteredRunnerOptions has no system_id.
	opt := struct {
		Token    string `json:"token"`
		SystemID string `json:"system_id,omitempty"`
	}{token, systemID}
	req, err := c.runner.NewRequest(http.MethodPost, "runners/verify", &opt, c.opts(ctx, http.MethodPost))
	if err != nil {
		return fmt.Errorf("verify runner token: %w", err)
	}
	resp, err := c.runner.Do(req, nil)
	if err != nil {
		err = fail(http.MethodPost, "/runners/verify", resp, err)
		if IsForbidden(err) {
			return fmt.Errorf("verify runner token: %w: %w", ErrInvalidRunnerToken, err)
		}
		return fmt.Errorf("verify runner token: %w", err)
	}
	return nil
}

// RunnerAssignment is which projects a project runner takes jobs of, and
// whether it is locked to them.
type RunnerAssignment struct {
	ProjectIDs []int64
	Locked     bool
}

// RunnerProjects reads a runner's projects and lock (GET /runners/:id).
func (c *Client) RunnerProjects(ctx context.Context, id int64) (RunnerAssignment, error) {
	d, resp, err := c.api.Runners.GetRunnerDetails(id, c.opts(ctx, http.MethodGet)...)
	if err != nil {
		return RunnerAssignment{}, fmt.Errorf("read runner %d: %w", id, fail(http.MethodGet, fmt.Sprintf("/runners/%d", id), resp, err))
	}
	out := RunnerAssignment{Locked: d.Locked}
	for _, p := range d.Projects {
		out.ProjectIDs = append(out.ProjectIDs, p.ID)
	}
	return out, nil
}

// SetRunnerLocked locks a project runner to its projects (no one but an
// administrator may then enable it elsewhere) or unlocks it.
func (c *Client) SetRunnerLocked(ctx context.Context, id int64, locked bool) error {
	_, resp, err := c.api.Runners.UpdateRunnerDetails(id, &gl.UpdateRunnerDetailsOptions{Locked: gl.Ptr(locked)}, c.opts(ctx, http.MethodPut)...)
	if err != nil {
		return fmt.Errorf("set runner %d locked=%t: %w", id, locked, fail(http.MethodPut, fmt.Sprintf("/runners/%d", id), resp, err))
	}
	return nil
}

// EnableProjectRunner assigns a project runner to one more project (POST
// /projects/:id/runners), so it takes that project's jobs too. A runner
// already assigned there counts as done, so the call can be repeated. The
// runner must be unlocked unless the token is an administrator's (403),
// and a group or instance runner cannot be assigned (403).
func (c *Client) EnableProjectRunner(ctx context.Context, projectID, runnerID int64) error {
	_, resp, err := c.api.Runners.EnableProjectRunner(projectID, &gl.EnableProjectRunnerOptions{RunnerID: runnerID}, c.opts(ctx, http.MethodPost)...)
	if err == nil {
		return nil
	}
	err = fail(http.MethodPost, fmt.Sprintf("/projects/%d/runners", projectID), resp, err)
	var ae *APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest && strings.Contains(ae.Message, "already been taken") {
		return nil
	}
	return fmt.Errorf("enable runner %d in project %d: %w", runnerID, projectID, err)
}
