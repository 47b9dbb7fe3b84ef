package workflows

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/activities"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

var evalNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// poolRunner is an active runner of pool/web made an hour ago, changed ten
// minutes ago.
func poolRunner(n int, mutate ...func(*activities.RunnerView)) activities.RunnerView {
	id := contract.PoolRunnerID("web", int64(n))
	r := activities.RunnerView{
		ID: id, Egg: "web", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: store.StateActive,
		WorkflowID: contract.PoolWorkflowID("web") + "/runner/" + id, GitLabRunnerID: int64(100 + n),
		CreatedAt: evalNow.Add(-time.Hour), Since: evalNow.Add(-10 * time.Minute),
	}
	for _, m := range mutate {
		m(&r)
	}
	return r
}

// jobRunner is an active runner made for one job, with no pool.
func jobRunner(id string, mutate ...func(*activities.RunnerView)) activities.RunnerView {
	r := activities.RunnerView{
		ID: id, Egg: "web", Cloud: fly.CloudAWS, Kind: fly.RunnerVM, State: store.StateActive,
		WorkflowID: contract.RunnerWorkflowID("gitlab.example.com", 7), GitLabRunnerID: 900, JobID: 7,
		CreatedAt: evalNow.Add(-time.Hour), Since: evalNow.Add(-10 * time.Minute),
	}
	for _, m := range mutate {
		m(&r)
	}
	return r
}

func ago(d time.Duration) *time.Time {
	t := evalNow.Add(-d)
	return &t
}

// summary renders decisions as runner:policy:action[!] (! when forced).
func summary(ds []contract.Decision) string {
	var parts []string
	for _, d := range ds {
		s := d.RunnerID + ":" + d.Policy + ":" + d.Action
		if d.Force {
			s += "!"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestEvaluatePolicies(t *testing.T) {
	uf := fly.DefaultUglyFox() // failed 3, max_age 72h, nadir 7d, idle apex 30m, heartbeat 5m
	hb := func(id string, at time.Duration) activities.Heartbeat {
		return activities.Heartbeat{RunnerID: id, At: evalNow.Add(-at)}
	}
	tests := []struct {
		name       string
		policy     func(*fly.UglyFox)
		runners    []activities.RunnerView
		heartbeats []activities.Heartbeat
		eggs       map[string]activities.EggPolicy
		want       string
	}{
		{
			name:       "healthy runners: nothing to do",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) }), jobRunner("web-a")},
			heartbeats: []activities.Heartbeat{hb("web-p1", 10*time.Second)},
		},
		{
			name:       "heartbeat past the timeout terminates, forced",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) })},
			heartbeats: []activities.Heartbeat{hb("web-p1", 6*time.Minute)},
			want:       "web-p1:heartbeat:terminate!",
		},
		{
			name:       "heartbeat exactly at the timeout is not silence",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) })},
			heartbeats: []activities.Heartbeat{hb("web-p1", 5*time.Minute)},
		},
		{
			name:       "a store heartbeat newer than the probe's counts",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.LastHeartbeat = ago(time.Minute); r.LastJobAt = ago(time.Minute) })},
			heartbeats: []activities.Heartbeat{hb("web-p1", time.Hour)},
		},
		{
			name: "a runner that just changed state is not silent yet",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.Since = evalNow.Add(-time.Minute)
			})},
			heartbeats: []activities.Heartbeat{hb("web-p1", time.Hour)},
		},
		{
			name:       "no probe and no beat posted: no heartbeat policy",
			runners:    []activities.RunnerView{jobRunner("web-a")},
			heartbeats: nil,
		},
		{
			name:       "an agent that posted beats and went silent terminates, forced",
			runners:    []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.LastHeartbeat = ago(time.Hour) })},
			heartbeats: nil,
			want:       "web-a:heartbeat:terminate!",
		},
		{
			name:       "an agent that posted a beat lately is alive",
			runners:    []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.LastHeartbeat = ago(time.Minute) })},
			heartbeats: nil,
		},
		{
			name:       "a dormant runner does not heartbeat, and is not silent",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.State = store.StateDormant })},
			heartbeats: []activities.Heartbeat{{RunnerID: "web-p1", Stopped: true}},
		},
		{
			name:       "a dead machine process terminates, even dormant",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.State = store.StateDormant })},
			heartbeats: []activities.Heartbeat{{RunnerID: "web-p1", Gone: true}},
			want:       "web-p1:heartbeat:terminate!",
		},
		{
			name:       "heartbeat action notify only records",
			policy:     func(u *fly.UglyFox) { u.Heartbeat.Action = fly.ActionNotify },
			runners:    []activities.RunnerView{poolRunner(1)},
			heartbeats: []activities.Heartbeat{hb("web-p1", time.Hour)},
			want:       "web-p1:heartbeat:notify!",
		},
		{
			name:       "heartbeat action ignore",
			policy:     func(u *fly.UglyFox) { u.Heartbeat.Action = fly.ActionIgnore },
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.LastJobAt = ago(time.Minute) })},
			heartbeats: []activities.Heartbeat{hb("web-p1", time.Hour)},
		},
		{
			name:    "failures at the threshold terminate",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Failures = 3; r.LastJobAt = ago(time.Minute) }), poolRunner(2, func(r *activities.RunnerView) { r.Failures = 2; r.LastJobAt = ago(time.Minute) })},
			want:    "web-p1:failed:terminate!",
		},
		{
			name:    "a failed busy runner is killed",
			runners: []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.Failures = 5; r.Busy = true })},
			want:    "web-a:failed:terminate!",
		},
		{
			name:       "failures win over a heartbeat and age",
			runners:    []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Failures = 9; r.CreatedAt = evalNow.Add(-100 * time.Hour) })},
			heartbeats: []activities.Heartbeat{hb("web-p1", time.Hour)},
			want:       "web-p1:failed:terminate!",
		},
		{
			name: "state failed is torn down after the grace",
			runners: []activities.RunnerView{
				poolRunner(1, func(r *activities.RunnerView) { r.State = store.StateFailed; r.Since = evalNow.Add(-FailedGrace) }),
				poolRunner(2, func(r *activities.RunnerView) { r.State = store.StateFailed; r.Since = evalNow.Add(-time.Minute) }),
			},
			want: "web-p1:failed:terminate!",
		},
		{
			name: "pool runner past max age is recycled, not forced",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.CreatedAt = evalNow.Add(-73 * time.Hour)
				r.LastJobAt = ago(time.Minute)
			})},
			want: "web-p1:old.max_age:recycle",
		},
		{
			name: "one recycle per pool per pass, so capacity never drops",
			runners: []activities.RunnerView{
				poolRunner(1, func(r *activities.RunnerView) {
					r.CreatedAt = evalNow.Add(-80 * time.Hour)
					r.LastJobAt = ago(time.Minute)
				}),
				poolRunner(2, func(r *activities.RunnerView) {
					r.CreatedAt = evalNow.Add(-80 * time.Hour)
					r.LastJobAt = ago(time.Minute)
				}),
				poolRunner(3, func(r *activities.RunnerView) {
					r.Egg, r.ID = "api", "api-p3"
					r.WorkflowID = contract.PoolWorkflowID("api") + "/runner/api-p3"
					r.CreatedAt = evalNow.Add(-80 * time.Hour)
					r.LastJobAt = ago(time.Minute)
				}),
			},
			want: "api-p3:old.max_age:recycle web-p1:old.max_age:recycle",
		},
		{
			name:    "busy one-job runner past max age is not killed",
			runners: []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.CreatedAt = evalNow.Add(-100 * time.Hour); r.Busy = true })},
		},
		{
			name:    "idle one-job runner past max age is retired after the GitLab check",
			runners: []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.CreatedAt = evalNow.Add(-100 * time.Hour) })},
			want:    "web-a:old.max_age:terminate",
		},
		{
			name: "Nadir runner past nadir_max_age is replaced",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.State = store.StateDormant
				r.CreatedAt = evalNow.Add(-8 * 24 * time.Hour)
			})},
			want: "web-p1:old.nadir_max_age:recycle",
		},
		{
			name: "Nadir runner past max_age but within nadir_max_age stays",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.State = store.StateDormant
				r.CreatedAt = evalNow.Add(-100 * time.Hour)
			})},
		},
		{
			name:   "old action notify",
			policy: func(u *fly.UglyFox) { u.Old.Action = fly.ActionNotify },
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.CreatedAt = evalNow.Add(-100 * time.Hour)
				r.LastJobAt = ago(time.Minute)
			})},
			want: "web-p1:old.max_age:notify",
		},
		{
			name:    "idle Apex runner is demoted through its pool",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour); r.LastJobAt = ago(40 * time.Minute) })},
			want:    "web-p1:idle.apex:demote",
		},
		{
			name:    "a recent job keeps a runner from idling",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour); r.LastJobAt = ago(20 * time.Minute) })},
		},
		{
			name:    "a busy Apex runner is never idle",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour); r.Busy = true })},
		},
		{
			name: "demotion stops at the pool's Apex minimum, longest idle first",
			runners: []activities.RunnerView{
				poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour) }),
				poolRunner(2, func(r *activities.RunnerView) { r.Since = evalNow.Add(-3 * time.Hour) }),
				poolRunner(3, func(r *activities.RunnerView) { r.Since = evalNow.Add(-2 * time.Hour) }),
			},
			eggs: map[string]activities.EggPolicy{"web": {Name: "web", ApexMin: 1}},
			want: "web-p2:idle.apex:demote web-p3:idle.apex:demote",
		},
		{
			name:    "pool at its minimum: nothing is demoted",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour) })},
			eggs:    map[string]activities.EggPolicy{"web": {Name: "web", ApexMin: 1}},
		},
		{
			name:    "the egg's idle timeout overrides UF's",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour) })},
			eggs:    map[string]activities.EggPolicy{"web": {Name: "web", ApexIdle: fly.Duration(2 * time.Hour)}},
		},
		{
			name:    "one-job runners are not demoted",
			runners: []activities.RunnerView{jobRunner("web-a", func(r *activities.RunnerView) { r.Since = evalNow.Add(-5 * time.Hour) })},
		},
		{
			name: "runners being made or torn down are left to their workflows",
			runners: []activities.RunnerView{
				poolRunner(1, func(r *activities.RunnerView) { r.State = store.StateProvisioning; r.Failures = 9 }),
				poolRunner(2, func(r *activities.RunnerView) {
					r.State = store.StateRegistering
					r.CreatedAt = evalNow.Add(-100 * time.Hour)
				}),
				poolRunner(3, func(r *activities.RunnerView) { r.State = store.StateTerminating; r.Failures = 9 }),
			},
			heartbeats: []activities.Heartbeat{{RunnerID: "web-p1", Gone: true}},
		},
		{
			name: "a draining runner is not recycled or demoted, but a silent one is terminated",
			runners: []activities.RunnerView{poolRunner(1, func(r *activities.RunnerView) {
				r.State = store.StateDraining
				r.CreatedAt = evalNow.Add(-100 * time.Hour)
			}), poolRunner(2, func(r *activities.RunnerView) { r.State = store.StateDraining })},
			heartbeats: []activities.Heartbeat{hb("web-p2", time.Hour)},
			want:       "web-p1:old.max_age:recycle web-p2:heartbeat:terminate!",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := uf
			if tt.policy != nil {
				tt.policy(&p)
			}
			hbs := map[string]activities.Heartbeat{}
			for _, h := range tt.heartbeats {
				hbs[h.RunnerID] = h
			}
			got := summary(Evaluate(evalNow, p, tt.runners, hbs, tt.eggs))
			if got != tt.want {
				t.Errorf("decisions = %q, want %q", got, tt.want)
			}
		})
	}
}

// A runner whose heartbeats come and go is terminated only in a pass that
// sees it silent for longer than the timeout, and never again once a
// heartbeat is back.
func TestEvaluateHeartbeatFlapping(t *testing.T) {
	uf := fly.DefaultUglyFox()
	r := poolRunner(1, func(r *activities.RunnerView) { r.Since = evalNow.Add(-time.Hour); r.LastJobAt = ago(time.Minute) })
	// Beats every 4 minutes for 20 minutes, a 7-minute gap, then every 4 again.
	var beats []time.Time
	for m := 0; m <= 20; m += 4 {
		beats = append(beats, evalNow.Add(time.Duration(m)*time.Minute))
	}
	for m := 27; m <= 40; m += 4 {
		beats = append(beats, evalNow.Add(time.Duration(m)*time.Minute))
	}
	var fired []string
	for m := 0; m <= 40; m++ {
		now := evalNow.Add(time.Duration(m) * time.Minute)
		var last time.Time
		for _, b := range beats {
			if !b.After(now) {
				last = b
			}
		}
		hbs := map[string]activities.Heartbeat{r.ID: {RunnerID: r.ID, At: last}}
		rr := r
		rr.LastJobAt = &now // busy with short jobs: never idle
		if ds := Evaluate(now, uf, []activities.RunnerView{rr}, hbs, nil); len(ds) > 0 {
			fired = append(fired, fmt.Sprintf("%d:%s", m, ds[0].Policy))
		}
	}
	// Silent from 20 to 27: past 5 minutes at 26 only.
	if got := strings.Join(fired, ","); got != "26:heartbeat" {
		t.Errorf("fired = %s, want 26:heartbeat", got)
	}
}

// Evaluate depends on nothing but its arguments: the order runners come in
// does not change what it decides.
func TestEvaluateIsOrderIndependent(t *testing.T) {
	uf := fly.DefaultUglyFox()
	var runners []activities.RunnerView
	for i := 1; i <= 30; i++ {
		runners = append(runners, poolRunner(i, func(r *activities.RunnerView) {
			r.Since = evalNow.Add(-time.Duration(i) * time.Hour)
			r.CreatedAt = evalNow.Add(-time.Duration(i*4) * time.Hour)
			r.Failures = i % 7
		}))
	}
	want := summary(Evaluate(evalNow, uf, runners, nil, nil))
	rev := make([]activities.RunnerView, len(runners))
	for i, r := range runners {
		rev[len(runners)-1-i] = r
	}
	if got := summary(Evaluate(evalNow, uf, rev, nil, nil)); got != want {
		t.Errorf("reversed input: %s\nwant %s", got, want)
	}
}

func TestPoolOwner(t *testing.T) {
	for _, tt := range []struct{ egg, id, wf, want string }{
		{"web", "web-p3", "pool/web/runner/web-p3", "pool/web"},
		{"web", "web-p3", "", "pool/web"},
		{"web", "web-3f2a9c01de", "runner/gitlab.com/job/7", ""},
		{"web", "web-pool-1", "", ""},
		{"web", "web-p3", "test-pool/web-p3", ""},
		{"web", "web-p", "", ""},
	} {
		if got := PoolOwner(tt.egg, tt.id, tt.wf); got != tt.want {
			t.Errorf("PoolOwner(%s, %s, %s) = %q, want %q", tt.egg, tt.id, tt.wf, got, tt.want)
		}
	}
}
