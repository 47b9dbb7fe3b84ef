package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiclient"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/gitlab/gitlabtest"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// costPrices are the test's price table: per vCPU-hour, GiB-hour of
// memory and GiB-hour of disk, for local VMs and local serverless runners.
var costPrices = []fly.Price{
	{Cloud: fly.CloudLocal, Kind: fly.RunnerVM, Capacity: fly.CapacityOnDemand, VCPUHour: 0.04, MemoryGiBHour: 0.005, DiskGiBHour: 0.0002},
	{Cloud: fly.CloudLocal, Kind: fly.RunnerServerless, Capacity: fly.CapacityOnDemand, VCPUHour: 0.09, MemoryGiBHour: 0.01, DiskGiBHour: 0},
}

// costShape is an egg's shape, priced by hand: what its machine costs a
// second running and stopped.
type costShape struct {
	cpu             float64
	memGiB, diskGiB float64
	slots           int
}

func (c costShape) rates(kind string) (running, stopped float64) {
	p := costPrices[0]
	if kind == fly.RunnerServerless {
		p = costPrices[1]
	}
	return (c.cpu*p.VCPUHour + c.memGiB*p.MemoryGiBHour + c.diskGiB*p.DiskGiBHour) / 3600, c.diskGiB * p.DiskGiBHour / 3600
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9+1e-6*math.Abs(b) }

// Jobs on three eggs of known shapes and prices: a serverless egg (a
// runner per job), a pooled egg of one slot per runner and one of two.
// Each job is charged its run time over its runner's slots at its egg's
// price; once the runners end, each egg's jobs together cost exactly what
// its machines cost over their lives (from their transitions), the
// chargeback table says so by egg and by project, the queue-time
// histogram counts each job once with the queue time recorded with it,
// and pool status prices the idle runners.
func TestCostAndQueueTimePerEggAndProject(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	shapes := map[string]costShape{
		"small":  {cpu: 1, memGiB: 1, diskGiB: 10, slots: 1},
		"medium": {cpu: 2, memGiB: 4, diskGiB: 20, slots: 1},
		"large":  {cpu: 4, memGiB: 8, diskGiB: 40, slots: 2},
	}
	kinds := map[string]string{"small": fly.RunnerServerless, "medium": fly.RunnerVM, "large": fly.RunnerVM}
	var eggs []fly.Egg
	projects := map[string]gitlabtest.Project{}
	for _, name := range []string{"small", "medium", "large"} {
		egg, p := s.projectEgg(name, kinds[name])
		sh := shapes[name]
		egg.Runner.CPU, egg.Runner.Memory, egg.Runner.Disk, egg.Runner.JobsPerRunner = sh.cpu, fly.Size(sh.memGiB*float64(fly.GiB)), fly.Size(sh.diskGiB*float64(fly.GiB)), sh.slots
		egg.Runner.Env = nil
		if kinds[name] == fly.RunnerServerless {
			egg.Runner.CPU, egg.Runner.Memory = 1, fly.GiB
		}
		eggs, projects[name] = append(eggs, egg), p
	}
	a := s.StartAPIWith(func(c *mothergoose.Config) {
		c.Nest.MotherGoose.Cost = fly.Cost{Currency: "EUR", Prices: costPrices}
	}, jobsSecret, eggs...)
	s.Acts.MotherGoose = a.MotherGoose.Operations()
	s.StartWorker()
	for _, e := range eggs {
		s.hookProject(a, projects[e.Name])
	}
	t.Cleanup(func() {
		for _, e := range eggs {
			_ = s.Client.TerminateWorkflow(context.Background(), contract.PoolWorkflowID(e.Name), "", "test over")
		}
	})

	// Two jobs an egg; they sleep a little, so run times are not zero.
	var pipelines []int64
	for _, e := range eggs {
		pl, err := s.GitLab.CreatePipeline(projects[e.Name].ID, gitlabtest.PipelineSpec{Jobs: []gitlabtest.JobSpec{
			{Name: "one", Stage: "test", Tags: []string{"docker"}, Script: []string{"sleep 1"}},
			{Name: "two", Stage: "test", Tags: []string{"docker"}, Script: []string{"sleep 1"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		pipelines = append(pipelines, pl.ID)
	}
	jobsOf := map[string][]int64{}
	for i, id := range pipelines {
		if pl, jobs := s.waitPipeline(ctx, id); pl.Status != "success" {
			t.Fatalf("%s: pipeline %s", eggs[i].Name, pl.Status)
		} else {
			for _, j := range jobs {
				jobsOf[eggs[i].Name] = append(jobsOf[eggs[i].Name], j.ID)
			}
		}
	}
	// Every job's end reached the API from its runner's agent.
	waitFor(t, ctx, "every job's run cost recorded", func() bool {
		for _, ids := range jobsOf {
			for _, id := range ids {
				if j, err := s.Store.GetJob(ctx, s.Host(), id); err != nil || j.MachineSeconds == 0 {
					return false
				}
			}
		}
		return true
	})

	// The pools' idle runners are priced, and their hit rate told.
	c, err := apiclient.New(a.URL, APIToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"medium", "large"} {
		var pool *apiv1.Pool
		waitFor(t, ctx, name+"'s runners idle", func() bool {
			pool, err = c.GetPool(ctx, name)
			return err == nil && pool.IdleCost != nil && pool.IdleCost.ApexIdle == pool.Counts[contract.PoolApex] && pool.Counts[contract.PoolApex] > 0
		})
		running, _ := shapes[name].rates(fly.RunnerVM)
		if want := float64(pool.IdleCost.ApexIdle) * running * 3600; !closeTo(pool.IdleCost.PerHour, want) || pool.IdleCost.Currency != "EUR" {
			t.Errorf("%s: idle cost %+v, want %v EUR an hour for %d idle runners", name, pool.IdleCost, want, pool.IdleCost.ApexIdle)
		}
		// A runner's gitlab-runner may take the next job by itself: the
		// pool counts the demands it served.
		served := pool.Stats.Served
		if n := served[contract.ServedByApex] + served[contract.ServedByPromotion] + served[contract.ServedByProvision]; n == 0 ||
			!closeTo(pool.HitRate, float64(served[contract.ServedByApex]+served[contract.ServedByPromotion])/float64(n)) {
			t.Errorf("%s: hit rate %v of %v", name, pool.HitRate, served)
		}
	}

	// The pools end: every runner is settled.
	for _, name := range []string{"medium", "large"} {
		if _, err := c.DrainPool(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, ctx, "every runner ended and settled", func() bool {
		rs, err := s.Store.ListRunners(ctx, store.RunnerFilter{})
		if err != nil || len(rs) == 0 {
			return false
		}
		settled, _ := s.Store.ListAudit(ctx, store.AuditFilter{Limit: 1000})
		n := 0
		for _, r := range settled {
			if r.Action == mothergoose.AuditCostSettled {
				n++
			}
		}
		for _, r := range rs {
			if r.State != store.StateTerminated {
				return false
			}
		}
		return n == len(rs)
	})

	// Each egg's jobs cost exactly what its machines cost, by the test's
	// own arithmetic over the runners' transitions.
	want := map[string]float64{}
	queue := map[string]float64{}
	for _, e := range eggs {
		running, stopped := shapes[e.Name].rates(kinds[e.Name])
		for _, id := range jobsOf[e.Name] {
			j, err := s.Store.GetJob(ctx, s.Host(), id)
			if err != nil {
				t.Fatal(err)
			}
			// The agent's reports time the run and the end of the queue;
			// GitLab's later hooks may refine the job's queued_at and
			// finish time, not the measures taken.
			if j.RunnerStartedAt == nil || j.MachineSeconds <= 0 || !closeTo(j.Cost, j.MachineSeconds*running) ||
				j.QueueSeconds <= 0 || j.ProjectPath != projects[e.Name].PathWithNamespace {
				t.Errorf("%s: job %d = %+v: its run at %v a second, over %d slots", e.Name, id, j, running, shapes[e.Name].slots)
				continue
			}
			queue[e.Name] += j.QueueSeconds
		}
		rs, _ := s.Store.ListRunners(ctx, store.RunnerFilter{Egg: e.Name})
		for _, r := range rs {
			jobs, _ := s.Store.ListJobs(ctx, store.JobFilter{RunnerID: r.ID})
			if len(jobs) == 0 {
				continue // its cost is the egg's alone: no project's
			}
			hist, err := s.Store.RunnerHistory(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			since, state := r.CreatedAt, store.StateProvisioning
			for _, tr := range hist {
				d := tr.At.Sub(since).Seconds()
				switch state {
				case store.StateRegistering, store.StateActive, store.StateDraining, store.StateTerminating, store.StateFailed:
					want[e.Name] += d * running
				case store.StateDormant:
					want[e.Name] += d * stopped
				}
				since, state = tr.At, tr.To
			}
		}
	}

	// The chargeback, as the CLI prints it.
	cli := func(args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, s.Gosling, append([]string{"cost", "--since", "1h"}, args...)...)
		cmd.Env = append(cmd.Environ(), "GOSLING_API_URL="+a.URL, "GOSLING_API_TOKEN="+APIToken)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gosling cost %v: %v", args, err)
		}
		return out
	}
	var rows []apiv1.CostRow
	if err := json.Unmarshal(cli("--json", "egg,jobs,cost,run_cost,idle_cost,queue_seconds,queued_jobs"), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("cost by egg: %v %+v", err, rows)
	}
	for _, r := range rows {
		if r.Jobs != 2 || r.QueuedJobs != 2 || !closeTo(r.Cost, want[r.Egg]) || !closeTo(r.Cost, r.RunCost+r.IdleCost) || r.IdleCost <= 0 || !closeTo(r.QueueSeconds, queue[r.Egg]) {
			t.Errorf("%s: %+v, want a cost of %v and %v s in queue", r.Egg, r, want[r.Egg], queue[r.Egg])
		}
	}
	if rows[0].Cost < rows[1].Cost || rows[1].Cost < rows[2].Cost {
		t.Errorf("not most costly first: %+v", rows)
	}
	var byProject []apiv1.CostRow
	if err := json.Unmarshal(cli("--by", "project", "--json", "project,egg,cost"), &byProject); err != nil || len(byProject) != 3 {
		t.Fatalf("cost by project: %v %+v", err, byProject)
	}
	for _, r := range byProject {
		if r.Project != projects[r.Egg].PathWithNamespace || !closeTo(r.Cost, want[r.Egg]) {
			t.Errorf("project row %+v, want %s at %v", r, projects[r.Egg].PathWithNamespace, want[r.Egg])
		}
	}
	table := string(cli())
	for _, e := range eggs {
		if !strings.Contains(table, e.Name+"\t2\t") {
			t.Errorf("the table has no line for %s:\n%s", e.Name, table)
		}
	}

	// The queue-time histogram counts each job once, with its recorded
	// queue time.
	families, err := a.MotherGoose.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "gosling_job_queue_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			egg := m.GetLabel()[0].GetValue()
			seen[egg] = true
			if h := m.GetHistogram(); h.GetSampleCount() != 2 || !closeTo(h.GetSampleSum(), queue[egg]) {
				t.Errorf("gosling_job_queue_seconds{egg=%q}: %d jobs, %v s; want 2 and %v", egg, h.GetSampleCount(), h.GetSampleSum(), queue[egg])
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("queue-time histograms for %v, want the three eggs", seen)
	}
	t.Logf("cost by egg: %s", func() string {
		var parts []string
		for _, r := range rows {
			parts = append(parts, fmt.Sprintf("%s %.6f EUR (run %.6f, idle %.6f, %.1f s queued)", r.Egg, r.Cost, r.RunCost, r.IdleCost, r.QueueSeconds))
		}
		return strings.Join(parts, "; ")
	}())
}
