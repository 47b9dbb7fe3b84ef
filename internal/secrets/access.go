package secrets

import (
	"context"
	"time"

	"github.com/gosling-ci/gosling/fly"
)

// AccessEvent is one call to a secret backend: who made it, on which URI,
// when, and whether it worked. It never holds the value.
type AccessEvent struct {
	// Op is get, put, delete or versions.
	Op     string
	URI    string
	Scheme string
	// Actor is who asked (see WithActor); empty when the context names
	// no one.
	Actor string
	At    time.Time
	// Err is the backend's error, nil on success. Backend errors name the
	// URI and what was missing, never the value.
	Err error
}

// OK tells whether the call succeeded.
func (e AccessEvent) OK() bool { return e.Err == nil }

// AccessObserver receives access events. It is called synchronously after
// each backend call, from the goroutine that made it, and must be safe for
// concurrent use.
type AccessObserver interface {
	SecretAccessed(ctx context.Context, e AccessEvent)
}

// AccessObserverFunc adapts a function to AccessObserver.
type AccessObserverFunc func(ctx context.Context, e AccessEvent)

// SecretAccessed calls f.
func (f AccessObserverFunc) SecretAccessed(ctx context.Context, e AccessEvent) { f(ctx, e) }

type actorKey struct{}

// WithActor names who makes the secret calls made with ctx.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom returns the actor WithActor put in ctx, or "".
func ActorFrom(ctx context.Context) string {
	a, _ := ctx.Value(actorKey{}).(string)
	return a
}

// Observe reports every call the resolver makes to its backends to o. The
// resolver's cache and single-flight sit in front of the backends, so a
// cached or shared lookup is not reported: only the calls that reach a
// backend are, which keeps an audit log of them proportional to backend
// traffic rather than to lookups. Observe wraps the backends registered so
// far; call it after registering them.
func (r *Resolver) Observe(o AccessObserver) {
	if o == nil {
		return
	}
	r.mu.Lock()
	for scheme, b := range r.backends {
		r.backends[scheme] = observe(b, o)
	}
	r.mu.Unlock()
}

func observe(b Backend, o AccessObserver) Backend {
	ob := observed{inner: b, obs: o, now: time.Now}
	if _, ok := b.(Versioner); ok {
		return observedVersioner{ob}
	}
	return ob
}

// observed reports the calls to a backend.
type observed struct {
	inner Backend
	obs   AccessObserver
	now   func() time.Time
}

func (o observed) report(ctx context.Context, op string, u fly.SecretURI, err error) {
	o.obs.SecretAccessed(ctx, AccessEvent{
		Op: op, URI: u.String(), Scheme: u.Scheme, Actor: ActorFrom(ctx), At: o.now().UTC(), Err: err,
	})
}

func (o observed) Scheme() string { return o.inner.Scheme() }

func (o observed) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	v, err := o.inner.Get(ctx, u)
	o.report(ctx, "get", u, err)
	return v, err
}

func (o observed) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	v, err := o.inner.Put(ctx, u, value)
	o.report(ctx, "put", u, err)
	return v, err
}

func (o observed) Delete(ctx context.Context, u fly.SecretURI) error {
	err := o.inner.Delete(ctx, u)
	o.report(ctx, "delete", u, err)
	return err
}

// observedVersioner keeps the Versioner of a backend that has one.
type observedVersioner struct{ observed }

func (o observedVersioner) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	vs, err := o.inner.(Versioner).ListVersions(ctx, u)
	o.report(ctx, "versions", u, err)
	return vs, err
}
