package tofu

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/store/pgtest"
)

// sharedPair is two workers' executors, each with a state directory of its
// own, on one pg backend.
func sharedPair(t *testing.T) (a, b *Executor) {
	t.Helper()
	be, err := PGBackend(pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	a, b = newExecutor(t), newExecutor(t)
	a.Backend, b.Backend = be, be
	return a, b
}

// TestPGBackendTeardownOnAnotherWorker: a machine made by one worker is
// torn down by another that never saw its workspace: the configuration is
// rebuilt from the shared state, the machine ends, and the workspace's
// state is deleted. No state is left on the first worker's disk.
func TestPGBackendTeardownOnAnotherWorker(t *testing.T) {
	a, b := sharedPair(t)
	ctx := context.Background()
	m := localMachine(t, a, "web-shared-1", fly.RunnerVM)
	res := apply(t, a, m)
	dir, _ := res.Outputs["work_dir"].(string)
	waitFor(t, "agent alive", func() bool { return agent.Inspect(dir).Alive })
	if _, ok := res.Outputs[requestOutput]; ok {
		t.Error("the recorded request is among the apply's outputs")
	}
	if _, err := os.Stat(filepath.Join(a.WorkspaceDir(m.RunnerID), "terraform.tfstate")); err == nil {
		t.Error("a pg-backed workspace wrote local state")
	}
	for _, ex := range []*Executor{a, b} {
		names, err := ex.WorkspaceNames(ctx)
		if err != nil || !names[m.RunnerID] || len(names) != 1 {
			t.Fatalf("workspaces seen by a worker: %v %v", names, err)
		}
	}

	if err := b.Destroy(ctx, m.RunnerID, nil); err != nil {
		t.Fatalf("destroy on the other worker: %v", err)
	}
	waitFor(t, "agent gone", func() bool { return !agent.Inspect(dir).Alive })
	if names, err := a.WorkspaceNames(ctx); err != nil || len(names) != 0 {
		t.Errorf("workspaces after the teardown: %v %v", names, err)
	}
	// The first worker's own teardown, run again, finds nothing to do.
	if err := a.Destroy(ctx, m.RunnerID, nil); err != nil {
		t.Errorf("a second teardown: %v", err)
	}
	// No worker disk holds a state or the backend's password.
	for _, ex := range []*Executor{a, b} {
		_ = filepath.WalkDir(ex.StateDir(), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if strings.HasSuffix(p, ".tfstate") && !strings.Contains(p, string(filepath.Separator)+".terraform"+string(filepath.Separator)) {
				t.Errorf("state file on a worker's disk: %s", p)
			}
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "postgres://") {
				t.Errorf("%s holds the backend's connection string", p)
			}
			return nil
		})
	}
}

// TestPGBackendSerializesApplies: two workers applying one workspace at the
// same time take turns on its state lock: a module that writes start and
// end around a pause shows no overlap.
func TestPGBackendSerializesApplies(t *testing.T) {
	a, b := sharedPair(t)
	log := filepath.Join(t.TempDir(), "runs.log")
	mod := turnModule(t, log)
	m := localMachine(t, a, "web-turns-1", fly.RunnerVM)
	vars, err := m.Variables()
	if err != nil {
		t.Fatal(err)
	}
	req := ApplyRequest{Workspace: m.RunnerID, Module: Module{Cloud: m.Cloud, Kind: m.Kind, Source: mod}, Vars: vars}
	var wg sync.WaitGroup
	for _, ex := range []*Executor{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ex.Apply(context.Background(), req); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("start\nend\n", 4); string(got) != want {
		t.Errorf("runs overlapped:\n%s", got)
	}
	if err := b.Destroy(context.Background(), m.RunnerID, nil); err != nil {
		t.Fatal(err)
	}
}

// turnModule writes a module with the local VM module's variables and
// outputs whose every apply appends start, pauses, and appends end to log.
func turnModule(t *testing.T, log string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "turns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	builtin, err := ModuleFS(Module{Cloud: fly.CloudLocal, Kind: fly.RunnerVM})
	if err != nil {
		t.Fatal(err)
	}
	vars, err := fs.ReadFile(builtin, "variables.tf")
	if err != nil {
		t.Fatal(err)
	}
	main := `resource "terraform_data" "turn" {
  triggers_replace = [timestamp()]
  provisioner "local-exec" {
    command = "echo start >> ` + log + ` && sleep 1 && echo end >> ` + log + `"
  }
}
output "machine_id" { value = terraform_data.turn.id }
output "work_dir" { value = var.work_dir }
output "state" { value = var.state }
`
	for name, body := range map[string][]byte{"variables.tf": vars, "main.tf": []byte(main)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
