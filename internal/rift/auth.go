package rift

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// Runner is who a runner token belongs to.
type Runner struct {
	ID  string `json:"id"`
	Egg string `json:"egg"`
}

// ErrUnauthenticated says a token is no live runner's: unknown, or its
// runner was destroyed (terminating, terminated or failed). Rift answers
// it with 401.
var ErrUnauthenticated = errors.New("not the token of a live runner")

// RunnerAuthenticator tells whose a runner token (glrt-...) is. It returns
// ErrUnauthenticated (wrapped or not) for a token of no live runner, and
// other errors when it cannot tell (a store or secret backend down).
type RunnerAuthenticator interface {
	Authenticate(ctx context.Context, token string) (Runner, error)
}

// LiveChecker is what an authenticator may also do: tell whether a runner
// is still live, for requests that carry a client certificate instead of
// a token. It returns ErrUnauthenticated for a destroyed runner.
type LiveChecker interface {
	Live(ctx context.Context, runnerID string) error
}

// equalSecret compares in constant time; both are hashed first, so
// neither length leaks, and an empty secret matches nothing.
func equalSecret(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1 && want != ""
}

// StaticAuthenticator knows a fixed set of tokens, for tests and single
// machine setups. It is safe for concurrent use.
type StaticAuthenticator struct {
	mu     sync.Mutex
	tokens map[string]Runner
	gone   map[string]bool // runner IDs revoked
}

// NewStaticAuthenticator returns an authenticator for token -> runner.
func NewStaticAuthenticator(tokens map[string]Runner) *StaticAuthenticator {
	a := &StaticAuthenticator{tokens: map[string]Runner{}, gone: map[string]bool{}}
	for t, r := range tokens {
		a.tokens[t] = r
	}
	return a
}

// Revoke destroys a runner: its token and certificates stop working.
func (a *StaticAuthenticator) Revoke(runnerID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gone[runnerID] = true
}

// Authenticate compares token with every known one in constant time.
func (a *StaticAuthenticator) Authenticate(_ context.Context, token string) (Runner, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var found Runner
	ok := false
	for t, r := range a.tokens {
		if equalSecret(token, t) {
			found, ok = r, true
		}
	}
	if !ok || a.gone[found.ID] {
		return Runner{}, ErrUnauthenticated
	}
	return found, nil
}

// Live tells whether a runner was revoked.
func (a *StaticAuthenticator) Live(_ context.Context, runnerID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone[runnerID] {
		return ErrUnauthenticated
	}
	for _, r := range a.tokens {
		if r.ID == runnerID {
			return nil
		}
	}
	return ErrUnauthenticated
}

// RunnerStore is the part of store.Store the StoreAuthenticator reads.
type RunnerStore interface {
	GetRunner(ctx context.Context, id string) (*store.Runner, error)
	ListRunners(ctx context.Context, f store.RunnerFilter) ([]store.Runner, error)
}

// SecretResolver reads a secret URI's value (secretstore.Resolver does).
type SecretResolver interface {
	Resolve(ctx context.Context, ref fly.SecretRef) (string, error)
}

// liveStates are the states of a runner whose machine may call Rift: the
// agent checks Rift before its runner is ready.
var liveStates = []store.RunnerState{store.StateProvisioning, store.StateRegistering, store.StateActive, store.StateDormant, store.StateDraining}

func isLive(s store.RunnerState) bool {
	for _, l := range liveStates {
		if s == l {
			return true
		}
	}
	return false
}

// StoreAuthenticator checks runner tokens against MotherGoose's store: a
// token is a live runner's when it equals the value of that runner's
// TokenRef secret (compared in constant time, as the API's heartbeat
// does). A token recognised once is remembered (by its SHA-256, never in
// clear) for RememberFor, and checked again against the store's runner on
// every use, so a destroyed runner's token is refused at once.
type StoreAuthenticator struct {
	Store   RunnerStore
	Secrets SecretResolver
	// RememberFor is how long a token's runner ID is remembered (default
	// one minute).
	RememberFor time.Duration
	Now         func() time.Time

	mu   sync.Mutex
	seen map[[32]byte]seenToken
}

type seenToken struct {
	runnerID string
	until    time.Time
}

func (a *StoreAuthenticator) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Authenticate finds the live runner whose token this is.
func (a *StoreAuthenticator) Authenticate(ctx context.Context, token string) (Runner, error) {
	if token == "" {
		return Runner{}, ErrUnauthenticated
	}
	h := sha256.Sum256([]byte(token))
	a.mu.Lock()
	s, ok := a.seen[h]
	a.mu.Unlock()
	if ok && a.now().Before(s.until) {
		r, err := a.Store.GetRunner(ctx, s.runnerID)
		if err == nil && isLive(r.State) && r.TokenRef != "" {
			if v, err := a.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef)); err == nil && equalSecret(token, v) {
				return Runner{ID: r.ID, Egg: r.Egg}, nil
			}
		}
	}
	runners, err := a.Store.ListRunners(ctx, store.RunnerFilter{States: liveStates})
	if err != nil {
		return Runner{}, fmt.Errorf("list runners: %w", err)
	}
	var found *store.Runner
	var resolveErr error
	for i := range runners {
		r := &runners[i]
		if r.TokenRef == "" {
			continue
		}
		v, err := a.Secrets.Resolve(ctx, fly.SecretRef(r.TokenRef))
		if err != nil {
			resolveErr = fmt.Errorf("read runner %s's token: %w", r.ID, err)
			continue
		}
		if equalSecret(token, v) {
			found = r
		}
	}
	if found == nil {
		if resolveErr != nil {
			return Runner{}, resolveErr
		}
		return Runner{}, ErrUnauthenticated
	}
	ttl := a.RememberFor
	if ttl == 0 {
		ttl = time.Minute
	}
	a.mu.Lock()
	if a.seen == nil {
		a.seen = map[[32]byte]seenToken{}
	}
	a.seen[h] = seenToken{runnerID: found.ID, until: a.now().Add(ttl)}
	a.mu.Unlock()
	return Runner{ID: found.ID, Egg: found.Egg}, nil
}

// Live tells whether the store holds the runner in a live state.
func (a *StoreAuthenticator) Live(ctx context.Context, runnerID string) error {
	r, err := a.Store.GetRunner(ctx, runnerID)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnauthenticated
	}
	if err != nil {
		return fmt.Errorf("read runner %s: %w", runnerID, err)
	}
	if !isLive(r.State) {
		return fmt.Errorf("runner %s is %s: %w", runnerID, r.State, ErrUnauthenticated)
	}
	return nil
}
