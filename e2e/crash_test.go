package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/contract"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/store"
)

// startWorkerProcess runs `gosling worker` as a separate process sharing the
// stack's Temporal, store and state directory.
func startWorkerProcess(t testing.TB, s *Stack, name string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(s.StateDir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.Gosling, "worker", "--queue", "mothergoose",
		"--temporal-address", s.Dev.FrontendHostPort(), "--temporal-namespace", s.Namespace,
		"--state-dir", s.StateDir, "--store", s.StoreDSN, "--tofu", s.Tofu.Binary(), "--agent-api-url", s.AgentAPI,
		"--metrics-addr", FreeAddr(t))
	// Its machines find gitlab-runner on PATH: the stand-in's wrapper.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(s.GitLabRunner)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
	return cmd
}

// The worker dies after `tofu apply` and before the runner's ready signal.
// A new worker picks the workflow up: the runner ends up registered once,
// with one tofu workspace and one machine, and nothing orphaned.
func TestWorkerKilledBetweenApplyAndReady(t *testing.T) {
	s := Start(t, Options{NoWorker: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Hold the agent back: GitLab refuses its token check until the worker is dead.
	s.GitLab.FailNext("POST", "/runners/verify", 503, 1_000_000, false)

	first := startWorkerProcess(t, s, "worker-1")
	egg := s.Egg("web", fly.RunnerVM)
	runnerID := "web-crash-1"
	run, err := s.ProvisionPool(ctx, egg, runnerID, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, ctx, s, runnerID, store.StateRegistering)
	// Registering comes before the apply: wait for the machine.
	for st := agent.Inspect(s.MachineDir(runnerID)); !st.Alive; st = agent.Inspect(s.MachineDir(runnerID)) {
		select {
		case <-ctx.Done():
			t.Fatalf("machine not running after apply: %+v", st)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = first.Process.Wait()

	startWorkerProcess(t, s, "worker-2")
	s.GitLab.ClearFaults()

	var res contract.ProvisionRunnerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("provision after worker restart: %v", err)
	}
	if res.State != "active" {
		t.Fatalf("result = %+v", res)
	}
	if rs := s.GitLab.Runners(); len(rs) != 1 || rs[0].ID != res.GitLabRunnerID {
		t.Errorf("GitLab runners = %+v, want exactly the one made", rs)
	}
	ws, _ := s.Tofu.Workspaces()
	if len(ws) != 1 || ws[0].Name != runnerID {
		t.Errorf("workspaces = %+v", ws)
	}
	if n := agentProcesses(s.Tofu.StateDir()); n != 1 {
		t.Errorf("%d agent processes, want 1", n)
	}
	r, err := s.Store.GetRunner(ctx, runnerID)
	if err != nil || r.State != store.StateActive {
		t.Errorf("store = %+v, %v", r, err)
	}
	if _, err := s.Deprovision(ctx, egg, runnerID); err != nil {
		t.Fatal(err)
	}
	s.assertNothingLeft(ctx, runnerID)
}

// agentProcesses counts live agent processes whose machines are under dir.
func agentProcesses(dir string) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 3 && args[1] == "agent" && args[2] == "run" && strings.Contains(string(b), dir) {
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if !strings.Contains(string(st), ") Z") {
				n++
			}
		}
	}
	return n
}
