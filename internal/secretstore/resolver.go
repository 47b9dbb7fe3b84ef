package secretstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gosling-ci/gosling/fly"
	"golang.org/x/sync/singleflight"
)

// DefaultTTL is how long a resolved value is cached when its backend has no
// TTL of its own.
const DefaultTTL = 5 * time.Minute

// fetchTimeout bounds one backend read shared by several callers: it runs
// detached from any one caller's context, so that caller's cancellation
// does not fail the others.
const fetchTimeout = time.Minute

// Resolver routes secret URIs to their backends. It caches resolved values
// for the backend's TTL (pinned versions for ever), makes one backend call
// for concurrent lookups of one URI, and registers every value it reads or
// writes with its Masker.
type Resolver struct {
	mu       sync.RWMutex
	backends map[string]Backend
	ttl      map[string]time.Duration
	masker   *Masker

	flight singleflight.Group

	cmu   sync.Mutex
	cache map[string]map[string]cacheEntry // unpinned URI -> URI -> entry
	gen   map[string]uint64                // unpinned URI -> writes seen
	now   func() time.Time
}

type cacheEntry struct {
	value   string
	expires time.Time // zero: never
}

// NewResolver returns a resolver over the given backends, with its own
// Masker and DefaultTTL for every scheme.
func NewResolver(backends ...Backend) *Resolver {
	r := &Resolver{
		backends: map[string]Backend{},
		ttl:      map[string]time.Duration{},
		masker:   NewMasker(),
		cache:    map[string]map[string]cacheEntry{},
		gen:      map[string]uint64{},
		now:      time.Now,
	}
	for _, b := range backends {
		r.backends[b.Scheme()] = b
	}
	return r
}

// Register adds or replaces the backend of a scheme.
func (r *Resolver) Register(b Backend) {
	r.mu.Lock()
	r.backends[b.Scheme()] = b
	r.mu.Unlock()
	r.Purge()
}

// SetTTL sets how long values of a scheme stay cached; zero or less turns
// caching off for it (concurrent lookups still share one call).
func (r *Resolver) SetTTL(scheme string, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ttl[scheme] = ttl
}

// Configure applies the cache TTLs of MotherGoose's secrets block.
func (r *Resolver) Configure(cfg fly.Secrets) {
	if cfg.CacheTTL == 0 && len(cfg.Backends) == 0 {
		return // no secrets block: keep DefaultTTL
	}
	for _, s := range fly.SecretSchemes {
		ttl := time.Duration(cfg.CacheTTL)
		if b, ok := cfg.Backends[s]; ok {
			ttl = time.Duration(b.CacheTTL)
		}
		r.SetTTL(s, ttl)
	}
}

// SetMasker makes the resolver register values with m, so that several
// resolvers, loggers and writers share one.
func (r *Resolver) SetMasker(m *Masker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.masker = m
}

// Masker returns the masker values are registered with.
func (r *Resolver) Masker() *Masker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.masker
}

// Purge empties the cache.
func (r *Resolver) Purge() {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	for base := range r.cache {
		r.gen[base]++
	}
	clear(r.cache)
}

func (r *Resolver) backend(op string, ref fly.SecretRef) (Backend, fly.SecretURI, error) {
	u, err := ref.Parse()
	if err != nil {
		return nil, u, &Error{Op: op, URI: "(invalid URI)", Scheme: "?", Err: err}
	}
	r.mu.RLock()
	b, ok := r.backends[u.Scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, u, &Error{Op: op, URI: u.String(), Scheme: u.Scheme, Err: ErrNoBackend}
	}
	return b, u, nil
}

func (r *Resolver) ttlOf(scheme string) time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t, ok := r.ttl[scheme]; ok {
		return t
	}
	return DefaultTTL
}

func unpinned(u fly.SecretURI) string {
	u.Version = ""
	return u.String()
}

func (r *Resolver) cached(base, key string) (string, uint64, bool) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	e, ok := r.cache[base][key]
	if ok && (e.expires.IsZero() || r.now().Before(e.expires)) {
		return e.value, r.gen[base], true
	}
	return "", r.gen[base], false
}

// remember stores a value read at generation gen, unless a write to the
// same secret happened since.
func (r *Resolver) remember(base, key string, gen uint64, value string, expires time.Time) {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if r.gen[base] != gen {
		return
	}
	m := r.cache[base]
	if m == nil {
		m = map[string]cacheEntry{}
		r.cache[base] = m
	}
	m[key] = cacheEntry{value: value, expires: expires}
}

// forget drops what is cached of a secret after a write.
func (r *Resolver) forget(u fly.SecretURI) {
	base := unpinned(u)
	r.cmu.Lock()
	r.gen[base]++
	delete(r.cache, base)
	r.cmu.Unlock()
	r.flight.Forget(base)
}

// Fresh resolves ref past the cache, and caches what it read: for a caller
// with reason to think the cached value is stale (a token that was just
// rotated elsewhere).
func (r *Resolver) Fresh(ctx context.Context, ref fly.SecretRef) (string, error) {
	if _, u, err := r.backend("get", ref); err == nil {
		r.forget(u)
	}
	return r.Resolve(ctx, ref)
}

// Resolve returns the value a secret URI names.
func (r *Resolver) Resolve(ctx context.Context, ref fly.SecretRef) (string, error) {
	b, u, err := r.backend("get", ref)
	if err != nil {
		return "", err
	}
	base, key := unpinned(u), u.String()
	if v, _, ok := r.cached(base, key); ok {
		return v, nil
	}
	ch := r.flight.DoChan(key, func() (any, error) {
		cachedValue, gen, ok := r.cached(base, key)
		if ok {
			// A lookup that finished just before this one started.
			return cachedValue, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		v, err := b.Get(fctx, u)
		if err != nil {
			return "", err
		}
		r.Masker().Add(v)
		var expires time.Time
		if u.Version == "" {
			ttl := r.ttlOf(u.Scheme)
			if ttl <= 0 {
				return v, nil
			}
			expires = r.now().Add(ttl)
		}
		r.remember(base, key, gen, v, expires)
		return v, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", &Error{Op: "get", URI: key, Scheme: u.Scheme, Err: res.Err}
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", &Error{Op: "get", URI: key, Scheme: u.Scheme, Err: ctx.Err()}
	}
}

// Put writes a new version of the secret and returns its version ID.
func (r *Resolver) Put(ctx context.Context, ref fly.SecretRef, value string) (string, error) {
	b, u, err := r.backend("put", ref)
	if err != nil {
		return "", err
	}
	r.Masker().Add(value)
	v, err := b.Put(ctx, u, value)
	r.forget(u)
	if err != nil {
		return "", &Error{Op: "put", URI: u.String(), Scheme: u.Scheme, Err: err}
	}
	return v, nil
}

// Delete removes the secret's key; a missing one is not an error.
func (r *Resolver) Delete(ctx context.Context, ref fly.SecretRef) error {
	b, u, err := r.backend("delete", ref)
	if err != nil {
		return err
	}
	err = b.Delete(ctx, u)
	r.forget(u)
	if err != nil {
		return &Error{Op: "delete", URI: u.String(), Scheme: u.Scheme, Err: err}
	}
	return nil
}

// ErrNoVersions is returned for a backend that keeps no versions.
var ErrNoVersions = errors.New("backend does not list versions")

// Versions lists the versions of the secret a URI names, oldest first.
func (r *Resolver) Versions(ctx context.Context, ref fly.SecretRef) ([]Version, error) {
	b, u, err := r.backend("versions", ref)
	if err != nil {
		return nil, err
	}
	vb, ok := b.(Versioner)
	if !ok {
		return nil, &Error{Op: "versions", URI: u.String(), Scheme: u.Scheme, Err: ErrNoVersions}
	}
	u.Version = ""
	vs, err := vb.ListVersions(ctx, u)
	if err != nil {
		return nil, &Error{Op: "versions", URI: u.String(), Scheme: u.Scheme, Err: err}
	}
	return vs, nil
}

// Rollback writes the value of version `to` as a new version of the secret,
// so history is kept, and returns the new version's ID.
func (r *Resolver) Rollback(ctx context.Context, ref fly.SecretRef, to string) (string, error) {
	_, u, err := r.backend("rollback", ref)
	if err != nil {
		return "", err
	}
	if u.Version != "" {
		return "", &Error{Op: "rollback", URI: u.String(), Scheme: u.Scheme,
			Err: fmt.Errorf("%w: name the version to roll back to apart from the URI", ErrReadOnlyPath)}
	}
	pinned := u
	pinned.Version = to
	old, err := r.Resolve(ctx, fly.SecretRef(pinned.String()))
	if err != nil {
		return "", err
	}
	return r.Put(ctx, fly.SecretRef(u.String()), old)
}
