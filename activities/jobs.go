package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/registry"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// MotherGoose is what the sweep and the self-management jobs ask of
// MotherGoose's logic, which lives in package mothergoose (activities do
// not import it): *mothergoose.MotherGoose implements it, and the process
// that builds the worker hands it over (gosling worker, gosling dev, the
// end-to-end tests).
type MotherGoose interface {
	// SweepEgg is one pass of an egg's pending-job sweep.
	SweepEgg(ctx context.Context, in contract.SweepInput) (contract.SweepResult, error)
	// UpdateNest fetches, validates, applies and records the Nest at a ref.
	UpdateNest(ctx context.Context, in contract.NestUpdateInput) (contract.NestUpdateResult, error)
	// PoolStatusIfRunning asks an egg's pool for its status; running is
	// false when the egg has no running pool.
	PoolStatusIfRunning(ctx context.Context, egg string) (st contract.PoolStatus, running bool, err error)
	// EnsureEggRunner asks an egg and shape's EggRunner workflow for its
	// shared GitLab runner, starting the workflow when none runs.
	EnsureEggRunner(ctx context.Context, in contract.EggRunnerInput) (contract.EggRunner, error)
	// EggRunners returns the shared GitLab runners of eggs (every egg when
	// empty) that their running EggRunner workflows hold.
	EggRunners(ctx context.Context, eggs []string) ([]contract.EggRunnerOf, error)
	// AddProjectHook gives a project of a bucket's group the bucket's
	// project hook, and audits it.
	AddProjectHook(ctx context.Context, in contract.ProjectHookInput) (contract.ProjectHookResult, error)
	// SettleRunnerCost shares what a terminated runner's machine cost
	// beyond its jobs among them (mothergoose/cost.go).
	SettleRunnerCost(ctx context.Context, runnerID string) error
}

func (a *Activities) motherGoose() (MotherGoose, error) {
	if a.MotherGoose == nil {
		return nil, temporal.NewNonRetryableApplicationError("this worker was built without MotherGoose: run it with `gosling worker` or `gosling dev`", ErrTypeBadInput, nil)
	}
	return a.MotherGoose, nil
}

// SweepEgg runs one pass of an egg's sweep (mothergoose.SweepEgg).
func (a *Activities) SweepEgg(ctx context.Context, in contract.SweepInput) (contract.SweepResult, error) {
	mg, err := a.motherGoose()
	if err != nil {
		return contract.SweepResult{}, err
	}
	return mg.SweepEgg(ctx, in)
}

// AddProjectHook gives a project created in a bucket's group the bucket's
// project hook (mothergoose.AddProjectHook). Errors: GitLab's refusals of
// the request (4xx but 429) are ErrTypeGitLabRejected, not retried; others
// (GitLab's 5xx and 429, the network, the secrets) are retried.
func (a *Activities) AddProjectHook(ctx context.Context, in contract.ProjectHookInput) (contract.ProjectHookResult, error) {
	mg, err := a.motherGoose()
	if err != nil {
		return contract.ProjectHookResult{}, err
	}
	res, err := mg.AddProjectHook(ctx, in)
	var ae *gitlab.APIError
	if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 && ae.StatusCode != http.StatusTooManyRequests {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	return res, err
}

// UpdateNest runs a nest_update (mothergoose.UpdateNest).
func (a *Activities) UpdateNest(ctx context.Context, in contract.NestUpdateInput) (contract.NestUpdateResult, error) {
	mg, err := a.motherGoose()
	if err != nil {
		return contract.NestUpdateResult{}, err
	}
	return mg.UpdateNest(ctx, in)
}

// PoolRunners is a pool's status, if the pool runs.
type PoolRunners struct {
	Running bool                `json:"running"`
	Status  contract.PoolStatus `json:"status"`
}

// PoolStatus asks an egg's pool for its runners.
func (a *Activities) PoolStatus(ctx context.Context, egg string) (PoolRunners, error) {
	mg, err := a.motherGoose()
	if err != nil {
		return PoolRunners{}, err
	}
	st, running, err := mg.PoolStatusIfRunning(ctx, egg)
	return PoolRunners{Running: running, Status: st}, err
}

// JobRunAudit is the audit record of one run of a self-management job.
type JobRunAudit struct {
	At         time.Time `json:"at"`
	Job        string    `json:"job"`
	Kind       string    `json:"kind"`
	Outcome    string    `json:"outcome"`
	Summary    string    `json:"summary"`
	WorkflowID string    `json:"workflow_id"`
	RunID      string    `json:"run_id"`
}

// AuditJobRun appends a job run's record (action job-run, actor job/NAME),
// once per run even when retried.
func (a *Activities) AuditJobRun(ctx context.Context, in JobRunAudit) error {
	after, err := json.Marshal(struct {
		Kind       string `json:"kind"`
		Outcome    string `json:"outcome"`
		WorkflowID string `json:"workflow_id"`
		RunID      string `json:"run_id"`
	}{in.Kind, in.Outcome, in.WorkflowID, in.RunID})
	if err != nil {
		return err
	}
	_, err = a.Store.AppendAudit(ctx, store.AuditRecord{
		At: in.At, Actor: contract.JobActor(in.Job), Action: contract.AuditJobRun, Reason: in.Outcome + ": " + in.Summary,
		After: after, Key: "job-run/" + in.WorkflowID + "/" + in.RunID,
	})
	return err
}

// ResolveImageInput names an image and the registry login, if any.
type ResolveImageInput struct {
	Image    string        `json:"image"`
	Username string        `json:"username,omitempty"`
	Password fly.SecretRef `json:"password,omitempty"`
}

// ResolveImage returns the digest an image's tag points at now (see
// package registry). A reference that does not parse, an unknown tag and a
// refused login are not retried.
func (a *Activities) ResolveImage(ctx context.Context, in ResolveImageInput) (string, error) {
	if _, err := registry.Parse(in.Image); err != nil {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	cred := registry.Credential{Username: in.Username}
	if !in.Password.IsZero() {
		p, err := a.Secrets.Resolve(ctx, in.Password)
		if err != nil {
			return "", fmt.Errorf("the registry password: %w", err)
		}
		cred.Password = p
	}
	r := registry.Resolver{Client: &http.Client{Timeout: registry.DefaultTimeout}}
	d, err := r.Resolve(ctx, in.Image, cred)
	if errors.Is(err, registry.ErrNotFound) {
		return "", temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	return d, err
}

// imageRecord names the store record (in the policies table, versioned by
// digest) of the last digest an image update rolled out.
func imageRecord(image string) string { return "gosling/image/" + image }

// ImageDigest is the digest last recorded for an image, "" when none is.
func (a *Activities) ImageDigest(ctx context.Context, image string) (string, error) {
	ps, err := a.Store.ListPolicies(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.Name == imageRecord(image) {
			return p.Version, nil
		}
	}
	return "", nil
}

// ImageDigestRecord is an image's digest, once rolled out.
type ImageDigestRecord struct {
	Image  string `json:"image"`
	Digest string `json:"digest"`
	Job    string `json:"job"`
}

// RecordImageDigest records the digest an image update rolled out.
func (a *Activities) RecordImageDigest(ctx context.Context, in ImageDigestRecord) error {
	spec, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return a.Store.PutPolicy(ctx, store.Policy{Name: imageRecord(in.Image), Version: in.Digest, Spec: spec, UpdatedAt: time.Now().UTC()})
}

// ProjectInput names a project of a GitLab instance.
type ProjectInput struct {
	GitLab fly.GitLab     `json:"gitlab"`
	Ref    fly.ProjectRef `json:"ref"`
}

// ResolveProject reads a project named by path, for its ID.
func (a *Activities) ResolveProject(ctx context.Context, in ProjectInput) (fly.ProjectRef, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return fly.ProjectRef{}, err
	}
	var ref any = in.Ref.Path
	if in.Ref.ID != 0 {
		ref = in.Ref.ID
	}
	p, err := gl.GetProject(ctx, ref)
	if gitlab.IsNotFound(err) || gitlab.IsForbidden(err) {
		return fly.ProjectRef{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	if err != nil {
		return fly.ProjectRef{}, err
	}
	return fly.ProjectRef{ID: p.ID, Path: p.PathWithNamespace}, nil
}

// Pipeline is a pipeline's state as the custom job sees it.
type Pipeline struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
	WebURL string `json:"web_url,omitempty"`
}

func pipelineOf(p gitlab.Pipeline) Pipeline {
	return Pipeline{ID: p.ID, Status: p.Status, WebURL: p.WebURL}
}

// PipelineInput asks for a pipeline in a project.
type PipelineInput struct {
	GitLab    fly.GitLab        `json:"gitlab"`
	ProjectID int64             `json:"project_id"`
	Ref       string            `json:"ref"`
	Variables map[string]string `json:"variables"`
}

// CreatePipeline runs a pipeline (POST /projects/:id/pipeline) with the
// variables given. GitLab refusing it (no .gitlab-ci.yml, no job for the
// variables) is not retried.
func (a *Activities) CreatePipeline(ctx context.Context, in PipelineInput) (Pipeline, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return Pipeline{}, err
	}
	p, err := gl.CreatePipeline(ctx, in.ProjectID, in.Ref, in.Variables)
	var ae *gitlab.APIError
	if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 && ae.StatusCode != http.StatusTooManyRequests {
		return Pipeline{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	return pipelineOf(p), err
}

// WaitPipelineInput names a pipeline to wait for.
type WaitPipelineInput struct {
	GitLab     fly.GitLab    `json:"gitlab"`
	ProjectID  int64         `json:"project_id"`
	PipelineID int64         `json:"pipeline_id"`
	Poll       time.Duration `json:"poll"`
}

// WaitPipeline polls a pipeline (GET /projects/:id/pipelines/:id) every
// Poll, heartbeating its status, until it ends (success, failed, canceled,
// skipped) or the activity's deadline passes. A read that fails is tried
// again at the next poll.
func (a *Activities) WaitPipeline(ctx context.Context, in WaitPipelineInput) (Pipeline, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return Pipeline{}, err
	}
	poll := in.Poll
	if poll <= 0 {
		poll = 10 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	var last gitlab.Pipeline
	for {
		p, err := gl.GetPipeline(ctx, in.ProjectID, in.PipelineID)
		switch {
		case gitlab.IsNotFound(err):
			return pipelineOf(last), temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
		case err == nil:
			last = p
			if p.Finished() {
				return pipelineOf(p), nil
			}
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, last.Status)
		}
		select {
		case <-ctx.Done():
			return pipelineOf(last), fmt.Errorf("pipeline %d is still %s: %w", in.PipelineID, last.Status, ctx.Err())
		case <-t.C:
		}
	}
}
