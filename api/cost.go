package api

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/mothergoose"
)

// defaultCostPeriod is what GET /api/v1/cost covers without ?since.
const defaultCostPeriod = 7 * 24 * time.Hour

// getCost is GET /api/v1/cost?since=RFC3339&by=egg|project: the chargeback
// table of the jobs that finished since then (default: the last 7 days).
func (s *Server) getCost(c *gin.Context) {
	since := time.Now().Add(-defaultCostPeriod).UTC()
	if v := c.Query("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.fail(c, badRequest("since must be an RFC 3339 time, such as 2025-01-02T15:04:05Z"))
			return
		}
		since = t.UTC()
	}
	by := c.DefaultQuery("by", mothergoose.CostByEgg)
	if by != mothergoose.CostByEgg && by != mothergoose.CostByProject {
		s.fail(c, badRequest("by must be egg or project"))
		return
	}
	lines, err := s.ops.Chargeback(c.Request.Context(), since, by)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := apiv1.CostReport{Since: since, By: by, Currency: s.mg.Nest().MotherGoose.Cost.Unit(), Rows: make([]apiv1.CostRow, len(lines))}
	for i, l := range lines {
		row := apiv1.CostRow{Egg: l.Egg, Project: l.Project, Jobs: l.Jobs, QueueSeconds: l.QueueSeconds, QueuedJobs: l.QueuedJobs,
			MachineSeconds: l.MachineSeconds, RunCost: l.RunCost, IdleCost: l.IdleCost, Cost: l.Total()}
		if l.QueuedJobs > 0 {
			row.QueueMeanSeconds = l.QueueSeconds / float64(l.QueuedJobs)
		}
		out.Rows[i] = row
	}
	c.JSON(http.StatusOK, out)
}
