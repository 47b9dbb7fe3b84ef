// Package secrets resolves and stores secrets named by URI
// (yc-lockbox://, aws-sm://, vault://, local://). Values never appear in
// errors or logs: errors name the URI, the backend and what was missing.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gosling-ci/gosling/fly"
)

// Errors a backend returns (wrapped); test them with errors.Is.
var (
	ErrNotFound     = errors.New("secret not found")
	ErrKeyNotFound  = errors.New("key not found in secret")
	ErrVersion      = errors.New("version not found")
	ErrPermission   = errors.New("permission denied")
	ErrNoBackend    = errors.New("no backend configured for this scheme")
	ErrReadOnlyPath = errors.New("backend cannot write this secret")
)

// Backend is one secret store.
type Backend interface {
	// Scheme is the URI scheme the backend serves.
	Scheme() string
	// Get returns the value of u's key, at u's version or the current one.
	Get(ctx context.Context, u fly.SecretURI) (string, error)
	// Put writes a new version of u's key and returns the version's ID.
	Put(ctx context.Context, u fly.SecretURI, value string) (string, error)
	// Delete removes u's key with all its versions. Deleting what does not
	// exist is not an error.
	Delete(ctx context.Context, u fly.SecretURI) error
}

// Error describes a failed secret operation without its value.
type Error struct {
	Op     string // get, put, delete
	URI    string
	Scheme string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s secret %s (%s backend): %v", e.Op, e.URI, e.Scheme, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Resolver routes secret URIs to their backends.
type Resolver struct {
	mu       sync.RWMutex
	backends map[string]Backend
}

// NewResolver returns a resolver over the given backends.
func NewResolver(backends ...Backend) *Resolver {
	r := &Resolver{backends: map[string]Backend{}}
	for _, b := range backends {
		r.backends[b.Scheme()] = b
	}
	return r
}

// Register adds or replaces the backend of a scheme.
func (r *Resolver) Register(b Backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.backends[b.Scheme()] = b
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

// Resolve returns the value a secret URI names.
func (r *Resolver) Resolve(ctx context.Context, ref fly.SecretRef) (string, error) {
	b, u, err := r.backend("get", ref)
	if err != nil {
		return "", err
	}
	v, err := b.Get(ctx, u)
	if err != nil {
		return "", &Error{Op: "get", URI: u.String(), Scheme: u.Scheme, Err: err}
	}
	return v, nil
}

// Put writes a new version of the secret and returns its version ID.
func (r *Resolver) Put(ctx context.Context, ref fly.SecretRef, value string) (string, error) {
	b, u, err := r.backend("put", ref)
	if err != nil {
		return "", err
	}
	v, err := b.Put(ctx, u, value)
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
	if err := b.Delete(ctx, u); err != nil {
		return &Error{Op: "delete", URI: u.String(), Scheme: u.Scheme, Err: err}
	}
	return nil
}
