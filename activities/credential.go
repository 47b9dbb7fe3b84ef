package activities

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// Every machine has its own agent credential: a random secret minted when
// the machine is provisioned, written to the egg's secret backend beside
// the runner's token, named in the runner's record (store.Runner.AgentRef)
// and revoked (deleted) at teardown. The machine's agent reads it with the
// machine's identity and authenticates MotherGoose's agent API with it; the
// API compares it with the record's, so a machine can report for itself
// only, and the GitLab runner token, which may be shared by many machines,
// is never an agent's credential.

// AgentCredentialPrefix starts every agent credential, so a leaked one is
// recognisable (and masked by its value like every secret).
const AgentCredentialPrefix = "gsa-"

// AgentRefFor is where a runner's agent credential goes, beside its token:
// the token's secret with key agent (…/token becomes …/agent), or, where
// tokens are keys of one secret (Lockbox), the key <runner>.agent.
func AgentRefFor(tokenRef fly.SecretRef) fly.SecretRef {
	if base, ok := strings.CutSuffix(string(tokenRef), "/token"); ok {
		return fly.SecretRef(base + "/agent")
	}
	return fly.SecretRef(string(tokenRef) + ".agent")
}

// agentRef is where the runner's agent credential goes: beside the
// runner's token in its egg's secrets (tokenRefFor), which the egg's
// machine identity may read; on the local provider always the local
// store, as its machines read nothing else.
func (a *Activities) agentRef(ctx context.Context, egg, runnerID, cloud string) (fly.SecretRef, error) {
	if cloud == fly.CloudLocal || a.TokenRef == nil {
		return AgentRefFor(LocalTokenRef(runnerID)), nil
	}
	tok, err := a.tokenRefFor(ctx, egg, runnerID)
	if err != nil {
		return "", err
	}
	return AgentRefFor(tok), nil
}

// AgentCredentialInput names the runner whose machine gets a credential.
type AgentCredentialInput struct {
	RunnerID string `json:"runner_id"`
	Cloud    string `json:"cloud"`
}

// MintAgentCredential makes a new agent credential for a runner's machine,
// writes it to the secret backend and names it in the runner's record; it
// returns the secret URI, never the value, so the credential stays out of
// workflow history. Run again (a retry), it mints a new one: the machine
// does not exist yet, so nothing holds the old.
func (a *Activities) MintAgentCredential(ctx context.Context, in AgentCredentialInput) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("mint agent credential: %w", err)
	}
	row, err := a.Store.GetRunner(ctx, in.RunnerID)
	if err != nil {
		return "", fmt.Errorf("read runner %s: %w", in.RunnerID, err)
	}
	ref, err := a.agentRef(ctx, row.Egg, in.RunnerID, in.Cloud)
	if err != nil {
		return "", err
	}
	if _, err := a.Secrets.Put(ctx, ref, AgentCredentialPrefix+hex.EncodeToString(b)); err != nil {
		return "", fmt.Errorf("store agent credential of %s: %w", in.RunnerID, err)
	}
	for {
		r, err := a.Store.GetRunner(ctx, in.RunnerID)
		if err != nil {
			return "", fmt.Errorf("read runner %s: %w", in.RunnerID, err)
		}
		if r.AgentRef == string(ref) {
			return string(ref), nil
		}
		r.AgentRef = string(ref)
		err = a.Store.UpdateRunner(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			continue // written meanwhile (a heartbeat): read it again
		}
		if err != nil {
			return "", fmt.Errorf("record agent credential of %s: %w", in.RunnerID, err)
		}
		return string(ref), nil
	}
}

// RevokeAgentCredential deletes a runner's agent credential: its agent can
// report nothing more. It reads where from the runner's record (nothing to
// do for a runner made before machines had credentials); deleting what is
// gone already is not an error.
func (a *Activities) RevokeAgentCredential(ctx context.Context, runnerID string) error {
	r, err := a.Store.GetRunner(ctx, runnerID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read runner %s: %w", runnerID, err)
	}
	if r.AgentRef == "" {
		return nil
	}
	if err := a.Secrets.Delete(ctx, fly.SecretRef(r.AgentRef)); err != nil {
		return fmt.Errorf("revoke agent credential of %s: %w", runnerID, err)
	}
	return nil
}
