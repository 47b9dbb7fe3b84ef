// Package apiv1 holds the wire types of MotherGoose's REST API (/api/v1):
// what the API answers, what internal/apiclient decodes and what `gosling
// ... --json` prints. They are views: the API converts the store's rows to
// them at its edge (api/views.go), so a store column can change without
// changing the API, the client or the CLI's output.
package apiv1

import (
	"encoding/json"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"
)

// Runner is one runner as the API shows it: a GitLab runner, its machine
// and where its token is (a secret URI, never the token).
type Runner struct {
	ID    string `json:"id"`
	Egg   string `json:"egg"`
	Cloud string `json:"cloud"`
	// Kind is serverless or vm.
	Kind string `json:"kind"`
	// State is the lifecycle state: provisioning, registering, active,
	// dormant, draining, terminating, terminated or failed.
	State          string `json:"state"`
	GitLabHost     string `json:"gitlab_host"`
	GitLabRunnerID int64  `json:"gitlab_runner_id,omitempty"`
	TokenRef       string `json:"token_ref,omitempty"`
	Workspace      string `json:"workspace,omitempty"`
	WorkflowID     string `json:"workflow_id,omitempty"`
	// JobID is the GitLab job that asked for this runner, if any.
	JobID int64 `json:"job_id,omitempty"`
	// Reason says why the runner is in its state.
	Reason        string     `json:"reason,omitempty"`
	Failures      int        `json:"failures"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	LastJobAt     *time.Time `json:"last_job_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// Version increases with every change of the runner's record.
	Version int64 `json:"version"`
}

// RunnerList is the answer of GET /api/v1/runners.
type RunnerList struct {
	Runners []Runner `json:"runners"`
	// Next is the cursor of the next page (pass it as after), empty on the
	// last page.
	Next string `json:"next"`
}

// Job is one GitLab job as MotherGoose recorded it from its hooks.
type Job struct {
	GitLabHost string `json:"gitlab_host"`
	JobID      int64  `json:"job_id"`
	ProjectID  int64  `json:"project_id"`
	Egg        string `json:"egg"`
	Name       string `json:"name,omitempty"`
	Ref        string `json:"ref,omitempty"`
	PipelineID int64  `json:"pipeline_id,omitempty"`
	// Status is GitLab's job status (pending, running, success, ...).
	Status     string     `json:"status"`
	RunnerID   string     `json:"runner_id,omitempty"`
	QueuedAt   *time.Time `json:"queued_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// ProjectPath is the project's path with namespace.
	ProjectPath string `json:"project_path,omitempty"`
	// RunnerStartedAt is when a Gosling runner started the job, and
	// QueueSeconds how long it had waited then.
	RunnerStartedAt *time.Time `json:"runner_started_at,omitempty"`
	QueueSeconds    float64    `json:"queue_seconds,omitempty"`
	// MachineSeconds is the machine time charged to the job; Cost what it
	// cost, IdleCost its share of its runner's idle time, in the price
	// table's currency.
	MachineSeconds float64 `json:"machine_seconds,omitempty"`
	Cost           float64 `json:"cost,omitempty"`
	IdleCost       float64 `json:"idle_cost,omitempty"`
}

// JobList is the answer of the job history routes.
type JobList struct {
	Jobs []Job `json:"jobs"`
	// Next is the cursor of the next page (pass it as before), empty on the
	// last page.
	Next string `json:"next"`
}

// AuditRecord is one record of the append-only audit log.
type AuditRecord struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"`
	// Actor is who acted: mothergoose, uglyfox, api, job/NAME, cli:USER.
	Actor string `json:"actor"`
	// Action is what was done: provisioned, ready, promoted, demoted,
	// drained, failed, terminating, terminated, reaped, rotate-token, ...
	Action   string `json:"action"`
	Egg      string `json:"egg,omitempty"`
	RunnerID string `json:"runner_id,omitempty"`
	Policy   string `json:"policy,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Before and After are what the record says of the runner before and
	// after the action (its state, its pool, the outcome), as recorded.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// StateBefore and StateAfter are the runner states Before and After
	// name, empty when they name none.
	StateBefore string `json:"state_before,omitempty"`
	StateAfter  string `json:"state_after,omitempty"`
}

// AuditList is the answer of GET /api/v1/audit.
type AuditList struct {
	Audit []AuditRecord `json:"audit"`
	// Next is the cursor of the next page (pass it as after), empty on the
	// last page.
	Next string `json:"next"`
}

// Pool is an egg's pool as GET /api/v1/pools/:name answers it: what its
// workflow holds, with its hit rate and what its idle runners cost.
type Pool struct {
	contract.PoolStatus
	// HitRate is the share of the jobs the pool served without a cold
	// start (by an idle Apex runner or a promoted Nadir runner), from 0
	// to 1; 0 before its first job.
	HitRate float64 `json:"hit_rate"`
	// IdleCost is what the pool's idle runners cost now; absent when the
	// cost block (MG/config.fly) prices none of them.
	IdleCost *PoolIdleCost `json:"idle_cost,omitempty"`
}

// PoolIdleCost is what a pool's idle runners cost an hour, in the price
// table's currency: its Apex runners without a job, running, and its
// Nadir runners, their disks.
type PoolIdleCost struct {
	Currency string  `json:"currency"`
	PerHour  float64 `json:"per_hour"`
	ApexIdle int     `json:"apex_idle"`
	Nadir    int     `json:"nadir"`
}

// CostRow is one line of the chargeback table: what the jobs of an egg,
// or of a project, that finished in the period cost.
type CostRow struct {
	Egg string `json:"egg"`
	// Project is the project's path (by project only).
	Project string `json:"project,omitempty"`
	// Jobs counts the jobs Gosling's runners ran.
	Jobs int `json:"jobs"`
	// QueueSeconds is their time in queue, summed over the QueuedJobs
	// whose queue time is known; QueueMeanSeconds its mean.
	QueueSeconds     float64 `json:"queue_seconds"`
	QueuedJobs       int     `json:"queued_jobs"`
	QueueMeanSeconds float64 `json:"queue_mean_seconds"`
	// MachineSeconds is the machine time charged to them directly;
	// RunCost what it cost, IdleCost their shares of their runners' idle
	// time (settled when a runner ends), Cost the sum.
	MachineSeconds float64 `json:"machine_seconds"`
	RunCost        float64 `json:"run_cost"`
	IdleCost       float64 `json:"idle_cost"`
	Cost           float64 `json:"cost"`
}

// CostReport is the answer of GET /api/v1/cost: the chargeback table of
// the jobs that finished since Since, by egg or by project, most costly
// first.
type CostReport struct {
	Since time.Time `json:"since"`
	// By is egg or project.
	By       string    `json:"by"`
	Currency string    `json:"currency"`
	Rows     []CostRow `json:"rows"`
}
