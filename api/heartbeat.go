package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/store"
)

// heartbeat records that a runner's machine is alive. Agents call it with
// their own runner token (not an API token), which is compared in constant
// time with the runner's stored token; a token just rotated elsewhere is
// read again once before a beat is refused. UglyFox's heartbeat policy
// judges runners by the time of their last beat.
func (s *Server) heartbeat(c *gin.Context) {
	ctx := c.Request.Context()
	token, ok := bearerToken(c.GetHeader("Authorization"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "send the runner's token: Authorization: Bearer <token>"})
		return
	}
	r, err := s.cfg.Store.GetRunner(ctx, c.Param("id"))
	if errors.Is(err, store.ErrNotFound) {
		// The same answer as a wrong token: a caller learns nothing of
		// which runners exist.
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "not this runner's token"})
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	ref := fly.SecretRef(r.TokenRef)
	match := false
	if r.TokenRef != "" {
		match, err = s.secrets.match(ctx, ref, token)
		if !match && s.secrets.mayRefresh(ref) {
			var fresh string
			if fresh, err = s.cfg.Secrets.Fresh(ctx, ref); err == nil {
				s.secrets.put(ref, fresh)
				match = equalSecret(token, fresh)
			}
		}
	}
	if !match {
		if err != nil {
			s.log.WarnContext(ctx, "heartbeat: cannot read the runner's token", "runner", r.ID, "error", err)
		}
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "not this runner's token"})
		return
	}
	if err := s.cfg.Store.RecordHeartbeat(ctx, r.ID, s.now().UTC()); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// refreshEvery bounds how often one secret is read past the cache.
const refreshEvery = 10 * time.Second

// mayRefresh says whether ref may be read past the cache now, and if so
// notes that it is.
func (c *secretCache) mayRefresh(ref fly.SecretRef) bool {
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
func (c *secretCache) put(ref fly.SecretRef, value string) {
	c.mu.Lock()
	c.m[ref] = cachedSecret{value: value, expires: time.Now().Add(c.ttl)}
	c.mu.Unlock()
}
