package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/agent"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeTokenNotStored marks a rotation whose token GitLab reset but whose
// new token could not be written: the stored token no longer works, so the
// workflow retries it, resetting again, until a write lands.
const ErrTypeTokenNotStored = "TokenNotStored"

// AuditActionRotateToken is the audit action of a runner token rotation.
const AuditActionRotateToken = "rotate-token"

// RotationStates are the states whose runners get new tokens: in service.
var RotationStates = []store.RunnerState{store.StateActive, store.StateDormant}

// RotationTargetsInput asks for one page of runners in service, by ID.
type RotationTargetsInput struct {
	// Eggs limits the page to these eggs; empty means every egg.
	Eggs  []string `json:"eggs,omitempty"`
	After string   `json:"after,omitempty"`
	Limit int      `json:"limit"`
}

// RotationTarget is a runner whose token is to be rotated: a secret
// reference, never the token.
type RotationTarget struct {
	RunnerID       string            `json:"runner_id"`
	Egg            string            `json:"egg"`
	Cloud          string            `json:"cloud,omitempty"`
	Kind           string            `json:"kind,omitempty"`
	State          store.RunnerState `json:"state"`
	GitLabRunnerID int64             `json:"gitlab_runner_id,omitempty"`
	TokenRef       string            `json:"token_ref,omitempty"`
}

// RotationTargets is one page of targets with the GitLab settings of their
// eggs; an egg without a stored configuration has none.
type RotationTargets struct {
	Targets []RotationTarget      `json:"targets"`
	GitLab  map[string]fly.GitLab `json:"gitlab,omitempty"`
	// Next is the After of the next page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// ListRotationTargets reads one page of runners in service (RotationStates)
// and the stored GitLab settings of their eggs.
func (a *Activities) ListRotationTargets(ctx context.Context, in RotationTargetsInput) (RotationTargets, error) {
	limit := in.Limit
	if limit <= 0 {
		limit = 500
	}
	f := store.RunnerFilter{States: RotationStates, After: in.After, Limit: limit}
	if len(in.Eggs) == 1 {
		f.Egg = in.Eggs[0]
	}
	rows, err := a.Store.ListRunners(ctx, f)
	if err != nil {
		return RotationTargets{}, fmt.Errorf("list runners in service: %w", err)
	}
	out := RotationTargets{Targets: []RotationTarget{}, GitLab: map[string]fly.GitLab{}}
	missing := map[string]bool{}
	for _, r := range rows {
		if len(in.Eggs) > 0 && !slices.Contains(in.Eggs, r.Egg) {
			continue
		}
		out.Targets = append(out.Targets, RotationTarget{
			RunnerID: r.ID, Egg: r.Egg, Cloud: r.Cloud, Kind: r.Kind, State: r.State,
			GitLabRunnerID: r.GitLabRunnerID, TokenRef: r.TokenRef,
		})
		if _, ok := out.GitLab[r.Egg]; ok || missing[r.Egg] {
			continue
		}
		gl, err := a.storedGitLab(ctx, r.Egg)
		if err != nil {
			return RotationTargets{}, err
		}
		if gl == nil {
			missing[r.Egg] = true
			continue
		}
		out.GitLab[r.Egg] = *gl
	}
	if len(rows) == limit {
		out.Next = rows[len(rows)-1].ID
	}
	return out, nil
}

// SharedRunnersInput asks for the shared GitLab runners of some eggs.
type SharedRunnersInput struct {
	// Eggs limits the list to these eggs; empty means every egg.
	Eggs []string `json:"eggs,omitempty"`
}

// SharedRunnerTarget is an egg's shared GitLab runner (EggRunner) whose
// token a rotation resets: a secret reference, never the token.
type SharedRunnerTarget struct {
	Egg            string     `json:"egg"`
	ShapeKey       string     `json:"shape_key"`
	GitLab         fly.GitLab `json:"gitlab"`
	GitLabRunnerID int64      `json:"gitlab_runner_id"`
	TokenRef       string     `json:"token_ref"`
}

// SharedRunners are the shared runners of the asked eggs, ordered by egg
// and shape; a runner of an egg without a stored configuration is left out.
type SharedRunners struct {
	Runners []SharedRunnerTarget `json:"runners"`
}

// ListSharedRunners reads the shared GitLab runners of eggs from their
// EggRunner workflows (MotherGoose.EggRunners), with each egg's stored
// GitLab settings, so a rotation finds an egg's token even when no machine
// of the egg is live.
func (a *Activities) ListSharedRunners(ctx context.Context, in SharedRunnersInput) (SharedRunners, error) {
	mg, err := a.motherGoose()
	if err != nil {
		return SharedRunners{}, err
	}
	runners, err := mg.EggRunners(ctx, in.Eggs)
	if err != nil {
		return SharedRunners{}, err
	}
	out := SharedRunners{Runners: []SharedRunnerTarget{}}
	settings := map[string]*fly.GitLab{}
	for _, r := range runners {
		gl, ok := settings[r.Egg]
		if !ok {
			gl, err = a.storedGitLab(ctx, r.Egg)
			if err != nil {
				return SharedRunners{}, err
			}
			settings[r.Egg] = gl
		}
		if gl == nil || r.Runner.GitLabRunnerID == 0 {
			continue
		}
		out.Runners = append(out.Runners, SharedRunnerTarget{
			Egg: r.Egg, ShapeKey: r.Runner.ShapeKey, GitLab: *gl,
			GitLabRunnerID: r.Runner.GitLabRunnerID, TokenRef: r.Runner.TokenRef,
		})
	}
	return out, nil
}

// storedGitLab is an egg's stored GitLab settings; nil when the egg has no
// stored configuration.
func (a *Activities) storedGitLab(ctx context.Context, egg string) (*fly.GitLab, error) {
	c, err := a.Store.GetEggConfig(ctx, egg)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration of egg %s: %w", egg, err)
	}
	var e fly.Egg
	if err := json.Unmarshal(c.Spec, &e); err != nil {
		return nil, fmt.Errorf("decode stored egg %s: %w", egg, err)
	}
	return &e.GitLab, nil
}

// RotateTokenInput names the runner whose token is reset.
type RotateTokenInput struct {
	RunnerID       string     `json:"runner_id"`
	GitLab         fly.GitLab `json:"gitlab"`
	GitLabRunnerID int64      `json:"gitlab_runner_id"`
	// TokenRef is where the token is stored; empty means a.TokenRef.
	TokenRef string `json:"token_ref,omitempty"`
	// States are the states the runner must still be in; others are skipped.
	States []store.RunnerState `json:"states"`
	// Shared resets an egg's shared runner token by itself: RunnerID names
	// it (its EggRunnerSecretName) and no machine's state is checked.
	Shared bool `json:"shared,omitempty"`
}

// RotateTokenResult names the stored version of the new token.
type RotateTokenResult struct {
	Version   string     `json:"version,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Skipped says why nothing was reset (the runner left service, or
	// GitLab no longer knows it).
	Skipped string `json:"skipped,omitempty"`
}

// storeAttempts bounds the writes of one attempt; the workflow retries the
// whole activity (a new reset, a new write) after that.
const storeAttempts = 5

// RotateRunnerToken resets the runner's token in GitLab and writes the new
// one to the runner's secret, in one activity, so the token never enters
// workflow history. GitLab invalidates the old token at the reset: a write
// that fails is retried here a few times and then fails the attempt with
// ErrTypeTokenNotStored, and the workflow's retry resets again and writes
// again until one lands. A failed reset leaves the old token working.
func (a *Activities) RotateRunnerToken(ctx context.Context, in RotateTokenInput) (RotateTokenResult, error) {
	if !in.Shared {
		r, err := a.Store.GetRunner(ctx, in.RunnerID)
		if errors.Is(err, store.ErrNotFound) {
			return RotateTokenResult{Skipped: "the runner is no longer in the store"}, nil
		}
		if err != nil {
			return RotateTokenResult{}, fmt.Errorf("read runner %s: %w", in.RunnerID, err)
		}
		if !slices.Contains(in.States, r.State) {
			return RotateTokenResult{Skipped: fmt.Sprintf("the runner is %s now", r.State)}, nil
		}
	} else if !contract.IsEggRunnerToken(in.TokenRef) {
		return RotateTokenResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s is not an egg's shared runner token", in.TokenRef), ErrTypeBadInput, nil)
	}
	ref := fly.SecretRef(in.TokenRef)
	if ref == "" {
		ref = a.TokenRef(in.RunnerID)
	}
	if u, err := ref.Parse(); err != nil || u.Version != "" {
		return RotateTokenResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("token reference of runner %s must be an unpinned secret URI", in.RunnerID), ErrTypeBadInput, err)
	}
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return RotateTokenResult{}, err
	}
	token, expires, err := gl.ResetRunnerToken(ctx, in.GitLabRunnerID)
	switch {
	case gitlab.IsNotFound(err):
		return RotateTokenResult{Skipped: fmt.Sprintf("GitLab no longer knows runner %d", in.GitLabRunnerID)}, nil
	case gitlab.IsForbidden(err):
		return RotateTokenResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeGitLabRejected, err)
	case err != nil:
		return RotateTokenResult{}, err
	}
	var version string
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		if err = ctx.Err(); err != nil {
			break // timed out: a later attempt resets and writes again
		}
		version, err = a.Secrets.Put(ctx, ref, token)
		if err == nil || attempt == storeAttempts {
			break
		}
		activity.RecordHeartbeat(ctx, attempt)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	if err != nil {
		return RotateTokenResult{}, temporal.NewApplicationErrorWithCause(
			fmt.Sprintf("GitLab reset the token of runner %s but writing the new one to %s failed; the stored token no longer works until a write lands", in.RunnerID, ref),
			ErrTypeTokenNotStored, err)
	}
	a.logger().InfoContext(ctx, "runner token rotated", "runner", in.RunnerID, "token_ref", string(ref), "version", version)
	return RotateTokenResult{Version: version, ExpiresAt: expires}, nil
}

// TokenCheckSystemID is the system_id the worker checks a stored runner
// token with (VerifyRunnerToken): GitLab records a runner manager for every
// system_id that verifies, and this one names the check, not a machine.
const TokenCheckSystemID = "gosling-token-check"

// Outcomes of ReloadRunnerAgent.
const (
	// AgentConfirmed: the live agent read the new version and GitLab
	// accepted it.
	AgentConfirmed = "confirmed"
	// AgentDeferred: the machine is stopped (dormant); its agent reads the
	// current version when it is resumed.
	AgentDeferred = "deferred"
	// AgentGone: no agent process runs; whatever starts one reads the
	// current version.
	AgentGone = "gone"
)

// ReloadAgentInput names a runner whose agent must pick up a new token.
type ReloadAgentInput struct {
	RunnerID string `json:"runner_id"`
	Cloud    string `json:"cloud"`
	// Version is the version of the secret the agent must confirm.
	Version string `json:"version"`
	// Wait bounds the wait for the agent's confirmation (default 45s).
	Wait time.Duration `json:"wait,omitempty"`
}

// ReloadAgentResult says what the agent did.
type ReloadAgentResult struct {
	Outcome    string    `json:"outcome"`
	Version    string    `json:"version,omitempty"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
}

// ReloadRunnerAgent tells a runner's live agent to re-read its token
// (agent.Reload: SIGHUP) and waits until the agent reports that it read
// Version and GitLab accepted it. Only the local provider's agents are
// reachable from here; see internal/agent for what a cloud VM's agent does
// with the same request.
func (a *Activities) ReloadRunnerAgent(ctx context.Context, in ReloadAgentInput) (ReloadAgentResult, error) {
	if in.Cloud != fly.CloudLocal || a.Tofu == nil {
		return ReloadAgentResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the agent of runner %s on %s cannot be reached from this worker", in.RunnerID, in.Cloud), ErrTypeBadInput, nil)
	}
	dir := MachineDir(a.Tofu.StateDir(), in.RunnerID)
	confirmed := func() (ReloadAgentResult, bool, error) {
		st, err := agent.ReadTokenStatus(dir)
		if err != nil || st.Version != in.Version || st.PID != agent.Inspect(dir).PID {
			return ReloadAgentResult{}, false, nil
		}
		if !st.Verified {
			return ReloadAgentResult{}, false, fmt.Errorf("the agent of runner %s read version %s, but: %s", in.RunnerID, st.Version, st.Error)
		}
		return ReloadAgentResult{Outcome: AgentConfirmed, Version: st.Version, VerifiedAt: st.At}, true, nil
	}
	// A retry finds the work of an earlier attempt done.
	if res, ok, _ := confirmed(); ok {
		return res, nil
	}
	switch err := agent.Reload(dir); {
	case errors.Is(err, agent.ErrStopped):
		return ReloadAgentResult{Outcome: AgentDeferred}, nil
	case errors.Is(err, agent.ErrNotRunning):
		return ReloadAgentResult{Outcome: AgentGone}, nil
	case err != nil:
		return ReloadAgentResult{}, fmt.Errorf("tell the agent of runner %s: %w", in.RunnerID, err)
	}
	wait := in.Wait
	if wait <= 0 {
		wait = 45 * time.Second
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ReloadAgentResult{}, ctx.Err()
		case <-deadline.C:
			return ReloadAgentResult{}, fmt.Errorf("the agent of runner %s did not confirm version %s within %s", in.RunnerID, in.Version, wait)
		case <-tick.C:
		}
		activity.RecordHeartbeat(ctx, nil)
		res, ok, err := confirmed()
		if err != nil {
			return ReloadAgentResult{}, err
		}
		if ok {
			return res, nil
		}
		if st := agent.Inspect(dir); st.Stopped {
			return ReloadAgentResult{Outcome: AgentDeferred}, nil // demoted meanwhile
		} else if !st.Alive {
			return ReloadAgentResult{Outcome: AgentGone}, nil
		}
	}
}

// VerifyTokenInput names a stored runner token to check with GitLab.
type VerifyTokenInput struct {
	RunnerID string     `json:"runner_id"`
	GitLab   fly.GitLab `json:"gitlab"`
	TokenRef string     `json:"token_ref,omitempty"`
	// Version pins the version to check; empty checks the current one.
	Version string `json:"version,omitempty"`
}

// VerifyTokenResult says whether GitLab accepts the stored token.
type VerifyTokenResult struct {
	Valid bool `json:"valid"`
}

// VerifyRunnerToken reads the runner's stored token and checks it with
// GitLab as a runner does (POST /runners/verify). A refused token is a
// result, not an error.
func (a *Activities) VerifyRunnerToken(ctx context.Context, in VerifyTokenInput) (VerifyTokenResult, error) {
	ref := fly.SecretRef(in.TokenRef)
	if ref == "" {
		ref = a.TokenRef(in.RunnerID)
	}
	u, err := ref.Parse()
	if err != nil {
		return VerifyTokenResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBadInput, err)
	}
	if in.Version != "" {
		u.Version = in.Version
	}
	token, err := a.Secrets.Resolve(ctx, fly.SecretRef(u.String()))
	if err != nil {
		return VerifyTokenResult{}, fmt.Errorf("read token of runner %s: %w", in.RunnerID, err)
	}
	gl, err := a.gitlabClient(ctx, in.GitLab)
	if err != nil {
		return VerifyTokenResult{}, err
	}
	err = gl.VerifyRunner(ctx, token, TokenCheckSystemID)
	if errors.Is(err, gitlab.ErrInvalidRunnerToken) {
		return VerifyTokenResult{Valid: false}, nil
	}
	if err != nil {
		return VerifyTokenResult{}, fmt.Errorf("verify token of runner %s: %w", in.RunnerID, err)
	}
	return VerifyTokenResult{Valid: true}, nil
}

// RotationAudit is the audit record of one runner's rotation. It names the
// secret version, never the token.
type RotationAudit struct {
	At       time.Time `json:"at"`
	Actor    string    `json:"actor"`
	Egg      string    `json:"egg"`
	RunnerID string    `json:"runner_id"`
	Reason   string    `json:"reason,omitempty"`
	// Outcome is rotated, failed or skipped.
	Outcome string `json:"outcome"`
	// Version is the secret version of the new token.
	Version string `json:"version,omitempty"`
	// VerifiedBy is agent or gitlab.
	VerifiedBy string `json:"verified_by,omitempty"`
	Agent      string `json:"agent,omitempty"`
	// TokenWorks says whether GitLab accepts the stored token afterwards;
	// nil when it was not checked.
	TokenWorks *bool  `json:"token_works,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

// AuditRotation appends the audit record of one runner's rotation, once:
// a local activity that a retried workflow task runs again finds its
// record written (auditKeyPrefix).
func (a *Activities) AuditRotation(ctx context.Context, in RotationAudit) error {
	after, err := json.Marshal(struct {
		Outcome    string `json:"outcome"`
		Version    string `json:"token_version,omitempty"`
		VerifiedBy string `json:"verified_by,omitempty"`
		Agent      string `json:"agent,omitempty"`
		TokenWorks *bool  `json:"token_works,omitempty"`
		Detail     string `json:"detail,omitempty"`
	}{in.Outcome, in.Version, in.VerifiedBy, in.Agent, in.TokenWorks, in.Detail})
	if err != nil {
		return err
	}
	rec := store.AuditRecord{
		At: in.At, Actor: in.Actor, Action: AuditActionRotateToken, Egg: in.Egg, RunnerID: in.RunnerID,
		Reason: in.Reason, After: after,
	}
	if prefix := auditKeyPrefix(ctx); prefix != "" {
		rec.Key = prefix + AuditActionRotateToken
	}
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	if _, err := a.Store.AppendAudit(ctx, rec); err != nil {
		return fmt.Errorf("append audit %s of %s: %w", AuditActionRotateToken, in.RunnerID, err)
	}
	return nil
}
