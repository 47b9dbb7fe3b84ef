package contract

import (
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// Workflows of the self-management jobs (Jobs/*.fly) and of the sweep.
const (
	// WorkflowSelfManagementJob is what a job's Schedule starts: one run
	// of the job, which runs the kind's workflow as a child and audits
	// the outcome.
	WorkflowSelfManagementJob = "SelfManagementJob"
	WorkflowNestUpdate        = "NestUpdate"
	WorkflowRunnerImageUpdate = "RunnerImageUpdate"
	WorkflowCustomJob         = "CustomJob"
	// WorkflowSweep is one pending-job sweep of one egg.
	WorkflowSweep = "Sweep"
)

// Temporal Schedules Gosling makes from the Nest. A job's schedule is
// ScheduleIDJobPrefix + its name, an egg's sweep ScheduleIDSweepPrefix +
// the egg's name; both carry the memo MemoScheduleOwner =
// ScheduleOwnerNest. Applying a Nest creates, updates and deletes exactly
// the schedules with one of these prefixes and that memo: schedules made
// by anyone else are left alone.
const (
	ScheduleIDJobPrefix   = "gosling-job-"
	ScheduleIDSweepPrefix = "gosling-sweep-"
	MemoScheduleOwner     = "gosling.owner"
	ScheduleOwnerNest     = "nest"
)

// JobScheduleID is the ID of a job's Temporal Schedule.
func JobScheduleID(job string) string { return ScheduleIDJobPrefix + job }

// SweepScheduleID is the ID of an egg's sweep Schedule.
func SweepScheduleID(egg string) string { return ScheduleIDSweepPrefix + egg }

// JobWorkflowID is the ID a job's Schedule gives its runs (Temporal adds
// the scheduled time).
func JobWorkflowID(job string) string { return "job/" + job }

// SweepWorkflowID is the ID an egg's sweep Schedule gives its runs.
func SweepWorkflowID(egg string) string { return "sweep/" + egg }

// JobActor is the audit actor of a job's runs.
func JobActor(job string) string { return "job/" + job }

// ErrTypeJobFailed is the type of the non-retryable error a job run ends
// with when the job did not do its work (an invalid Nest, a failed
// pipeline, runners that could not be rolled): the Schedule shows the run
// as failed, with the reason.
const ErrTypeJobFailed = "JobFailed"

// Audit actions of job runs and sweeps.
const (
	AuditJobRun          = "job-run"
	AuditSweepFound      = "sweep-found"
	AuditWebhookMissing  = "webhook-missing"
	AuditWebhookDisabled = "webhook-disabled"
	AuditWebhookEnabled  = "webhook-reenabled"
	AuditWebhookRepaired = "webhook-repaired"
	// AuditRedelivered: the sweep resent failed deliveries from GitLab's
	// delivery log; AuditRedeliveryGaveUp: one kept failing.
	AuditRedelivered      = "webhook-redelivered"
	AuditRedeliveryGaveUp = "webhook-redelivery-gave-up"
	AuditNestAccepted     = "nest-accepted"
)

// JobRunInput is one run of a self-management job. Applying the Nest
// resolves what each kind needs from the rest of the Nest (eggs, the Nest
// repository, providers) into its field, so a run never reads the Nest.
type JobRunInput struct {
	Job fly.Job `json:"job"`
	// Exactly one of these is set, the one of Job.Kind.
	Rotation    *RotateRunnerTokensInput `json:"rotation,omitempty"`
	NestUpdate  *NestUpdateInput         `json:"nest_update,omitempty"`
	ImageUpdate *RunnerImageUpdateInput  `json:"image_update,omitempty"`
	Custom      *CustomJobInput          `json:"custom,omitempty"`
}

// Outcomes of a job run.
const (
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// JobRunResult says how a run ended; a failed run also fails the workflow
// (ErrTypeJobFailed), so the Schedule shows it.
type JobRunResult struct {
	Job     string `json:"job"`
	Kind    string `json:"kind"`
	Outcome string `json:"outcome"`
	// Summary is one line about what the run did, for the audit log and
	// `gosling jobs schedule list`.
	Summary string `json:"summary"`
	// WorkflowID is the child workflow that did the work.
	WorkflowID string `json:"workflow_id,omitempty"`
}

// ErrTypeInvalidNest is the error type of a NestUpdate whose Nest does not
// validate; its message holds the diagnostics.
const ErrTypeInvalidNest = "InvalidNest"

// NestUpdateInput asks for the Nest at Ref.
type NestUpdateInput struct {
	// Ref is a branch, tag or commit of the Nest repository.
	Ref   string `json:"ref"`
	Actor string `json:"actor"`
}

// NestUpdateResult is the commit the update put in force, or the
// diagnostics of an invalid Nest (which stays out of force).
type NestUpdateResult struct {
	Commit      string `json:"commit"`
	Invalid     bool   `json:"invalid,omitempty"`
	Diagnostics string `json:"diagnostics,omitempty"`
	// Unchanged is set when that commit was in force already.
	Unchanged bool     `json:"unchanged,omitempty"`
	Eggs      int      `json:"eggs"`
	Pools     int      `json:"pools"`
	Warnings  []string `json:"warnings,omitempty"`
}

// DefaultRollPercent is the share of a pool's runners a runner image update
// replaces at a time.
const DefaultRollPercent = 25

// RunnerImageUpdateInput asks whether an image's tag moved and, if it did,
// for the pools of the eggs that use it to be rolled.
type RunnerImageUpdateInput struct {
	Job string `json:"job"`
	// Image is a reference with a tag, such as
	// registry.gitlab.com/gitlab-org/gitlab-runner:v18.6.0.
	Image string `json:"image"`
	// Username and Password log in to the registry; empty pulls
	// anonymously. Password is a secret URI.
	Username string        `json:"username,omitempty"`
	Password fly.SecretRef `json:"password,omitempty"`
	// Eggs are the eggs whose pools are rolled when the digest changes.
	Eggs []string `json:"eggs"`
	// RollPercent bounds the share of a pool's runners replaced at a
	// time (at least one runner).
	RollPercent int `json:"roll_percent"`
	// Poll is how often a roll looks at the pool (default 10s).
	Poll time.Duration `json:"poll,omitempty"`
}

// RunnerImageUpdateResult says what the update found and did.
type RunnerImageUpdateResult struct {
	Image    string `json:"image"`
	Digest   string `json:"digest"`
	Previous string `json:"previous,omitempty"`
	// Changed is set when the digest differs from the last one recorded;
	// the first run only records it.
	Changed bool `json:"changed"`
	// Rolled counts the runners replaced, per egg.
	Rolled map[string]int `json:"rolled,omitempty"`
}

// CustomJobInput runs a custom job's script on a runner made for it.
type CustomJobInput struct {
	Job string `json:"job"`
	// Runner is the egg spec of the dedicated runner: the chosen egg's
	// runner with the job's tags and image, registered for the Nest
	// project only (Projects[0]), holding the elevated token in its
	// environment when the job asks for one.
	Runner   fly.Egg      `json:"runner"`
	Cloud    string       `json:"cloud"`
	Provider fly.Provider `json:"provider"`
	// Ref is the Nest repository's ref the pipeline runs on.
	Ref string `json:"ref"`
	// Variables are the pipeline's variables: GOSLING_JOB,
	// GOSLING_JOB_SCRIPT and the job's params.variables.
	Variables map[string]string `json:"variables"`
	// Timeout bounds the pipeline (the job's timeout).
	Timeout time.Duration `json:"timeout"`
	// Poll is how often the pipeline is looked at (default 10s).
	Poll         time.Duration `json:"poll,omitempty"`
	ReadyTimeout time.Duration `json:"ready_timeout,omitempty"`
}

// Variables of a custom job's pipeline. The Nest's .gitlab-ci.yml runs
// the script with `eval "$GOSLING_JOB_SCRIPT"`.
const (
	VarJob            = "GOSLING_JOB"
	VarJobScript      = "GOSLING_JOB_SCRIPT"
	VarElevatedToken  = "GOSLING_ELEVATED_TOKEN"
	CustomRunnerEggOf = "job-"
)

// CustomJobResult is the pipeline's end.
type CustomJobResult struct {
	RunnerID   string `json:"runner_id"`
	PipelineID int64  `json:"pipeline_id"`
	Status     string `json:"status"`
	WebURL     string `json:"web_url,omitempty"`
}
