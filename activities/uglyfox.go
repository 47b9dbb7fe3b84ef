package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/activity"
)

// LiveStates are the states UglyFox looks at: every state but terminated.
var LiveStates = []store.RunnerState{
	store.StateProvisioning, store.StateRegistering, store.StateActive, store.StateDormant,
	store.StateDraining, store.StateTerminating, store.StateFailed,
}

// RunnerView is the part of a runner's record the policies need, small
// enough that thousands fit in one workflow payload.
type RunnerView struct {
	ID    string            `json:"id"`
	Egg   string            `json:"egg"`
	Cloud string            `json:"cloud,omitempty"`
	Kind  string            `json:"kind,omitempty"`
	State store.RunnerState `json:"state"`
	// WorkflowID made the runner; it tells pool runners from one-job runners.
	WorkflowID     string    `json:"wf,omitempty"`
	GitLabRunnerID int64     `json:"gl,omitempty"`
	JobID          int64     `json:"job,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	Failures       int       `json:"failures,omitempty"`
	CreatedAt      time.Time `json:"created"`
	// Since is the record's last change: at the latest, when the runner
	// entered its state.
	Since         time.Time  `json:"since"`
	LastHeartbeat *time.Time `json:"hb,omitempty"`
	LastJobAt     *time.Time `json:"last_job,omitempty"`
	// Busy is set when the store knows the runner's job is running.
	Busy bool `json:"busy,omitempty"`
}

// Heartbeat is what a probe of a runner's machine saw. Only runners with a
// probe (the local provider's agent processes) have one.
type Heartbeat struct {
	RunnerID string `json:"runner_id"`
	// At is the agent's last heartbeat; zero when it never wrote one.
	At time.Time `json:"at"`
	// Gone is set when the machine's agent process is dead.
	Gone bool `json:"gone,omitempty"`
	// Stopped is set when the process is stopped (a dormant machine).
	Stopped bool `json:"stopped,omitempty"`
}

// RunnerPageInput asks for one page of live runners, by ID.
type RunnerPageInput struct {
	After string `json:"after,omitempty"`
	Limit int    `json:"limit"`
}

// RunnerPage is one page of live runners with their machines' heartbeats.
type RunnerPage struct {
	Runners    []RunnerView `json:"runners"`
	Heartbeats []Heartbeat  `json:"heartbeats,omitempty"`
	// Next is the After of the next page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// ListRunnerViews reads one page of runners that are not terminated, marks
// those whose job the store knows is running, and probes the agent process
// of local machines.
func (a *Activities) ListRunnerViews(ctx context.Context, in RunnerPageInput) (RunnerPage, error) {
	limit := in.Limit
	if limit <= 0 {
		limit = 500
	}
	rows, err := a.Store.ListRunners(ctx, store.RunnerFilter{States: LiveStates, After: in.After, Limit: limit})
	if err != nil {
		return RunnerPage{}, err
	}
	page := RunnerPage{Runners: make([]RunnerView, 0, len(rows))}
	for _, r := range rows {
		v := viewOf(r)
		if r.JobID != 0 {
			if j, err := a.Store.GetJob(ctx, r.GitLabHost, r.JobID); err == nil {
				v.Busy = j.Status == "running"
			} else if !errors.Is(err, store.ErrNotFound) {
				return RunnerPage{}, fmt.Errorf("read job %d of runner %s: %w", r.JobID, r.ID, err)
			}
		}
		page.Runners = append(page.Runners, v)
		if hb, ok := a.probe(r); ok {
			page.Heartbeats = append(page.Heartbeats, hb)
		}
	}
	if len(rows) == limit {
		page.Next = rows[len(rows)-1].ID
	}
	return page, nil
}

func viewOf(r store.Runner) RunnerView {
	return RunnerView{
		ID: r.ID, Egg: r.Egg, Cloud: r.Cloud, Kind: r.Kind, State: r.State, WorkflowID: r.WorkflowID,
		GitLabRunnerID: r.GitLabRunnerID, JobID: r.JobID, Reason: r.Reason, Failures: r.Failures,
		CreatedAt: r.CreatedAt, Since: r.UpdatedAt, LastHeartbeat: r.LastHeartbeat, LastJobAt: r.LastJobAt,
	}
}

// probe inspects a local machine's agent process. Other clouds have no
// probe: their runners are judged by what the store records.
func (a *Activities) probe(r store.Runner) (Heartbeat, bool) {
	if r.Cloud != fly.CloudLocal || a.Tofu == nil {
		return Heartbeat{}, false
	}
	switch r.State {
	case store.StateActive, store.StateDormant, store.StateDraining:
	default:
		return Heartbeat{}, false
	}
	st := agent.Inspect(MachineDir(a.Tofu.StateDir(), r.ID))
	return Heartbeat{RunnerID: r.ID, At: st.LastHeartbeat, Gone: !st.Alive, Stopped: st.Stopped}, true
}

// EggPolicy is what UglyFox needs of an egg's stored configuration.
type EggPolicy struct {
	Name   string     `json:"name"`
	GitLab fly.GitLab `json:"gitlab"`
	// ApexMin and NadirMin are the pool's minimums.
	ApexMin  int `json:"apex_min"`
	NadirMin int `json:"nadir_min"`
	// ApexIdle, when set, overrides UF's idle.apex for this egg.
	ApexIdle fly.Duration `json:"apex_idle,omitempty"`
}

// ListEggPolicies reads every stored egg configuration, sorted by name.
func (a *Activities) ListEggPolicies(ctx context.Context) ([]EggPolicy, error) {
	cfgs, err := a.Store.ListEggConfigs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]EggPolicy, 0, len(cfgs))
	for _, c := range cfgs {
		var e fly.Egg
		if err := json.Unmarshal(c.Spec, &e); err != nil {
			return nil, fmt.Errorf("decode stored egg %s: %w", c.Name, err)
		}
		out = append(out, EggPolicy{Name: c.Name, GitLab: e.GitLab, ApexMin: e.Apex.Min, NadirMin: e.Nadir.Min, ApexIdle: e.Apex.IdleTimeout})
	}
	slices.SortFunc(out, func(x, y EggPolicy) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// RetireCheckInput names a GitLab runner about to be retired.
type RetireCheckInput struct {
	GitLab         fly.GitLab `json:"gitlab"`
	GitLabRunnerID int64      `json:"gitlab_runner_id"`
	// RunnerID names the machine: one on the egg's shared runner is
	// checked by its agent's reports, not paused in GitLab.
	RunnerID string `json:"runner_id,omitempty"`
	// Force retires even a runner with a running job (failed or silent ones).
	Force bool `json:"force,omitempty"`
}

// RetireCheck says whether a runner may be torn down now.
type RetireCheck struct {
	// Busy is set when the runner runs a job and was not forced: it was
	// unpaused again and must be left alone.
	Busy bool `json:"busy"`
	// Gone is set when GitLab no longer knows the runner.
	Gone bool `json:"gone,omitempty"`
}

// PauseForRetire makes tearing a runner down race-free: pause it in GitLab
// so it takes no new job, then confirm it runs none. A busy runner is
// unpaused again, unless forced.
func (a *Activities) PauseForRetire(ctx context.Context, in RetireCheckInput) (RetireCheck, error) {
	if in.GitLabRunnerID == 0 {
		return RetireCheck{Gone: true}, nil
	}
	if in.RunnerID != "" {
		r, err := a.Store.GetRunner(ctx, in.RunnerID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return RetireCheck{}, fmt.Errorf("read runner %s: %w", in.RunnerID, err)
		}
		if err == nil && contract.IsEggRunnerToken(r.TokenRef) {
			if in.Force {
				return RetireCheck{}, nil
			}
			busy, err := a.machineBusy(ctx, in.RunnerID)
			return RetireCheck{Busy: busy}, err
		}
	}
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return RetireCheck{}, err
	}
	if err := gl.SetRunnerPaused(ctx, in.GitLabRunnerID, true); err != nil {
		if gitlab.IsNotFound(err) {
			return RetireCheck{Gone: true}, nil
		}
		return RetireCheck{}, fmt.Errorf("pause GitLab runner %d: %w", in.GitLabRunnerID, err)
	}
	if in.Force {
		return RetireCheck{}, nil
	}
	busy, err := unpauseIfBusy(ctx, gl, in.GitLabRunnerID)
	return RetireCheck{Busy: busy}, err
}

// AuditState is the before or after of an audit record.
type AuditState struct {
	State   store.RunnerState `json:"state,omitempty"`
	Pool    string            `json:"pool,omitempty"`
	Outcome string            `json:"outcome,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// AuditEntry is an audit record as a workflow writes it: its before and
// after are encoded here, out of workflow code.
type AuditEntry struct {
	At       time.Time  `json:"at"`
	Actor    string     `json:"actor"`
	Action   string     `json:"action"`
	Egg      string     `json:"egg,omitempty"`
	RunnerID string     `json:"runner_id,omitempty"`
	Policy   string     `json:"policy,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Before   AuditState `json:"before"`
	After    AuditState `json:"after"`
}

// AppendAudits appends audit records in order. A retry of the activity
// writes nothing twice: each record is keyed by the workflow run, the
// activity and its place in the batch (auditKeyPrefix).
func (a *Activities) AppendAudits(ctx context.Context, entries []AuditEntry) error {
	prefix := auditKeyPrefix(ctx)
	for i, e := range entries {
		before, err := json.Marshal(e.Before)
		if err != nil {
			return err
		}
		after, err := json.Marshal(e.After)
		if err != nil {
			return err
		}
		r := store.AuditRecord{
			At: e.At, Actor: e.Actor, Action: e.Action, Egg: e.Egg, RunnerID: e.RunnerID,
			Policy: e.Policy, Reason: e.Reason, Before: before, After: after,
		}
		if prefix != "" {
			r.Key = prefix + strconv.Itoa(i)
		}
		if r.At.IsZero() {
			r.At = time.Now().UTC()
		}
		if _, err := a.Store.AppendAudit(ctx, r); err != nil {
			return fmt.Errorf("append audit %s of %s: %w", r.Action, r.RunnerID, err)
		}
	}
	// UglyFox's records are its carried-out decisions: counted once the
	// batch is written, so a failed attempt that is retried counts once.
	for _, e := range entries {
		if e.Actor == contract.ActorUglyFox && e.Policy != "" {
			a.Metrics.ObserveUglyFoxAction(e.Policy, e.Action, UglyFoxOutcome(e.After))
		}
	}
	return nil
}

// UglyFox outcomes: the bounded label values of
// gosling_uglyfox_actions_total{outcome}.
const (
	OutcomeDone      = "done"
	OutcomeRequested = "requested"
	OutcomeRecorded  = "recorded"
	OutcomeSkipped   = "skipped"
	OutcomeFailed    = "failed"
)

// UglyFoxOutcome sorts what became of an UglyFox decision (its audit
// record's after) into a bounded outcome: failed when it has an error,
// skipped, requested (from the runner's pool), recorded (notify), and done
// for the rest (terminated, reaped, marked terminated, already gone).
func UglyFoxOutcome(after AuditState) string {
	switch o := after.Outcome; {
	case after.Error != "":
		return OutcomeFailed
	case strings.HasPrefix(o, "skipped"):
		return OutcomeSkipped
	case strings.HasPrefix(o, "requested"):
		return OutcomeRequested
	case o == "recorded":
		return OutcomeRecorded
	}
	return OutcomeDone
}

// ExpireAudit deletes audit records older than before (the audit policy's
// retention) and returns how many.
func (a *Activities) ExpireAudit(ctx context.Context, before time.Time) (int64, error) {
	return a.Store.ExpireAudit(ctx, before)
}

// auditKeyPrefix is "<run ID>/<activity ID>/" when ctx is an activity's
// (a local activity's too), "" otherwise. Both IDs are the same in every
// attempt of the activity and, for a local activity, in every replay of
// the workflow task that ran it, so a record keyed with it is written
// once even when a retried workflow task runs the local activity again.
func auditKeyPrefix(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	info := activity.GetInfo(ctx)
	return info.WorkflowExecution.RunID + "/" + info.ActivityID + "/"
}
