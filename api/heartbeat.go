package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// heartbeat records that a runner's machine is alive. Agents call it with
// their own runner token (not an API token); see mothergoose.Heartbeat.
func (s *Server) heartbeat(c *gin.Context) {
	token, ok := bearerToken(c.GetHeader("Authorization"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "send the runner's token: Authorization: Bearer <token>"})
		return
	}
	if err := s.mg.Heartbeat(c.Request.Context(), c.Param("id"), token); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
