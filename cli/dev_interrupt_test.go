package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gosling-ci/gosling/internal/agent"
)

func TestDevInterruptFlagsToOptions(t *testing.T) {
	tio := newTestIO("", false)
	var got *DevInterruptOptions
	cmd := NewCmdDevInterrupt(tio.f, func(o *DevInterruptOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"web-p1", "--grace", "30s", "--state-dir", "/tmp/dev"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Runner != "web-p1" || got.Grace != 30*time.Second || got.StateDir != "/tmp/dev" {
		t.Errorf("options = %+v", got)
	}
	if code := run(t, newTestIO("", false), "dev", "interrupt"); code != ExitError {
		t.Errorf("no runner: exit %d", code)
	}
}

// The machine of the runner named is found under the running dev's
// OpenTofu state and interrupted there; an unknown runner and an
// on-demand machine are errors that say what to do.
func TestDevInterruptRun(t *testing.T) {
	state := t.TempDir()
	b, _ := json.Marshal(DevState{StateDir: state, APIURL: "http://127.0.0.1:1"})
	if err := os.WriteFile(filepath.Join(state, "dev.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	machine := filepath.Join(state, "tofu", "machines", "web-p1")
	if err := os.MkdirAll(machine, 0o700); err != nil {
		t.Fatal(err)
	}
	tio := newTestIO("", false)
	var asked string
	opts := &DevInterruptOptions{IO: tio.f.IO, Runner: "web-p1", Grace: time.Second, StateDir: state, Interrupt: func(dir string, grace time.Duration) error {
		asked = dir
		return nil
	}}
	if err := devInterruptRun(opts); err != nil || asked != machine || !strings.Contains(tio.out.String(), "runner web-p1 interrupted") {
		t.Errorf("interrupt: %v, machine %q, out %q", err, asked, tio.out)
	}
	opts.Runner = "web-p9"
	if err := devInterruptRun(opts); err == nil || !strings.Contains(err.Error(), "no local machine") {
		t.Errorf("unknown runner: %v", err)
	}
	opts.Runner, opts.Interrupt = "web-p1", agent.Interrupt
	if err := devInterruptRun(opts); err == nil || !strings.Contains(err.Error(), "read the machine's configuration") {
		t.Errorf("a machine without configuration: %v", err)
	}
}
