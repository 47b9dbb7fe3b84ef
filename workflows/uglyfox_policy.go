package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// FailedGrace is how long a runner stays in state failed before UglyFox
// tears it down: the workflow that failed may still be compensating.
const FailedGrace = 10 * time.Minute

// PoolOwner is the workflow ID of the pool that owns a runner, or "" for a
// runner made for one job. A pool's runners are made by its child
// workflows, whose IDs start with the pool's; a record that lost its
// workflow ID falls back to the pool's naming of runners.
func PoolOwner(egg, runnerID, workflowID string) string {
	pool := contract.PoolWorkflowID(egg)
	if workflowID != "" {
		if strings.HasPrefix(workflowID, pool+"/") {
			return pool
		}
		return ""
	}
	if contract.PoolOwned(egg, runnerID) {
		return pool
	}
	return ""
}

// Evaluate applies the UglyFox policies to runners at time now. It is a pure
// function of its arguments, so a workflow may call it. heartbeats holds
// what probes saw of machines (only runners with a probe have an entry);
// eggs holds each egg's pool minimums and idle override (an egg without an
// entry has minimums of zero).
//
// At most one decision is made per runner, the first that fires of:
// failed (state failed, or failures at the threshold), heartbeat (machine
// gone or silent past the timeout), age (Apex past max_age, Nadir past
// nadir_max_age), idle (Apex idle past the idle timeout). Failed and silent
// runners are terminated even while running a job; a busy runner is never
// touched for age or idleness. An old pool runner is recycled: the pool
// makes a replacement first and retires the old one once it has no job, so
// capacity never drops; one per pool per pass. With old.action terminate it
// is drained instead (retired once idle, not replaced). Idle Apex runners
// are demoted only down to the pool's Apex minimum.
func Evaluate(now time.Time, policy fly.UglyFox, runners []activities.RunnerView, heartbeats map[string]activities.Heartbeat, eggs map[string]activities.EggPolicy) []contract.Decision {
	sorted := slices.Clone(runners)
	slices.SortFunc(sorted, func(a, b activities.RunnerView) int { return strings.Compare(a.ID, b.ID) })

	var out []contract.Decision
	recycled := map[string]bool{} // pools with a recycle this pass
	apex := map[string]int{}      // pool -> active runners left after this pass's decisions
	var idle []idleCandidate      // demotion candidates
	decided := func(r activities.RunnerView, pool, policyName, action, reason string, force bool) {
		out = append(out, contract.Decision{
			RunnerID: r.ID, Egg: r.Egg, State: r.State, Pool: pool, GitLabRunnerID: r.GitLabRunnerID,
			Policy: policyName, Action: action, Reason: reason, Force: force,
		})
	}
	for _, r := range sorted {
		pool := PoolOwner(r.Egg, r.ID, r.WorkflowID)
		switch r.State {
		case store.StateActive, store.StateDormant, store.StateDraining, store.StateFailed:
		default:
			continue // being made or torn down by a workflow of its own
		}
		// 1. Failed runners.
		if r.State == store.StateFailed {
			if now.Sub(r.Since) >= FailedGrace {
				decided(r, pool, contract.PolicyFailed, contract.ActionTerminate, "left in state failed: "+orNone(r.Reason), true)
			}
			continue
		}
		if a := policy.Failed.Action; a != fly.ActionIgnore && policy.Failed.Threshold > 0 && r.Failures >= policy.Failed.Threshold {
			decided(r, pool, contract.PolicyFailed, terminateOrNotify(a),
				fmt.Sprintf("%d failures, threshold %d", r.Failures, policy.Failed.Threshold), true)
			continue
		}
		// 2. Heartbeats: where a probe looked, and from agents that post
		// theirs to the API (once one has, its silence counts).
		if _, probed := heartbeats[r.ID]; !probed && r.LastHeartbeat != nil && policy.Heartbeat.Action != fly.ActionIgnore &&
			r.State != store.StateDormant && policy.Heartbeat.Timeout > 0 {
			if silent := now.Sub(*r.LastHeartbeat); silent > policy.Heartbeat.Timeout.D() {
				decided(r, pool, contract.PolicyHeartbeat, terminateOrNotify(policy.Heartbeat.Action),
					fmt.Sprintf("no heartbeat from its agent for %s (timeout %s)", fly.Duration(silent.Round(time.Second)), policy.Heartbeat.Timeout), true)
				continue
			}
		}
		if hb, ok := heartbeats[r.ID]; ok && policy.Heartbeat.Action != fly.ActionIgnore {
			action := terminateOrNotify(policy.Heartbeat.Action)
			if hb.Gone {
				decided(r, pool, contract.PolicyHeartbeat, action, "the machine's agent process is gone", true)
				continue
			}
			if r.State != store.StateDormant && policy.Heartbeat.Timeout > 0 {
				last := latest(r.Since, hb.At, r.LastHeartbeat)
				if silent := now.Sub(last); silent > policy.Heartbeat.Timeout.D() {
					decided(r, pool, contract.PolicyHeartbeat, action,
						fmt.Sprintf("no heartbeat for %s (timeout %s)", fly.Duration(silent.Round(time.Second)), policy.Heartbeat.Timeout), true)
					continue
				}
			}
		}
		// 3. Age.
		if a := policy.Old.Action; a != fly.ActionIgnore {
			age := now.Sub(r.CreatedAt)
			limit, name := policy.Old.MaxAge, contract.PolicyMaxAge
			if r.State == store.StateDormant {
				limit, name = policy.Old.NadirMaxAge, contract.PolicyNadirAge
			}
			if limit > 0 && age >= limit.D() && !r.Busy {
				reason := fmt.Sprintf("%s old, max %s", fly.Duration(age.Round(time.Minute)), limit)
				switch {
				case a == fly.ActionNotify:
					decided(r, pool, name, contract.ActionNotify, reason, false)
					continue
				case pool == "":
					// A one-job runner has nothing to replace it with:
					// it is retired once it is idle.
					decided(r, pool, name, contract.ActionTerminate, reason, false)
					continue
				case a == fly.ActionTerminate:
					// The pool retires it once it has no job.
					decided(r, pool, name, contract.ActionDrain, reason, false)
					continue
				case !recycled[pool]:
					recycled[pool] = true
					decided(r, pool, name, contract.ActionRecycle, reason, false)
					continue
				}
			}
		}
		// 4. Idle Apex runners of a pool.
		if r.State != store.StateActive || pool == "" {
			continue
		}
		apex[pool]++
		if policy.Idle.Action == fly.ActionIgnore || r.Busy {
			continue
		}
		timeout := policy.Idle.Apex
		if e, ok := eggs[r.Egg]; ok && e.ApexIdle > 0 {
			timeout = e.ApexIdle
		}
		since := latest(r.Since, time.Time{}, r.LastJobAt)
		if timeout > 0 && now.Sub(since) >= timeout.D() {
			idle = append(idle, idleCandidate{r: r, pool: pool, since: since, timeout: timeout})
		}
	}
	// Longest idle first, never below the pool's Apex minimum.
	slices.SortStableFunc(idle, func(a, b idleCandidate) int { return a.since.Compare(b.since) })
	for _, c := range idle {
		if apex[c.pool] <= eggs[c.r.Egg].ApexMin {
			continue
		}
		action := contract.ActionDemote
		if policy.Idle.Action == fly.ActionNotify {
			action = contract.ActionNotify
		} else {
			apex[c.pool]--
		}
		decided(c.r, c.pool, contract.PolicyIdle, action, fmt.Sprintf("idle for %s (timeout %s)", fly.Duration(now.Sub(c.since).Round(time.Second)), c.timeout), false)
	}
	slices.SortStableFunc(out, func(a, b contract.Decision) int { return strings.Compare(a.RunnerID, b.RunnerID) })
	return out
}

type idleCandidate struct {
	r       activities.RunnerView
	pool    string
	since   time.Time
	timeout fly.Duration
}

func terminateOrNotify(action string) string {
	if action == fly.ActionNotify {
		return contract.ActionNotify
	}
	return contract.ActionTerminate
}

// latest is the latest of the given times; a heartbeat from the future
// (clock skew) counts as now-ish, never as silence.
func latest(base time.Time, t time.Time, p *time.Time) time.Time {
	out := base
	if t.After(out) {
		out = t
	}
	if p != nil && p.After(out) {
		out = *p
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}
