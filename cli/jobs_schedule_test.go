package cli

import (
	"testing"
)

func TestJobsScheduleFlagsToOptions(t *testing.T) {
	tio := withEnv(newTestIO("", false), map[string]string{"GOSLING_TEMPORAL_ADDRESS": "temporal.example.com:7233"})
	var list *JobsScheduleListOptions
	cmd := NewCmdJobsScheduleList(tio.f, func(o *JobsScheduleListOptions) error { list = o; return nil })
	cmd.SetArgs([]string{"--json", "--temporal-namespace", "ci"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !list.JSON || list.Temporal.Address != "temporal.example.com:7233" || list.Temporal.Namespace != "ci" {
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
