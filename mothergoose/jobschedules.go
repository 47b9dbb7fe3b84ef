package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/contract"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// JobSchedule is what `gosling jobs schedule list` shows of a job's
// Temporal Schedule (read with ScheduleHandle.Describe).
type JobSchedule struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone"`
	Paused   bool   `json:"paused"`
	Note     string `json:"note,omitempty"`
	// LastRun is when the last run started; LastStatus how it is doing or
	// ended (running, completed, failed, timed_out, terminated, canceled),
	// LastWorkflowID and LastRunID which workflow it is.
	LastRun        *time.Time `json:"last_run,omitempty"`
	LastStatus     string     `json:"last_status,omitempty"`
	LastWorkflowID string     `json:"last_workflow_id,omitempty"`
	LastRunID      string     `json:"last_run_id,omitempty"`
	NextRun        *time.Time `json:"next_run,omitempty"`
	Runs           int        `json:"runs"`
}

// ErrNoJobSchedule is returned for a job without a schedule.
var ErrNoJobSchedule = errors.New("no schedule for this job: is it in Jobs/, and was the Nest applied (gosling server, gosling dev)?")

// ListJobSchedules describes the schedules of the Nest's jobs, by name.
func ListJobSchedules(ctx context.Context, c client.Client) ([]JobSchedule, error) {
	sc := c.ScheduleClient()
	it, err := sc.List(ctx, client.ScheduleListOptions{PageSize: 1000})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var names []string
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if name, ok := strings.CutPrefix(e.ID, contract.ScheduleIDJobPrefix); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]JobSchedule, 0, len(names))
	for _, name := range names {
		js, err := DescribeJobSchedule(ctx, c, name)
		if errors.Is(err, ErrNoJobSchedule) {
			continue // deleted since it was listed
		}
		if err != nil {
			return out, err
		}
		out = append(out, js)
	}
	return out, nil
}

// DescribeJobSchedule describes one job's schedule, with the status of its
// last run.
func DescribeJobSchedule(ctx context.Context, c client.Client, name string) (JobSchedule, error) {
	js := JobSchedule{Name: name}
	d, err := c.ScheduleClient().GetHandle(ctx, contract.JobScheduleID(name)).Describe(ctx)
	if err != nil {
		return js, scheduleErr(name, err)
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok && len(a.Args) > 0 {
		if p, ok := a.Args[0].(*commonpb.Payload); ok {
			var in contract.JobRunInput
			if converter.GetDefaultDataConverter().FromPayload(p, &in) == nil {
				js.Kind, js.Schedule, js.Timezone = in.Job.Kind, in.Job.Schedule, in.Job.Timezone
			}
		}
	}
	if st := d.Schedule.State; st != nil {
		js.Paused, js.Note = st.Paused, st.Note
	}
	js.Runs = d.Info.NumActions
	if n := d.Info.NextActionTimes; len(n) > 0 && !js.Paused {
		next := n[0]
		js.NextRun = &next
	}
	if r := d.Info.RecentActions; len(r) > 0 {
		last := r[len(r)-1]
		at := last.ActualTime
		js.LastRun = &at
		if w := last.StartWorkflowResult; w != nil {
			js.LastWorkflowID, js.LastRunID = w.WorkflowID, w.FirstExecutionRunID
			if ex, err := c.DescribeWorkflow(ctx, w.WorkflowID, ""); err == nil {
				s := ex.RawResponse.GetWorkflowExecutionInfo().GetStatus().String()
				js.LastStatus = strings.ToLower(strings.TrimPrefix(s, "WORKFLOW_EXECUTION_STATUS_"))
			}
		}
	}
	return js, nil
}

// PauseJobSchedule pauses (pause true) or resumes a job's schedule, with a
// note saying who asked and why.
func PauseJobSchedule(ctx context.Context, c client.Client, name string, pause bool, note string) error {
	h := c.ScheduleClient().GetHandle(ctx, contract.JobScheduleID(name))
	var err error
	if pause {
		err = h.Pause(ctx, client.SchedulePauseOptions{Note: note})
	} else {
		err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
	}
	return scheduleErr(name, err)
}

// TriggerJobSchedule runs a job now, as its schedule would; a run still
// going makes it a no-op (the overlap policy skips).
func TriggerJobSchedule(ctx context.Context, c client.Client, name string) error {
	return scheduleErr(name, c.ScheduleClient().GetHandle(ctx, contract.JobScheduleID(name)).Trigger(ctx, client.ScheduleTriggerOptions{}))
}

func scheduleErr(name string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return fmt.Errorf("job %s: %w", name, ErrNoJobSchedule)
	}
	if err != nil {
		return fmt.Errorf("job %s: %w", name, err)
	}
	return nil
}
