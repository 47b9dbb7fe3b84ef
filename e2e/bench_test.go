package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/tofu"
)

// BenchmarkProvisionVsRawApply measures, in one run, the whole
// ProvisionRunner on the local provider (record, GitLab runner, token,
// tofu apply, agent ready, active) against a raw `tofu apply` of the same
// module with the same variables. Target: ratio at most 1.5.
func BenchmarkProvisionVsRawApply(b *testing.B) {
	s := Start(b, Options{})
	ctx := context.Background()
	egg := s.Egg("bench", fly.RunnerVM)
	var provision, raw time.Duration
	job := int64(100_000)
	for b.Loop() {
		job++
		t0 := time.Now()
		run, err := s.ProvisionPool(ctx, egg, fmt.Sprintf("bench-%d", job), nil)
		if err != nil {
			b.Fatal(err)
		}
		var res contract.ProvisionRunnerResult
		if err := run.Get(ctx, &res); err != nil {
			b.Fatal(err)
		}
		provision += time.Since(t0)

		// The same module and variables, applied directly.
		id := fmt.Sprintf("raw-%d", job)
		cfg := agentapi.Config{RunnerID: id, Egg: "bench", GitLabURL: s.GitLab.URL(), TokenRef: res.TokenRef, SecretsDir: s.Local.Dir(),
			Runner: agentapi.RunnerConfig{Binary: s.GitLabRunner, Executor: agentapi.ExecutorShell}}
		m := tofu.Machine{
			RunnerID: id, Egg: "bench", Cloud: fly.CloudLocal, Kind: fly.RunnerVM, State: tofu.PowerRunning,
			CPU: 1, MemoryMiB: 1024, DiskGiB: 10,
			Agent: cfg, AgentBinary: s.Gosling, StateDir: s.Tofu.StateDir(),
		}
		vars, err := m.Variables()
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := s.Tofu.Apply(ctx, tofu.ApplyRequest{Workspace: id, Module: m.Module(), Vars: vars}); err != nil {
			b.Fatal(err)
		}
		raw += time.Since(t1)

		b.StopTimer()
		if _, err := s.Deprovision(ctx, egg, res.RunnerID); err != nil {
			b.Fatal(err)
		}
		if err := s.Tofu.Destroy(ctx, id, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(provision.Seconds()*1000/n, "provision-ms")
	b.ReportMetric(raw.Seconds()*1000/n, "raw-apply-ms")
	b.ReportMetric(float64(provision)/float64(raw), "ratio")
}

// BenchmarkWorkerMemory200InFlight runs the worker as its own process and
// starts 200 ProvisionRunner workflows whose agents are held back (GitLab
// refuses their token check), so all 200 are in flight at once, each with
// its machine applied; it reports the worker's resident memory then.
func BenchmarkWorkerMemory200InFlight(b *testing.B) {
	const inFlight = 200
	for b.Loop() {
		s := Start(b, Options{NoWorker: true})
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		s.GitLab.FailNext("POST", "/runners/verify", 503, 1_000_000_000, false)
		w := startWorkerProcess(b, s, "bench-worker")
		egg := s.Egg("mem", fly.RunnerVM)
		time.Sleep(2 * time.Second) // connected and polling
		base := rssKiB(w.Process.Pid)
		for i := range inFlight {
			if _, err := s.ProvisionPool(ctx, egg, fmt.Sprintf("mem-%d", i), func(in *contract.ProvisionRunnerInput) { in.ReadyTimeout = time.Hour }); err != nil {
				b.Fatal(err)
			}
		}
		for {
			rs, err := s.Store.ListRunners(ctx, store.RunnerFilter{States: []store.RunnerState{store.StateRegistering}})
			if err != nil {
				b.Fatal(err)
			}
			if len(rs) == inFlight {
				break
			}
			select {
			case <-ctx.Done():
				b.Fatalf("only %d of %d runners reached registering", len(rs), inFlight)
			case <-time.After(200 * time.Millisecond):
			}
		}
		peak := rssKiB(w.Process.Pid)
		b.ReportMetric(float64(base)/1024, "idle-rss-MiB")
		b.ReportMetric(float64(peak)/1024, "rss-MiB-200-in-flight")
		cancel()
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) int64 { return readProcMemory(pid).RSS }

// procMemory is a process's resident memory in KiB, from /proc/PID/status.
type procMemory struct {
	// RSS is resident now (VmRSS) and Peak the most it has been (VmHWM).
	RSS, Peak int64
	// Anon is its own memory (RssAnon): heap, stacks. File is the pages of
	// files it maps (RssFile), mostly its binary's code and tables, which
	// every process of the same binary shares.
	Anon, File int64
}

func readProcMemory(pid int) procMemory {
	var m procMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.Peak, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	for _, line := range strings.Split(string(b), "\n") {
		for prefix, dst := range fields {
			if f, ok := strings.CutPrefix(line, prefix); ok && len(strings.Fields(f)) > 0 {
				*dst, _ = strconv.ParseInt(strings.Fields(f)[0], 10, 64)
			}
		}
	}
	return m
}
