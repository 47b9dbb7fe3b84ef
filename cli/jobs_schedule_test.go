package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestJobsScheduleFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_TEMPORAL_ADDRESS": "temporal.example.com:7233"})
	var list *JobsScheduleListOptions
	cmd := NewCmdJobsScheduleList(tio.f, func(o *JobsScheduleListOptions) error { list = o; return nil })
	cmd.SetArgs([]string{"--json", "name,next_run", "--temporal-namespace", "ci"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(list.Export.Fields, []string{"name", "next_run"}) || list.Temporal.Address != "temporal.example.com:7233" || list.Temporal.Namespace != "ci" {
		t.Errorf("list options = %+v", list)
	}

	var pause *JobsSchedulePauseOptions
	cmd = NewCmdJobsSchedulePause(tio.f, true, func(o *JobsSchedulePauseOptions) error { pause = o; return nil })
	cmd.SetArgs([]string{"rotate-runner-tokens", "--reason", "GitLab maintenance"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if pause.Name != "rotate-runner-tokens" || !pause.Pause || pause.Reason != "GitLab maintenance" {
		t.Errorf("pause options = %+v", pause)
	}
	cmd = NewCmdJobsSchedulePause(tio.f, false, func(o *JobsSchedulePauseOptions) error { pause = o; return nil })
	if cmd.Use != "unpause NAME" {
		t.Errorf("use %q", cmd.Use)
	}
	cmd.SetArgs([]string{"rotate-runner-tokens"})
	if err := cmd.Execute(); err != nil || pause.Pause {
		t.Errorf("unpause: %+v, %v", pause, err)
	}

	var trig *JobsScheduleTriggerOptions
	cmd = NewCmdJobsScheduleTrigger(tio.f, func(o *JobsScheduleTriggerOptions) error { trig = o; return nil })
	cmd.SetArgs([]string{"nest-update"})
	if err := cmd.Execute(); err != nil || trig.Name != "nest-update" {
		t.Errorf("trigger: %+v, %v", trig, err)
	}
	// A name that cannot be a job is refused before anything is dialled.
	if code := run(t, newTestIO("", false), "jobs", "schedule", "trigger", "Not A Job"); code != ExitError {
		t.Errorf("bad name: exit %d", code)
	}
	if code := run(t, newTestIO("", false), "jobs", "schedule", "pause"); code != ExitError {
		t.Errorf("no name: exit %d", code)
	}
}

// With --nest, the Temporal connection's unset parts come from the Nest's
// MG/config.fly temporal block; flags still win, and an address that is not
// the block's takes nothing from it.
func TestJobsScheduleReadsMGTemporal(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../examples/nest")); err != nil {
		t.Fatal(err)
	}
	mg := filepath.Join(dir, "MG", "config.fly")
	b, err := os.ReadFile(mg)
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)temporal \{.*?\n  \}`)
	if !block.Match(b) {
		t.Fatal("the example's MG/config.fly has no temporal block")
	}
	b = block.ReplaceAll(b, []byte("temporal {\n    address   = \"127.0.0.1:1\"\n    namespace = \"ns-from-mg\"\n  }"))
	if err := os.WriteFile(mg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tio := newTestIO("", false)
	if code := run(t, tio, "jobs", "schedule", "list", "--nest", dir); code != ExitError {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if !strings.Contains(tio.err.String(), "127.0.0.1:1 (namespace ns-from-mg)") {
		t.Errorf("MG's temporal block was not read: %s", tio.err)
	}
	tio = withEnv(newTestIO("", false), map[string]string{"GOSLING_NEST": dir})
	if code := run(t, tio, "secrets", "rotate", "--temporal-address", "127.0.0.1:2"); code != ExitError {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	// Another Temporal than the Nest's: none of its block applies.
	if !strings.Contains(tio.err.String(), "127.0.0.1:2 (namespace default)") {
		t.Errorf("the flag should win over MG, with none of MG's settings for another address: %s", tio.err)
	}
	tio = withEnv(newTestIO("", false), map[string]string{"GOSLING_NEST": dir})
	if code := run(t, tio, "secrets", "rotate", "--temporal-address", "127.0.0.1:1"); code != ExitError {
		t.Fatalf("exit %d: %s", code, tio.err)
	}
	if !strings.Contains(tio.err.String(), "127.0.0.1:1 (namespace ns-from-mg)") {
		t.Errorf("the Nest's own address should keep the rest of its block, from $GOSLING_NEST: %s", tio.err)
	}
	tio = newTestIO("", false)
	if code := run(t, tio, "jobs", "schedule", "list", "--nest", "../fly/testdata/invalid/plaintext"); code != ExitInvalidConfig {
		t.Errorf("invalid Nest: exit %d: %s", code, tio.err)
	}
}
