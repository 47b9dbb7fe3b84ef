package api

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/mothergoose"
)

func (s *Server) getPool(c *gin.Context) {
	st, err := s.ops.PoolStatus(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	out := apiv1.Pool{PoolStatus: st, HitRate: mothergoose.HitRate(st.Stats)}
	if idle, ok := s.ops.IdleCostOf(st); ok {
		out.IdleCost = &apiv1.PoolIdleCost{Currency: idle.Currency, PerHour: idle.PerHour, ApexIdle: idle.ApexIdle, Nadir: idle.Nadir}
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) getGate(c *gin.Context) {
	st, err := s.ops.GateStatus(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (s *Server) scalePool(c *gin.Context) {
	var req contract.PoolScale
	dec := json.NewDecoder(io.LimitReader(c.Request.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		s.fail(c, &apiError{Status: http.StatusBadRequest, Msg: "bad request", Detail: "the body must be a JSON object such as {\"apex_min\":2}: " + err.Error()})
		return
	}
	limits, err := s.ops.ScalePool(c.Request.Context(), c.Param("name"), req, ActorAPI)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"egg": c.Param("name"), "result": limits})
}

func (s *Server) drainPool(c *gin.Context) {
	retired, err := s.ops.DrainPool(c.Request.Context(), c.Param("name"), ActorAPI)
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"egg": c.Param("name"), "result": retired})
}
