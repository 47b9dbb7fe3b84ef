// Package activities holds every side effect of Gosling's workflows: the
// store, GitLab, secrets and OpenTofu. Workflows call the methods of
// Activities through a nil pointer, so calls are type-checked.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/runnerid"
	"github.com/gosling-ci/gosling/internal/secretstore"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Error types that retrying cannot fix; workflows match them by name.
const (
	ErrTypeGitLabRejected = "GitLabRejected"
	ErrTypeBadInput       = "BadInput"
	// ErrTypeIllegalState is also what starters of a workflow see
	// (contract.ErrTypeIllegalState).
	ErrTypeIllegalState = contract.ErrTypeIllegalState
)

// AgentSettings say how machines get their agent and where it reports.
// They hold no Temporal address or credential: agents report to
// MotherGoose's API only, with their runner's token.
type AgentSettings struct {
	// Deployment names the deployment on every machine's labels
	// (agentapi.Config.Deployment; MG/config.fly's api_gateway.name).
	Deployment string
	// Binary is the gosling binary local machines run.
	Binary string
	// GitLabRunner is the gitlab-runner local machines run (a path, or a
	// name looked up in PATH; in `gosling dev`, the stand-in's wrapper).
	GitLabRunner string
	// SecretsDir is the local secret backend local agents read tokens from.
	SecretsDir string
	// DevSecrets makes local agents read every scheme from SecretsDir, as
	// `gosling dev` seeds it.
	DevSecrets bool
	// Secrets is MG/config.fly's secrets block: cloud agents open the same
	// backends, authenticated as their machine.
	Secrets          fly.Secrets
	HeartbeatSeconds int
	// Release is MG/config.fly's agent block: where cloud VMs download
	// gosling (URL), what serverless containers run (Image), and the
	// versions pinned for gosling and gitlab-runner.
	Release fly.AgentRelease
	// APIURL is MotherGoose's API as the machines reach it; agents report
	// ready, heartbeats and jobs there.
	APIURL string
	// RiftURL is the control API of the Rift Gosling runs (`gosling rift
	// serve`), for eggs whose rift block names no endpoint; RiftCA is the
	// PEM of the CA its certificate is issued by (empty: the system's).
	RiftURL string
	RiftCA  string
}

// Activities holds the dependencies of every activity.
type Activities struct {
	// Inventories list and end the machines each cloud holds by their
	// labels (inventory.go): reconciliation and teardowns use them.
	Inventories []Inventory
	Store       store.Store
	Secrets     *secretstore.Resolver
	Tofu        *tofu.Executor
	Agent       AgentSettings
	// EggTokenRef names where a new runner's token goes: its egg's own
	// secret (EggTokenRefs). TokenRef names where a runner recorded
	// without a token reference kept it (TokenRefs).
	EggTokenRef func(ctx context.Context, egg, runnerID string) (fly.SecretRef, error)
	TokenRef    func(runnerID string) fly.SecretRef
	// GitLabOptions are passed to every GitLab client (tests shorten retries).
	GitLabOptions []gitlab.Option
	Logger        *slog.Logger
	// Metrics, when set, observes lifecycle transitions and provisioning
	// times.
	Metrics *metrics.Metrics
	// Simulate, set only by fleet benchmarks, replaces machines with
	// SimulatedMachines.
	Simulate *SimulatedMachines
	// MotherGoose, when set, is MotherGoose's logic for the activities
	// that need it (the sweep, nest_update, pool status); see
	// MotherGoose in jobs.go.
	MotherGoose MotherGoose
	// Invokers reach serverless runners (InvokeRunner).
	Invokers Invokers
	// Identities find each cloud's runner identities (by fly cloud
	// name): every cloud machine runs as its egg's.
	Identities map[string]IdentitySource
	// Power starts and stops VMs of the clouds whose OpenTofu provider
	// cannot (by fly cloud name: Yandex Compute Cloud).
	Power map[string]PowerControl

	mu      sync.Mutex
	clients map[string]*gitlab.Client
}

// gitlabClient returns a client for an egg's GitLab, resolving its API token.
func (a *Activities) gitlabClient(ctx context.Context, g fly.GitLab) (*gitlab.Client, error) {
	token, err := a.Secrets.Resolve(ctx, g.Token)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("GitLab API token for %s", g.Host), ErrTypeBadInput, err)
	}
	key := g.BaseURL() + "\x00" + string(g.Token) + "\x00" + token
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[key]; ok {
		return c, nil
	}
	opts := append([]gitlab.Option{gitlab.WithLogger(a.logger())}, a.GitLabOptions...)
	c, err := gitlab.New(g.BaseURL(), token, opts...)
	if err != nil {
		return nil, err
	}
	if a.clients == nil {
		a.clients = map[string]*gitlab.Client{}
	}
	a.clients[key] = c
	return c, nil
}

func (a *Activities) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// RecordRunnerInput creates a runner's store record.
type RecordRunnerInput struct {
	Runner store.Runner `json:"runner"`
}

// RecordRunner creates the runner's record in state provisioning and
// audits it (provisioned). A retry that finds the record already there
// succeeds.
func (a *Activities) RecordRunner(ctx context.Context, in RecordRunnerInput) error {
	r := in.Runner
	r.State = store.StateProvisioning
	err := a.Store.CreateRunner(ctx, &r)
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	reason := "for the pool of " + r.Egg
	if r.JobID != 0 {
		reason = fmt.Sprintf("for job %d", r.JobID)
	}
	if r.Reason != "" {
		reason = r.Reason
	}
	a.auditLifecycle(ctx, store.AuditRecord{At: r.CreatedAt, Actor: contract.ActorMotherGoose, Action: AuditProvisioned, Egg: r.Egg, RunnerID: r.ID,
		Reason: reason, After: stateJSON(r.State), Key: "runner/" + r.ID + "/created"})
	return nil
}

// Lifecycle audit actions: each runner transition is one record, named by
// what it means (lifecycleAction).
const (
	AuditProvisioned = "provisioned"
	AuditRegistered  = "registered"
	AuditReady       = "ready"
	AuditPromoted    = "promoted"
	AuditDemoted     = "demoted"
	AuditResumed     = "resumed"
	AuditDrained     = "drained"
	AuditFailed      = "failed"
	AuditTerminating = "terminating"
	AuditTerminated  = "terminated"
	AuditReaped      = "reaped"
)

// lifecycleAction names a transition: registered (the GitLab runner is
// made, the machine follows), ready (its agent reported), promoted (Nadir
// to Apex), demoted (to Nadir), resumed (a drain undone), drained,
// failed, terminating, terminated, and reaped (terminated by UglyFox's
// reconciliation, which found nothing left of it).
func lifecycleAction(from, to store.RunnerState, policy string) string {
	switch {
	case to == store.StateRegistering:
		return AuditRegistered
	case from == store.StateRegistering && (to == store.StateActive || to == store.StateDormant):
		return AuditReady
	case from == store.StateDormant && to == store.StateActive:
		return AuditPromoted
	case from == store.StateDraining && to == store.StateActive:
		return AuditResumed
	case to == store.StateDormant:
		return AuditDemoted
	case to == store.StateDraining:
		return AuditDrained
	case to == store.StateFailed:
		return AuditFailed
	case to == store.StateTerminating:
		return AuditTerminating
	case to == store.StateTerminated && policy == contract.PolicyReconcile:
		return AuditReaped
	}
	return string(to)
}

// IsLifecycleAction tells whether an audit action is a runner lifecycle
// record (provisioned or a transition) rather than a decision or request.
func IsLifecycleAction(action string) bool {
	switch action {
	case AuditProvisioned, AuditRegistered, AuditReady, AuditPromoted, AuditDemoted, AuditResumed,
		AuditDrained, AuditFailed, AuditTerminating, AuditTerminated, AuditReaped:
		return true
	}
	return false
}

func stateJSON(s store.RunnerState) json.RawMessage {
	b, _ := json.Marshal(AuditState{State: s})
	return b
}

// auditLifecycle appends a lifecycle record. The transition it describes
// is already made, so a failure is logged, not returned: retrying the
// activity would find the runner moved and audit nothing.
func (a *Activities) auditLifecycle(ctx context.Context, rec store.AuditRecord) {
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	if _, err := a.Store.AppendAudit(ctx, rec); err != nil {
		a.logger().WarnContext(ctx, "audit record not written", "action", rec.Action, "runner", rec.RunnerID, "error", err)
	}
}

// TransitionInput moves a runner to a state, optionally recording fields.
type TransitionInput struct {
	RunnerID       string            `json:"runner_id"`
	To             store.RunnerState `json:"to"`
	Reason         string            `json:"reason"`
	Actor          string            `json:"actor"`
	GitLabRunnerID int64             `json:"gitlab_runner_id,omitempty"`
	TokenRef       string            `json:"token_ref,omitempty"`
	Workspace      string            `json:"workspace,omitempty"`
	Heartbeat      bool              `json:"heartbeat,omitempty"`
	// Policy is the UglyFox policy that asked for the move, if any; the
	// audit record names it.
	Policy string `json:"policy,omitempty"`
}

// TransitionRunner records a lifecycle transition and audits it with the
// actor, the reason and the states before and after; a runner terminated
// has its cost settled (MotherGoose.SettleRunnerCost). An illegal one is
// not retried.
func (a *Activities) TransitionRunner(ctx context.Context, in TransitionInput) (store.Runner, error) {
	var from store.RunnerState
	r, err := a.Store.Transition(ctx, store.TransitionRequest{
		RunnerID: in.RunnerID, To: in.To, Reason: in.Reason, Actor: in.Actor,
		Update: func(r *store.Runner) {
			from = r.State
			if in.GitLabRunnerID != 0 {
				r.GitLabRunnerID = in.GitLabRunnerID
			}
			if in.TokenRef != "" {
				r.TokenRef = in.TokenRef
			}
			if in.Workspace != "" {
				r.Workspace = in.Workspace
			}
			if in.Heartbeat {
				now := time.Now().UTC()
				r.LastHeartbeat = &now
			}
		},
	})
	if errors.Is(err, store.ErrIllegalTransition) {
		return store.Runner{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeIllegalState, err)
	}
	if err != nil {
		return store.Runner{}, err
	}
	if from != "" && from != r.State {
		a.auditLifecycle(ctx, store.AuditRecord{Actor: in.Actor, Action: lifecycleAction(from, r.State, in.Policy), Egg: r.Egg, RunnerID: r.ID,
			Policy: in.Policy, Reason: in.Reason, Before: stateJSON(from), After: stateJSON(r.State),
			Key: fmt.Sprintf("runner/%s/%d", r.ID, r.Version)})
	}
	if r.State == store.StateTerminated && from != "" && from != r.State && a.MotherGoose != nil {
		// What the machine cost is settled now it is gone; like the audit,
		// a failure is logged: the transition is made.
		if err := a.MotherGoose.SettleRunnerCost(ctx, r.ID); err != nil {
			a.logger().WarnContext(ctx, "runner cost not settled", "runner", r.ID, "error", err)
		}
	}
	if a.Metrics != nil && from != "" && from != r.State {
		a.Metrics.ObserveTransition(string(from), string(r.State))
		if r.State == store.StateActive && (from == store.StateRegistering || from == store.StateProvisioning) {
			a.Metrics.ObserveProvision(r.Egg, r.Cloud, r.Kind, time.Since(r.CreatedAt))
		}
	}
	return *r, nil
}

// GetRunner reads a runner's record.
func (a *Activities) GetRunner(ctx context.Context, id string) (store.Runner, error) {
	r, err := a.Store.GetRunner(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Runner{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	if err != nil {
		return store.Runner{}, err
	}
	return *r, nil
}

// CreateGitLabRunnerInput says what runner to register in GitLab.
type CreateGitLabRunnerInput struct {
	RunnerID string `json:"runner_id"`
	Egg      string `json:"egg"`
	// Cloud decides where the token is kept: the local provider's machines
	// read the local store; cloud machines, the configured backend.
	Cloud       string     `json:"cloud,omitempty"`
	GitLab      fly.GitLab `json:"gitlab"`
	ProjectID   int64      `json:"project_id,omitempty"`
	ProjectPath string     `json:"project_path,omitempty"`
	GroupID     int64      `json:"group_id,omitempty"`
	Description string     `json:"description"`
	Tags        []string   `json:"tags"`
	RunUntagged bool       `json:"run_untagged"`
	// Paused registers the runner paused (a dormant runner takes no jobs).
	Paused         bool          `json:"paused,omitempty"`
	MaximumTimeout time.Duration `json:"maximum_timeout,omitempty"`
	// Secrets are the other secrets the runner will need (its jobs'
	// secret variables): a missing one fails the runner before anything
	// is made.
	Secrets []fly.SecretRef `json:"secrets,omitempty"`

	// Projects are every project a pooled runner of a bucket (or of an egg
	// named by path) must take jobs of: the runner is created in the first
	// one GitLab resolves and enabled in the others. ProjectID and
	// ProjectPath, when set, name the first.
	Projects []fly.ProjectRef `json:"projects,omitempty"`
}

// CreateGitLabRunnerResult names the registered runner and where its token is.
type CreateGitLabRunnerResult struct {
	GitLabRunnerID int64  `json:"gitlab_runner_id"`
	TokenRef       string `json:"token_ref"`
	// TokenExpiresAt is GitLab's token_expires_at for the token; nil when
	// it never expires.
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
}

// CreateGitLabRunner registers the runner in GitLab and writes its token
// straight to the secret backend, in one activity, so the token never
// enters workflow history. A retry first looks for the runner by its unique
// description and, if found, resets its token instead of making another.
func (a *Activities) CreateGitLabRunner(ctx context.Context, in CreateGitLabRunnerInput) (CreateGitLabRunnerResult, error) {
	if err := a.checkRunnerSecrets(ctx, in.Secrets); err != nil {
		return CreateGitLabRunnerResult{}, err
	}
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return CreateGitLabRunnerResult{}, err
	}
	ref := LocalTokenRef(in.RunnerID)
	if in.Cloud != fly.CloudLocal {
		if ref, err = a.tokenRefFor(ctx, in.Egg, in.RunnerID); err != nil {
			return CreateGitLabRunnerResult{}, err
		}
	}
	var projects []int64
	if in.GroupID == 0 {
		refs := in.Projects
		if in.ProjectID != 0 || in.ProjectPath != "" {
			refs = append([]fly.ProjectRef{{ID: in.ProjectID, Path: in.ProjectPath}}, refs...)
		}
		if projects, err = a.resolveProjects(ctx, gl, refs); err != nil {
			return CreateGitLabRunnerResult{}, err
		}
	}
	existing, err := gl.FindRunnersByDescription(ctx, in.Description)
	if err != nil {
		return CreateGitLabRunnerResult{}, fmt.Errorf("look for runner %s in GitLab: %w", in.Description, err)
	}
	var id int64
	var token string
	var expires *time.Time
	if len(existing) > 0 {
		id = existing[0].ID
		for _, extra := range existing[1:] {
			_ = gl.DeleteRunner(ctx, extra.ID)
		}
		token, expires, err = gl.ResetRunnerToken(ctx, id)
		if err != nil {
			return CreateGitLabRunnerResult{}, fmt.Errorf("reset token of runner %d: %w", id, err)
		}
	} else {
		// A runner for several projects is created unlocked, enabled in
		// the others, then locked (GitLab lets only administrators enable
		// a locked runner).
		spec := gitlab.RunnerSpec{
			Description: in.Description, Tags: in.Tags, RunUntagged: in.RunUntagged,
			Paused: in.Paused, Locked: len(projects) <= 1, MaximumTimeout: in.MaximumTimeout,
		}
		switch {
		case in.GroupID != 0:
			spec.Type, spec.GroupID = "group_type", in.GroupID
		case len(projects) > 0:
			spec.Type, spec.ProjectID = "project_type", projects[0]
		default:
			return CreateGitLabRunnerResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("runner %s has no project GitLab resolves and no group", in.RunnerID), ErrTypeBadInput, nil)
		}
		r, err := gl.CreateRunner(ctx, spec)
		if err != nil {
			if gitlab.IsForbidden(err) || isBadRequest(err) {
				return CreateGitLabRunnerResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
			}
			return CreateGitLabRunnerResult{}, fmt.Errorf("create runner %s in GitLab: %w", in.Description, err)
		}
		id, token, expires = r.ID, r.Token, r.TokenExpiresAt
	}
	// Written before the projects are assigned: a failure from here on
	// leaves a runner whose token the compensation can find and delete.
	if _, err := a.Secrets.Put(ctx, ref, token); err != nil {
		return CreateGitLabRunnerResult{}, fmt.Errorf("store token of runner %s: %w", in.RunnerID, err)
	}
	out := CreateGitLabRunnerResult{GitLabRunnerID: id, TokenRef: string(ref), TokenExpiresAt: expires}
	if len(projects) > 1 {
		if err := assignProjects(ctx, gl, id, projects); err != nil {
			return out, err
		}
	}
	return out, nil
}

// tokenRefFor is where the token of a new runner of egg goes. An egg
// without its secret is refused before GitLab is asked for a runner.
func (a *Activities) tokenRefFor(ctx context.Context, egg, runnerID string) (fly.SecretRef, error) {
	if a.EggTokenRef == nil {
		return a.TokenRef(runnerID), nil
	}
	ref, err := a.EggTokenRef(ctx, egg, runnerID)
	if errors.Is(err, tofu.ErrNoIdentity) {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("the token of runner %s: %v", runnerID, err), ErrTypeBadInput, err)
	}
	if err != nil {
		return "", fmt.Errorf("where the token of runner %s goes: %w", runnerID, err)
	}
	return ref, nil
}

// checkRunnerSecrets checks that a runner's secrets exist and may be
// read; a missing one (or one refused) is non-retryable ErrTypeBadInput.
func (a *Activities) checkRunnerSecrets(ctx context.Context, refs []fly.SecretRef) error {
	err := a.Secrets.Check(ctx, refs...)
	if err == nil {
		return nil
	}
	for _, missing := range []error{secretstore.ErrNotFound, secretstore.ErrKeyNotFound, secretstore.ErrVersion, secretstore.ErrPermission, secretstore.ErrNoBackend, secretstore.ErrAuth} {
		if errors.Is(err, missing) {
			return temporal.NewNonRetryableApplicationError("the runner's secrets: "+err.Error(), ErrTypeBadInput, err)
		}
	}
	return fmt.Errorf("the runner's secrets: %w", err)
}

// resolveProjects turns project listings into IDs, in order and without
// repeats: an ID as it is, a path through GET /projects/:path (GitLab
// follows the redirect of a renamed or transferred project). A path GitLab
// does not resolve is left out and logged; other failures are returned for
// a retry.
func (a *Activities) resolveProjects(ctx context.Context, gl *gitlab.Client, refs []fly.ProjectRef) ([]int64, error) {
	var ids []int64
	for _, ref := range refs {
		id := ref.ID
		if id == 0 && ref.Path != "" {
			p, err := gl.GetProject(ctx, ref.Path)
			if gitlab.IsNotFound(err) || gitlab.IsForbidden(err) {
				a.logger().WarnContext(ctx, "project path does not resolve; the runner is not assigned to it", "path", ref.Path, "error", err)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("resolve project %s: %w", ref.Path, err)
			}
			id = p.ID
		}
		if id != 0 && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// assignProjects enables a project runner in every project it is not in
// yet (POST /projects/:id/runners), unlocking it for that and locking it
// again: GitLab lets only administrators enable a locked runner.
func assignProjects(ctx context.Context, gl *gitlab.Client, runnerID int64, projects []int64) error {
	cur, err := gl.RunnerProjects(ctx, runnerID)
	if err != nil {
		return err
	}
	var missing []int64
	for _, id := range projects {
		if !slices.Contains(cur.ProjectIDs, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 && cur.Locked {
		return nil
	}
	if cur.Locked {
		if err := gl.SetRunnerLocked(ctx, runnerID, false); err != nil {
			return err
		}
	}
	for _, id := range missing {
		if err := gl.EnableProjectRunner(ctx, id, runnerID); err != nil {
			if gitlab.IsForbidden(err) {
				return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
			}
			return err
		}
	}
	return gl.SetRunnerLocked(ctx, runnerID, true)
}

// AssignRunnerProjectsInput names a pooled project runner and every
// project it must take jobs of.
type AssignRunnerProjectsInput struct {
	GitLab         fly.GitLab       `json:"gitlab"`
	GitLabRunnerID int64            `json:"gitlab_runner_id"`
	Projects       []fly.ProjectRef `json:"projects"`
}

// AssignRunnerProjects keeps a pooled project runner in step with its
// bucket: it is enabled in every listed project it is not in yet (paths
// resolved through the API) and locked again; projects it is in are left,
// so jobs it runs are not cut off. It returns the IDs of the projects
// listed that GitLab resolved.
func (a *Activities) AssignRunnerProjects(ctx context.Context, in AssignRunnerProjectsInput) ([]int64, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return nil, err
	}
	projects, err := a.resolveProjects(ctx, gl, in.Projects)
	if err != nil {
		return nil, err
	}
	if len(projects) == 0 {
		return projects, nil
	}
	if err := assignProjects(ctx, gl, in.GitLabRunnerID, projects); err != nil {
		return nil, fmt.Errorf("assign runner %d to its projects: %w", in.GitLabRunnerID, err)
	}
	return projects, nil
}

func isBadRequest(err error) bool {
	var ae *gitlab.APIError
	return errors.As(err, &ae) && ae.StatusCode == 400
}

// JobTagsInput names a GitLab job.
type JobTagsInput struct {
	GitLab    fly.GitLab `json:"gitlab"`
	ProjectID int64      `json:"project_id"`
	JobID     int64      `json:"job_id"`
}

// JobTags reads a job's tags from the Jobs API: job webhooks do not carry
// them. Workflows since JobInfo call that instead; JobTags stays for the
// histories that called it.
func (a *Activities) JobTags(ctx context.Context, in JobTagsInput) ([]string, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return nil, err
	}
	tags, err := gl.JobTags(ctx, in.ProjectID, in.JobID)
	if gitlab.IsNotFound(err) || gitlab.IsForbidden(err) {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read tags of job %d: %w", in.JobID, err)
	}
	if tags == nil {
		tags = []string{}
	}
	return tags, nil
}

// JobInfoInput names a GitLab job.
type JobInfoInput struct {
	GitLab    fly.GitLab `json:"gitlab"`
	ProjectID int64      `json:"project_id"`
	JobID     int64      `json:"job_id"`
}

// JobInfo is what the Jobs API says of a job now (GET
// /projects/:id/jobs/:job_id): its status and tags.
type JobInfo struct {
	Status string   `json:"status"`
	Tags   []string `json:"tags"`
}

// NeedsRunner tells whether the job still waits for a runner: GitLab
// hands a job to a runner only while it is pending, and hooks arrive late,
// so a job may be running or over by the time its pending is acted on.
func (j JobInfo) NeedsRunner() bool { return j.Status == "pending" }

// JobInfo reads a job's current status and tags from the Jobs API: job
// webhooks carry no tags, and may be late. A job GitLab does not show
// (404, 403) is a non-retryable ErrTypeGitLabRejected.
func (a *Activities) JobInfo(ctx context.Context, in JobInfoInput) (JobInfo, error) {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return JobInfo{}, err
	}
	j, err := gl.GetJob(ctx, in.ProjectID, in.JobID)
	if gitlab.IsNotFound(err) || gitlab.IsForbidden(err) {
		return JobInfo{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	}
	if err != nil {
		return JobInfo{}, fmt.Errorf("read job %d: %w", in.JobID, err)
	}
	info := JobInfo{Status: j.Status, Tags: j.TagList}
	if info.Tags == nil {
		info.Tags = []string{}
	}
	return info, nil
}

// DeleteGitLabRunnerInput names a runner to remove from GitLab: by ID, or by
// its description when the ID was never learned.
type DeleteGitLabRunnerInput struct {
	GitLab         fly.GitLab `json:"gitlab"`
	GitLabRunnerID int64      `json:"gitlab_runner_id,omitempty"`
	Description    string     `json:"description"`
}

// DeleteGitLabRunner removes the runner from GitLab; a runner already gone
// counts as removed.
func (a *Activities) DeleteGitLabRunner(ctx context.Context, in DeleteGitLabRunnerInput) error {
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return err
	}
	ids := []int64{}
	if in.GitLabRunnerID != 0 {
		ids = append(ids, in.GitLabRunnerID)
	}
	if in.Description != "" {
		found, err := gl.FindRunnersByDescription(ctx, in.Description)
		if err != nil {
			return err
		}
		for _, r := range found {
			if r.ID != in.GitLabRunnerID {
				ids = append(ids, r.ID)
			}
		}
	}
	for _, id := range ids {
		if err := gl.DeleteRunner(ctx, id); err != nil {
			return fmt.Errorf("delete GitLab runner %d: %w", id, err)
		}
	}
	return nil
}

// DeleteRunnerTokenInput names a token to delete; an empty ref means the
// runner's default location.
type DeleteRunnerTokenInput struct {
	RunnerID string `json:"runner_id"`
	TokenRef string `json:"token_ref,omitempty"`
}

// DeleteRunnerToken removes the runner's token from the secret backend.
func (a *Activities) DeleteRunnerToken(ctx context.Context, in DeleteRunnerTokenInput) error {
	ref := fly.SecretRef(in.TokenRef)
	if ref == "" {
		ref = a.TokenRef(in.RunnerID)
	}
	return a.Secrets.Delete(ctx, ref)
}

// ApplyMachineInput describes the machine of one runner.
type ApplyMachineInput struct {
	RunnerID string       `json:"runner_id"`
	Egg      fly.Egg      `json:"egg"`
	Cloud    string       `json:"cloud"`
	Kind     string       `json:"kind"`
	Running  bool         `json:"running"`
	Provider fly.Provider `json:"provider"`
	// Capacity is the capacity type the machine is bought as
	// (fly.CapacityOnDemand when empty); Zone, when set, replaces the
	// provider's zone (Yandex Cloud) or picks the subnet in that
	// Availability Zone (AWS).
	Capacity string `json:"capacity,omitempty"`
	Zone     string `json:"zone,omitempty"`
	TokenRef string `json:"token_ref"`
	// AgentRef names the machine's agent credential (MintAgentCredential);
	// empty reads it from the runner's record.
	AgentRef      string `json:"agent_ref,omitempty"`
	MaxRunMinutes int    `json:"max_run_minutes,omitempty"`
	// OneJob makes a VM's gitlab-runner take one job and no other
	// (run-single --max-builds 1), for a VM made for one job; serverless
	// runners always do.
	OneJob bool `json:"one_job,omitempty"`
	// ReadyWorkflowID is the workflow that waits for the agent's ready
	// report. Agents no longer signal it themselves (MotherGoose does,
	// from the runner's record); it stays for recorded histories.
	ReadyWorkflowID string `json:"ready_workflow_id"`
}

// ApplyMachineResult describes the applied machine.
type ApplyMachineResult struct {
	Workspace string         `json:"workspace"`
	Outputs   map[string]any `json:"outputs"`
	Seconds   float64        `json:"seconds"`
}

// ApplyMachine applies the module of the runner's cloud and kind in the
// runner's own workspace, heartbeating with OpenTofu's output. A module
// that needs what MG/config.fly does not give (agent.url for cloud VMs,
// agent.image for serverless containers) is refused before anything is
// applied, with a non-retryable error that says what to set.
func (a *Activities) ApplyMachine(ctx context.Context, in ApplyMachineInput) (ApplyMachineResult, error) {
	if a.Simulate != nil {
		return a.Simulate.apply(ctx, in)
	}
	if err := a.fillAgentRef(ctx, &in); err != nil {
		return ApplyMachineResult{}, err
	}
	state := tofu.PowerStopped
	if in.Running {
		state = tofu.PowerRunning
	}
	r := in.Egg.Runner
	rel := a.Agent.Release
	m := tofu.Machine{
		RunnerID: in.RunnerID, Egg: in.Egg.Name, Deployment: a.Agent.Deployment, Cloud: in.Cloud, Kind: in.Kind, State: state,
		CPU: r.CPU, MemoryMiB: tofu.MiB(r.Memory), DiskGiB: tofu.GiB(r.Disk), MaxRunMinutes: in.MaxRunMinutes,
		GitLabURL: in.Egg.GitLab.BaseURL(), TokenRef: in.TokenRef, Agent: a.agentConfig(in),
		AgentBinary: a.Agent.Binary, StateDir: a.Tofu.StateDir(),
		AgentURL: rel.URL, AgentVersion: rel.Version, AgentImage: rel.Image,
		RunnerVersion: rel.GitLabRunnerVersion, RunnerURL: rel.GitLabRunnerURL, Provider: in.Provider,
		Lambda:   in.Cloud == fly.CloudAWS && in.Kind == fly.RunnerServerless && r.OnLambda(),
		Capacity: in.Capacity, Zone: in.Zone,
	}
	if _, err := m.Contract(); err != nil {
		return ApplyMachineResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("machine of runner %s (%s/%s): %v", in.RunnerID, in.Cloud, in.Kind, err), ErrTypeBadInput, err)
	}
	if in.Cloud != fly.CloudLocal {
		id, err := a.runnerIdentity(ctx, in.Cloud, in.Egg.Name)
		if err != nil {
			return ApplyMachineResult{}, err
		}
		m.Identity = id
	}
	vars, err := m.Variables()
	if err != nil {
		return ApplyMachineResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("machine of runner %s (%s/%s): %v", in.RunnerID, in.Cloud, in.Kind, err), ErrTypeBadInput, err)
	}
	mod := m.Module()
	mod.Source = r.Module
	onLine, locks, stop := heartbeater(ctx)
	defer stop()
	res, err := a.Tofu.Apply(ctx, tofu.ApplyRequest{
		Workspace: in.RunnerID, Module: mod, Vars: vars,
		Labels: map[string]string{"runner": in.RunnerID, "egg": in.Egg.Name, "cloud": in.Cloud, "kind": in.Kind},
		OnLine: onLine, Locks: locks,
	})
	if err != nil {
		return ApplyMachineResult{}, CapacityError(in.Cloud, err)
	}
	// Where the module cannot say whether the machine runs (a Compute
	// Cloud instance has no power state in OpenTofu), the cloud's API
	// starts or stops it, the operation awaited.
	if pc, ok := a.Power[in.Cloud]; ok && in.Kind == fly.RunnerVM {
		id, _ := res.Outputs["machine_id"].(string)
		if id == "" {
			return ApplyMachineResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("the machine of runner %s has no machine_id output to power", in.RunnerID), ErrTypeBadInput, nil)
		}
		if err := pc.SetPower(ctx, id, in.Running); err != nil {
			return ApplyMachineResult{}, fmt.Errorf("power %s machine %s %s: %w", in.Cloud, id, state, err)
		}
		res.Outputs["state"] = state
	}
	return ApplyMachineResult{Workspace: in.RunnerID, Outputs: res.Outputs, Seconds: res.Duration.Seconds()}, nil
}

// runnerIdentity finds the egg's runner identity on a cloud. None there is
// a non-retryable error that says to run gosling deploy: the machine is
// refused before anything is applied.
func (a *Activities) runnerIdentity(ctx context.Context, cloud, egg string) (tofu.Identity, error) {
	src, ok := a.Identities[cloud]
	if !ok {
		err := fmt.Errorf("%w: this worker has no client for cloud %s (MG/config.fly names no provider %q)", tofu.ErrNoIdentity, cloud, cloud)
		return tofu.Identity{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	id, err := src.RunnerIdentity(ctx, egg)
	if errors.Is(err, tofu.ErrNoIdentity) {
		return tofu.Identity{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("egg %s on %s: %v", egg, cloud, err), ErrTypeBadInput, err)
	}
	if err != nil {
		return tofu.Identity{}, fmt.Errorf("look up the runner identity of egg %s on %s: %w", egg, cloud, err)
	}
	return id, nil
}

// IdentitySource finds an egg's runner identity on one cloud, which
// gosling deploy makes (internal/machines).
type IdentitySource interface {
	// RunnerIdentity returns the egg's identity; none is an error wrapping
	// tofu.ErrNoIdentity.
	RunnerIdentity(ctx context.Context, egg string) (tofu.Identity, error)
}

// PowerControl starts (running) and stops a VM through its cloud's API,
// waiting for the operation's end; a VM already in that state is no error.
type PowerControl interface {
	SetPower(ctx context.Context, machineID string, running bool) error
}

// fillAgentRef reads the machine's agent credential's URI from the
// runner's record when the input does not name it.
func (a *Activities) fillAgentRef(ctx context.Context, in *ApplyMachineInput) error {
	if in.AgentRef != "" || a.Store == nil {
		return nil
	}
	r, err := a.Store.GetRunner(ctx, in.RunnerID)
	switch {
	case err == nil:
		in.AgentRef = r.AgentRef
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read runner %s: %w", in.RunnerID, err)
	}
	return nil
}

// agentConfig is the configuration of the machine's agent. Local machines
// run the shell executor with the configured gitlab-runner and read the
// local secret store; cloud VMs run the docker executor with the egg's
// image and open the Nest's secret backends as the machine; serverless
// containers run the shell executor in the runner image, one job each, as
// VMs made for one job (OneJob) do.
func (a *Activities) agentConfig(in ApplyMachineInput) agentapi.Config {
	r := in.Egg.Runner
	cfg := agentapi.Config{
		RunnerID: in.RunnerID, Egg: in.Egg.Name, Deployment: a.Agent.Deployment, GitLabURL: in.Egg.GitLab.BaseURL(), TokenRef: in.TokenRef,
		AgentRef: in.AgentRef, HeartbeatSeconds: a.Agent.HeartbeatSeconds, APIURL: a.Agent.APIURL,
		Runner: agentapi.RunnerConfig{Executor: agentapi.ExecutorShell, Image: r.Image, Concurrent: max(1, r.JobsPerRunner), Env: r.Env},
	}
	if rf := in.Egg.Rift; rf != nil && rf.Enabled {
		u := rf.Endpoint
		if u == "" {
			u = a.Agent.RiftURL
		}
		if u != "" {
			cfg.Runner.Rift = &agentapi.RiftConfig{URL: u, CA: a.Agent.RiftCA}
		}
	}
	// A machine bought as spot or preemptible watches for its cloud's
	// interruption notice (the instance metadata on EC2).
	if capacity := fly.MachineCapacity(in.Cloud, in.Kind, in.Cloud == fly.CloudAWS && in.Kind == fly.RunnerServerless && r.OnLambda(), in.Capacity); capacity != fly.CapacityOnDemand {
		cfg.Interrupt = &agentapi.InterruptConfig{Capacity: capacity}
		if in.Cloud == fly.CloudAWS && in.Kind == fly.RunnerVM {
			cfg.Interrupt.MetadataURL = agent.DefaultMetadataURL
		}
	}
	if in.Kind == fly.RunnerServerless || in.OneJob {
		cfg.Runner.Mode = agentapi.ModeSingle
		cfg.Runner.Concurrent = 1
		cfg.Runner.WaitTimeoutSeconds = int(agent.DefaultWaitTimeout / time.Second)
	}
	if in.Cloud == fly.CloudLocal {
		cfg.SecretsDir, cfg.DevSecrets = a.Agent.SecretsDir, a.Agent.DevSecrets
		cfg.Runner.Binary = a.Agent.GitLabRunner
		return cfg
	}
	secretsCfg := a.Agent.Secrets
	cfg.Secrets = &secretsCfg
	if in.Kind == fly.RunnerVM {
		cfg.Runner.Executor = agentapi.ExecutorDocker
		cfg.Runner.ListenAddress = agent.DefaultListenAddress
	}
	return cfg
}

// DestroyMachineInput names a runner's workspace.
type DestroyMachineInput struct {
	RunnerID  string `json:"runner_id"`
	Workspace string `json:"workspace,omitempty"`
}

// DestroyMachine destroys everything the runner's workspace made. A
// workspace that never existed is already destroyed.
func (a *Activities) DestroyMachine(ctx context.Context, in DestroyMachineInput) error {
	if a.Simulate != nil {
		return a.Simulate.destroy(ctx)
	}
	ws := in.Workspace
	if ws == "" {
		ws = in.RunnerID
	}
	onLine, locks, stop := heartbeater(ctx)
	defer stop()
	if err := a.Tofu.DestroyWith(ctx, ws, onLine, locks); err != nil {
		return err
	}
	// Whatever OpenTofu's state held, nothing labelled as the runner's
	// machine outlives its teardown.
	left, err := a.machinesOf(ctx, in.RunnerID)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		a.logger().Warn("machines left after tofu destroy: terminating them by their labels", "runner", in.RunnerID, "machines", fmt.Sprint(left))
	}
	if err := a.terminateMachines(ctx, left); err != nil {
		return err
	}
	// The machine is gone: so is its directory on this worker (the local
	// provider's agent, its logs and gitlab-runner's files).
	if in.RunnerID == "" || in.RunnerID != filepath.Base(in.RunnerID) || strings.HasPrefix(in.RunnerID, ".") {
		return nil
	}
	return os.RemoveAll(MachineDir(a.Tofu.StateDir(), in.RunnerID))
}

// TofuProgress is the heartbeat of an OpenTofu activity: the latest line
// OpenTofu printed, and the state locks the activity's attempts took, so a
// retry finds the lock a killed attempt left (tofu.LockLedger).
type TofuProgress struct {
	Line  string   `json:"line"`
	Locks []string `json:"locks,omitempty"`
}

// heartbeater turns OpenTofu's output into activity heartbeats
// (TofuProgress): the latest line as progress, at least every few seconds
// even while OpenTofu is silent, so a dead worker is noticed by its
// heartbeat timeout and not by the (long) start-to-close timeout; and the
// ledger of the state locks this activity's attempts took, read back from
// the last attempt's heartbeat and recorded at once when a run takes one.
// Call stop when the command ends.
func heartbeater(ctx context.Context) (onLine func(string), locks *tofu.LockLedger, stop func()) {
	if !activity.IsActivity(ctx) {
		return nil, nil, func() {}
	}
	var mu sync.Mutex
	progress := TofuProgress{Line: "starting"}
	if activity.HasHeartbeatDetails(ctx) {
		var prev TofuProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil {
			progress.Locks = prev.Locks
		}
	}
	beat := func() {
		mu.Lock()
		p := TofuProgress{Line: progress.Line, Locks: append([]string(nil), progress.Locks...)}
		mu.Unlock()
		activity.RecordHeartbeat(ctx, p)
	}
	locks = &tofu.LockLedger{Owned: append([]string(nil), progress.Locks...), OnLock: func(id string) {
		mu.Lock()
		progress.Locks = append(progress.Locks, id)
		mu.Unlock()
		beat()
	}}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	var once sync.Once
	return func(line string) {
			mu.Lock()
			progress.Line = line
			mu.Unlock()
		}, locks, func() {
			once.Do(func() { close(done) })
		}
}

// LocalTokenRef stores runner tokens in the local backend (development).
func LocalTokenRef(runnerID string) fly.SecretRef {
	return fly.SecretRef("local://runners/" + runnerID + "/token")
}

// TokenRefs is where runner tokens were kept before each egg's went to a
// place of its own (EggTokenRefs): runners whose record names no token
// reference are looked for there. Lockbox kept every token as an entry of
// one secret (lockbox.runner_tokens, "" when it names none); Secrets
// Manager and Vault, one secret per runner under gosling/runners/.
func TokenRefs(cfg fly.Secrets) (func(runnerID string) fly.SecretRef, error) {
	switch cfg.Backend {
	case "", fly.SchemeLocal:
		return LocalTokenRef, nil
	case fly.SchemeAWSSM, fly.SchemeVault:
		scheme := cfg.Backend
		return func(id string) fly.SecretRef {
			return fly.SecretRef(scheme + "://gosling/runners/" + id + "/token")
		}, nil
	case fly.SchemeLockbox:
		secret := cfg.Backends[fly.SchemeLockbox].RunnerTokens
		return func(id string) fly.SecretRef {
			if secret == "" {
				return ""
			}
			return fly.SecretRef("yc-lockbox://" + secret + "/" + id)
		}, nil
	}
	return nil, fmt.Errorf("runner tokens cannot go to the %q backend", cfg.Backend)
}

// EggTokenRefs is where a new runner's token goes with MotherGoose's
// secrets block: its egg's own place, which only that egg's runner
// identity may read (internal/runnerid; gosling deploy makes it). Secrets
// Manager and Vault keep one secret per runner under
// gosling/<deployment>/runners/<egg>/; Lockbox keeps one entry per runner
// in the egg's secret, whose ID lockboxSecret finds by its name. The
// local backend (and the local provider's runners) keep
// local://runners/<runner>/token. lockboxSecret's errors wrap
// tofu.ErrNoIdentity when the egg has no secret.
func EggTokenRefs(cfg fly.Secrets, deployment string, lockboxSecret func(ctx context.Context, egg string) (string, error)) (func(ctx context.Context, egg, runnerID string) (fly.SecretRef, error), error) {
	switch cfg.Backend {
	case "", fly.SchemeLocal:
		return func(_ context.Context, _, id string) (fly.SecretRef, error) { return LocalTokenRef(id), nil }, nil
	case fly.SchemeAWSSM, fly.SchemeVault:
		scheme := cfg.Backend
		return func(_ context.Context, egg, id string) (fly.SecretRef, error) {
			return fly.SecretRef(scheme + "://" + runnerid.AWSTokenPrefix(deployment, egg) + id + "/token"), nil
		}, nil
	case fly.SchemeLockbox:
		if lockboxSecret == nil {
			return nil, errors.New("runner tokens go to Lockbox, but this worker has no Yandex Cloud client to find each egg's secret")
		}
		return func(ctx context.Context, egg, id string) (fly.SecretRef, error) {
			secret, err := lockboxSecret(ctx, egg)
			if err != nil {
				return "", err
			}
			return fly.SecretRef("yc-lockbox://" + secret + "/" + id), nil
		}, nil
	}
	return nil, fmt.Errorf("runner tokens cannot go to the %q backend", cfg.Backend)
}

// MachineDir is where the local provider keeps a runner's machine.
func MachineDir(stateDir, runnerID string) string {
	return filepath.Join(stateDir, "machines", runnerID)
}

// PauseGitLabRunnerInput names a GitLab runner to pause.
type PauseGitLabRunnerInput struct {
	GitLab         fly.GitLab `json:"gitlab"`
	GitLabRunnerID int64      `json:"gitlab_runner_id"`
	// TokenRef is the machine's token: the egg's shared runner
	// (contract.IsEggRunnerToken) is never paused for one machine.
	TokenRef string `json:"token_ref,omitempty"`
}

// PauseGitLabRunner pauses a runner in GitLab (PUT /runners/:id with
// paused=true), so it takes no new job; a runner already deleted is not an
// error.
func (a *Activities) PauseGitLabRunner(ctx context.Context, in PauseGitLabRunnerInput) error {
	if contract.IsEggRunnerToken(in.TokenRef) {
		return nil
	}
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return err
	}
	if err := gl.SetRunnerPaused(ctx, in.GitLabRunnerID, true); err != nil && !gitlab.IsNotFound(err) {
		return fmt.Errorf("pause GitLab runner %d: %w", in.GitLabRunnerID, err)
	}
	return nil
}
