package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gosling-ci/gosling/contract"
	"time"
)

// Errors every engine returns (wrapped); test them with errors.Is.
var (
	ErrNotFound          = errors.New("not found")
	ErrExists            = errors.New("already exists")
	ErrConflict          = errors.New("version conflict: the record changed since it was read")
	ErrIllegalTransition = errors.New("illegal state transition")
)

// RunnerState is a runner's lifecycle state (contract.RunnerState: the
// states and their transitions are part of the workflows' contract).
type RunnerState = contract.RunnerState

// Runner lifecycle states, as the contract names them.
const (
	StateProvisioning = contract.StateProvisioning
	StateRegistering  = contract.StateRegistering
	StateActive       = contract.StateActive
	StateDormant      = contract.StateDormant
	StateDraining     = contract.StateDraining
	StateTerminating  = contract.StateTerminating
	StateTerminated   = contract.StateTerminated
	StateFailed       = contract.StateFailed
)

// AllStates lists every state in lifecycle order.
var AllStates = contract.AllStates

// CanTransition tells whether a runner may move from one state to another
// (contract.CanTransition).
func CanTransition(from, to RunnerState) bool { return contract.CanTransition(from, to) }

// Runner is one runner: a GitLab runner, its machine (a tofu workspace) and
// its token (a secret reference, never the token itself).
type Runner struct {
	ID             string      `json:"id"`
	Egg            string      `json:"egg"`
	Cloud          string      `json:"cloud"`
	Kind           string      `json:"kind"` // serverless or vm
	State          RunnerState `json:"state"`
	GitLabHost     string      `json:"gitlab_host"`
	GitLabRunnerID int64       `json:"gitlab_runner_id,omitempty"`
	TokenRef       string      `json:"token_ref,omitempty"`
	// AgentRef is the secret URI of the machine's own agent credential,
	// what its agent authenticates to MotherGoose's agent API with.
	AgentRef   string `json:"agent_ref,omitempty"`
	Workspace  string `json:"workspace,omitempty"`
	WorkflowID string `json:"workflow_id,omitempty"`
	// JobID is the GitLab job that asked for this runner, if any.
	JobID int64 `json:"job_id,omitempty"`
	// Reason says why the runner is in its state (the last transition's reason).
	Reason        string     `json:"reason,omitempty"`
	Failures      int        `json:"failures"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	LastJobAt     *time.Time `json:"last_job_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	// Version increases with every write; updates must name the version they read.
	Version int64 `json:"version"`
}

// Transition is one recorded state change of a runner.
type Transition struct {
	RunnerID string      `json:"runner_id"`
	From     RunnerState `json:"from"`
	To       RunnerState `json:"to"`
	Reason   string      `json:"reason"`
	Actor    string      `json:"actor"`
	At       time.Time   `json:"at"`
}

// RunnerFilter selects runners; zero fields match everything.
type RunnerFilter struct {
	Egg    string
	Cloud  string
	States []RunnerState
	// GitLabHost and GitLabRunnerID select the runner GitLab knows by that
	// ID (GitLabRunnerID 0 matches any).
	GitLabHost     string
	GitLabRunnerID int64
	// After is the ID of the last runner of the previous page (runners are
	// ordered by ID); Limit bounds the page (0 means no bound).
	After string
	Limit int
}

// EggConfig is the stored configuration of one egg, as loaded from the Nest.
type EggConfig struct {
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Spec      json.RawMessage `json:"spec"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// JobRecord is the history of one GitLab job as Gosling saw it.
type JobRecord struct {
	GitLabHost string     `json:"gitlab_host"`
	JobID      int64      `json:"job_id"`
	ProjectID  int64      `json:"project_id"`
	Egg        string     `json:"egg"`
	Name       string     `json:"name,omitempty"`
	Ref        string     `json:"ref,omitempty"`
	PipelineID int64      `json:"pipeline_id,omitempty"`
	Status     string     `json:"status"`
	RunnerID   string     `json:"runner_id,omitempty"`
	QueuedAt   *time.Time `json:"queued_at,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// ProjectPath is the project's path with namespace, as the hook or the
	// Jobs API named it.
	ProjectPath string `json:"project_path,omitempty"`
	// RunnerStartedAt is when the Gosling runner that ran the job started
	// it (its agent's report of it running), and QueueSeconds how long the
	// job had waited for it then, from QueuedAt; 0 until known.
	RunnerStartedAt *time.Time `json:"runner_started_at,omitempty"`
	QueueSeconds    float64    `json:"queue_seconds,omitempty"`
	// MachineSeconds is the machine time charged to the job: its run time
	// on the runner divided by the runner's job slots. Cost is that time
	// at the runner's price, and IdleCost its share of the runner's idle
	// and stopped time, settled when the runner ends; both are in the
	// price table's currency (MG/config.fly cost block).
	MachineSeconds float64 `json:"machine_seconds,omitempty"`
	Cost           float64 `json:"cost,omitempty"`
	IdleCost       float64 `json:"idle_cost,omitempty"`
}

// JobFilter selects job records, newest first.
type JobFilter struct {
	Egg    string
	Status string
	// RunnerID selects the jobs a runner ran; FinishedSince those that
	// finished at or after a time.
	RunnerID      string
	FinishedSince time.Time
	// Before is the UpdatedAt/JobID cursor of the last record of the previous page.
	BeforeJobID int64
	Limit       int
}

// Policy is a stored pruning policy (UF/config.fly), versioned like eggs.
type Policy struct {
	Name      string          `json:"name"`
	Version   string          `json:"version"`
	Spec      json.RawMessage `json:"spec"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// AuditRecord is one append-only entry of the audit log.
type AuditRecord struct {
	ID       int64           `json:"id"`
	At       time.Time       `json:"at"`
	Actor    string          `json:"actor"`  // mothergoose, uglyfox, a user
	Action   string          `json:"action"` // provision, deprovision, demote, ...
	Egg      string          `json:"egg,omitempty"`
	RunnerID string          `json:"runner_id,omitempty"`
	Policy   string          `json:"policy,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Before   json.RawMessage `json:"before,omitempty"`
	After    json.RawMessage `json:"after,omitempty"`
	// Key, when set, makes appending idempotent: a second record with the
	// same key is not written (a retried activity's). It is not read back.
	Key string `json:"-"`
}

// AuditFilter selects audit records, oldest first.
type AuditFilter struct {
	Egg      string
	RunnerID string
	Since    time.Time
	// AfterID is the ID of the last record of the previous page.
	AfterID int64
	Limit   int
}

// OutboxEntry is one call to Temporal the API accepted but could not make
// yet (Temporal was unreachable); a dispatcher replays entries in ID order.
type OutboxEntry struct {
	ID int64 `json:"id"`
	// Kind says what the payload asks for, such as signal-with-start.
	Kind string `json:"kind"`
	// Key names what the entry is about (a workflow ID), for logs and audits.
	Key       string          `json:"key"`
	Payload   json.RawMessage `json:"payload"`
	CreatedAt time.Time       `json:"created_at"`
	// Attempts counts failed deliveries; LastError is the latest one's reason.
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
	// NextAttemptAt is when the entry is due again (CreatedAt when zero).
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

// TransitionRequest moves a runner to a new state.
type TransitionRequest struct {
	RunnerID string
	// Version is the version the caller read; 0 skips the check (the move is
	// still checked against the lifecycle).
	Version int64
	To      RunnerState
	Reason  string
	Actor   string
	// Update, if set, changes other fields in the same transaction.
	Update func(*Runner)
}

// Store is the interface every engine implements.
type Store interface {
	// CreateRunner inserts a new runner (Version becomes 1). ErrExists if the ID is taken.
	CreateRunner(ctx context.Context, r *Runner) error
	GetRunner(ctx context.Context, id string) (*Runner, error)
	ListRunners(ctx context.Context, f RunnerFilter) ([]Runner, error)
	// UpdateRunner writes every field but State, checking r.Version
	// (ErrConflict when it changed); on success r.Version is the new version.
	UpdateRunner(ctx context.Context, r *Runner) error
	// RecordHeartbeat sets a runner's last heartbeat and nothing else: not
	// its version nor its update time, so beats never race a transition.
	RecordHeartbeat(ctx context.Context, id string, at time.Time) error
	// Transition moves a runner to another state and records the transition,
	// in one transaction. ErrIllegalTransition when the lifecycle forbids it,
	// ErrConflict when the version changed. Moving to the current state is a
	// no-op that returns the runner unchanged.
	Transition(ctx context.Context, req TransitionRequest) (*Runner, error)
	RunnerHistory(ctx context.Context, id string) ([]Transition, error)

	PutEggConfig(ctx context.Context, c EggConfig) error
	GetEggConfig(ctx context.Context, name string) (*EggConfig, error)
	ListEggConfigs(ctx context.Context) ([]EggConfig, error)

	// RecordJob inserts or updates a job by (GitLabHost, JobID), merging
	// the event into the stored record as MergeJob says (the job never goes
	// back to an earlier status; fields left zero keep their stored value),
	// atomically however many deliveries about the job race, and returns
	// the record as stored.
	RecordJob(ctx context.Context, j JobRecord) (JobRecord, error)
	GetJob(ctx context.Context, host string, jobID int64) (*JobRecord, error)
	ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error)

	PutPolicy(ctx context.Context, p Policy) error
	ListPolicies(ctx context.Context) ([]Policy, error)

	// AppendAudit appends a record and returns its ID. Records are never changed.
	AppendAudit(ctx context.Context, a AuditRecord) (int64, error)
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error)
	// ExpireAudit deletes records older than before (the audit policy's
	// retention) and returns how many; nothing else ever removes one.
	ExpireAudit(ctx context.Context, before time.Time) (int64, error)

	// CountRunners counts runners by egg, then state, terminated ones included.
	CountRunners(ctx context.Context) (map[string]map[RunnerState]int, error)

	// RecordDelivery records a webhook delivery by its key, unless it is
	// recorded already: first is true for exactly one caller per key, however
	// many race. ForgetDelivery removes the key again, so a delivery whose
	// processing failed can be sent again; forgetting an unknown key is not
	// an error. PruneDeliveries removes keys recorded before olderThan.
	RecordDelivery(ctx context.Context, key string, at time.Time) (first bool, err error)
	ForgetDelivery(ctx context.Context, key string) error
	PruneDeliveries(ctx context.Context, olderThan time.Time) (int64, error)

	// EnqueueOutbox appends an entry (ID, Attempts, LastError and
	// DeliveredAt are ignored) and returns its ID; IDs increase.
	EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error)
	// DueOutbox lists undelivered entries with NextAttemptAt <= now, oldest
	// (lowest ID) first, at most limit (0: no bound).
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error)
	// MarkOutboxDelivered records a delivery; MarkOutboxFailed counts a failed
	// attempt and says when to try again. Both return ErrNotFound for an
	// unknown ID.
	MarkOutboxDelivered(ctx context.Context, id int64, at time.Time) error
	// PruneOutbox removes entries delivered before olderThan; pending ones
	// stay whatever their age.
	PruneOutbox(ctx context.Context, olderThan time.Time) (int64, error)
	MarkOutboxFailed(ctx context.Context, id int64, errMsg string, next time.Time) error
	// OutboxDepth counts the undelivered entries.
	OutboxDepth(ctx context.Context) (int64, error)
	// OutboxPending tells whether an undelivered entry has the given key, so
	// a newer call about the same thing can queue behind it, in order.
	OutboxPending(ctx context.Context, key string) (bool, error)

	Ping(ctx context.Context) error
	Close() error
}

// IllegalTransitionError says which move was refused.
func IllegalTransitionError(from, to RunnerState) error {
	return fmt.Errorf("%w: %s -> %s", ErrIllegalTransition, from, to)
}
