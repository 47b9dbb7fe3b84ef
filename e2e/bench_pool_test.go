package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
)

// BenchmarkPoolPaths measures, on the local provider in one run, the time
// from a job's demand to a ready runner for each way a pool serves it: an
// idle Apex runner, a promoted Nadir runner, and a new (cold) runner. It
// reports each path's mean and its ratio to the cold path.
func BenchmarkPoolPaths(b *testing.B) {
	const rounds = 5
	for b.Loop() {
		s := Start(b, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		base := func(name string) fly.Egg {
			e := s.Egg(name, fly.RunnerVM)
			e.Runner.MaxConcurrent = 3
			e.Apex = fly.Pool{Max: 3, IdleTimeout: fly.Duration(time.Second)}
			return e
		}
		apex := base("apexpath")
		apex.Apex.Min, apex.Apex.IdleTimeout = 1, fly.Duration(time.Hour)
		nadir := base("nadirpath")
		nadir.Nadir = fly.Pool{Min: 1, Max: 2, IdleTimeout: fly.Duration(time.Hour)}
		cold := base("coldpath")
		for _, e := range []fly.Egg{apex, nadir, cold} {
			s.StartPool(ctx, e, 100*time.Millisecond)
		}
		var job atomic.Int64
		serve := func(egg fly.Egg, ready func(contract.PoolStatus) bool) time.Duration {
			s.waitPool(ctx, egg.Name, "ready for a job", ready)
			id := 1_000_000 + job.Add(1)
			start := time.Now()
			if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(egg.Name), "", contract.SignalDemand,
				contract.Demand{Job: contract.JobRef{Host: s.Host(), ProjectID: s.Project.ID, JobID: id, Tags: []string{"docker"}}}); err != nil {
				b.Fatal(err)
			}
			s.waitPoolFast(ctx, egg.Name, func(st contract.PoolStatus) bool {
				for _, r := range st.Runners {
					if r.State == contract.PoolApex && slices.Contains(r.Jobs, id) {
						return true
					}
				}
				return false
			})
			took := time.Since(start)
			if err := s.Client.SignalWorkflow(ctx, contract.PoolWorkflowID(egg.Name), "", contract.SignalJobStatus, contract.JobStatus{JobID: id, Status: "success"}); err != nil {
				b.Fatal(err)
			}
			return took
		}
		var sum [3]time.Duration
		for range rounds {
			sum[0] += serve(apex, func(st contract.PoolStatus) bool {
				return st.Counts[contract.PoolApex] == 1 && len(st.Runners) == 1 && len(st.Runners[0].Jobs) == 0
			})
			sum[1] += serve(nadir, func(st contract.PoolStatus) bool {
				return st.Counts[contract.PoolApex] == 0 && st.Counts[contract.PoolNadir] >= 1 && len(st.Runners) == st.Counts[contract.PoolNadir]
			})
			sum[2] += serve(cold, func(st contract.PoolStatus) bool { return len(st.Runners) == 0 })
		}
		names := []string{"apex", "promotion", "cold"}
		for i, d := range sum {
			b.ReportMetric(ms(d)/rounds, names[i]+"-ms")
		}
		b.ReportMetric(float64(sum[0])/float64(sum[2]), "apex/cold")
		b.ReportMetric(float64(sum[1])/float64(sum[2]), "promotion/cold")
		cancel()
	}
}

// waitPoolFast is waitPool polling as fast as queries answer, for timing.
func (s *Stack) waitPoolFast(ctx context.Context, egg string, ok func(contract.PoolStatus) bool) {
	for {
		st, err := s.PoolStatus(ctx, egg)
		if err == nil && ok(st) {
			return
		}
		if ctx.Err() != nil {
			s.T.Fatalf("pool %s: gave up (last %+v)", egg, st.Counts)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkPool10kSignals sends 10,000 job signals (5,000 jobs: demand,
// then success) to one pool served by a worker process on the local
// provider, and reports the pool's history length in its current run, how
// many runs continue-as-new made, and the worker's resident memory: idle
// before the signals, at the end (rss-MiB), at its peak (peak-rss-MiB,
// VmHWM; target under 100 MiB), and the end's split into the worker's own
// memory (anon-MiB) and the pages of its binary it maps (file-MiB).
func BenchmarkPool10kSignals(b *testing.B) {
	const jobs = 5000
	for b.Loop() {
		s := Start(b, Options{NoWorker: true})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		w := startWorkerProcess(b, s, "pool-worker")
		egg := s.Egg("tenk", fly.RunnerVM)
		egg.Runner.MaxConcurrent = 4
		egg.Apex = fly.Pool{Max: 4, IdleTimeout: fly.Duration(time.Hour)}
		s.StartPool(ctx, egg, time.Second)
		time.Sleep(2 * time.Second)
		idle := readProcMemory(w.Process.Pid)
		id := contract.PoolWorkflowID(egg.Name)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					j := next.Add(1)
					if j > jobs {
						return
					}
					if err := s.Client.SignalWorkflow(ctx, id, "", contract.SignalDemand, contract.Demand{Job: contract.JobRef{Host: s.Host(), JobID: j, Tags: []string{"docker"}}}); err != nil {
						b.Error(err)
						return
					}
					if err := s.Client.SignalWorkflow(ctx, id, "", contract.SignalJobStatus, contract.JobStatus{JobID: j, Status: "success"}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		sent := time.Since(start)
		st := s.waitPool(ctx, egg.Name, "done with every job", func(st contract.PoolStatus) bool {
			return st.Waiting == 0 && st.Counts[contract.PoolProvisioning] == 0 && st.Counts[contract.PoolPromoting] == 0
		})
		end := readProcMemory(w.Process.Pid)
		b.ReportMetric(float64(2*jobs)/sent.Seconds(), "signals/s")
		b.ReportMetric(float64(st.HistoryLength), "history-events")
		b.ReportMetric(float64(st.Stats.Runs), "runs")
		b.ReportMetric(float64(idle.RSS)/1024, "idle-rss-MiB")
		b.ReportMetric(float64(idle.Anon)/1024, "idle-anon-MiB")
		b.ReportMetric(float64(end.RSS)/1024, "rss-MiB")
		b.ReportMetric(float64(end.Peak)/1024, "peak-rss-MiB")
		b.ReportMetric(float64(end.Anon)/1024, "anon-MiB")
		b.ReportMetric(float64(end.File)/1024, "file-MiB")
		if st.Stats.Provisioned > egg.Runner.MaxConcurrent {
			b.Errorf("provisioned %d runners, limit %d", st.Stats.Provisioned, egg.Runner.MaxConcurrent)
		}
		fmt.Printf("pool after %d signals: %+v\n", 2*jobs, st.Stats)
		cancel()
	}
}
