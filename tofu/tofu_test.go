package tofu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func machineFor(cloud, kind string) Machine {
	return Machine{
		RunnerID: "web-0123456789", Egg: "web", Cloud: cloud, Kind: kind, State: PowerRunning,
		CPU: 2, MemoryMiB: 4096, DiskGiB: 20,
		MaxRunMinutes: 60, GitLabURL: "https://gitlab.com", TokenRef: "yc-lockbox://e6qabc/token",
		Agent:       agentapi.Config{RunnerID: "web-0123456789", Egg: "web", GitLabURL: "https://gitlab.com", TokenRef: "yc-lockbox://e6qabc/token"},
		AgentBinary: "/usr/local/bin/gosling", StateDir: "/tmp/x",
		AgentURL: "https://example.com/gosling", AgentImage: "cr.example.com/gosling:1",
		Provider: fly.Provider{FolderID: "b1g", Zone: "ru-central1-a", SubnetID: "e9b", Region: "eu-central-1", Subnets: []string{"subnet-1"}, Cluster: "runners"},
		Identity: testIdentity,
	}
}

// testIdentity is an egg's runner identity on both clouds.
var testIdentity = Identity{
	ServiceAccountID: "ajerunnerweb000000001", InstanceProfile: "gosling-runner-web",
	RoleARN:          "arn:aws:iam::123456789012:role/gosling/gosling/gosling-runner-web",
	ExecutionRoleARN: "arn:aws:iam::123456789012:role/gosling/gosling/gosling-runner-web-exec",
}

// The variables Gosling passes match each module's declared variables: none
// undeclared, none required missing.
func TestVariablesMatchEveryModule(t *testing.T) {
	mods := BuiltinModules()
	if len(mods) != 6 {
		t.Fatalf("built-in modules = %v, want 6", mods)
	}
	for _, m := range mods {
		t.Run(m.String(), func(t *testing.T) {
			vars, err := machineFor(m.Cloud, m.Kind).Variables()
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckVariables(m, vars); err != nil {
				t.Error(err)
			}
			if m.Cloud == fly.CloudAWS && m.Kind == fly.RunnerServerless {
				lm := machineFor(m.Cloud, m.Kind)
				lm.Lambda, lm.MaxRunMinutes = true, 15
				lvars, err := lm.Variables()
				if err != nil {
					t.Fatal(err)
				}
				if err := CheckVariables(m, lvars); err != nil || lvars["platform"] != "lambda" {
					t.Errorf("lambda: %v (platform %v)", err, lvars["platform"])
				}
			}
			sig, err := Inspect(m)
			if err != nil {
				t.Fatal(err)
			}
			if !contains(sig.Outputs, "machine_id") {
				t.Errorf("outputs %v lack machine_id", sig.Outputs)
			}
		})
	}
	// A variable a module does not declare is caught.
	vars, _ := machineFor("local", "vm").Variables()
	vars["bogus"] = 1
	delete(vars, "runner_id")
	err := CheckVariables(Module{Cloud: "local", Kind: "vm"}, vars)
	if err == nil || !strings.Contains(err.Error(), "undeclared variable bogus") || !strings.Contains(err.Error(), "missing required variable runner_id") {
		t.Errorf("CheckVariables = %v", err)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Every module is formatted as `tofu fmt` wants and parses.
func TestModulesFormattedAndParse(t *testing.T) {
	bin := testbin.Tofu(t)
	cmd := exec.Command(bin, "fmt", "-check", "-recursive", "-list=true", "modules")
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tofu fmt -check: %v\n%s", err, out)
	}
	for _, m := range BuiltinModules() {
		if _, err := Inspect(m); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
}

func TestMachineVariablesRejectBadInput(t *testing.T) {
	m := machineFor("local", "vm")
	m.State = "paused"
	if _, err := m.Variables(); err == nil {
		t.Error("bad state accepted")
	}
	m = machineFor("local", "serverless")
	m.MaxRunMinutes = 90
	if _, err := m.Variables(); err == nil {
		t.Error("90-minute serverless accepted")
	}
	m = machineFor("gcp", "vm")
	if _, err := m.Variables(); err == nil {
		t.Error("unknown cloud accepted")
	}
}

func newExecutor(t *testing.T) *Executor {
	t.Helper()
	ex, err := New(testbin.Tofu(t), filepath.Join(t.TempDir(), "tofu"))
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func localMachine(t *testing.T, ex *Executor, id, kind string) Machine {
	cfg := agentapi.Config{RunnerID: id, Egg: "web", GitLabURL: "http://127.0.0.1:1", TokenRef: "local://runners/" + id + "/token"}
	m := machineFor("local", kind)
	m.RunnerID, m.AgentBinary, m.StateDir, m.Agent, m.MaxRunMinutes = id, testbin.Gosling(t), ex.StateDir(), cfg, 5
	return m
}

func apply(t *testing.T, ex *Executor, m Machine) *Result {
	t.Helper()
	vars, err := m.Variables()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	res, err := ex.Apply(context.Background(), ApplyRequest{Workspace: m.RunnerID, Module: m.Module(), Vars: vars, OnLine: func(l string) { lines = append(lines, l) }})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(lines) == 0 {
		t.Error("no output lines streamed")
	}
	return res
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.WaitFor(t, 20*time.Second, what, cond)
}

// A local VM is a real agent process: applied running, stopped for Nadir,
// resumed for Apex, and gone after destroy, with its workspace.
func TestLocalVMLifecycle(t *testing.T) {
	ex := newExecutor(t)
	m := localMachine(t, ex, "web-vm-1", fly.RunnerVM)
	res := apply(t, ex, m)
	dir, _ := res.Outputs["work_dir"].(string)
	if dir == "" {
		t.Fatalf("outputs = %v", res.Outputs)
	}
	waitFor(t, "agent alive", func() bool { return agent.Inspect(dir).Alive })
	pid := agent.Inspect(dir).PID

	// Re-applying the same configuration changes nothing: same process.
	apply(t, ex, m)
	if got := agent.Inspect(dir).PID; got != pid {
		t.Errorf("re-apply started a new agent: %d -> %d", pid, got)
	}

	m.State = PowerStopped
	apply(t, ex, m)
	waitFor(t, "agent stopped", func() bool { return agent.Inspect(dir).Stopped })
	m.State = PowerRunning
	apply(t, ex, m)
	waitFor(t, "agent resumed", func() bool { s := agent.Inspect(dir); return s.Alive && !s.Stopped })
	if got := agent.Inspect(dir).PID; got != pid {
		t.Errorf("resume made a new process: %d -> %d", pid, got)
	}

	ws, err := ex.Workspaces()
	if err != nil || len(ws) != 1 || ws[0].Name != "web-vm-1" || len(ws[0].Resources) != 2 || ws[0].Meta.Module.Cloud != "local" {
		t.Fatalf("workspaces = %+v, %v", ws, err)
	}
	if err := ex.Destroy(context.Background(), m.RunnerID, nil); err != nil {
		t.Fatal(err)
	}
	if agent.Inspect(dir).Alive {
		t.Error("agent alive after destroy")
	}
	if _, err := os.Stat(ex.WorkspaceDir(m.RunnerID)); !os.IsNotExist(err) {
		t.Errorf("workspace left after destroy: %v", err)
	}
	// Destroying again is a no-op.
	if err := ex.Destroy(context.Background(), m.RunnerID, nil); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}

// A crashed apply (killed after the agent started but before state was
// saved) is retried safely: one agent, one workspace.
func TestApplyRetriedAfterCrash(t *testing.T) {
	ex := newExecutor(t)
	m := localMachine(t, ex, "web-crash-1", fly.RunnerVM)
	vars, _ := m.Variables()
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := ex.Apply(ctx, ApplyRequest{Workspace: m.RunnerID, Module: m.Module(), Vars: vars, OnLine: func(l string) {
		if strings.Contains(l, "Provisioning with 'local-exec'") {
			once.Do(cancel)
		}
	}})
	if err == nil {
		t.Log("apply finished before it could be interrupted")
	}
	cancel()
	res := apply(t, ex, m)
	dir, _ := res.Outputs["work_dir"].(string)
	waitFor(t, "agent alive", func() bool { return agent.Inspect(dir).Alive })
	if n := countAgents(t, dir); n != 1 {
		t.Errorf("%d agent processes for one machine", n)
	}
	if err := ex.Destroy(context.Background(), m.RunnerID, nil); err != nil {
		t.Fatal(err)
	}
	if n := countAgents(t, dir); n != 0 {
		t.Errorf("%d agent processes left", n)
	}
}

func countAgents(t *testing.T, dir string) int {
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

func TestLocalServerless(t *testing.T) {
	ex := newExecutor(t)
	m := localMachine(t, ex, "web-sls-1", fly.RunnerServerless)
	res := apply(t, ex, m)
	dir, _ := res.Outputs["work_dir"].(string)
	waitFor(t, "agent alive", func() bool { return agent.Inspect(dir).Alive })
	if err := ex.Destroy(context.Background(), m.RunnerID, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "agent gone", func() bool { return !agent.Inspect(dir).Alive })
}

// Operations on one workspace are serialised; different workspaces run in parallel.
func TestConcurrentWorkspaces(t *testing.T) {
	ex := newExecutor(t)
	var wg sync.WaitGroup
	ids := []string{"web-par-1", "web-par-2", "web-par-3"}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := localMachine(t, ex, id, fly.RunnerVM)
			vars, _ := m.Variables()
			if _, err := ex.Apply(context.Background(), ApplyRequest{Workspace: id, Module: m.Module(), Vars: vars}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ws, _ := ex.Workspaces()
	var names []string
	for _, w := range ws {
		names = append(names, w.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != strings.Join(ids, ",") {
		t.Errorf("workspaces = %v", names)
	}
	for _, id := range ids {
		if err := ex.Destroy(context.Background(), id, nil); err != nil {
			t.Error(err)
		}
	}
}

func TestWorkspaceNameChecked(t *testing.T) {
	ex := newExecutor(t)
	if _, err := ex.Apply(context.Background(), ApplyRequest{Workspace: "../escape", Module: Module{Cloud: "local", Kind: "vm"}}); err == nil {
		t.Error("path in workspace name accepted")
	}
}
