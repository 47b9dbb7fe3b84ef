package contract

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// Pool signals, queries and updates.
const (
	// SignalDemand tells an egg's pool that a job needs a runner. Payload: Demand.
	SignalDemand = "demand"
	// SignalRunnerProvisioned is sent by ProvisionRunner to the pool that
	// asked for the runner. Payload: RunnerProvisioned.
	SignalRunnerProvisioned = "runner-provisioned"
	// SignalRunnerRetired is sent by DeprovisionRunner to the pool that
	// retired the runner. Payload: RunnerRetired.
	SignalRunnerRetired = "runner-retired"
	// SignalPoolSpec gives the pool a new egg spec after a Nest change; it
	// applies to future runners. Payload: fly.Egg.
	SignalPoolSpec = "pool-spec"
	// SignalRunnerAction asks the pool that owns a runner to act on it, so
	// policies (UglyFox) never act behind the pool's back. Payload:
	// RunnerAction.
	SignalRunnerAction = "runner-action"
	// QueryPoolStatus returns a PoolStatus.
	QueryPoolStatus = "pool-status"
	// UpdatePoolScale sets temporary limits and resumes a drained pool.
	// Argument: PoolScale.
	UpdatePoolScale = "pool-scale"
	// UpdatePoolDrain retires every runner and stops making new ones until
	// the next UpdatePoolScale; jobs that ask meanwhile wait in line.
	UpdatePoolDrain = "pool-drain"
	// SignalPoolWarm tells a pool that jobs are coming (a push, a merge
	// request, a pipeline's created jobs), so it promotes Nadir runners
	// ahead of them for the egg's apex.warm_for. Payload: Warm.
	SignalPoolWarm = "pool-warm"
	// SignalRunnerInterrupted tells the pool that owns a runner that its
	// cloud is taking the machine away (a Spot or preemptible machine's
	// capacity is reclaimed), as its agent reported. Payload:
	// RunnerInterrupted.
	SignalRunnerInterrupted = "runner-interrupted"
)

// RunnerInterrupted is the payload of SignalRunnerInterrupted: the runner,
// the jobs its agent was running (which the machine will not finish),
// where the notice came from (agentapi's sources) and when the machine
// goes (zero when unknown).
type RunnerInterrupted struct {
	RunnerID string    `json:"runner_id"`
	Jobs     []JobRef  `json:"jobs"`
	Source   string    `json:"source"`
	Deadline time.Time `json:"deadline"`
	At       time.Time `json:"at"`
}

// ActorPool names the pool workflow in records.
const ActorPool = "mothergoose/pool"

// UsesPool says whether an egg's runners live in a pool: VM runners do
// (and auto eggs whose runners resolve to VMs); serverless runners are made
// per job.
func UsesPool(egg fly.Egg) bool {
	cloud := fly.CloudLocal
	if len(egg.Runner.Clouds) > 0 {
		cloud = egg.Runner.Clouds[0]
	}
	kind, _ := ChooseKind(egg, "", cloud, false)
	return kind != fly.RunnerServerless
}

// PoolOwned says whether a runner ID is one a pool of the egg made.
func PoolOwned(egg, runnerID string) bool {
	rest, ok := strings.CutPrefix(runnerID, egg+"-p")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// PoolWorkflowID is the ID of an egg's pool workflow.
func PoolWorkflowID(egg string) string { return "pool/" + egg }

// PoolRunnerID names the n-th runner a pool makes.
func PoolRunnerID(egg string, n int64) string { return fmt.Sprintf("%s-p%d", egg, n) }

// Demand is one job asking for a runner. Job.Tags may be nil: the pool then
// reads them from the Jobs API.
type Demand struct {
	Job JobRef    `json:"job"`
	At  time.Time `json:"at"`
}

// RunnerProvisioned reports how a pool's ProvisionRunner ended.
type RunnerProvisioned struct {
	RunnerID       string `json:"runner_id"`
	State          string `json:"state"` // active, dormant or terminated (failed)
	GitLabRunnerID int64  `json:"gitlab_runner_id"`
	TokenRef       string `json:"token_ref"`
	Kind           string `json:"kind"`
	Error          string `json:"error,omitempty"`
	// Outcome and Reason say why no runner was made for the job
	// (ProvisionRunnerResult's Outcome tags-mismatch or job-not-pending,
	// and its KindReason).
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Cloud is where the runner was made: the pool's cloud, or a later
	// one of the egg's when an earlier one refused the machine.
	Cloud string `json:"cloud,omitempty"`
	// Refusals are the placements that refused the machine, in order; the
	// pool leaves them alone for the egg's capacity_cooldown.
	Refusals []CapacityRefusal `json:"refusals,omitempty"`
}

// Runner actions a pool takes on request (RunnerAction.Action).
const (
	// ActionTerminate retires the runner now, even with a job: meant for
	// failed or silent runners.
	ActionTerminate = "terminate"
	// ActionRecycle replaces the runner: a new one is made first, and the
	// old one is retired once it has no job, so capacity never drops below
	// the pool's minimum. A busy runner is never cut short.
	ActionRecycle = "recycle"
	// ActionDrain retires the runner once it has no job, with no
	// replacement beyond what the minimums ask for.
	ActionDrain = "drain"
	// ActionDemote puts an idle Apex runner to sleep in Nadir (or retires
	// it when Nadir is full); a busy one is left alone.
	ActionDemote = "demote"
)

// RunnerAction is a request to the owning pool about one of its runners.
type RunnerAction struct {
	RunnerID string `json:"runner_id"`
	Action   string `json:"action"`
	// Policy names the rule that fired, Actor who asked, Reason why; all
	// three go to the audit log with the runner's transitions.
	Policy string `json:"policy,omitempty"`
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason"`
}

// RunnerRetired reports how a pool's DeprovisionRunner ended.
type RunnerRetired struct {
	RunnerID string `json:"runner_id"`
	Error    string `json:"error,omitempty"`
}

// PoolInput starts (or continues) an egg's pool workflow.
type PoolInput struct {
	Egg      fly.Egg      `json:"egg"`
	Cloud    string       `json:"cloud,omitempty"`
	Provider fly.Provider `json:"provider"`
	// State carries the pool across continue-as-new; nil for a new pool.
	State *PoolState `json:"state,omitempty"`
	// ReadyTimeout bounds the wait for a promoted runner's ready signal.
	ReadyTimeout time.Duration `json:"ready_timeout,omitempty"`
	// Tick is how often idle runners are looked at (default 15s).
	Tick time.Duration `json:"tick,omitempty"`
	// Providers are the Nest's providers by cloud name, for runners made
	// on a later cloud of the egg (ProvisionRunnerInput.Providers).
	Providers map[string]fly.Provider `json:"providers,omitempty"`
}

// Pool runner states, as the pool sees them.
const (
	PoolProvisioning = "provisioning"
	PoolApex         = "apex"
	PoolNadir        = "nadir"
	PoolPromoting    = "promoting"
	PoolDemoting     = "demoting"
	PoolRetiring     = "retiring"
)

// How a demand was served, for metrics and status.
const (
	ServedByApex      = "apex"
	ServedByPromotion = "promotion"
	ServedByProvision = "provision"
)

// PoolRunner is one runner of a pool.
type PoolRunner struct {
	ID             string    `json:"id"`
	State          string    `json:"state"`
	Kind           string    `json:"kind"`
	GitLabRunnerID int64     `json:"gitlab_runner_id,omitempty"`
	TokenRef       string    `json:"token_ref,omitempty"`
	CPU            float64   `json:"cpu"`
	Memory         fly.Size  `json:"memory"`
	CreatedAt      time.Time `json:"created_at"`
	// IdleSince is when it last had no job; zero while busy.
	IdleSince time.Time `json:"idle_since"`
	// Jobs are the jobs it serves or is reserved for.
	Jobs      []int64   `json:"jobs,omitempty"`
	LastJob   int64     `json:"last_job,omitempty"`
	LastJobAt time.Time `json:"last_job_at"`
	// Since is when it entered its state, or, while it is being made or
	// promoted for a job, when that job asked.
	Since time.Time `json:"since"`
	// Dormant is set on a runner being made for Nadir.
	Dormant bool `json:"dormant,omitempty"`
	// ServedBy is how the job it was reserved for while not yet ready is
	// being served (provision or promotion).
	ServedBy string `json:"served_by,omitempty"`
	// Recycle is why the runner is being replaced; it is retired once it
	// has no job.
	Recycle string `json:"recycle,omitempty"`
	// Replacement is the runner made to replace it.
	Replacement string `json:"replacement,omitempty"`
	// Projects says which of the egg's project lists the runner was
	// assigned to in GitLab (ProjectsKey); when the egg's list changes,
	// the pool enables the runner in the new projects.
	Projects string `json:"projects,omitempty"`
	// Cloud is where the runner runs when not on the pool's cloud.
	Cloud string `json:"cloud,omitempty"`
	// WarmUntil is set on a runner promoted ahead of announced jobs
	// (SignalPoolWarm): idle at that time, it goes back to Nadir.
	WarmUntil time.Time `json:"warm_until"`
}

// ProjectsKey names an egg's list of projects, to tell when it changed;
// "" for a group's egg, whose group runners take every project's jobs.
func ProjectsKey(egg fly.Egg) string {
	if egg.Group != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range egg.Projects {
		b.WriteString(strconv.FormatInt(p.ID, 10))
		b.WriteByte(':')
		b.WriteString(p.Path)
		b.WriteByte(';')
	}
	return b.String()
}

// Waiting is a job that no runner can take yet.
type Waiting struct {
	Job JobRef    `json:"job"`
	At  time.Time `json:"at"`
}

// PoolLimits are an egg's Apex and Nadir limits, possibly overridden.
type PoolLimits struct {
	ApexMin  int `json:"apex_min"`
	ApexMax  int `json:"apex_max"`
	NadirMin int `json:"nadir_min"`
	NadirMax int `json:"nadir_max"`
}

// PoolStats counts what the pool did.
type PoolStats struct {
	Served       map[string]int `json:"served"`
	Promotions   int            `json:"promotions"`
	Demotions    int            `json:"demotions"`
	Provisioned  int            `json:"provisioned"`
	Retired      int            `json:"retired"`
	Failed       int            `json:"failed"`
	Recycled     int            `json:"recycled"`
	JobsFinished int            `json:"jobs_finished"`
	// Warmed counts Nadir runners promoted ahead of announced jobs, and
	// Cooled those of them that went back to Nadir with no job.
	Warmed int `json:"warmed,omitempty"`
	Cooled int `json:"cooled,omitempty"`
	// DemandToRunner is the summed time from demand to a runner, per path
	// (divide by Served for the mean).
	DemandToRunner map[string]time.Duration `json:"demand_to_runner"`
	Runs           int                      `json:"runs"`
}

// PoolState is everything a pool knows, in one struct that is carried
// across continue-as-new.
type PoolState struct {
	Egg       fly.Egg       `json:"egg"`
	Overrides *PoolLimits   `json:"overrides,omitempty"`
	Runners   []*PoolRunner `json:"runners"`
	Waiting   []Waiting     `json:"waiting"`
	// Known holds recently seen job IDs, so a repeated demand is ignored.
	Known    []int64   `json:"known"`
	Draining bool      `json:"draining"`
	Seq      int64     `json:"seq"`
	Stats    PoolStats `json:"stats"`

	// Done holds recent jobs that need no runner any more, seen running
	// (a runner has them) or finished, so a demand that comes late is
	// dropped and a slot is never held for them.
	Done []int64 `json:"done,omitempty"`
	// Ended holds recent jobs seen finished, so a late report of one
	// running never makes a runner hold it.
	Ended []int64 `json:"ended,omitempty"`

	// Expected are the jobs announced and not yet come, by what
	// announced them (SignalPoolWarm).
	Expected []Expected `json:"expected,omitempty"`

	// Ignored are the latest jobs (at most MaxIgnoredJobs) the pool
	// turned away because no runner of its egg can take them, with why.
	Ignored []IgnoredJob `json:"ignored,omitempty"`

	// Refused are the placements that refused a machine lately, left
	// alone until their Until (the refusal plus the egg's
	// capacity_cooldown), one entry per placement.
	Refused []RefusedPlacement `json:"refused,omitempty"`

	// Interrupted are the latest jobs (at most MaxInterruptedJobs) that
	// were running on a runner whose machine its cloud took away, each
	// retried once that runner is gone.
	Interrupted []InterruptedJob `json:"interrupted,omitempty"`
}

// InterruptedJob is a job an interrupted runner did not finish, and what
// became of it: Retry is "" until the runner is gone, then asked, then
// the retry's outcome (activities' RetryOutcome*) or failed; NewJobID is
// its retry.
type InterruptedJob struct {
	Job      JobRef    `json:"job"`
	RunnerID string    `json:"runner_id"`
	At       time.Time `json:"at"`
	Retry    string    `json:"retry,omitempty"`
	NewJobID int64     `json:"new_job_id,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// MaxInterruptedJobs bounds PoolState.Interrupted.
const MaxInterruptedJobs = 50

// RefusedPlacement is a placement a pool leaves alone until Until, after
// it refused a machine for capacity or quota (Class, Message).
type RefusedPlacement struct {
	Placement fly.Placement `json:"placement"`
	Class     string        `json:"class"`
	Message   string        `json:"message"`
	At        time.Time     `json:"at"`
	Until     time.Time     `json:"until"`
}

// IgnoredJob is a job a pool will make no runner for, and why (such as
// "the job has no tags and the egg's runners do not run untagged jobs").
type IgnoredJob struct {
	JobID  int64     `json:"job_id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// MaxIgnoredJobs bounds PoolState.Ignored.
const MaxIgnoredJobs = 50

// Warm is the payload of SignalPoolWarm: jobs an event says are coming.
type Warm struct {
	// Key names what announced them: "commit/<sha>" for a push or a
	// merge request, "pipeline/<id>" for a Pipeline Hook. A Warm replaces
	// the earlier one of its key; Jobs 0 withdraws it.
	Key string `json:"key"`
	// Commit, on a pipeline's Warm, withdraws its commit's announcement:
	// the pipeline says exactly what comes.
	Commit string `json:"commit,omitempty"`
	// Jobs is how many jobs are expected, and JobIDs which ones when the
	// event names them (a Pipeline Hook's created jobs): each one's demand
	// then settles its own part, and a job the pool has seen already is
	// not expected. Without IDs, any demand settles one, oldest first.
	Jobs   int     `json:"jobs"`
	JobIDs []int64 `json:"job_ids,omitempty"`
	// Reason says what was seen, for logs.
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Expected is an announcement a pool keeps until its jobs come or it
// expires.
type Expected struct {
	Key    string    `json:"key"`
	Jobs   int       `json:"jobs"`
	JobIDs []int64   `json:"job_ids,omitempty"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
}

// PoolScale is the argument of UpdatePoolScale: nil fields keep their value.
type PoolScale struct {
	ApexMin  *int `json:"apex_min,omitempty"`
	ApexMax  *int `json:"apex_max,omitempty"`
	NadirMin *int `json:"nadir_min,omitempty"`
	NadirMax *int `json:"nadir_max,omitempty"`
	// Reset drops every override.
	Reset bool `json:"reset,omitempty"`
}

// PoolStatus is the answer to QueryPoolStatus.
type PoolStatus struct {
	Egg      string         `json:"egg"`
	Limits   PoolLimits     `json:"limits"`
	Counts   map[string]int `json:"counts"`
	Waiting  int            `json:"waiting"`
	Draining bool           `json:"draining"`
	Runners  []PoolRunner   `json:"runners"`
	// WaitingJobs are the IDs of the waiting jobs, in order.
	WaitingJobs []int64 `json:"waiting_jobs,omitempty"`
	// CPU and Memory total the runners' resources per pool (apex, nadir).
	CPU    map[string]float64  `json:"cpu"`
	Memory map[string]fly.Size `json:"memory"`
	Stats  PoolStats           `json:"stats"`
	// HistoryLength is the current run's history length.
	HistoryLength int `json:"history_length"`
	// Expected are the announced jobs the pool is warmed for.
	Expected []Expected `json:"expected,omitempty"`
	// Ignored are the latest jobs the pool will make no runner for, with
	// the reason: what a client waiting for such a job shows.
	Ignored []IgnoredJob `json:"ignored,omitempty"`
	// Refused are the placements the pool leaves alone after a capacity
	// refusal, each until its cool-down ends (some may have ended since
	// the pool last looked).
	Refused []RefusedPlacement `json:"refused,omitempty"`
	// Interrupted are the latest jobs interrupted runners did not finish,
	// with what became of their retries.
	Interrupted []InterruptedJob `json:"interrupted,omitempty"`
}

// MemoPoolFigures is the memo key under which a pool publishes its
// PoolFigures whenever they change, so metrics read every pool with one
// visibility list instead of a query per pool.
const MemoPoolFigures = "gosling.pool"

// PoolFigures are what a pool publishes of itself for metrics.
type PoolFigures struct {
	Egg string `json:"egg"`
	// Counts are its runners by pool state (apex, nadir, promoting, ...).
	Counts     map[string]int `json:"counts"`
	Waiting    int            `json:"waiting"`
	Promotions int            `json:"promotions"`
	Demotions  int            `json:"demotions"`
	// Served counts the jobs served by path (apex, promotion, provision)
	// and DemandToRunner sums their wait from demand to a runner.
	Served         map[string]int           `json:"served"`
	DemandToRunner map[string]time.Duration `json:"demand_to_runner"`
}
