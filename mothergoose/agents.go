package mothergoose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/internal/store"
)

// The requests of runner agents (internal/agentapi): each authenticates
// with its machine's own agent credential (minted at provisioning, named by
// the runner's record, store.Runner.AgentRef), compared in constant time
// with the stored one; a credential not yet cached is read again once
// before a request is refused. The GitLab runner token is no credential
// here: many machines may share it. A credential speaks for its own
// machine only: another runner's path with it is refused like a wrong one.
// A runner that does not exist gets the same KindUnauthorized as a wrong
// credential, so a caller learns nothing of which runners exist.
// MotherGoose turns what agents report into signals of the runner's
// workflows: agents hold no Temporal address or credential.

// Agent is a runner agent whose request authenticated: the runner it spoke
// for. Get one from AuthenticateAgent before a request's body is read, so
// a wrong credential is answered 401 whatever the body holds.
type Agent struct {
	runner *store.Runner
}

// AuthenticateAgent checks an agent request's credential against the
// runner's own (runnerID is the path's runner ID). Errors:
// KindUnauthorized for a wrong credential, a runner that does not exist or
// has none (the same answer, so a caller learns nothing of which runners
// exist), KindUnavailable when the store cannot be read.
func (m *Agents) AuthenticateAgent(ctx context.Context, runnerID, credential string) (*Agent, error) {
	r, err := m.authenticateAgent(ctx, runnerID, credential)
	if err != nil {
		return nil, err
	}
	return &Agent{runner: r}, nil
}

// authenticateAgent returns the runner whose agent credential the request
// carries.
func (m *Agents) authenticateAgent(ctx context.Context, runnerID, token string) (*store.Runner, error) {
	unauthorized := &Error{Kind: KindUnauthorized, Msg: "unauthorized", Detail: "not this runner's agent credential"}
	r, err := m.store.GetRunner(ctx, runnerID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unauthorized
	}
	if err != nil {
		return nil, unavailable("store unavailable", "the request could not be checked; retry", err)
	}
	ref := fly.SecretRef(r.AgentRef)
	match := false
	if r.AgentRef != "" {
		match, err = m.cache.Match(ctx, ref, token)
		if !match && m.cache.mayRefresh(ref) {
			var fresh string
			if fresh, err = m.secrets.Fresh(ctx, ref); err == nil {
				m.cache.put(ref, fresh)
				match = equalSecret(token, fresh)
			}
		}
	}
	if !match {
		if err != nil {
			m.log.WarnContext(ctx, "agent request: cannot read the runner's agent credential", "runner", r.ID, "error", err)
		}
		return nil, unauthorized
	}
	return r, nil
}

// Pins are the versions the Nest in force pins for agents and
// gitlab-runner, with their download URLs (MG/config.fly agent block).
func (m *Agents) Pins() agentapi.Pins {
	a := m.Nest().MotherGoose.Agent
	return agentapi.Pins{Agent: a.Version, AgentURL: a.URL, GitLabRunner: a.GitLabRunnerVersion, GitLabRunnerURL: a.GitLabRunnerURL}
}

// Heartbeat records that a runner's machine is alive and answers with the
// pins, which the agent updates itself to, and the current version of its
// token; a beat that reports the token version it holds confirms a running
// rotation (see confirmToken). UglyFox's heartbeat policy judges runners
// by these beats.
func (m *Agents) Heartbeat(ctx context.Context, a *Agent, b agentapi.Beat) (agentapi.Pins, error) {
	r := a.runner
	if err := m.store.RecordHeartbeat(ctx, r.ID, m.now().UTC()); err != nil {
		return agentapi.Pins{}, unavailable("store unavailable", "the beat could not be recorded; retry", err)
	}
	if b.UpdateError != "" {
		m.log.WarnContext(ctx, "a runner's agent refused an update", "runner", r.ID, "agent", b.Versions.Agent, "error", b.UpdateError)
	}
	pins := m.Pins()
	pins.TokenVersion, _ = m.confirmToken(ctx, r, b.TokenVersion)
	return pins, nil
}

// readyTargets are the workflows that wait for a runner's reports: the
// workflow that made it (its record's WorkflowID: a ProvisionRunner) and,
// for a pool's runner, its pool (a promotion waits there).
func readyTargets(r *store.Runner) []string {
	var out []string
	if r.WorkflowID != "" {
		out = append(out, r.WorkflowID)
	}
	if contract.PoolOwned(r.Egg, r.ID) {
		if p := contract.PoolWorkflowID(r.Egg); p != r.WorkflowID {
			out = append(out, p)
		}
	}
	return out
}

// RunnerReady takes an agent's ready report: the runner's token checked
// out with GitLab and gitlab-runner runs. It records a heartbeat and
// signals contract.SignalRunnerReady to the workflows that wait for the
// runner, through the outbox when Temporal is unreachable. A workflow that
// no longer runs (the runner was made long ago) is no error.
func (m *Agents) RunnerReady(ctx context.Context, a *Agent, rd agentapi.Ready) (agentapi.Pins, error) {
	r := a.runner
	if err := m.store.RecordHeartbeat(ctx, r.ID, m.now().UTC()); err != nil {
		return agentapi.Pins{}, unavailable("store unavailable", "the report could not be recorded; retry", err)
	}
	at := rd.At
	if at.IsZero() {
		at = m.now().UTC()
	}
	payload := contract.RunnerReady{RunnerID: r.ID, PID: rd.PID, Host: rd.Host, At: at}
	for _, wf := range readyTargets(r) {
		in, err := SignalIntent(wf, contract.SignalRunnerReady, payload)
		if err != nil {
			return agentapi.Pins{}, err
		}
		if _, err := m.deliver(ctx, in); err != nil {
			return agentapi.Pins{}, fmt.Errorf("signal ready to %s: %w", wf, err)
		}
	}
	m.log.InfoContext(ctx, "runner ready", "runner", r.ID, "trigger", rd.Trigger, "token_version", rd.TokenVersion,
		"agent", rd.Versions.Agent, "gitlab_runner", rd.Versions.GitLabRunner)
	return m.Pins(), nil
}

// RunnerJob takes an agent's job report: the job gitlab-runner started
// or how it ended. It is recorded with the job (the runner, its queue
// time, its cost: cost.go) and signalled (contract.SignalJobStatus) to the
// runner's workflows, so a runner made for one job learns that its job,
// whichever GitLab gave it, ended, even when a webhook is lost.
func (m *Agents) RunnerJob(ctx context.Context, a *Agent, j agentapi.JobReport) error {
	if err := j.Validate(); err != nil {
		return errorf(KindInvalid, "bad request", "%v", err)
	}
	r := a.runner
	at := j.At
	if at.IsZero() {
		at = m.now().UTC()
	}
	if err := m.recordRunnerJob(ctx, r, j, at); err != nil {
		return unavailable("store unavailable", "the report could not be recorded; retry", err)
	}
	status := contract.JobStatus{JobID: j.JobID, Status: j.Status, At: at, RunnerID: r.ID}
	// The job's machine, for failure counting: a Job Hook names the GitLab
	// runner, which the egg's machines may share, never the machine. Only
	// the machine is written (not the egg or the project, which the job's
	// hooks own), so a report cannot move another egg's job.
	if _, err := m.store.RecordJob(ctx, store.JobRecord{GitLabHost: r.GitLabHost, JobID: j.JobID, RunnerID: r.ID, UpdatedAt: m.now()}); err != nil {
		return unavailable("store unavailable", "the job report could not be recorded; retry", err)
	}
	for _, wf := range readyTargets(r) {
		in, err := SignalIntent(wf, contract.SignalJobStatus, status)
		if err != nil {
			return err
		}
		if _, err := m.deliver(ctx, in); err != nil {
			return fmt.Errorf("signal job %d to %s: %w", j.JobID, wf, err)
		}
	}
	m.log.InfoContext(ctx, "runner job", "runner", r.ID, "job", j.JobID, "status", j.Status, "failure_reason", strings.TrimSpace(j.FailureReason))
	return nil
}
