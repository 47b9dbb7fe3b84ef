package store

import (
	"context"
	"errors"
	"fmt"
)

// validated is what every engine's constructor returns: the checks all
// engines share, applied once before the engine sees a call, so each
// engine only stores.
type validated struct{ Store }

// validate wraps an engine in the shared checks.
func validate(s Store) Store { return validated{s} }

// CreateRunner refuses a runner without an ID or with an unknown state; an
// empty state is StateProvisioning.
func (v validated) CreateRunner(ctx context.Context, r *Runner) error {
	if r.ID == "" {
		return errors.New("create runner: empty ID")
	}
	if r.State == "" {
		r.State = StateProvisioning
	}
	if !r.State.Valid() {
		return fmt.Errorf("create runner %s: unknown state %q", r.ID, r.State)
	}
	return v.Store.CreateRunner(ctx, r)
}

// RecordJob refuses a job without its GitLab host or ID.
func (v validated) RecordJob(ctx context.Context, j JobRecord) (JobRecord, error) {
	if j.GitLabHost == "" || j.JobID == 0 {
		return JobRecord{}, fmt.Errorf("record job %s#%d: a job needs its GitLab host and job ID", j.GitLabHost, j.JobID)
	}
	return v.Store.RecordJob(ctx, j)
}

// AppendAudit refuses a record without an actor or an action.
func (v validated) AppendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	if a.Actor == "" || a.Action == "" {
		return 0, fmt.Errorf("append audit: a record needs an actor and an action (got actor %q, action %q)", a.Actor, a.Action)
	}
	return v.Store.AppendAudit(ctx, a)
}

// EnqueueOutbox refuses an entry without a kind.
func (v validated) EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error) {
	if e.Kind == "" {
		return 0, errors.New("enqueue outbox: an entry needs a kind")
	}
	return v.Store.EnqueueOutbox(ctx, e)
}
