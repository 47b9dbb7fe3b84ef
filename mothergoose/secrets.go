package mothergoose

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/secretstore"
)

// SecretCache resolves secrets through the resolver and keeps the values for
// a short time, so a burst of webhooks does not hit the secret backend once
// each. Values stay in memory only.
type SecretCache struct {
	res *secretstore.Resolver
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

// NewSecretCache caches what res resolves for ttl.
func NewSecretCache(res *secretstore.Resolver, ttl time.Duration) *SecretCache {
	return &SecretCache{res: res, ttl: ttl, m: map[fly.SecretRef]cachedSecret{}}
}

func (c *SecretCache) get(ctx context.Context, ref fly.SecretRef) (string, error) {
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

// MatchAny tells whether token equals the value of any of refs. Every
// resolved value is compared, in constant time, whatever matched before.
// resolved counts the refs that could be resolved; err is the last failure.
func (c *SecretCache) MatchAny(ctx context.Context, refs []fly.SecretRef, token string) (match bool, resolved int, err error) {
	for _, ref := range refs {
		ok, rerr := c.Match(ctx, ref, token)
		if rerr != nil {
			err = rerr
			continue
		}
		resolved++
		match = match || ok
	}
	return match, resolved, err
}

// Match compares token with the value of ref in constant time. Both are
// hashed first, so neither length leaks; an empty secret matches nothing.
func (c *SecretCache) Match(ctx context.Context, ref fly.SecretRef, token string) (bool, error) {
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

// refreshEvery bounds how often one secret is read past the cache.
const refreshEvery = 10 * time.Second

// mayRefresh says whether ref may be read past the cache now, and if so
// notes that it is.
func (c *SecretCache) mayRefresh(ref fly.SecretRef) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refreshed == nil {
		c.refreshed = map[fly.SecretRef]time.Time{}
	}
	now := time.Now()
	if now.Sub(c.refreshed[ref]) < refreshEvery {
		return false
	}
	c.refreshed[ref] = now
	return true
}

// put caches a value just read.
func (c *SecretCache) put(ref fly.SecretRef, value string) {
	c.mu.Lock()
	c.m[ref] = cachedSecret{value: value, expires: time.Now().Add(c.ttl)}
	c.mu.Unlock()
}
