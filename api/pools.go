package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/gosling-ci/gosling/workflows/contract"

	"github.com/gin-gonic/gin"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
)

// SyncPools starts the pool workflow of every egg that has one, or gives a
// running pool the egg's current spec (it applies to future runners). Run
// at start and after every Nest reload; calls Temporal cannot take now wait
// in the outbox.
func (s *Server) SyncPools(ctx context.Context) error {
	nest := s.cfg.Nest()
	var errs []error
	for i := range nest.Eggs {
		egg := &nest.Eggs[i]
		if !contract.UsesPool(*egg) || len(egg.Runner.Clouds) == 0 {
			continue
		}
		cloud := egg.Runner.Clouds[0]
		in, err := SignalWithStartIntent(contract.PoolWorkflowID(egg.Name), contract.SignalPoolSpec, *egg, contract.WorkflowPool, contract.PoolInput{
			Egg: *egg, Cloud: cloud, Provider: nest.MotherGoose.Providers[cloud],
		})
		if err == nil {
			_, err = s.deliver(ctx, in)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pool of %s: %w", egg.Name, err))
		}
	}
	return errors.Join(errs...)
}

// poolEgg finds the egg named in the route, which must have a pool.
func (s *Server) poolEgg(c *gin.Context) (*fly.Egg, client.Client, bool) {
	egg, ok := s.cfg.Nest().Egg(c.Param("name"))
	if !ok {
		s.fail(c, &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "no egg " + truncate(c.Param("name"), 100) + " in the Nest"})
		return nil, nil, false
	}
	if !contract.UsesPool(*egg) {
		s.fail(c, &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "egg " + egg.Name + " has serverless runners, made per job: it has no pool"})
		return nil, nil, false
	}
	tc := s.Temporal()
	if tc == nil {
		s.fail(c, errNoTemporal)
		return nil, nil, false
	}
	return egg, tc, true
}

// poolError maps Temporal's answers about a pool to API errors.
func poolError(egg string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return &apiError{Status: http.StatusNotFound, Msg: "not found", Detail: "the pool of " + egg + " is not running (it starts with the first job or the next Nest sync)"}
	}
	return err
}

func (s *Server) getPool(c *gin.Context) {
	egg, tc, ok := s.poolEgg(c)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.TemporalTimeout)
	defer cancel()
	st, err := queryPool(ctx, tc, egg.Name)
	if err != nil {
		s.fail(c, poolError(egg.Name, err))
		return
	}
	c.JSON(http.StatusOK, st)
}

func queryPool(ctx context.Context, tc client.Client, egg string) (contract.PoolStatus, error) {
	var st contract.PoolStatus
	v, err := tc.QueryWorkflow(ctx, contract.PoolWorkflowID(egg), "", contract.QueryPoolStatus)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

func (s *Server) scalePool(c *gin.Context) {
	egg, tc, ok := s.poolEgg(c)
	if !ok {
		return
	}
	var req contract.PoolScale
	if err := c.ShouldBindJSON(&req); err != nil {
		s.fail(c, &apiError{Status: http.StatusBadRequest, Msg: "bad request", Detail: "the body must be a JSON object such as {\"apex_min\":2}: " + err.Error()})
		return
	}
	s.updatePool(c, tc, egg.Name, contract.UpdatePoolScale, &contract.PoolLimits{}, req)
}

func (s *Server) drainPool(c *gin.Context) {
	egg, tc, ok := s.poolEgg(c)
	if !ok {
		return
	}
	var retired int
	s.updatePool(c, tc, egg.Name, contract.UpdatePoolDrain, &retired)
}

// updatePool runs a pool update; a validator's refusal is a 422.
func (s *Server) updatePool(c *gin.Context, tc client.Client, egg, name string, result any, args ...any) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.TemporalTimeout)
	defer cancel()
	h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.PoolWorkflowID(egg), UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, result)
	}
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			s.fail(c, poolError(egg, err))
			return
		}
		s.fail(c, &apiError{Status: http.StatusUnprocessableEntity, Msg: "refused", Detail: err.Error()})
		return
	}
	if _, err := s.cfg.Store.AppendAudit(c.Request.Context(), store.AuditRecord{At: s.now(), Actor: ActorAPI, Action: name, Egg: egg, Reason: name + " through the API"}); err != nil {
		s.log.ErrorContext(ctx, "audit pool update", "egg", egg, "error", err)
	}
	c.JSON(http.StatusOK, gin.H{"egg": egg, "result": result})
}

// poolSamples queries every pool for the metrics, a few at a time.
func (s *Server) poolSamples(ctx context.Context) ([]metrics.PoolSample, error) {
	tc := s.Temporal()
	if tc == nil {
		return nil, errNoTemporal
	}
	nest := s.cfg.Nest()
	var (
		mu  sync.Mutex
		out []metrics.PoolSample
		wg  sync.WaitGroup
		sem = make(chan struct{}, 8)
	)
	for _, egg := range nest.Eggs {
		if !contract.UsesPool(egg) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := queryPool(ctx, tc, egg.Name)
			if err != nil {
				return // not started yet, or unreachable: left out of this scrape
			}
			mu.Lock()
			out = append(out, metrics.PoolSample{
				Egg: egg.Name, Counts: st.Counts, Promotions: st.Stats.Promotions, Demotions: st.Stats.Demotions,
				Served: st.Stats.Served, DemandToRunner: st.Stats.DemandToRunner,
			})
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, nil
}
