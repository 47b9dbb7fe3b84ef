// Package secretstore resolves and stores secrets named by URI
// (yc-lockbox://, aws-sm://, vault://, local://) without any cloud SDK:
// the resolver and its cache, masking, the local backend, and the
// backends a runner machine reads its secrets with, as itself, over plain
// HTTPS (machine.go). Package secrets adds the SDK backends the servers
// use. Values never appear in errors or logs: errors name the URI, the
// backend and what was missing.
package secretstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
	ErrThrottled    = errors.New("backend is throttling requests")
	ErrAuth         = errors.New("cannot authenticate to the backend")
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

// Versioner is a backend that lists the versions of a key.
type Versioner interface {
	// ListVersions returns the versions of u's secret, oldest first.
	ListVersions(ctx context.Context, u fly.SecretURI) ([]Version, error)
}

// Version describes one version of a secret, never its value.
type Version struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created,omitzero"`
	// Current is set on the version an unpinned URI resolves to.
	Current bool `json:"current"`
	// Labels are backend-specific states: AWS staging labels, Lockbox and
	// Vault version states.
	Labels []string `json:"labels,omitempty"`
}

// Error describes a failed secret operation without its value.
type Error struct {
	Op     string // get, put, delete, versions
	URI    string
	Scheme string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s secret %s (%s backend): %v", e.Op, e.URI, e.Scheme, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// JSONField returns the key of a secret kept as a JSON object (Secrets
// Manager's SecretString, a Vault KV version's data): a string as it is,
// any other JSON value as its JSON text; a missing key is ErrKeyNotFound.
func JSONField(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", ErrKeyNotFound
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("%w: the key's value is not text", ErrKeyNotFound)
	}
	return string(b), nil
}
