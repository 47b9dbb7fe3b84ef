package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/internal/agentapi"
	"github.com/gosling-ci/gosling/mothergoose"
)

// The agent endpoints (internal/agentapi): runner agents call them with
// their machine's own agent credential (not the runner token, not an API
// token); see mothergoose.AuthenticateAgent, RunnerReady, Heartbeat and
// RunnerJob.

// maxAgentBody bounds an agent request's body.
const maxAgentBody = 64 << 10

// agent authenticates an agent request by its agent credential, before its
// body is read: a wrong credential is 401 whatever the body holds.
func (s *Server) agent(c *gin.Context) (*mothergoose.Agent, bool) {
	token, ok := bearerToken(c.GetHeader("Authorization"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusUnauthorized, Msg: "unauthorized", Detail: "send the machine's agent credential: Authorization: Bearer <credential>"})
		return nil, false
	}
	a, err := s.agents.AuthenticateAgent(c.Request.Context(), c.Param("id"), token)
	if err != nil {
		s.fail(c, err)
		return nil, false
	}
	return a, true
}

// decodeAgentBody decodes an agent request's JSON body into v; an empty
// body leaves v as it is (older agents post heartbeats without one).
func (s *Server) decodeAgentBody(c *gin.Context, v any) bool {
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, maxAgentBody+1))
	if err == nil && len(b) > maxAgentBody {
		err = errors.New("the body is larger than 64 KiB")
	}
	if err == nil && len(b) > 0 {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		s.fail(c, &apiError{Status: http.StatusBadRequest, Msg: "bad request", Detail: "the body must be JSON as internal/agentapi defines: " + err.Error()})
		return false
	}
	return true
}

// heartbeat records that a runner's machine is alive and answers with the
// pinned versions.
func (s *Server) heartbeat(c *gin.Context) {
	a, ok := s.agent(c)
	if !ok {
		return
	}
	var b agentapi.Beat
	if !s.decodeAgentBody(c, &b) {
		return
	}
	pins, err := s.agents.Heartbeat(c.Request.Context(), a, b)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, pins)
}

// agentReady takes an agent's ready report.
func (s *Server) agentReady(c *gin.Context) {
	a, ok := s.agent(c)
	if !ok {
		return
	}
	var r agentapi.Ready
	if !s.decodeAgentBody(c, &r) {
		return
	}
	pins, err := s.agents.RunnerReady(c.Request.Context(), a, r)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, pins)
}

// agentInterruption takes an agent's notice that its machine is being
// taken away.
func (s *Server) agentInterruption(c *gin.Context) {
	a, ok := s.agent(c)
	if !ok {
		return
	}
	var i agentapi.Interruption
	if !s.decodeAgentBody(c, &i) {
		return
	}
	if err := s.agents.RunnerInterrupted(c.Request.Context(), a, i); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// agentJob takes an agent's job report.
func (s *Server) agentJob(c *gin.Context) {
	a, ok := s.agent(c)
	if !ok {
		return
	}
	var j agentapi.JobReport
	if !s.decodeAgentBody(c, &j) {
		return
	}
	if err := s.agents.RunnerJob(c.Request.Context(), a, j); err != nil {
		s.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
