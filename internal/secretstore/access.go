package secretstore

import (
	"context"
	"errors"
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
	// Duration is how long the backend call took.
	Duration time.Duration
	// Err is the backend's error, nil on success. Backend errors name the
	// URI and what was missing, never the value.
	Err error
}

// OK tells whether the call succeeded.
func (e AccessEvent) OK() bool { return e.Err == nil }

// Access results, a bounded set for metrics labels (see AccessEvent.Result).
const (
	ResultOK        = "ok"
	ResultNotFound  = "not_found"
	ResultDenied    = "denied"
	ResultAuth      = "auth"
	ResultThrottled = "throttled"
	ResultCanceled  = "canceled"
	ResultError     = "error"
)

// Result sorts the call's outcome into one of the Result* values: ok;
// not_found (ErrNotFound, ErrKeyNotFound, ErrVersion); denied
// (ErrPermission, ErrReadOnlyPath); auth (ErrAuth); throttled
// (ErrThrottled); canceled (the caller's context ended); error (anything
// else, such as a network failure).
func (e AccessEvent) Result() string {
	switch err := e.Err; {
	case err == nil:
		return ResultOK
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrKeyNotFound), errors.Is(err, ErrVersion):
		return ResultNotFound
	case errors.Is(err, ErrPermission), errors.Is(err, ErrReadOnlyPath):
		return ResultDenied
	case errors.Is(err, ErrAuth):
		return ResultAuth
	case errors.Is(err, ErrThrottled):
		return ResultThrottled
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ResultCanceled
	}
	return ResultError
}

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

func (o observed) report(ctx context.Context, op string, u fly.SecretURI, start time.Time, err error) {
	end := o.now()
	o.obs.SecretAccessed(ctx, AccessEvent{
		Op: op, URI: u.String(), Scheme: u.Scheme, Actor: ActorFrom(ctx), At: end.UTC(), Duration: end.Sub(start), Err: err,
	})
}

func (o observed) Scheme() string { return o.inner.Scheme() }

func (o observed) Get(ctx context.Context, u fly.SecretURI) (string, error) {
	start := o.now()
	v, err := o.inner.Get(ctx, u)
	o.report(ctx, "get", u, start, err)
	return v, err
}

func (o observed) Put(ctx context.Context, u fly.SecretURI, value string) (string, error) {
	start := o.now()
	v, err := o.inner.Put(ctx, u, value)
	o.report(ctx, "put", u, start, err)
	return v, err
}

func (o observed) Delete(ctx context.Context, u fly.SecretURI) error {
	start := o.now()
	err := o.inner.Delete(ctx, u)
	o.report(ctx, "delete", u, start, err)
	return err
}

// observedVersioner keeps the Versioner of a backend that has one.
type observedVersioner struct{ observed }

func (o observedVersioner) ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error) {
	start := o.now()
	vs, err := o.inner.(Versioner).ListVersions(ctx, u)
	o.report(ctx, "versions", u, start, err)
	return vs, err
}
