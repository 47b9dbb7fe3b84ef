package api

import (
	"encoding/json"

	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/store"
)

// The REST API answers with apiv1's views; these turn the store's rows into
// them, here at the edge and nowhere else.

func runnerView(r store.Runner) apiv1.Runner {
	return apiv1.Runner{
		ID: r.ID, Egg: r.Egg, Cloud: r.Cloud, Kind: r.Kind, State: string(r.State), GitLabHost: r.GitLabHost,
		GitLabRunnerID: r.GitLabRunnerID, TokenRef: r.TokenRef, Workspace: r.Workspace, WorkflowID: r.WorkflowID,
		JobID: r.JobID, Reason: r.Reason, Failures: r.Failures, LastHeartbeat: r.LastHeartbeat, LastJobAt: r.LastJobAt,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Version: r.Version,
	}
}

func runnerViews(rs []store.Runner) []apiv1.Runner {
	out := make([]apiv1.Runner, len(rs))
	for i, r := range rs {
		out[i] = runnerView(r)
	}
	return out
}

func jobViews(js []store.JobRecord) []apiv1.Job {
	out := make([]apiv1.Job, len(js))
	for i, j := range js {
		out[i] = apiv1.Job{
			GitLabHost: j.GitLabHost, JobID: j.JobID, ProjectID: j.ProjectID, Egg: j.Egg, Name: j.Name, Ref: j.Ref,
			PipelineID: j.PipelineID, Status: j.Status, RunnerID: j.RunnerID, QueuedAt: j.QueuedAt,
			StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, UpdatedAt: j.UpdatedAt,
			ProjectPath: j.ProjectPath, RunnerStartedAt: j.RunnerStartedAt, QueueSeconds: j.QueueSeconds,
			MachineSeconds: j.MachineSeconds, Cost: j.Cost, IdleCost: j.IdleCost,
		}
	}
	return out
}

func auditViews(rs []store.AuditRecord) []apiv1.AuditRecord {
	out := make([]apiv1.AuditRecord, len(rs))
	for i, r := range rs {
		out[i] = apiv1.AuditRecord{
			ID: r.ID, At: r.At, Actor: r.Actor, Action: r.Action, Egg: r.Egg, RunnerID: r.RunnerID, Policy: r.Policy,
			Reason: r.Reason, Before: r.Before, After: r.After, StateBefore: recordedState(r.Before), StateAfter: recordedState(r.After),
		}
	}
	return out
}

// recordedState is the runner state an audit record's before or after
// names ({"state": ...}), or "".
func recordedState(b json.RawMessage) string {
	var v struct {
		State string `json:"state"`
	}
	if len(b) == 0 || json.Unmarshal(b, &v) != nil {
		return ""
	}
	return v.State
}
