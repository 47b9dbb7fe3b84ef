package mothergoose

import (
	"context"
	"errors"
	"fmt"

	"github.com/gosling-ci/gosling/contract"
	"github.com/gosling-ci/gosling/fly"
	"github.com/gosling-ci/gosling/internal/metrics"
	"github.com/gosling-ci/gosling/internal/store"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
)

// ActorAPI is the audit actor of changes asked for through the REST API.
const ActorAPI = "api"

// poolEgg is the egg of a pool request, which must have a pool.
func (m *Operations) poolEgg(name string) (*fly.Egg, client.Client, error) {
	egg, ok := m.Nest().Egg(name)
	if !ok {
		return nil, nil, errorf(KindNotFound, "not found", "no egg %s in the Nest", truncate(name, 100))
	}
	if !contract.UsesPool(*egg) {
		return nil, nil, errorf(KindNotFound, "not found", "egg %s has serverless runners, made per job: it has no pool", egg.Name)
	}
	tc := m.Temporal()
	if tc == nil {
		return nil, nil, errNoTemporal
	}
	return egg, tc, nil
}

// poolError maps Temporal's answers about a pool.
func poolError(egg string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return errorf(KindNotFound, "not found", "the pool of %s is not running (it starts with the first job or the next Nest application)", egg)
	}
	return err
}

// GateStatus asks a serverless egg's gate workflow for its status (query
// contract.QueryGateStatus): its running and waiting jobs, and the jobs no
// runner of the egg will take. Errors: KindNotFound for an egg that is
// not in the Nest or has a pool, or whose gate is not running.
func (m *Operations) GateStatus(ctx context.Context, egg string) (contract.GateStatus, error) {
	var st contract.GateStatus
	e, ok := m.Nest().Egg(egg)
	if !ok {
		return st, errorf(KindNotFound, "not found", "no egg %s in the Nest", truncate(egg, 100))
	}
	if contract.UsesPool(*e) {
		return st, errorf(KindNotFound, "not found", "egg %s has a pool, not a gate: GET /api/v1/pools/%s", e.Name, e.Name)
	}
	tc := m.Temporal()
	if tc == nil {
		return st, errNoTemporal
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, contract.GateWorkflowID(e.Name), "", contract.QueryGateStatus)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return st, errorf(KindNotFound, "not found", "the gate of %s is not running (it starts with the egg's first job)", e.Name)
	}
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// PoolStatus asks an egg's pool workflow for its status (query
// contract.QueryPoolStatus). Errors: KindNotFound for an egg without a
// running pool; Temporal's own when it cannot be reached.
func (m *Operations) PoolStatus(ctx context.Context, egg string) (contract.PoolStatus, error) {
	var st contract.PoolStatus
	e, tc, err := m.poolEgg(egg)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	v, err := tc.QueryWorkflow(ctx, contract.PoolWorkflowID(e.Name), "", contract.QueryPoolStatus)
	if err != nil {
		return st, poolError(e.Name, err)
	}
	return st, v.Get(&st)
}

// ScalePool sets temporary limits on a pool (update
// contract.UpdatePoolScale) and returns the limits in force. The pool's
// validator refusing them is KindRefused. The change is audited with actor.
func (m *Operations) ScalePool(ctx context.Context, egg string, req contract.PoolScale, actor string) (contract.PoolLimits, error) {
	var out contract.PoolLimits
	err := m.updatePool(ctx, egg, contract.UpdatePoolScale, &out, req)
	if err == nil {
		m.audit(ctx, store.AuditRecord{Actor: actor, Action: contract.UpdatePoolScale, Egg: egg, Reason: fmt.Sprintf("limits set to %+v", out)})
	}
	return out, err
}

// DrainPool retires every runner of a pool once it has no job (update
// contract.UpdatePoolDrain) and returns how many it retires. The drain is
// audited with actor.
func (m *Operations) DrainPool(ctx context.Context, egg, actor string) (int, error) {
	var retired int
	err := m.updatePool(ctx, egg, contract.UpdatePoolDrain, &retired)
	if err == nil {
		m.audit(ctx, store.AuditRecord{Actor: actor, Action: contract.UpdatePoolDrain, Egg: egg, Reason: fmt.Sprintf("%d runners to retire", retired)})
	}
	return retired, err
}

// audit appends a record stamped now; a failure is logged, not returned:
// the change it records has been made.
func (m *deps) audit(ctx context.Context, rec store.AuditRecord) {
	rec.At = m.now()
	if _, err := m.store.AppendAudit(context.WithoutCancel(ctx), rec); err != nil {
		m.log.ErrorContext(ctx, "audit", "action", rec.Action, "egg", rec.Egg, "runner", rec.RunnerID, "error", err)
	}
}

func (m *Operations) updatePool(ctx context.Context, egg, name string, result any, args ...any) error {
	e, tc, err := m.poolEgg(egg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.TemporalTimeout)
	defer cancel()
	h, err := tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: contract.PoolWorkflowID(e.Name), UpdateName: name, Args: args, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, result)
	}
	var nf *serviceerror.NotFound
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf):
		return poolError(e.Name, err)
	case Unreachable(err):
		return err
	}
	return &Error{Kind: KindRefused, Msg: "refused", Detail: err.Error()}
}

// poolListPage is how many pools one visibility call returns.
const poolListPage = 1000

// poolSamples reads every running pool's published figures
// (contract.MemoPoolFigures) with one visibility list per 1,000 pools: a
// scrape makes no call per pool.
func (m *Operations) poolSamples(ctx context.Context) ([]metrics.PoolSample, error) {
	tc := m.Temporal()
	if tc == nil {
		return nil, errNoTemporal
	}
	dc := converter.GetDefaultDataConverter()
	var out []metrics.PoolSample
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			PageSize:      poolListPage,
			NextPageToken: token,
			Query:         fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", contract.WorkflowPool),
		})
		if err != nil {
			return out, fmt.Errorf("list pools: %w", err)
		}
		for _, ex := range resp.GetExecutions() {
			if s, ok := poolSample(dc, ex); ok {
				out = append(out, s)
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

func poolSample(dc converter.DataConverter, ex *workflowpb.WorkflowExecutionInfo) (metrics.PoolSample, bool) {
	p, ok := ex.GetMemo().GetFields()[contract.MemoPoolFigures]
	if !ok {
		return metrics.PoolSample{}, false // not published yet
	}
	var f contract.PoolFigures
	if err := dc.FromPayload(p, &f); err != nil || f.Egg == "" {
		return metrics.PoolSample{}, false
	}
	return metrics.PoolSample{
		Egg: f.Egg, Counts: f.Counts, Promotions: f.Promotions, Demotions: f.Demotions,
		Served: f.Served, DemandToRunner: f.DemandToRunner,
	}, true
}
