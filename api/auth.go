package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secrets"
)

// Authorization errors; test them with errors.Is.
var (
	// ErrUnauthorized: the token is missing or none of the configured ones.
	ErrUnauthorized = errors.New("missing or wrong token")
	// ErrAPIDisabled: no API tokens are configured.
	ErrAPIDisabled = errors.New("the REST API is disabled: no API tokens are configured")
	// errSecretsUnavailable: no configured token could be resolved.
	errSecretsUnavailable = errors.New("no token could be resolved from the secret backends")
)

// Authorizer checks bearer tokens against a list of secret references. The
// API gateway's authorizer function uses it as the server does.
type Authorizer struct {
	tokens []fly.SecretRef
	cache  *secretCache
}

// NewAuthorizer returns an Authorizer for tokens, resolved through res and
// cached for ttl.
func NewAuthorizer(res *secrets.Resolver, tokens []fly.SecretRef, ttl time.Duration) *Authorizer {
	return &Authorizer{tokens: tokens, cache: newSecretCache(res, orDefault(ttl, DefaultSecretTTL))}
}

// Authorize checks an Authorization header ("Bearer <token>"): nil when the
// token is one of the configured ones (compared in constant time),
// ErrUnauthorized when it is missing or wrong, ErrAPIDisabled when no token
// is configured, and an error naming the secret backend when no configured
// token can be resolved.
func (a *Authorizer) Authorize(ctx context.Context, header string) error {
	if len(a.tokens) == 0 {
		return ErrAPIDisabled
	}
	token, ok := bearerToken(header)
	if !ok {
		return fmt.Errorf("%w: send Authorization: Bearer <token>", ErrUnauthorized)
	}
	match, resolved, err := a.cache.matchAny(ctx, a.tokens, token)
	switch {
	case match:
		return nil
	case resolved == 0 && err != nil:
		return fmt.Errorf("%w: %w", errSecretsUnavailable, err)
	}
	return ErrUnauthorized
}

// bearerToken reads the token of an Authorization header ("Bearer <token>").
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

// requireToken guards the REST API.
func (s *Server) requireToken(c *gin.Context) {
	if err := s.auth.Authorize(c.Request.Context(), c.GetHeader("Authorization")); err != nil {
		s.fail(c, err)
		return
	}
	c.Next()
}

// secretCache resolves secrets through the resolver and keeps the values for
// a short time, so a burst of webhooks does not hit the secret backend once
// each. Values stay in memory only.
type secretCache struct {
	res *secrets.Resolver
	ttl time.Duration

	mu sync.Mutex
	m  map[fly.SecretRef]cachedSecret
	// refreshed is when each secret was last read past the cache, so wrong
	// tokens cannot make a backend call each.
	refreshed map[fly.SecretRef]time.Time
}

type cachedSecret struct {
	value   string
	expires time.Time
}

func newSecretCache(res *secrets.Resolver, ttl time.Duration) *secretCache {
	return &secretCache{res: res, ttl: ttl, m: map[fly.SecretRef]cachedSecret{}}
}

func (c *secretCache) get(ctx context.Context, ref fly.SecretRef) (string, error) {
	now := time.Now()
	c.mu.Lock()
	v, ok := c.m[ref]
	c.mu.Unlock()
	if ok && now.Before(v.expires) {
		return v.value, nil
	}
	value, err := c.res.Resolve(ctx, ref)
	if err != nil {
		return "", err
	}
	c.put(ref, value)
	return value, nil
}

// matchAny tells whether token equals the value of any of refs. Every
// resolved value is compared, in constant time, whatever matched before.
// resolved counts the refs that could be resolved; err is the last failure.
func (c *secretCache) matchAny(ctx context.Context, refs []fly.SecretRef, token string) (match bool, resolved int, err error) {
	for _, ref := range refs {
		ok, rerr := c.match(ctx, ref, token)
		if rerr != nil {
			err = rerr
			continue
		}
		resolved++
		match = match || ok
	}
	return match, resolved, err
}

// match compares token with the value of ref in constant time. Both are
// hashed first, so neither length leaks; an empty secret matches nothing.
func (c *secretCache) match(ctx context.Context, ref fly.SecretRef, token string) (bool, error) {
	want, err := c.get(ctx, ref)
	if err != nil {
		return false, err
	}
	return equalSecret(token, want), nil
}

func equalSecret(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1 && want != ""
}
