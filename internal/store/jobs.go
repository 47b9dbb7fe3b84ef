package store

import "time"

// Job status ranks, in GitLab's order of a job's life (Ci::HasStatus and
// the state machine of Ci::Build): a job is created (or waits as manual or
// scheduled), may wait for a resource, is prepared, pending (it needs a
// runner), running, possibly waiting for a callback or canceling, and ends
// success, failed or canceled. A retried job is a new job with a new ID,
// so a job never goes back: an event of a lower rank that arrives after a
// higher one is late. skipped ranks with created because GitLab resets a
// skipped job to created (same ID) when a job of an earlier stage is
// retried (Ci::ResetSkippedJobsService). Unknown statuses rank lowest.
var jobStatusRanks = map[string]int{
	"created": 10, "manual": 10, "scheduled": 10, "skipped": 10,
	"waiting_for_resource": 20,
	"preparing":            30,
	"pending":              40,
	"running":              50,
	"waiting_for_callback": 55,
	"canceling":            60,
	"success":              100, "failed": 100, "canceled": 100,
}

// JobStatusRank is the place of a GitLab job status in a job's life: higher
// is later; 0 for an unknown status.
func JobStatusRank(status string) int { return jobStatusRanks[status] }

// JobFinished tells whether a GitLab job status is terminal (success,
// failed or canceled).
func JobFinished(status string) bool { return JobStatusRank(status) >= jobStatusRanks["success"] }

// MergeJob is what every engine's RecordJob keeps when an event about a
// job arrives: stored is the record so far (nil for a new job), in the
// event. The runner's measures are kept as first recorded
// (RunnerStartedAt, QueueSeconds, MachineSeconds, Cost), but IdleCost,
// which a later settlement of the runner may correct, takes the latest
// non-zero value. GitLab delivers hooks out of order and more than once, so the job
// never goes back: in's status is taken only when it ranks above the
// stored one (JobStatusRank), or ranks the same and its timestamps are not
// older (finished_at, else started_at); otherwise the stored status and
// its times stay, and in only fills times still unknown. Other fields
// left zero in in keep their stored value; UpdatedAt is the later of the
// two (now when in's is zero). A job belongs to the project it was first
// recorded in: an event that names another project changes nothing, and
// the stored record is returned as it is (compare its ProjectID to tell).
func MergeJob(stored *JobRecord, in JobRecord) JobRecord {
	if in.UpdatedAt.IsZero() {
		in.UpdatedAt = time.Now()
	}
	in.UpdatedAt = storedTime(in.UpdatedAt)
	in.QueuedAt, in.StartedAt, in.FinishedAt = storedTimePtr(in.QueuedAt), storedTimePtr(in.StartedAt), storedTimePtr(in.FinishedAt)
	in.RunnerStartedAt = storedTimePtr(in.RunnerStartedAt)
	if stored == nil {
		return in
	}
	if stored.ProjectID != 0 && in.ProjectID != 0 && stored.ProjectID != in.ProjectID {
		return *stored
	}
	out := *stored
	if in.ProjectID != 0 {
		out.ProjectID = in.ProjectID
	}
	if in.PipelineID != 0 {
		out.PipelineID = in.PipelineID
	}
	for _, f := range []struct {
		dst *string
		v   string
	}{{&out.Egg, in.Egg}, {&out.Name, in.Name}, {&out.Ref, in.Ref}, {&out.RunnerID, in.RunnerID}, {&out.ProjectPath, in.ProjectPath}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	out.RunnerStartedAt = firstTime(stored.RunnerStartedAt, in.RunnerStartedAt)
	for _, f := range []struct {
		dst *float64
		v   float64
	}{{&out.QueueSeconds, in.QueueSeconds}, {&out.MachineSeconds, in.MachineSeconds}, {&out.Cost, in.Cost}} {
		if *f.dst == 0 {
			*f.dst = f.v
		}
	}
	if in.IdleCost != 0 {
		out.IdleCost = in.IdleCost
	}
	if in.UpdatedAt.After(out.UpdatedAt) {
		out.UpdatedAt = in.UpdatedAt
	}
	if statusWins(stored, in) {
		out.Status = in.Status
		out.QueuedAt = firstTime(in.QueuedAt, stored.QueuedAt)
		out.StartedAt = firstTime(in.StartedAt, stored.StartedAt)
		out.FinishedAt = firstTime(in.FinishedAt, stored.FinishedAt)
		return out
	}
	out.QueuedAt = firstTime(stored.QueuedAt, in.QueuedAt)
	out.StartedAt = firstTime(stored.StartedAt, in.StartedAt)
	out.FinishedAt = firstTime(stored.FinishedAt, in.FinishedAt)
	if !JobFinished(out.Status) {
		// A job that has not ended has no end time, whatever a late
		// event of a lower rank says.
		out.FinishedAt = stored.FinishedAt
	}
	return out
}

// statusWins tells whether in's status replaces the stored one.
func statusWins(stored *JobRecord, in JobRecord) bool {
	if in.Status == "" {
		return false
	}
	if stored.Status == "" {
		return true
	}
	a, b := JobStatusRank(in.Status), JobStatusRank(stored.Status)
	if a != b {
		return a > b
	}
	if in.FinishedAt != nil && stored.FinishedAt != nil {
		return !in.FinishedAt.Before(*stored.FinishedAt)
	}
	if in.StartedAt != nil && stored.StartedAt != nil {
		return !in.StartedAt.Before(*stored.StartedAt)
	}
	return true
}

func firstTime(ts ...*time.Time) *time.Time {
	for _, t := range ts {
		if t != nil {
			v := *t
			return &v
		}
	}
	return nil
}

// sameJobRecord tells whether two records hold the same values.
func sameJobRecord(a, b JobRecord) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	if !eq(a.QueuedAt, b.QueuedAt) || !eq(a.StartedAt, b.StartedAt) || !eq(a.FinishedAt, b.FinishedAt) ||
		!eq(a.RunnerStartedAt, b.RunnerStartedAt) || !a.UpdatedAt.Equal(b.UpdatedAt) {
		return false
	}
	a.QueuedAt, a.StartedAt, a.FinishedAt, a.RunnerStartedAt, a.UpdatedAt = nil, nil, nil, nil, time.Time{}
	b.QueuedAt, b.StartedAt, b.FinishedAt, b.RunnerStartedAt, b.UpdatedAt = nil, nil, nil, nil, time.Time{}
	return a == b
}
