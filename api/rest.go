package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/gitlab"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
)

// Page sizes of the list routes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ActorAPI is the audit actor of changes made through the REST API.
const ActorAPI = "api"

// gitlabCallTimeout bounds a GitLab call of a REST request, retries
// included.
const gitlabCallTimeout = 10 * time.Second

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
type RunnerList struct {
	Runners []store.Runner `json:"runners"`
	// Next is the cursor of the next page (pass it as after), empty on the
	// last page.
	Next string `json:"next"`
}

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
	runners, err := s.cfg.Store.ListRunners(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := RunnerList{Runners: runners}
	if len(runners) > limit {
		out.Runners = runners[:limit]
		out.Next = out.Runners[limit-1].ID
	}
	if out.Runners == nil {
		out.Runners = []store.Runner{}
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
	r, err := s.cfg.Store.GetRunner(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}

// eggOf finds the configuration a runner was made with: the egg in the
// current Nest, or its last stored configuration if the Nest dropped it.
func (s *Server) eggOf(ctx context.Context, name string) (*fly.Egg, error) {
	if egg, ok := s.nest().Egg(name); ok {
		return egg, nil
	}
	cfg, err := s.cfg.Store.GetEggConfig(ctx, name)
	if err == nil {
		var egg fly.Egg
		if err := json.Unmarshal(cfg.Spec, &egg); err == nil && egg.GitLab.Host != "" {
			return &egg, nil
		}
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return nil, &apiError{Status: http.StatusConflict, Msg: "unknown egg", Detail: fmt.Sprintf("egg %s is neither in the Nest nor in the store", name)}
}

func (s *Server) drainRunner(c *gin.Context) {
	ctx := c.Request.Context()
	r, err := s.cfg.Store.GetRunner(ctx, c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	if r.State == store.StateDraining {
		c.JSON(http.StatusOK, r)
		return
	}
	if !store.CanTransition(r.State, store.StateDraining) {
		s.fail(c, &apiError{Status: http.StatusConflict, Msg: "conflict",
			Detail: fmt.Sprintf("runner %s is %s: only active and dormant runners can be drained", r.ID, r.State)})
		return
	}
	egg, err := s.eggOf(ctx, r.Egg)
	if err != nil {
		s.fail(c, err)
		return
	}
	if contract.PoolOwned(r.Egg, r.ID) && s.askPool(c, r, contract.ActionDrain, "drained through the API") {
		return // its pool owns it and retires it once it has no job
	}
	// Paused first: once GitLab stops giving the runner jobs, draining is
	// true; the other order could record a drain GitLab never heard of.
	if r.GitLabRunnerID != 0 {
		gl, err := s.gitlabClient(ctx, egg)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, gitlabCallTimeout)
			err = gl.SetRunnerPaused(pctx, r.GitLabRunnerID, true)
			cancel()
		}
		if err != nil && !gitlab.IsNotFound(err) {
			s.fail(c, fmt.Errorf("pause GitLab runner %d: %w", r.GitLabRunnerID, err))
			return
		}
	}
	moved, err := s.cfg.Store.Transition(ctx, store.TransitionRequest{
		RunnerID: r.ID, Version: r.Version, To: store.StateDraining, Reason: "drained through the API", Actor: ActorAPI,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.cfg.Metrics.ObserveTransition(string(r.State), string(moved.State))
	if _, err := s.cfg.Store.AppendAudit(ctx, store.AuditRecord{At: s.now(), Actor: ActorAPI, Action: "drain", Egg: r.Egg, RunnerID: r.ID, Reason: "drained through the API"}); err != nil {
		s.log.ErrorContext(ctx, "audit drain", "runner", r.ID, "error", err)
	}
	c.JSON(http.StatusOK, moved)
}

// WorkflowStarted is the answer of routes that start a workflow.
type WorkflowStarted struct {
	Status     string `json:"status"`
	WorkflowID string `json:"workflow_id"`
}

func (s *Server) deleteRunner(c *gin.Context) {
	ctx := c.Request.Context()
	r, err := s.cfg.Store.GetRunner(ctx, c.Param("id"))
	if err != nil {
		s.fail(c, err)
		return
	}
	egg, err := s.eggOf(ctx, r.Egg)
	if err != nil {
		s.fail(c, err)
		return
	}
	if contract.PoolOwned(r.Egg, r.ID) && s.askPool(c, r, contract.ActionTerminate, "deleted through the API") {
		return // its pool owns it and tears it down
	}
	tc := s.Temporal()
	if tc == nil {
		s.fail(c, errNoTemporal)
		return
	}
	wfID := contract.DeprovisionWorkflowID(r.ID)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.TemporalTimeout)
	defer cancel()
	_, err = tc.ExecuteWorkflow(cctx, contract.StartOptions(wfID), contract.WorkflowDeprovisionRunner, contract.DeprovisionRunnerInput{
		RunnerID: r.ID, GitLab: egg.GitLab, Reason: "deleted through the API", Actor: ActorAPI,
	})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if err != nil && !errors.As(err, &started) {
		s.fail(c, fmt.Errorf("start %s: %w", wfID, err))
		return
	}
	if _, err := s.cfg.Store.AppendAudit(ctx, store.AuditRecord{At: s.now(), Actor: ActorAPI, Action: "delete", Egg: r.Egg, RunnerID: r.ID, Reason: "deleted through the API"}); err != nil {
		s.log.ErrorContext(ctx, "audit delete", "runner", r.ID, "error", err)
	}
	c.JSON(http.StatusAccepted, WorkflowStarted{Status: StatusAccepted, WorkflowID: wfID})
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
	counts, err := s.cfg.Store.CountRunners(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	nest := s.nest()
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
	egg, ok := s.nest().Egg(c.Param("name"))
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
	counts, err := s.cfg.Store.CountRunners(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, eggView(egg, counts[egg.Name]))
}

// JobList is the answer of the job history routes.
type JobList struct {
	Jobs []store.JobRecord `json:"jobs"`
	// Next is the cursor of the next page (pass it as before), empty on the
	// last page.
	Next string `json:"next"`
}

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
	jobs, err := s.cfg.Store.ListJobs(c.Request.Context(), store.JobFilter{Egg: egg, Status: c.Query("status"), BeforeJobID: before, Limit: limit + 1})
	if err != nil {
		s.fail(c, err)
		return
	}
	out := JobList{Jobs: jobs}
	if len(jobs) > limit {
		out.Jobs = jobs[:limit]
		out.Next = strconv.FormatInt(out.Jobs[limit-1].JobID, 10)
	}
	if out.Jobs == nil {
		out.Jobs = []store.JobRecord{}
	}
	c.JSON(http.StatusOK, out)
}

// AuditList is the answer of GET /api/v1/audit.
type AuditList struct {
	Audit []store.AuditRecord `json:"audit"`
	// Next is the cursor of the next page (pass it as after), empty on the
	// last page.
	Next string `json:"next"`
}

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
	records, err := s.cfg.Store.ListAudit(c.Request.Context(), f)
	if err != nil {
		s.fail(c, err)
		return
	}
	out := AuditList{Audit: records}
	if len(records) > limit {
		out.Audit = records[:limit]
		out.Next = strconv.FormatInt(out.Audit[limit-1].ID, 10)
	}
	if out.Audit == nil {
		out.Audit = []store.AuditRecord{}
	}
	c.JSON(http.StatusOK, out)
}

// askPool asks the pool that owns a runner to act on it, and answers 202.
// It returns false, having answered nothing, when that pool is not running.
func (s *Server) askPool(c *gin.Context, r *store.Runner, action, reason string) bool {
	ctx := c.Request.Context()
	tc := s.Temporal()
	if tc == nil {
		s.fail(c, errNoTemporal)
		return true
	}
	wfID := contract.PoolWorkflowID(r.Egg)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.TemporalTimeout)
	defer cancel()
	err := tc.SignalWorkflow(cctx, wfID, "", contract.SignalRunnerAction, contract.RunnerAction{
		RunnerID: r.ID, Action: action, Actor: ActorAPI, Reason: reason,
	})
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return false
	}
	if err != nil {
		s.fail(c, fmt.Errorf("signal %s: %w", wfID, err))
		return true
	}
	if _, err := s.cfg.Store.AppendAudit(ctx, store.AuditRecord{At: s.now(), Actor: ActorAPI, Action: action, Egg: r.Egg, RunnerID: r.ID, Reason: reason}); err != nil {
		s.log.ErrorContext(ctx, "audit", "runner", r.ID, "action", action, "error", err)
	}
	c.JSON(http.StatusAccepted, WorkflowStarted{Status: StatusAccepted, WorkflowID: wfID})
	return true
}
