package contract

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// RotateWorkflowID is the ID of every token rotation, whatever its eggs:
// two rotations of one runner at once could store a token an interleaved
// reset already invalidated, so a second one is refused while one runs.
const RotateWorkflowID = "secrets/rotate-runner-tokens"

// RotateStartOptions are the start options of RotateRunnerTokens (the CLI,
// a secret_rotation Job): the fixed ID may be reused once the last rotation
// ended, and a start while one runs fails with
// serviceerror.WorkflowExecutionAlreadyStarted instead of joining a
// rotation that may cover other eggs.
func RotateStartOptions() client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID: RotateWorkflowID, TaskQueue: TaskQueueMotherGoose,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}
}

// DefaultRotateParallelism is how many runners are rotated at a time.
const DefaultRotateParallelism = 4

// RotateRunnerTokensInput asks for new tokens for the runners in service.
type RotateRunnerTokensInput struct {
	// Eggs limits the rotation to these eggs; empty means every egg.
	Eggs []string `json:"eggs,omitempty"`
	// Actor and Reason go to the audit log.
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Parallelism bounds the runners rotated at once (default
	// DefaultRotateParallelism).
	Parallelism int `json:"parallelism,omitempty"`
	// PageSize bounds the runners read at a time (default DefaultPrunePage).
	PageSize int `json:"page_size,omitempty"`
	// ConfirmTimeout bounds the wait for a running cloud VM's agent to
	// confirm the new token (SignalTokenConfirmed) before the worker
	// checks the stored token itself (default DefaultConfirmTimeout; a
	// secret_rotation job's grace_period).
	ConfirmTimeout time.Duration `json:"confirm_timeout,omitempty"`
}

// DefaultConfirmTimeout is how long a rotation waits for a running cloud
// VM's agent to pick up its new token.
const DefaultConfirmTimeout = 10 * time.Minute

// SignalTokenConfirmed tells the running rotation (RotateWorkflowID) that a
// runner's agent authenticated with a token version: MotherGoose sends it
// when an agent's heartbeat, made with the runner token, reports the
// version it holds (agentapi.Beat.TokenVersion) and the token matches that
// version. Payload: TokenConfirmed.
const SignalTokenConfirmed = "runner-token-confirmed"

// TokenConfirmed is the payload of SignalTokenConfirmed.
type TokenConfirmed struct {
	RunnerID string    `json:"runner_id"`
	Version  string    `json:"version"`
	At       time.Time `json:"at"`
}

// Outcomes of one runner's rotation.
const (
	// RotationRotated: the new token is stored, GitLab accepts it, and the
	// live runner uses it (or reads it when it next starts).
	RotationRotated = "rotated"
	// RotationFailed: see Detail and TokenWorks.
	RotationFailed = "failed"
	// RotationSkipped: nothing was changed; Detail says why.
	RotationSkipped = "skipped"
)

// Who confirmed that GitLab accepts the new token.
const (
	VerifiedByAgent  = "agent"
	VerifiedByGitLab = "gitlab"
)

// RunnerRotation is the outcome of one runner's rotation. It names the
// secret version of the new token, never the token.
type RunnerRotation struct {
	RunnerID string `json:"runner_id"`
	Egg      string `json:"egg"`
	Cloud    string `json:"cloud,omitempty"`
	State    string `json:"state"`
	Outcome  string `json:"outcome"`
	// TokenVersion is the secret version holding the new token.
	TokenVersion string `json:"token_version,omitempty"`
	// VerifiedBy is agent (the live agent read the new version and GitLab
	// accepted it) or gitlab (the worker checked the stored token itself).
	VerifiedBy string `json:"verified_by,omitempty"`
	// Agent is what the runner's agent did: confirmed, deferred (dormant:
	// it reads the token when resumed), gone, or empty when not asked.
	Agent string `json:"agent,omitempty"`
	// TokenWorks says whether GitLab accepts the stored token afterwards;
	// nil when it was not checked (skipped runners keep what they had). A
	// failed rotation with TokenWorks false left a runner without a working
	// token: rotate it again.
	TokenWorks *bool `json:"token_works,omitempty"`
	// Detail says why a rotation failed or was skipped.
	Detail string `json:"detail,omitempty"`
}

// RotateRunnerTokensResult reports a rotation, runner by runner, ordered by
// runner ID.
type RotateRunnerTokensResult struct {
	Runners []RunnerRotation `json:"runners"`
	Rotated int              `json:"rotated"`
	Failed  int              `json:"failed"`
	Skipped int              `json:"skipped"`
	// SharedTokens are the eggs' shared runner tokens the rotation reset,
	// ordered by token reference.
	SharedTokens []SharedTokenReset `json:"shared_tokens,omitempty"`
}

// SharedTokenReset is one reset of an egg's shared runner token: where it
// is stored, the secret version of the new token and when GitLab lets it
// expire (token_expires_at; nil when the instance sets no expiry).
type SharedTokenReset struct {
	TokenRef  string     `json:"token_ref"`
	Version   string     `json:"version"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}
