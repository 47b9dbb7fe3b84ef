package workflows

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
)

// refusalEgg is the pool's egg with runners bought as spot on the local
// provider, falling back to local on demand, with a cool-down.
func refusalEgg(cool fly.Duration) fly.Egg {
	e := poolEgg()
	e.Runner.Clouds = []string{fly.CloudLocal}
	e.Runner.Capacity = fly.CapacitySpot
	e.Runner.Fallback = []fly.Placement{{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand}}
	e.Runner.CapacityCooldown = cool
	return e
}

var (
	localSpot     = fly.Placement{Cloud: fly.CloudLocal, Capacity: fly.CapacitySpot}
	localOnDemand = fly.Placement{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand}
)

// refusedBy is ProvisionRunner's report of a runner made after the given
// placements refused its machine.
func refusedBy(runner string, state string, placements ...fly.Placement) ProvisionReported {
	m := contract.RunnerProvisioned{RunnerID: runner, State: state, Kind: fly.RunnerVM, GitLabRunnerID: 42, Cloud: fly.CloudLocal}
	for _, pl := range placements {
		m.Refusals = append(m.Refusals, contract.CapacityRefusal{Placement: pl, Class: "capacity", Message: "no room"})
	}
	return ProvisionReported{Report: m}
}

// A pool remembers each placement that refused a machine for the egg's
// capacity_cooldown, by workflow time: runners made within it avoid the
// placement, runners made after it ask it again; when every placement is
// cooling down, jobs wait in line and no runner is made until the first
// cool-down ends.
func TestPlanPoolRemembersRefusals(t *testing.T) {
	type step struct {
		at time.Duration // after planNow
		ev PoolEvent
	}
	for _, tc := range []struct {
		name    string
		cool    fly.Duration
		steps   []step
		want    string // provisions, when and which placements each avoids
		refused string // the placements remembered at the end, with their end
	}{
		{
			name: "refused placement avoided within its cool-down",
			cool: fly.Duration(10 * time.Minute),
			steps: []step{
				{0, demand(1)},
				{time.Minute, refusedBy("web-p1", "active", localSpot)},
				{2 * time.Minute, demand(2)},
				{3 * time.Minute, demand(3)},
			},
			want:    "provision:web-p1@0s[] provision:web-p2@2m0s[local/spot] provision:web-p3@3m0s[local/spot]",
			refused: "local/spot until +11m0s",
		},
		{
			name: "asked again once the cool-down is over",
			cool: fly.Duration(10 * time.Minute),
			steps: []step{
				{0, demand(1)},
				{time.Minute, refusedBy("web-p1", "active", localSpot)},
				{time.Minute, status(1, "success", "web-p1")},
				{time.Minute, demand(2)},
				{time.Minute, demand(3)},
				{12 * time.Minute, demand(4)},
				{12 * time.Minute, demand(5)},
				{12 * time.Minute, demand(6)},
			},
			want:    "provision:web-p1@0s[] provision:web-p2@1m0s[local/spot] provision:web-p3@12m0s[]",
			refused: "",
		},
		{
			name: "a second refusal starts the cool-down again",
			cool: fly.Duration(10 * time.Minute),
			steps: []step{
				{0, demand(1)},
				{time.Minute, refusedBy("web-p1", "active", localSpot)},
				{5 * time.Minute, refusedBy("web-p1", "active", localSpot)},
			},
			want:    "provision:web-p1@0s[]",
			refused: "local/spot until +15m0s",
		},
		{
			name: "every placement cooling: jobs wait, none is made until one ends",
			cool: fly.Duration(10 * time.Minute),
			steps: []step{
				{0, demand(1)},
				{time.Minute, refusedBy("web-p1", "terminated", localSpot, localOnDemand)},
				{2 * time.Minute, TickElapsed{}},
				{10 * time.Minute, TickElapsed{}},
				{11 * time.Minute, TickElapsed{}},
			},
			want:    "provision:web-p1@0s[] provision:web-p2@11m0s[]",
			refused: "",
		},
		{
			name: "no cool-down remembers nothing",
			cool: -1,
			steps: []step{
				{0, demand(1)},
				{time.Minute, refusedBy("web-p1", "active", localSpot)},
				{2 * time.Minute, demand(2)},
				{2 * time.Minute, demand(3)},
			},
			want:    "provision:web-p1@0s[] provision:web-p2@2m0s[] provision:web-p3@2m0s[]",
			refused: "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := planState()
			st.Egg = refusalEgg(tc.cool)
			run := planRun
			var acts []string
			apply := func(ev PoolEvent, now time.Time) {
				before, _ := json.Marshal(st)
				p := PlanPool(st, ev, now, run)
				if after, _ := json.Marshal(st); string(before) != string(after) {
					t.Fatalf("PlanPool(%T) changed the state it was given", ev)
				}
				for _, a := range p.Actions {
					switch a.Kind {
					case PoolProvision:
						var avoid []string
						for _, pl := range a.Avoid {
							avoid = append(avoid, pl.String())
						}
						acts = append(acts, "provision:"+a.RunnerID+"@"+now.Sub(planNow).String()+"["+strings.Join(avoid, ",")+"]")
					}
				}
				st = p.State
			}
			for _, s := range tc.steps {
				now := planNow.Add(s.at)
				apply(s.ev, now)
				apply(Settle{}, now)
			}
			if got := strings.Join(acts, " "); got != tc.want {
				t.Errorf("actions:\n got %s\nwant %s", got, tc.want)
			}
			var refused []string
			for _, r := range st.Refused {
				refused = append(refused, r.Placement.String()+" until +"+r.Until.Sub(planNow).String())
			}
			if got := strings.Join(refused, ", "); got != tc.refused {
				t.Errorf("refused = %q, want %q", got, tc.refused)
			}
		})
	}
}
