package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/internal/testbin"
	"github.com/gosling-ci/gosling/mothergoose"
)

// spotBenchJobs is the workload of BenchmarkSpotInterruptions; every
// tenth job's runner is interrupted while it runs (a 10% interruption
// rate).
const spotBenchJobs = 40

// BenchmarkSpotInterruptions runs a workload of spotBenchJobs jobs on a
// spot egg (local provider, falling back to on demand) and interrupts
// the runner of every tenth job while it runs (agent.Interrupt, as `gosling
// dev interrupt` does). It reports:
//
//   - jobs_lost/1000: jobs that never succeeded (neither the job nor its
//     retry), per 1,000 jobs;
//   - added_queue_s: the mean time from an interruption to its job's
//     retry starting on another runner (the retry's started_at, when its
//     runner took it and began its trace);
//   - cost_ratio: what the workload's machines cost bought as spot (with
//     the runners that fell back on demand, and the work the interruptions
//     threw away) over what the same work costs on demand only, at the
//     example Nest's prices (examples/nest/MG/config.fly: Yandex Cloud on
//     demand and preemptible, the local provider priced as Yandex Cloud).
func BenchmarkSpotInterruptions(b *testing.B) {
	nest, diags := fly.LoadNest(filepath.Join(testbin.Root(), "examples", "nest"))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	onDemand, ok1 := nest.MotherGoose.Cost.PriceFor(fly.CloudYandex, fly.RunnerVM, fly.CapacityOnDemand)
	spot, ok2 := nest.MotherGoose.Cost.PriceFor(fly.CloudYandex, fly.RunnerVM, fly.CapacityPreemptible)
	if !ok1 || !ok2 {
		b.Fatal("the example Nest prices no Yandex Cloud on-demand or preemptible VM")
	}
	var lost, jobs, interrupted, retried int
	var added, costSpot, costOnDemand float64
	for n := 0; n < b.N; n++ {
		r := runSpotWorkload(b, n)
		lost, jobs, interrupted, retried = lost+r.lost, jobs+spotBenchJobs, interrupted+r.interrupted, retried+len(r.addedQueue)
		for _, d := range r.addedQueue {
			added += d.Seconds()
		}
		for _, m := range r.machines {
			p := spot
			if m.onDemand {
				p = onDemand
			}
			costSpot += p.Running(m.cpu, m.memory, m.disk) * m.seconds
			costOnDemand += onDemand.Running(m.cpu, m.memory, m.disk) * m.seconds
		}
		// On demand, the work the interruptions threw away is not done twice.
		for _, w := range r.wasted {
			m := r.machines[0]
			costOnDemand -= onDemand.Running(m.cpu, m.memory, m.disk) * w.Seconds()
		}
	}
	b.ReportMetric(float64(lost)*1000/float64(jobs), "jobs_lost/1000")
	if retried > 0 {
		b.ReportMetric(added/float64(retried), "added_queue_s")
	}
	b.ReportMetric(costSpot/costOnDemand, "cost_ratio")
	b.ReportMetric(float64(interrupted)/float64(jobs), "interrupted/job")
}

type spotMachine struct {
	cpu          float64
	memory, disk fly.Size
	seconds      float64
	onDemand     bool
}

type spotWorkload struct {
	lost, interrupted int
	addedQueue        []time.Duration
	wasted            []time.Duration
	machines          []spotMachine
}

func runSpotWorkload(b *testing.B, run int) spotWorkload {
	s := Start(b, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	egg, project := s.projectEgg(fmt.Sprintf("spot%d", run), fly.RunnerVM)
	egg.Runner.Capacity, egg.Runner.Env = fly.CapacitySpot, nil
	egg.Runner.Fallback = []fly.Placement{{Cloud: fly.CloudLocal, Capacity: fly.CapacityOnDemand}}
	egg.Runner.MaxConcurrent, egg.Apex.Max = 4, 4
	a := s.StartAPIWith(func(*mothergoose.Config) {}, jobsSecret, egg)
	s.Acts.MotherGoose = a.MotherGoose.Operations()
	s.StartWorker()
	s.hookProject(a, project)
	defer func() {
		_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(egg.Name), "", "bench over")
	}()

	marks := b.TempDir()
	var pipelines []int64
	toInterrupt := map[int64]string{} // first job ID -> its mark
	b.ResetTimer()
	for i := 0; i < spotBenchJobs; i++ {
		script := []string{"sleep 0.5"}
		mark := filepath.Join(marks, fmt.Sprint(i))
		if i%10 == 0 {
			// Runs until interrupted; its retry finds the mark and ends.
			script = []string{"if [ -e " + mark + " ]; then sleep 0.5; else touch " + mark + "; sleep 600; fi"}
		}
		pl, err := s.GitLab.CreatePipeline(project.ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{{Name: "build", Stage: "test", Tags: []string{"docker"}, Script: script}}})
		if err != nil {
			b.Fatal(err)
		}
		pipelines = append(pipelines, pl.ID)
		if i%10 == 0 {
			toInterrupt[s.GitLab.PipelineJobs(pl.ID)[0].ID] = mark
		}
	}
	var out spotWorkload
	interruptedAt := map[int64]time.Time{}
	for len(interruptedAt) < len(toInterrupt) {
		// The egg's machines share one GitLab runner, so any of them may
		// take a job: the one running it is the one whose agent says so.
		running := map[int64]string{}
		if st, err := s.PoolStatus(ctx, egg.Name); err == nil {
			for _, r := range st.Runners {
				if as, err := agent.ReadState(s.MachineDir(r.ID)); err == nil {
					for id, status := range as.Jobs {
						if status == agentapi.JobRunning {
							running[id] = r.ID
						}
					}
				}
			}
		}
		for id, mark := range toInterrupt {
			if _, done := interruptedAt[id]; done {
				continue
			}
			runner, ok := running[id]
			if !ok {
				continue
			}
			if _, err := os.Stat(mark); err != nil {
				continue
			}
			j, _ := s.GitLab.Job(id)
			at := time.Now()
			if err := agent.Interrupt(s.MachineDir(runner), time.Second); err != nil {
				b.Fatal(err)
			}
			interruptedAt[id] = at
			if j.StartedAt != nil {
				out.wasted = append(out.wasted, at.Sub(*j.StartedAt))
			}
		}
		if ctx.Err() != nil {
			b.Fatalf("interrupted %d of %d jobs before giving up", len(interruptedAt), len(toInterrupt))
		}
		time.Sleep(20 * time.Millisecond)
	}
	out.interrupted = len(interruptedAt)
	for _, id := range pipelines {
		p, jobs := s.waitPipeline(ctx, id)
		if p.Status != "success" {
			out.lost++
		}
		if at, ok := interruptedAt[jobs[0].ID]; ok && len(jobs) > 1 && jobs[1].StartedAt != nil {
			out.addedQueue = append(out.addedQueue, jobs[1].StartedAt.Sub(at))
		}
	}
	b.StopTimer()
	// The machines' running time, from their transitions, and how each was
	// bought: a runner that fell back has a cloud-fallback record.
	runners, err := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: egg.Name})
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range runners {
		end := time.Now()
		if r.State == store.StateTerminated {
			end = r.UpdatedAt
		}
		recs, err := s.Store.ListAudit(ctx, store.AuditFilter{RunnerID: r.ID})
		if err != nil {
			b.Fatal(err)
		}
		fellBack := slices.ContainsFunc(recs, func(x store.AuditRecord) bool { return x.Action == "cloud-fallback" })
		out.machines = append(out.machines, spotMachine{cpu: egg.Runner.CPU, memory: egg.Runner.Memory, disk: egg.Runner.Disk, seconds: end.Sub(r.CreatedAt).Seconds(), onDemand: fellBack})
	}
	return out
}
