package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// The Nest in force, when a nest_update job rules it.
//
// Without a nest_update job, every server follows the Nest repository
// itself: a push to mothergoose.nest.ref, or its head moving (RunNestSync),
// makes each replica fetch, validate and apply that commit. With one, the
// job's schedule decides: a run (in a worker) fetches the Nest at the
// job's ref, validates it, applies it (egg configurations, pools,
// schedules) and records the accepted commit in the store, under
// NestCommitRecord; every server replica picks the recorded commit up
// within its --nest-sync interval and puts it in force in its memory
// (webhook matching and authentication read it). Pushes and the head are
// then not followed, so a Nest changes only when the job says so. An
// invalid Nest is audited with its diagnostics, fails the run, and leaves
// the last good commit in force everywhere.

// NestCommitRecord is the name of the store record (in the policies table,
// versioned by commit) that holds the Nest commit a nest_update job
// accepted last.
const NestCommitRecord = "gosling/nest-commit"

// nestCommitSpec is the record's body.
type nestCommitSpec struct {
	Commit string    `json:"commit"`
	Ref    string    `json:"ref"`
	Actor  string    `json:"actor"`
	At     time.Time `json:"at"`
}

// ScheduledNestUpdate names the nest_update job that rules the Nest in
// force, if any (the first by name that is enabled).
func ScheduledNestUpdate(nest *fly.Nest) (string, bool) {
	for _, j := range nest.Jobs {
		if j.Kind == fly.JobNestUpdate && j.Enabled {
			return j.Name, true
		}
	}
	return "", false
}

// UpdateNest is NestSync.UpdateNest as an operation: the self-management
// job that updates the Nest on a schedule asks it here.
func (m *Operations) UpdateNest(ctx context.Context, in contract.NestUpdateInput) (contract.NestUpdateResult, error) {
	return m.nests.UpdateNest(ctx, in)
}

// UpdateNest is a nest_update run: it fetches the Nest repository at in.Ref
// through the GitLab API, validates it, applies it in this process (see
// ApplyNest) and records the commit for every server (NestCommitRecord).
// An invalid Nest is not an error: the result says Invalid, with the
// diagnostics, and the audit log has them (nest-invalid). Errors are for a
// Nest that could not be fetched or a store that cannot take it.
func (m *NestSync) UpdateNest(ctx context.Context, in contract.NestUpdateInput) (contract.NestUpdateResult, error) {
	ref := in.Ref
	if ref == "" {
		ref = nestRef(m.Nest())
	}
	reason := fmt.Sprintf("%s: the Nest at %s", in.Actor, ref)
	nest, commit, err := m.fetch(ctx, ref)
	var invalid *InvalidNestError
	if errors.As(err, &invalid) {
		m.audit(ctx, store.AuditRecord{Actor: in.Actor, Action: "nest-invalid",
			Reason: reason + " (" + shortSHA(invalid.Commit) + ") is invalid; the Nest in force stays:\n" + truncate(invalid.Diagnostics, 4000)})
		return contract.NestUpdateResult{Commit: invalid.Commit, Invalid: true, Diagnostics: invalid.Diagnostics}, nil
	}
	if err != nil {
		return contract.NestUpdateResult{}, fmt.Errorf("fetch the Nest at %s: %w", ref, err)
	}
	out := contract.NestUpdateResult{Commit: commit}
	if rec, _ := m.recordedNestCommit(ctx); commit != "" && rec == commit && m.NestCommit() == commit {
		out.Unchanged = true
		return out, nil
	}
	res, err := m.ApplyNest(ctx, nest, commit, reason)
	if err != nil {
		return out, err
	}
	out.Eggs, out.Pools, out.Warnings = res.Eggs, res.Pools, res.Warnings
	if commit == "" {
		return out, nil // not read from a repository (gosling dev's working tree): nothing to record
	}
	spec, _ := json.Marshal(nestCommitSpec{Commit: commit, Ref: ref, Actor: in.Actor, At: m.now().UTC()})
	if err := m.store.PutPolicy(ctx, store.Policy{Name: NestCommitRecord, Version: commit, Spec: spec, UpdatedAt: m.now()}); err != nil {
		return out, fmt.Errorf("record the accepted Nest commit: %w", err)
	}
	m.audit(ctx, store.AuditRecord{Actor: in.Actor, Action: contract.AuditNestAccepted,
		Reason: fmt.Sprintf("the Nest at %s (%s) is valid and in force; servers follow it", ref, shortSHA(commit))})
	return out, nil
}

// recordedNestCommit is the commit a nest_update job accepted last, "" when
// none did.
func (m *NestSync) recordedNestCommit(ctx context.Context) (string, error) {
	ps, err := m.store.ListPolicies(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range ps {
		if p.Name == NestCommitRecord {
			return p.Version, nil
		}
	}
	return "", nil
}

// followRecordedNest puts the recorded commit in force in this process
// when it is not already, for RunNestSync.
func (m *NestSync) followRecordedNest(ctx context.Context, job string) {
	commit, err := m.recordedNestCommit(ctx)
	if err != nil {
		m.log.WarnContext(ctx, "read the accepted Nest commit", "error", err)
		return
	}
	if commit == "" || commit == m.NestCommit() || commit == m.rejectedCommit() {
		return
	}
	if _, err := m.ReloadNest(ctx, commit, "job "+job+" accepted "+shortSHA(commit)); err != nil {
		var invalid *InvalidNestError
		if errors.As(err, &invalid) {
			m.rejected.Store(&commit)
			return
		}
		m.log.WarnContext(ctx, "put the accepted Nest in force", "commit", commit, "error", err)
	}
}
