// Package contract is the contract of Gosling's Temporal workflows: task
// queues, workflow type names and IDs, signal, query and update names, and
// the input and result structs that the API, the CLI, MotherGoose and the
// workers share. It holds plain data and pure functions only, so a caller
// that starts or signals a workflow by name needs neither the workflow code
// nor its activities (OpenTofu, GitLab, cloud SDKs).
package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/fly"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// Task queues.
const (
	TaskQueueMotherGoose = "mothergoose"
	TaskQueueUglyFox     = "uglyfox"
)

// Workflow type names. Workers register each workflow under its name and
// every starter (the API, the CLI, schedules, parent workflows) starts it
// by that name, so renaming a Go function never changes a running history.
const (
	WorkflowProvisionRunner    = "ProvisionRunner"
	WorkflowDeprovisionRunner  = "DeprovisionRunner"
	WorkflowDrainRunner        = "DrainRunner"
	WorkflowPool               = "Pool"
	WorkflowGate               = "Gate"
	WorkflowRotateRunnerTokens = "RotateRunnerTokens"
	WorkflowPrune              = "Prune"
	WorkflowReconcile          = "Reconcile"
)

// ErrTypeIllegalState is the type of the non-retryable application error a
// workflow fails with when a runner is in a state that forbids the change
// asked for; starters match it with temporal.ApplicationError.Type.
const ErrTypeIllegalState = "IllegalTransition"

// Signals and queries.
const (
	// SignalRunnerReady is sent by MotherGoose when a runner's agent
	// reports (through the API) that its token checks out with GitLab and
	// gitlab-runner runs. Payload: RunnerReady.
	SignalRunnerReady = "runner-ready"
	// SignalJobStatus tells a runner's workflow how its job is doing.
	// Payload: JobStatus.
	SignalJobStatus = "job-status"
	// QueryRunnerStatus returns a ProvisionStatus.
	QueryRunnerStatus = "runner-status"
)

// Actor names the part of Gosling that records a change.
const ActorMotherGoose = "mothergoose"

// RunnerWorkflowID is the ID of the workflow that makes the runner for one
// GitLab job. It derives from the host and job ID alone, so GitLab's retries
// and duplicate webhooks can never start a second one.
func RunnerWorkflowID(host string, jobID int64) string {
	return fmt.Sprintf("runner/%s/job/%d", strings.ToLower(host), jobID)
}

// DeprovisionWorkflowID is the ID of the workflow that tears a runner down.
func DeprovisionWorkflowID(runnerID string) string { return "deprovision/" + runnerID }

// RunnerIDFor derives a runner ID from its egg and the ID of the workflow
// that makes it: stable across retries, unique across runners.
func RunnerIDFor(egg, workflowID string) string {
	sum := sha256.Sum256([]byte(workflowID))
	return egg + "-" + hex.EncodeToString(sum[:5])
}

// RunnerDescription is the description Gosling gives a runner in GitLab;
// it is unique per runner, so a lost create can be found again.
func RunnerDescription(egg, runnerID string) string {
	return "gosling/" + egg + "/" + runnerID
}

// JobRef names the GitLab job a runner is made for.
type JobRef struct {
	Host        string   `json:"host"`
	ProjectID   int64    `json:"project_id"`
	ProjectPath string   `json:"project_path,omitempty"`
	JobID       int64    `json:"job_id"`
	Name        string   `json:"name,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// ProvisionRunnerInput asks for one runner.
type ProvisionRunnerInput struct {
	// RunnerID is optional: by default it derives from the workflow ID.
	RunnerID string  `json:"runner_id,omitempty"`
	Egg      fly.Egg `json:"egg"`
	// Job is the job the runner is made for; nil for runners made ahead of demand.
	Job *JobRef `json:"job,omitempty"`
	// Kind is serverless, vm or auto; empty takes the egg's runner type.
	Kind string `json:"kind,omitempty"`
	// Cloud is where the runner runs; empty takes the egg's first cloud.
	Cloud    string       `json:"cloud,omitempty"`
	Provider fly.Provider `json:"provider"`
	// Providers are the Nest's providers by cloud name: a cloud that
	// refuses the machine for capacity or quota falls back to the egg's
	// next cloud whose provider is here. Nil: no fallback.
	Providers map[string]fly.Provider `json:"providers,omitempty"`
	// Dormant leaves the runner stopped once ready (a Nadir runner).
	Dormant bool `json:"dormant,omitempty"`
	// Avoid are placements (cloud, capacity type, zone) that refused a
	// machine lately, which the egg's pool leaves alone for the egg's
	// capacity_cooldown: the machine is asked for at the first placement
	// of fly.Runner.Placements that is not among them, and the fallback
	// walk passes them by. When every placement is avoided, the order is
	// followed as it is.
	Avoid []fly.Placement `json:"avoid,omitempty"`
	// OneJob makes the runner take one job and no other even though Job
	// is nil (a custom job's runner, made before its pipeline). A VM
	// made for Job always takes that one job only.
	OneJob bool `json:"one_job,omitempty"`
	// ReadyTimeout bounds the wait for the agent's ready signal (default 10m).
	ReadyTimeout time.Duration `json:"ready_timeout,omitempty"`
	// ServerlessDeadline bounds a serverless runner's life (default and
	// maximum: 60 minutes).
	ServerlessDeadline time.Duration `json:"serverless_deadline,omitempty"`
	// JobDeadline bounds the life of a VM runner made for one job (default
	// DefaultJobDeadline).
	JobDeadline time.Duration `json:"job_deadline,omitempty"`
	// Owner is the workflow (an egg's pool) told how provisioning ended,
	// with SignalRunnerProvisioned.
	Owner string `json:"owner,omitempty"`
}

// DefaultJobDeadline bounds a VM runner made for one job, whatever happens
// to the job's webhooks.
const DefaultJobDeadline = 24 * time.Hour

// ProvisionRunnerResult describes the runner that was made.
type ProvisionRunnerResult struct {
	RunnerID       string `json:"runner_id"`
	Kind           string `json:"kind"`
	KindReason     string `json:"kind_reason"`
	Cloud          string `json:"cloud"`
	State          string `json:"state"`
	GitLabRunnerID int64  `json:"gitlab_runner_id"`
	TokenRef       string `json:"token_ref"`
	Workspace      string `json:"workspace"`
	// Outcome says how a runner made for one job ended: job-finished or
	// deadline; or, when no runner was made, why: tags-mismatch, or
	// job-not-pending (the job was running elsewhere or over by then).
	Outcome string `json:"outcome,omitempty"`
	// JobTags are the job's tags as the Jobs API gave them.
	JobTags []string `json:"job_tags,omitempty"`
	// CloudReason is set when the runner is not on its first cloud: which
	// clouds refused its machine (capacity or quota) and why, in order.
	CloudReason string `json:"cloud_reason,omitempty"`
	// Capacity and Zone are the capacity type and zone (empty: the
	// provider's) the machine was made with.
	Capacity string `json:"capacity,omitempty"`
	Zone     string `json:"zone,omitempty"`
	// Refusals are the placements that refused the machine, in order.
	Refusals []CapacityRefusal `json:"refusals,omitempty"`
}

// CapacityRefusal is a placement's refusal of a machine: a short class
// (capacity, quota, zone, rate) and the provider's own message.
type CapacityRefusal struct {
	Placement fly.Placement `json:"placement"`
	Class     string        `json:"class"`
	Message   string        `json:"message"`
}

// ProvisionStatus is what QueryRunnerStatus returns.
type ProvisionStatus struct {
	RunnerID string `json:"runner_id"`
	Step     string `json:"step"`
	Kind     string `json:"kind"`
	Cloud    string `json:"cloud"`
}

// RunnerReady is the payload of SignalRunnerReady.
type RunnerReady struct {
	RunnerID string    `json:"runner_id"`
	PID      int       `json:"pid"`
	Host     string    `json:"host"`
	At       time.Time `json:"at"`
}

// JobStatus is the payload of SignalJobStatus.
type JobStatus struct {
	JobID  int64     `json:"job_id"`
	Status string    `json:"status"`
	At     time.Time `json:"at"`
	// RunnerID is set when the runner's own agent reports the job (the
	// job it ran, which GitLab chose); webhooks leave it empty.
	RunnerID string `json:"runner_id,omitempty"`
}

// Finished tells whether a job status is final.
func (s JobStatus) Finished() bool {
	switch s.Status {
	case "success", "failed", "canceled", "skipped":
		return true
	}
	return false
}

// DeprovisionRunnerInput asks for a runner to be torn down.
type DeprovisionRunnerInput struct {
	RunnerID string     `json:"runner_id"`
	GitLab   fly.GitLab `json:"gitlab"`
	Reason   string     `json:"reason"`
	Actor    string     `json:"actor,omitempty"`
	// Owner is the workflow told when the teardown ended, with SignalRunnerRetired.
	Owner string `json:"owner,omitempty"`
}

// DeprovisionRunnerResult says what was removed.
type DeprovisionRunnerResult struct {
	RunnerID string `json:"runner_id"`
	// AlreadyGone is set when the runner was terminated before.
	AlreadyGone bool `json:"already_gone"`
}

// ChooseKind picks the runner kind for an egg on a cloud, with the reason.
// auto is resolved by fly's Runner.KindOn: serverless when the expected job
// time fits the cloud's serverless limit and a serverless size of the
// cloud's fits the egg's cpu and memory, otherwise vm. A dormant runner is a
// VM.
func ChooseKind(egg fly.Egg, kind, cloud string, dormant bool) (string, string) {
	if kind == "" {
		kind = egg.Runner.Type
	}
	if dormant {
		return fly.RunnerVM, "dormant (Nadir) runners are stopped VMs"
	}
	switch kind {
	case fly.RunnerServerless, fly.RunnerVM:
		return kind, fmt.Sprintf("egg %s asks for %s runners", egg.Name, kind)
	}
	r := egg.Runner
	r.Type = fly.RunnerAuto
	k := r.KindOn(cloud)
	return k.Kind, k.Reason
}

// StartOptions are the options every starter of a Gosling workflow uses
// (the webhook path, the CLI, the tests): a duplicate start of a running
// workflow joins it instead of starting a second one, and a finished
// workflow's ID is not reused, so a replayed webhook makes nothing new.
func StartOptions(workflowID string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: workflowID, TaskQueue: TaskQueueMotherGoose,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}
}

// TagsMatch tells whether a runner with the given settings can take a job
// with the given tags, as GitLab decides: every job tag must be a runner
// tag, and a job without tags needs a runner that runs untagged jobs.
func TagsMatch(r fly.Runner, jobTags []string) (bool, string) {
	if len(jobTags) == 0 {
		if r.RunUntagged {
			return true, "untagged job; the runner takes untagged jobs"
		}
		return false, "the job has no tags and the egg's runners do not run untagged jobs"
	}
	have := map[string]bool{}
	for _, t := range r.Tags {
		have[t] = true
	}
	var missing []string
	for _, t := range jobTags {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("the egg's runners lack the job's tags %s", strings.Join(missing, ", "))
	}
	return true, "the egg's runners carry every job tag"
}

// DrainWorkflowID is the ID of the workflow that drains a runner.
func DrainWorkflowID(runnerID string) string { return "drain/" + runnerID }

// DrainRunnerInput asks for a runner made for one job to be drained: paused
// in GitLab, so it takes no new job, and recorded draining.
type DrainRunnerInput struct {
	RunnerID string     `json:"runner_id"`
	GitLab   fly.GitLab `json:"gitlab"`
	Actor    string     `json:"actor"`
	Reason   string     `json:"reason"`
}

// DrainRunnerResult is the runner's state once drained.
type DrainRunnerResult struct {
	RunnerID string `json:"runner_id"`
	State    string `json:"state"`
	// Already is set when the runner was draining before.
	Already bool `json:"already,omitempty"`
}
