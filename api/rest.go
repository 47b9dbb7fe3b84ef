package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/apiv1"
	"github.com/gosling-ci/gosling/internal/store"
	"github.com/gosling-ci/gosling/mothergoose"
)

// Page sizes of the list routes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ActorAPI is the audit actor of changes made through the REST API.
const ActorAPI = mothergoose.ActorAPI

func badRequest(detail string) error {
	return &apiError{Status: http.StatusBadRequest, Msg: "bad request", Detail: detail}
}

// pageLimit reads ?limit=.
func pageLimit(c *gin.Context) (int, error) {
	v := c.Query("limit")
	if v == "" {
		return DefaultPageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPageSize {
		return 0, badRequest(fmt.Sprintf("limit must be a number from 1 to %d", MaxPageSize))
	}
	return n, nil
}

// int64Query reads an optional numeric cursor.
func int64Query(c *gin.Context, name string) (int64, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest(name + " must be a non-negative number (the next cursor of the previous page)")
	}
	return n, nil
}

// RunnerList is the answer of GET /api/v1/runners.
type RunnerList = apiv1.RunnerList

func (s *Server) listRunners(c *gin.Context) {
	limit, err := pageLimit(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	f := store.RunnerFilter{Egg: c.Query("egg"), Cloud: c.Query("cloud"), After: c.Query("after"), Limit: limit + 1}
	if v := c.Query("state"); v != "" {
		for _, st := range strings.Split(v, ",") {
			state := store.RunnerState(strings.TrimSpace(st))
			if !state.Valid() {
				s.fail(c, badRequest(fmt.Sprintf("state %q is not one of %s", truncate(string(state), 40), statesList())))
				return
			}
			f.States = append(f.States, state)
		}
	}
	runners, err := s.mg.Store().ListRunners(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := RunnerList{Runners: runnerViews(runners)}
	if len(runners) > limit {
		out.Runners = out.Runners[:limit]
		out.Next = out.Runners[limit-1].ID
	}
	c.JSON(http.StatusOK, out)
}

func statesList() string {
	names := make([]string, len(store.AllStates))
	for i, st := range store.AllStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

func (s *Server) getRunner(c *gin.Context) {
	r, err := s.mg.Store().GetRunner(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, runnerView(*r))
}

func (s *Server) drainRunner(c *gin.Context) {
	req, err := s.ops.DrainRunner(c.Request.Context(), c.Param("id"), ActorAPI, "drained through the API")
	if err != nil {
		s.fail(c, err)
		return
	}
	if req.Runner != nil {
		c.JSON(http.StatusOK, runnerView(*req.Runner))
		return
	}
	c.JSON(http.StatusAccepted, WorkflowStarted{Status: req.Status, WorkflowID: req.WorkflowID})
}

// WorkflowStarted is the answer of routes that start a workflow.
type WorkflowStarted struct {
	Status     string `json:"status"`
	WorkflowID string `json:"workflow_id"`
}

func (s *Server) deleteRunner(c *gin.Context) {
	req, err := s.ops.DeleteRunner(c.Request.Context(), c.Param("id"), ActorAPI, "deleted through the API")
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusAccepted, WorkflowStarted{Status: req.Status, WorkflowID: req.WorkflowID})
}

// EggView is an egg as the REST API shows it; secret references are left
// out.
type EggView struct {
	Name          string           `json:"name"`
	Kind          fly.EggKind      `json:"kind"`
	File          string           `json:"file"`
	ConfigVersion string           `json:"config_version"`
	GitLabHost    string           `json:"gitlab_host"`
	Projects      []fly.ProjectRef `json:"projects,omitempty"`
	Group         *fly.GroupRef    `json:"group,omitempty"`
	Runner        RunnerSummary    `json:"runner"`
	Apex          fly.Pool         `json:"apex"`
	Nadir         fly.Pool         `json:"nadir"`
	// Runners counts the egg's runners by state.
	Runners map[store.RunnerState]int `json:"runners"`
}

// RunnerSummary is the shape of an egg's runners.
type RunnerSummary struct {
	Type          string   `json:"type"`
	Clouds        []string `json:"clouds"`
	CPU           float64  `json:"cpu"`
	Memory        fly.Size `json:"memory"`
	Disk          fly.Size `json:"disk"`
	MaxConcurrent int      `json:"max_concurrent"`
	Tags          []string `json:"tags"`
	RunUntagged   bool     `json:"run_untagged"`
	Image         string   `json:"image,omitempty"`
}

func eggView(egg *fly.Egg, counts map[store.RunnerState]int) EggView {
	if counts == nil {
		counts = map[store.RunnerState]int{}
	}
	r := egg.Runner
	return EggView{
		Name: egg.Name, Kind: egg.Kind, File: egg.File, ConfigVersion: egg.Version, GitLabHost: egg.GitLab.Host,
		Projects: egg.Projects, Group: egg.Group,
		Runner: RunnerSummary{Type: r.Type, Clouds: r.Clouds, CPU: r.CPU, Memory: r.Memory, Disk: r.Disk,
			MaxConcurrent: r.MaxConcurrent, Tags: r.Tags, RunUntagged: r.RunUntagged, Image: r.Image},
		Apex: egg.Apex, Nadir: egg.Nadir, Runners: counts,
	}
}

func (s *Server) listEggs(c *gin.Context) {
	counts, err := s.mg.Store().CountRunners(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	nest := s.mg.Nest()
	out := struct {
		Eggs []EggView `json:"eggs"`
	}{Eggs: []EggView{}}
	for i := range nest.Eggs {
		out.Eggs = append(out.Eggs, eggView(&nest.Eggs[i], counts[nest.Eggs[i].Name]))
	}
	c.JSON(http.StatusOK, out)
}

// nestEgg is the egg :name names, or a 404.
func (s *Server) nestEgg(c *gin.Context) (*fly.Egg, bool) {
	egg, ok := s.mg.Nest().Egg(c.Param("name"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "no egg " + truncate(c.Param("name"), 100) + " in the Nest"})
	}
	return egg, ok
}

func (s *Server) getEgg(c *gin.Context) {
	egg, ok := s.nestEgg(c)
	if !ok {
		return
	}
	counts, err := s.mg.Store().CountRunners(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, eggView(egg, counts[egg.Name]))
}

// JobList is the answer of the job history routes.
type JobList = apiv1.JobList

func (s *Server) listJobs(c *gin.Context) { s.jobs(c, c.Query("egg")) }

func (s *Server) listEggJobs(c *gin.Context) {
	egg, ok := s.nestEgg(c)
	if !ok {
		return
	}
	s.jobs(c, egg.Name)
}

func (s *Server) jobs(c *gin.Context, egg string) {
	limit, err := pageLimit(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	before, err := int64Query(c, "before")
	if err != nil {
		s.fail(c, err)
		return
	}
	jobs, err := s.mg.Store().ListJobs(c.Request.Context(), store.JobFilter{Egg: egg, Status: c.Query("status"), BeforeJobID: before, Limit: limit + 1})
	if err != nil {
		s.fail(c, err)
		return
	}
	out := JobList{Jobs: jobViews(jobs)}
	if len(jobs) > limit {
		out.Jobs = out.Jobs[:limit]
		out.Next = strconv.FormatInt(out.Jobs[limit-1].JobID, 10)
	}
	c.JSON(http.StatusOK, out)
}

// AuditList is the answer of GET /api/v1/audit.
type AuditList = apiv1.AuditList

func (s *Server) listAudit(c *gin.Context) {
	limit, err := pageLimit(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	after, err := int64Query(c, "after")
	if err != nil {
		s.fail(c, err)
		return
	}
	f := store.AuditFilter{Egg: c.Query("egg"), RunnerID: c.Query("runner"), AfterID: after, Limit: limit + 1}
	if v := c.Query("since"); v != "" {
		if f.Since, err = time.Parse(time.RFC3339, v); err != nil {
			s.fail(c, badRequest("since must be an RFC 3339 time, such as 2025-01-02T15:04:05Z"))
			return
		}
	}
	records, err := s.mg.Store().ListAudit(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := AuditList{Audit: auditViews(records)}
	if len(records) > limit {
		out.Audit = out.Audit[:limit]
		out.Next = strconv.FormatInt(out.Audit[limit-1].ID, 10)
	}
	c.JSON(http.StatusOK, out)
}
