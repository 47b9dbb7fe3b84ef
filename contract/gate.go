package contract

import (
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// Gate signals and queries. A gate also takes SignalDemand (payload
// Demand), SignalJobStatus (payload JobStatus) and, from the runner
// workflows it starts, SignalRunnerProvisioned (payload RunnerProvisioned)
// when one ends.
const (
	// SignalGateSpec gives an egg's gate the egg's new spec after a Nest
	// change; its max_concurrent applies from then on. Payload: fly.Egg.
	SignalGateSpec = "gate-spec"
	// QueryGateStatus returns a GateStatus.
	QueryGateStatus = "gate-status"
)

// GateWorkflowID is the ID of a serverless egg's admission workflow.
func GateWorkflowID(egg string) string { return "gate/" + egg }

// GateInput starts (or continues) a serverless egg's gate.
type GateInput struct {
	Egg      fly.Egg      `json:"egg"`
	Cloud    string       `json:"cloud,omitempty"`
	Provider fly.Provider `json:"provider"`
	// Providers are passed on to each runner's ProvisionRunner, for its
	// cloud fallback.
	Providers map[string]fly.Provider `json:"providers,omitempty"`
	// ReadyTimeout and ServerlessDeadline are passed on to each runner's
	// ProvisionRunner (0: its defaults).
	ReadyTimeout       time.Duration `json:"ready_timeout,omitempty"`
	ServerlessDeadline time.Duration `json:"serverless_deadline,omitempty"`
	// Tick is how often slots held past a runner's longest life are
	// looked for (default 1m).
	Tick time.Duration `json:"tick,omitempty"`
	// State carries the gate across continue-as-new; nil for a new gate.
	State *GateState `json:"state,omitempty"`
}

// GateSlot is one job's runner workflow, started by the gate and not yet
// ended.
type GateSlot struct {
	Job        JobRef `json:"job"`
	WorkflowID string `json:"workflow_id"`
	RunnerID   string `json:"runner_id"`
	// Asked is when the job asked for a runner, Started when its workflow
	// was started.
	Asked   time.Time `json:"asked"`
	Started time.Time `json:"started"`
}

// GateStats counts what a gate did.
type GateStats struct {
	// Admitted counts jobs put in line, Started runner workflows started,
	// Ended those that ended, Dropped jobs that ended or ran elsewhere
	// before a slot was free (or whose runner workflow existed already),
	// Expired slots freed because their runner outlived any runner's
	// longest life without a word.
	Admitted int `json:"admitted"`
	Started  int `json:"started"`
	Ended    int `json:"ended"`
	Dropped  int `json:"dropped"`
	Expired  int `json:"expired"`
	// Queued counts the jobs that had to wait for a slot, and QueuedFor
	// sums how long they waited.
	Queued    int           `json:"queued"`
	QueuedFor time.Duration `json:"queued_for"`
	Runs      int           `json:"runs"`
}

// GateState is everything a gate knows, carried across continue-as-new.
type GateState struct {
	Egg     fly.Egg    `json:"egg"`
	Waiting []Waiting  `json:"waiting"`
	Running []GateSlot `json:"running"`
	// Known holds recently seen job IDs, so a repeated demand is ignored;
	// Done recent jobs seen running or finished, so a demand that comes
	// late is dropped.
	Known []int64 `json:"known"`
	Done  []int64 `json:"done,omitempty"`
	// Since is when the gate first ran.
	Since time.Time `json:"since"`
	Stats GateStats `json:"stats"`
	// Ignored are the latest jobs (at most MaxIgnoredJobs) whose runner
	// workflow made no runner because none of the egg's could take them.
	Ignored []IgnoredJob `json:"ignored,omitempty"`
}

// GateStatus is the answer to QueryGateStatus.
type GateStatus struct {
	Egg           string     `json:"egg"`
	MaxConcurrent int        `json:"max_concurrent"`
	Running       []GateSlot `json:"running"`
	Waiting       []Waiting  `json:"waiting"`
	Stats         GateStats  `json:"stats"`
	// HistoryLength is the current run's history length.
	HistoryLength int `json:"history_length"`
	// Ignored are the latest jobs no runner of the egg will take, with
	// the reason.
	Ignored []IgnoredJob `json:"ignored,omitempty"`
}
