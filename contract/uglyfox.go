package contract

import (
	"github.com/gosling-ci/gosling/fly"
)

// ActorUglyFox names UglyFox in transitions, pool requests and the audit log.
const ActorUglyFox = "uglyfox"

// Temporal Schedules that run UglyFox (see mothergoose.EnsureUglyFoxSchedules).
const (
	ScheduleIDPrune     = "uglyfox-prune"
	ScheduleIDReconcile = "uglyfox-reconcile"
)

// PruneWorkflowID and ReconcileWorkflowID name one pass; run names it (a
// time stamp for passes started by hand; Schedules add their own).
func PruneWorkflowID(run string) string { return "uglyfox/prune/" + run }

// ReconcileWorkflowID names one reconciliation pass.
func ReconcileWorkflowID(run string) string { return "uglyfox/reconcile/" + run }

// DefaultPrunePage is how many runners one store read of a pass returns.
const DefaultPrunePage = 500

// PruneInput asks for one policy pass.
type PruneInput struct {
	Policy fly.UglyFox `json:"policy"`
	// DryRun only reports decisions (so does Policy.DryRun).
	DryRun bool `json:"dry_run,omitempty"`
	// PageSize bounds the runners read at a time (default DefaultPrunePage).
	PageSize int `json:"page_size,omitempty"`
}

// PruneResult reports a pass: the decisions and, unless dry, what came of them.
type PruneResult struct {
	DryRun    bool       `json:"dry_run"`
	Runners   int        `json:"runners"`
	Decisions []Decision `json:"decisions"`
	// Failed counts decisions whose action failed.
	Failed int `json:"failed"`
	// ExpiredAudit counts audit records past the audit retention, deleted.
	ExpiredAudit int64 `json:"expired_audit,omitempty"`
}

// What reconciliation finds (Finding.Kind).
const (
	// FindingUnowned: a GitLab runner or a workspace that no live store row
	// owns (no row, or a terminated one). Reaped: workspace destroyed,
	// GitLab runner deleted, token deleted.
	FindingUnowned = "unowned"
	// FindingMachineGone: a live runner whose workspace is gone, or, on the
	// local provider, whose agent process is dead. Terminated.
	FindingMachineGone = "machine-gone"
	// FindingGitLabGone: a live runner whose GitLab runner was deleted.
	// Terminated.
	FindingGitLabGone = "gitlab-gone"
	// FindingRowOrphan: a store row with neither GitLab runner nor
	// workspace. Marked terminated.
	FindingRowOrphan = "row-orphan"
	// FindingStuck: a runner in state terminating for longer than
	// StuckAfter; its teardown is run again.
	FindingStuck = "stuck"
)

// Finding is one disagreement between GitLab, the workspaces and the store.
type Finding struct {
	Kind     string `json:"kind"`
	RunnerID string `json:"runner_id"`
	Egg      string `json:"egg,omitempty"`
	// State is the store row's state; empty when there is no row.
	State      RunnerState `json:"state,omitempty"`
	WorkflowID string      `json:"workflow_id,omitempty"`
	// GitLabRunnerIDs are the GitLab runners described as this runner.
	GitLabRunnerIDs []int64 `json:"gitlab_runner_ids,omitempty"`
	// StoredGitLabRunnerID is the GitLab runner the store row names.
	StoredGitLabRunnerID int64  `json:"stored_gitlab_runner_id,omitempty"`
	Workspace            string `json:"workspace,omitempty"`
	// Machines are the machines found by their labels (deployment, egg,
	// runner) on the clouds, whatever OpenTofu's state says.
	Machines []MachineRef `json:"machines,omitempty"`
	TokenRef string       `json:"token_ref,omitempty"`
	Detail   string       `json:"detail"`
}

// MachineRef names a machine a cloud holds: its cloud (local, aws,
// yandex), kind (vm, serverless) and the cloud's own ID (an EC2 instance
// ID, a Yandex instance ID; on the local provider the runner ID, whose
// processes carry the labels).
type MachineRef struct {
	Cloud string `json:"cloud"`
	Kind  string `json:"kind,omitempty"`
	ID    string `json:"id"`
}

// ReconcileInput asks for one reconciliation pass.
type ReconcileInput struct {
	Policy fly.UglyFox `json:"policy"`
	// DryRun only reports findings (so do Policy.DryRun and a reconcile
	// action of "report").
	DryRun bool `json:"dry_run,omitempty"`
}

// ReconcileFinding is a finding with what reconciliation did about it.
type ReconcileFinding struct {
	Finding
	// Action is reap, mark-terminated or terminate.
	Action  string `json:"action"`
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Reconciliation actions (ReconcileFinding.Action, and the audit log's).
const (
	ReconcileReap           = "reap"
	ReconcileMarkTerminated = "mark-terminated"
	ReconcileTerminate      = ActionTerminate
)

// ReconcileResult reports a pass: what was seen, found and done.
type ReconcileResult struct {
	DryRun        bool `json:"dry_run"`
	GitLabRunners int  `json:"gitlab_runners"`
	Workspaces    int  `json:"workspaces"`
	// Machines counts the machines found by their labels.
	Machines    int                `json:"machines"`
	Rows        int                `json:"rows"`
	Unreachable []string           `json:"unreachable,omitempty"`
	Findings    []ReconcileFinding `json:"findings"`
	// Failed counts findings whose action failed.
	Failed int `json:"failed"`
}

// Reconcile compares GitLab's runners, the OpenTofu workspaces and the
// Policies that fire (Decision.Policy, and the audit log's policy).
const (
	PolicyFailed    = "failed"
	PolicyHeartbeat = "heartbeat"
	PolicyMaxAge    = "old.max_age"
	PolicyNadirAge  = "old.nadir_max_age"
	PolicyIdle      = "idle.apex"
	PolicyReconcile = "reconcile"
)

// ActionNotify only records a decision in the audit log.
const ActionNotify = fly.ActionNotify

// Decision is what a policy wants done to one runner.
type Decision struct {
	RunnerID string      `json:"runner_id"`
	Egg      string      `json:"egg"`
	State    RunnerState `json:"state"`
	// Pool is the workflow ID of the pool that owns the runner; empty for
	// a runner made for one job.
	Pool           string `json:"pool,omitempty"`
	GitLabRunnerID int64  `json:"gitlab_runner_id,omitempty"`
	Policy         string `json:"policy"`
	// Action is terminate, recycle, demote or notify.
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Force acts even on a runner running a job: it is failed or silent.
	Force bool `json:"force,omitempty"`
	// Outcome says what acting on the decision did; empty in a dry run.
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}
