package mothergoose

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
)

// Token rotation reaches a running cloud VM through its agent's API
// channel, the heartbeat. The rotation (RotateRunnerTokens) resets the
// runner's token in GitLab and writes the new version to the runner's
// secret; the agent reloads its token (SIGHUP, or its next beat reads it
// afresh), so its next beat carries the new token. A beat reports the
// version the agent holds (agentapi.Beat.TokenVersion); when the token is
// a version of the runner's token secret, MotherGoose tells the running rotation
// (SignalTokenConfirmed), which waits for it, within its confirmation
// timeout, before it checks the token with GitLab and records the runner
// rotated. The answer to every beat names the current version of the
// runner's token (agentapi.Pins.TokenVersion), so an agent can tell it is
// behind.

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

// confirmToken handles the token version a beat reports (empty when it
// says none): the beat authenticated with the machine's own credential, so
// the version it names, when the token's secret has it, is signalled to
// the running rotation once per runner and version; a
// rotation that is not running is not an error. It returns the current
// version of the runner's token ("" when its backend keeps none) and
// whether a confirmation was delivered.
func (m *Agents) confirmToken(ctx context.Context, r *store.Runner, version string) (current string, confirmed bool) {
	if r.TokenRef == "" {
		return "", false
	}
	ref := fly.SecretRef(r.TokenRef)
	current = m.currentTokenVersion(ctx, ref)
	if version == "" || !m.hasVersion(ctx, ref, version) || !m.firstConfirmation(r.ID, version) {
		return current, false
	}
	tc := m.Temporal()
	if tc == nil {
		return current, false
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	err := tc.SignalWorkflow(cctx, contract.RotateWorkflowID, "", contract.SignalTokenConfirmed,
		contract.TokenConfirmed{RunnerID: r.ID, Version: version, At: m.now().UTC()})
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
		return current, false
	case err != nil:
		m.forgetConfirmation(r.ID)
		m.log.WarnContext(ctx, "tell the rotation of a confirmed token", "runner", r.ID, "error", err)
		return current, false
	}
	m.audit(ctx, store.AuditRecord{Actor: contract.ActorMotherGoose, Action: "token-confirmed", Egg: r.Egg, RunnerID: r.ID,
		Reason: "the runner's agent authenticated with token version " + version})
	return current, true
}

// hasVersion tells whether ref's secret has that version.
func (m *Agents) hasVersion(ctx context.Context, ref fly.SecretRef, version string) bool {
	u, err := ref.Parse()
	if err != nil {
		return false
	}
	u.Version = version
	_, err = m.secrets.Resolve(ctx, fly.SecretRef(u.String()))
	return err == nil
}

// currentTokenVersion is the current version of a token's secret, cached
// for the secret TTL; "" when the backend keeps no versions.
func (m *Agents) currentTokenVersion(ctx context.Context, ref fly.SecretRef) string {
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

func (m *Agents) firstConfirmation(runnerID, version string) bool {
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

func (m *Agents) forgetConfirmation(runnerID string) {
	tv := &m.tokens
	tv.mu.Lock()
	defer tv.mu.Unlock()
	delete(tv.confirmed, runnerID)
}
