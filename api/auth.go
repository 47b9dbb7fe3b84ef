package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/mothergoose"
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
	cache  *mothergoose.SecretCache
}

// NewAuthorizer returns an Authorizer for tokens, resolved and cached by
// cache.
func NewAuthorizer(cache *mothergoose.SecretCache, tokens []fly.SecretRef) *Authorizer {
	return &Authorizer{tokens: tokens, cache: cache}
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
	match, resolved, err := a.cache.MatchAny(ctx, a.tokens, token)
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
