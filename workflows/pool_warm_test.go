package workflows

import (
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
)

func warmEgg() fly.Egg {
	e := poolEgg()
	e.Apex.WarmFor = fly.Duration(2 * time.Minute)
	e.Nadir.Min = 1
	return e
}

func (e *poolEnv) warm(at time.Duration, w contract.Warm) {
	e.RegisterDelayedCallback(func() { e.SignalWorkflow(contract.SignalPoolWarm, w) }, at)
}

func runner(s contract.PoolStatus, id string) contract.PoolRunner {
	for _, r := range s.Runners {
		if r.ID == id {
			return r
		}
	}
	return contract.PoolRunner{}
}

// A push announces a pipeline: the pool promotes its Nadir runner ahead of
// it, and the job that comes is served by an Apex runner at once.
func TestPoolWarmServesAnnouncedJobFromApex(t *testing.T) {
	e := newPoolEnv(t)
	e.warm(time.Minute, contract.Warm{Key: "commit/abc", Jobs: 1, Reason: "push to main"})
	e.queryAt(t, 90*time.Second, func(s contract.PoolStatus) {
		r := runner(s, "web-p1")
		if r.State != contract.PoolApex || r.WarmUntil.IsZero() || s.Stats.Warmed != 1 || len(s.Expected) != 1 {
			t.Errorf("after the announcement: %+v, stats %+v, expected %+v", s.Runners, s.Stats, s.Expected)
		}
	})
	e.demand(2*time.Minute, 1)
	e.queryAt(t, 2*time.Minute+time.Second, func(s contract.PoolStatus) {
		r := runner(s, "web-p1")
		if s.Stats.Served[contract.ServedByApex] != 1 || s.Stats.Promotions != 1 || len(r.Jobs) != 1 || !r.WarmUntil.IsZero() || len(s.Expected) != 0 {
			t.Errorf("after the job: runner %+v, stats %+v, expected %+v", r, s.Stats, s.Expected)
		}
	})
	// The job keeps it Apex past warm_for; Nadir is refilled behind it.
	e.queryAt(t, 6*time.Minute, func(s contract.PoolStatus) {
		if r := runner(s, "web-p1"); r.State != contract.PoolApex || s.Stats.Cooled != 0 || s.Counts[contract.PoolNadir] != 1 || s.Stats.Provisioned != 2 {
			t.Errorf("busy runner cooled, or Nadir not refilled: %+v, %+v", r, s.Counts)
		}
	})
	e.stopAt(7 * time.Minute)
	runPool(e, warmEgg())
}

// A runner warmed for jobs that never come goes back to Nadir after
// warm_for, well before the Apex idle timeout.
func TestPoolWarmCoolsDownWithoutJobs(t *testing.T) {
	e := newPoolEnv(t)
	e.warm(time.Minute, contract.Warm{Key: "commit/abc", Jobs: 1})
	e.queryAt(t, 2*time.Minute, func(s contract.PoolStatus) {
		if s.Counts[contract.PoolApex] != 1 {
			t.Errorf("not warmed: %+v", s.Counts)
		}
	})
	e.queryAt(t, 4*time.Minute, func(s contract.PoolStatus) {
		// Nadir was not refilled behind the warmed runner: it is back.
		if s.Counts[contract.PoolNadir] != 1 || len(s.Runners) != 1 || runner(s, "web-p1").State != contract.PoolNadir || s.Stats.Cooled != 1 || s.Stats.Demotions != 1 || len(s.Expected) != 0 {
			t.Errorf("not cooled: counts %+v, stats %+v, expected %+v", s.Counts, s.Stats, s.Expected)
		}
	})
	e.stopAt(5 * time.Minute)
	runPool(e, warmEgg())
	if e.count("promote:web-p1") != 1 || e.count("demote:web-p1") != 1 {
		t.Errorf("calls = %v", e.calls)
	}
}

// Warming stays within the Apex limits, and an egg without warm_for
// promotes nothing for announcements.
func TestPoolWarmBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		warmFor time.Duration
		apexMax int
		want    int
	}{
		{"apex max", 2 * time.Minute, 1, 1},
		{"both Nadir runners", 2 * time.Minute, 3, 2},
		{"no warm_for", 0, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPoolEnv(t)
			egg := warmEgg()
			egg.Nadir.Min, egg.Apex.Max, egg.Apex.WarmFor = 2, tc.apexMax, fly.Duration(tc.warmFor)
			e.warm(time.Minute, contract.Warm{Key: "pipeline/9", Jobs: 5})
			e.queryAt(t, 90*time.Second, func(s contract.PoolStatus) {
				if s.Counts[contract.PoolApex] != tc.want || s.Stats.Warmed != tc.want {
					t.Errorf("apex %d, warmed %d; want %d", s.Counts[contract.PoolApex], s.Stats.Warmed, tc.want)
				}
			})
			e.stopAt(2 * time.Minute)
			runPool(e, egg)
		})
	}
}

// A pipeline's announcement names its created jobs: it replaces its
// commit's, each named job's demand settles its part, other jobs do not,
// and a Jobs 0 announcement (the pipeline is over) withdraws it.
func TestPoolWarmPipelineJobs(t *testing.T) {
	e := newPoolEnv(t)
	egg := warmEgg()
	egg.Nadir.Min = 2
	e.warm(time.Minute, contract.Warm{Key: "commit/abc", Jobs: 1})
	e.demand(61*time.Second, 5) // seen before the pipeline says it is created
	e.warm(62*time.Second, contract.Warm{Key: "commit/def", Jobs: 1})
	e.warm(63*time.Second, contract.Warm{Key: "pipeline/9", Commit: "def", JobIDs: []int64{5, 11, 12}, Jobs: 3})
	e.queryAt(t, 64*time.Second, func(s contract.PoolStatus) {
		if len(s.Expected) != 1 || s.Expected[0].Key != "pipeline/9" || s.Expected[0].Jobs != 2 {
			t.Errorf("announcements %+v", s.Expected)
		}
	})
	e.demand(70*time.Second, 99)
	e.demand(71*time.Second, 11)
	e.queryAt(t, 72*time.Second, func(s contract.PoolStatus) {
		if len(s.Expected) != 1 || s.Expected[0].Jobs != 1 || len(s.Expected[0].JobIDs) != 1 || s.Expected[0].JobIDs[0] != 12 {
			t.Errorf("announcements %+v", s.Expected)
		}
	})
	e.warm(80*time.Second, contract.Warm{Key: "pipeline/9", Jobs: 0})
	e.queryAt(t, 81*time.Second, func(s contract.PoolStatus) {
		if len(s.Expected) != 0 {
			t.Errorf("announcements %+v", s.Expected)
		}
	})
	e.stopAt(2 * time.Minute)
	runPool(e, egg)
}

// A warmed runner waits out warm_for even when the Apex idle timeout is
// shorter, then goes back to Nadir.
func TestPoolWarmOutlastsIdleTimeout(t *testing.T) {
	e := newPoolEnv(t)
	egg := warmEgg()
	egg.Apex.IdleTimeout = fly.Duration(30 * time.Second)
	egg.Apex.WarmFor = fly.Duration(5 * time.Minute)
	e.warm(time.Minute, contract.Warm{Key: "commit/abc", Jobs: 1})
	e.queryAt(t, 4*time.Minute, func(s contract.PoolStatus) {
		if r := runner(s, "web-p1"); r.State != contract.PoolApex || s.Stats.Demotions != 0 {
			t.Errorf("warmed runner demoted by the idle timeout: %+v", r)
		}
	})
	e.queryAt(t, 7*time.Minute, func(s contract.PoolStatus) {
		if r := runner(s, "web-p1"); r.State != contract.PoolNadir || s.Stats.Cooled != 1 {
			t.Errorf("warmed runner not cooled: %+v", r)
		}
	})
	e.stopAt(8 * time.Minute)
	runPool(e, egg)
}
