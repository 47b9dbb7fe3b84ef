package mothergoose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
)

// AuditInterruption records a runner's machine taken away by its cloud.
const AuditInterruption = "interruption"

// RunnerInterrupted takes an agent's notice that its machine is being
// taken away (a Spot or preemptible machine's capacity reclaimed). A
// notice from a machine Gosling itself is stopping or tearing down (Nadir,
// draining, terminating) is no interruption: it is logged and dropped.
// Otherwise the notice goes to the audit log (once per runner, however
// often the agent repeats it) and, with the jobs the machine was running
// (their projects from the store's job records), to the pool that owns the
// runner (contract.SignalRunnerInterrupted), which retires the runner and
// retries those jobs once it is gone. A runner outside a pool (a one-job
// VM) has its interruption recorded only.
func (m *Agents) RunnerInterrupted(ctx context.Context, a *Agent, i agentapi.Interruption) error {
	if err := i.Validate(); err != nil {
		return errorf(KindInvalid, "bad request", "%v", err)
	}
	r := a.runner
	switch r.State {
	case store.StateActive, store.StateRegistering, store.StateProvisioning:
	default:
		m.log.InfoContext(ctx, "machine shut down by Gosling, not interrupted", "runner", r.ID, "state", r.State, "source", i.Source)
		return nil
	}
	at := i.At
	if at.IsZero() {
		at = m.now().UTC()
	}
	msg := contract.RunnerInterrupted{RunnerID: r.ID, Source: i.Source, Deadline: i.Deadline, At: at, Jobs: []contract.JobRef{}}
	for _, id := range i.Jobs {
		ref := contract.JobRef{Host: r.GitLabHost, JobID: id}
		switch rec, err := m.store.GetJob(ctx, r.GitLabHost, id); {
		case err == nil:
			ref.ProjectID, ref.ProjectPath, ref.Name = rec.ProjectID, rec.ProjectPath, rec.Name
		case !errors.Is(err, store.ErrNotFound):
			return unavailable("store unavailable", "the interruption could not be recorded; retry", err)
		}
		msg.Jobs = append(msg.Jobs, ref)
	}
	after, _ := json.Marshal(msg)
	reason := fmt.Sprintf("the cloud is taking the machine away (%s", i.Source)
	if i.Action != "" {
		reason += ", " + i.Action
	}
	if !i.Deadline.IsZero() {
		reason += " at " + i.Deadline.UTC().Format("15:04:05Z")
	}
	reason += fmt.Sprintf("); %d job(s) running", len(i.Jobs))
	if _, err := m.store.AppendAudit(ctx, store.AuditRecord{
		At: at, Actor: contract.ActorMotherGoose, Action: AuditInterruption, Egg: r.Egg, RunnerID: r.ID, Reason: reason, After: after,
		Key: r.ID + "/" + AuditInterruption,
	}); err != nil {
		return unavailable("store unavailable", "the interruption could not be recorded; retry", err)
	}
	if contract.PoolOwned(r.Egg, r.ID) {
		in, err := SignalIntent(contract.PoolWorkflowID(r.Egg), contract.SignalRunnerInterrupted, msg)
		if err != nil {
			return err
		}
		if _, err := m.deliver(ctx, in); err != nil {
			return fmt.Errorf("signal the interruption of runner %s to its pool: %w", r.ID, err)
		}
	}
	m.log.WarnContext(ctx, "runner interrupted", "runner", r.ID, "source", i.Source, "jobs", i.Jobs, "deadline", i.Deadline)
	return nil
}
