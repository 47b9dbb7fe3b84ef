package mothergoose

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/workflows/contract"
	"go.temporal.io/api/serviceerror"
)

// Token rotation reaches a running cloud VM through its agent's API
// channel, the heartbeat. The rotation (RotateRunnerTokens) resets the
// runner's token in GitLab and writes the new version to the runner's
// secret; the agent reads its token afresh for every beat, so its next
// beat carries the new token. A beat may report the version the agent
// holds (X-Gosling-Token-Version); when the token is that version's value,
// MotherGoose tells the running rotation (SignalTokenConfirmed), which waits
// for it, within its confirmation timeout, before it checks the token with
// GitLab and records the runner rotated. The answer to every beat names
// the current version of the runner's token, so an agent can tell it is
// behind.

// HeartbeatAnswer is what an agent's heartbeat is answered with.
type HeartbeatAnswer struct {
	// TokenVersion is the current version of the runner's token secret;
	// "" when its backend keeps no versions.
	TokenVersion string
	// Confirmed is set when the beat confirmed a token version to a
	// running rotation.
	Confirmed bool
}

// tokenVersions caches the current version of runner tokens briefly, and
// remembers the last version each runner confirmed.
type tokenVersions struct {
	mu        sync.Mutex
	current   map[fly.SecretRef]cachedVersion
	confirmed map[string]string
}

type cachedVersion struct {
	version string
	until   time.Time
}

// AgentHeartbeat is Heartbeat (same authentication and errors) for an
// agent that reports the version of the token it holds (version, empty
// when it does not say). A version whose value is the token the beat was
// made with is signalled to the running rotation once per runner and
// version; a rotation that is not running is not an error.
func (m *MotherGoose) AgentHeartbeat(ctx context.Context, runnerID, token, version string) (HeartbeatAnswer, error) {
	var ans HeartbeatAnswer
	if err := m.Heartbeat(ctx, runnerID, token); err != nil {
		return ans, err
	}
	r, err := m.store.GetRunner(ctx, runnerID)
	if err != nil || r.TokenRef == "" {
		return ans, nil // beat recorded; nothing to say about versions
	}
	ref := fly.SecretRef(r.TokenRef)
	ans.TokenVersion = m.currentTokenVersion(ctx, ref)
	if version == "" || !m.tokenIsVersion(ctx, ref, version, token) || !m.firstConfirmation(runnerID, version) {
		return ans, nil
	}
	tc := m.Temporal()
	if tc == nil {
		return ans, nil
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	err = tc.SignalWorkflow(cctx, contract.RotateWorkflowID, "", contract.SignalTokenConfirmed,
		contract.TokenConfirmed{RunnerID: runnerID, Version: version, At: m.now().UTC()})
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
	case err != nil:
		m.forgetConfirmation(runnerID)
		m.log.WarnContext(ctx, "tell the rotation of a confirmed token", "runner", runnerID, "error", err)
	default:
		ans.Confirmed = true
		m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: "token-confirmed", Egg: r.Egg, RunnerID: r.ID,
			Reason: "the runner's agent authenticated with token version " + version})
	}
	return ans, nil
}

// tokenIsVersion tells whether token is the value of a version of ref.
func (m *MotherGoose) tokenIsVersion(ctx context.Context, ref fly.SecretRef, version, token string) bool {
	u, err := ref.Parse()
	if err != nil {
		return false
	}
	u.Version = version
	v, err := m.secrets.Resolve(ctx, fly.SecretRef(u.String()))
	return err == nil && equalSecret(token, v)
}

// currentTokenVersion is the current version of a token's secret, cached
// for the secret TTL; "" when the backend keeps no versions.
func (m *MotherGoose) currentTokenVersion(ctx context.Context, ref fly.SecretRef) string {
	now := m.now()
	tv := &m.tokens
	tv.mu.Lock()
	if c, ok := tv.current[ref]; ok && now.Before(c.until) {
		tv.mu.Unlock()
		return c.version
	}
	tv.mu.Unlock()
	vs, err := m.secrets.Versions(ctx, ref)
	if err != nil {
		return ""
	}
	var cur string
	for _, v := range vs {
		if v.Current {
			cur = v.ID
		}
	}
	tv.mu.Lock()
	defer tv.mu.Unlock()
	if tv.current == nil {
		tv.current = map[fly.SecretRef]cachedVersion{}
	}
	tv.current[ref] = cachedVersion{version: cur, until: now.Add(m.cfg.SecretTTL)}
	return cur
}

func (m *MotherGoose) firstConfirmation(runnerID, version string) bool {
	tv := &m.tokens
	tv.mu.Lock()
	defer tv.mu.Unlock()
	if tv.confirmed == nil {
		tv.confirmed = map[string]string{}
	}
	if tv.confirmed[runnerID] == version {
		return false
	}
	tv.confirmed[runnerID] = version
	return true
}

func (m *MotherGoose) forgetConfirmation(runnerID string) {
	tv := &m.tokens
	tv.mu.Lock()
	defer tv.mu.Unlock()
	delete(tv.confirmed, runnerID)
}
