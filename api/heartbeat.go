package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// HeaderTokenVersion carries a runner token's secret version: in a
// heartbeat, the version the agent holds (optional); in the answer, the
// current one (when the secret backend keeps versions). See
// mothergoose.AgentHeartbeat.
const HeaderTokenVersion = "X-Gosling-Token-Version"

// heartbeat records that a runner's machine is alive. Agents call it with
// their own runner token (not an API token); see mothergoose.AgentHeartbeat.
func (s *Server) heartbeat(c *gin.Context) {
	token, ok := bearerToken(c.GetHeader("Authorization"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "send the runner's token: Authorization: Bearer <token>"})
		return
	}
	ans, err := s.mg.AgentHeartbeat(c.Request.Context(), c.Param("id"), token, c.GetHeader(HeaderTokenVersion))
	if err != nil {
		s.fail(c, err)
		return
	}
	if ans.TokenVersion != "" {
		c.Header(HeaderTokenVersion, ans.TokenVersion)
	}
	c.Status(http.StatusNoContent)
}
