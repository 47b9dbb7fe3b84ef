package activities

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/gosling-ci/gosling/tofu"
)

// TestDestroyMachineLeavesNothing: once a runner's machine is destroyed,
// nothing of it stays on the worker: neither its workspace nor its machine
// directory (the local agent's files); other machines' stay.
func TestDestroyMachineLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	ex, err := tofu.New("/bin/true", filepath.Join(dir, "tofu"))
	if err != nil {
		t.Fatal(err)
	}
	a := &Activities{Tofu: ex}
	for _, id := range []string{"web-1", "web-2"} {
		if err := os.MkdirAll(MachineDir(ex.StateDir(), id), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(MachineDir(ex.StateDir(), id), "agent.log"), []byte("bye\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DestroyMachine(context.Background(), DestroyMachineInput{RunnerID: "web-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(MachineDir(ex.StateDir(), "web-1")); !os.IsNotExist(err) {
		t.Errorf("the destroyed runner's machine directory is left: %v", err)
	}
	if _, err := os.Stat(MachineDir(ex.StateDir(), "web-2")); err != nil {
		t.Errorf("another runner's machine directory went: %v", err)
	}
	for _, bad := range []string{"", "..", "../x"} {
		if err := a.DestroyMachine(context.Background(), DestroyMachineInput{RunnerID: bad, Workspace: "web-3"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(MachineDir(ex.StateDir(), "web-2")); err != nil {
		t.Errorf("a bad runner ID removed others: %v", err)
	}
}
