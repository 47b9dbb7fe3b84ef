package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// runnerRecord is a runner with its last transition.
type runnerRecord struct {
	Runner
	// seq numbers the runner's transitions; last is the seq-th, nil when
	// there was none.
	seq  int64
	last *Transition
}

func decodeRunner(it *item) (*runnerRecord, error) {
	rec := &runnerRecord{Runner: Runner{
		ID: it.str("sk"), Egg: it.str("egg"), Cloud: it.str("cloud"), Kind: it.str("kind"),
		State: RunnerState(it.str("state")), GitLabHost: it.str("gitlab_host"),
		GitLabRunnerID: it.int("gitlab_runner_id"), TokenRef: it.str("token_ref"), AgentRef: it.str("agent_ref"),
		Workspace: it.str("workspace"), WorkflowID: it.str("workflow_id"), JobID: it.int("job_id"),
		Reason: it.str("reason"), Failures: int(it.int("failures")),
		LastHeartbeat: it.timePtr("last_heartbeat"), LastJobAt: it.timePtr("last_job_at"),
		CreatedAt: it.time("created_at"), UpdatedAt: it.time("updated_at"), Version: it.int("version"),
	}}
	rec.seq = it.int("transitions")
	if m, ok := it.m["last_transition"].(*types.AttributeValueMemberM); ok {
		t := decodeTransition(&item{m: m.Value}, rec.ID)
		rec.last = &t
	}
	if it.err != nil {
		return nil, fmt.Errorf("decode runner %s: %w", rec.ID, it.err)
	}
	return rec, nil
}

func transitionAttrs(t Transition) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"from": avS(string(t.From)), "to": avS(string(t.To)), "reason": avS(t.Reason),
		"actor": avS(t.Actor), "at": avTime(t.At),
	}
}

func decodeTransition(it *item, runnerID string) Transition {
	return Transition{
		RunnerID: runnerID, From: RunnerState(it.str("from")), To: RunnerState(it.str("to")),
		Reason: it.str("reason"), Actor: it.str("actor"), At: it.time("at"),
	}
}

func (s *dynamoStore) CreateRunner(ctx context.Context, r *Runner) error {
	if err := s.check(); err != nil {
		return err
	}
	if r.ID == "" {
		return errors.New("create runner: empty ID")
	}
	state := r.State
	now := storedTime(time.Now())
	created, updated := now, now
	if !r.CreatedAt.IsZero() {
		created = storedTime(r.CreatedAt)
	}
	if !r.UpdatedAt.IsZero() {
		updated = storedTime(r.UpdatedAt)
	}
	m := map[string]types.AttributeValue{
		"pk": avS(partRunner), "sk": avS(r.ID), "state": avS(string(state)),
		"created_at": avTime(created), "updated_at": avTime(updated), "version": avN(1), "transitions": avN(0),
	}
	for k, v := range runnerFields(r) {
		m[k] = v
	}
	e := &expr{}
	err := s.putItem(ctx, m, e, e.notExists("pk"))
	if isConditionFailed(err) {
		return fmt.Errorf("create runner %s: %w", r.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	r.State = state
	r.CreatedAt, r.UpdatedAt = created, updated
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version = 1
	return nil
}

// runnerFields are the attributes UpdateRunner writes: every field but the
// identity, the state, the times the store sets and the version. Nil times
// are absent.
func runnerFields(r *Runner) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		"egg": avS(r.Egg), "cloud": avS(r.Cloud), "kind": avS(r.Kind), "gitlab_host": avS(r.GitLabHost),
		"gitlab_runner_id": avN(r.GitLabRunnerID), "token_ref": avS(r.TokenRef), "agent_ref": avS(r.AgentRef), "workspace": avS(r.Workspace),
		"workflow_id": avS(r.WorkflowID), "job_id": avN(r.JobID), "reason": avS(r.Reason),
		"failures": avN(int64(r.Failures)),
	}
	if r.LastHeartbeat != nil {
		m["last_heartbeat"] = avTime(*r.LastHeartbeat)
	}
	if r.LastJobAt != nil {
		m["last_job_at"] = avTime(*r.LastJobAt)
	}
	return m
}

// setRunnerFields adds runnerFields to u, removing nil times. Without
// heartbeat the last heartbeat is left as stored.
func setRunnerFields(u *update, r *Runner, heartbeat bool) {
	fields := runnerFields(r)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		if k == "last_heartbeat" || k == "last_job_at" {
			continue
		}
		u.setv(k, fields[k])
	}
	if heartbeat {
		u.setTime("last_heartbeat", r.LastHeartbeat)
	}
	u.setTime("last_job_at", r.LastJobAt)
}

func (s *dynamoStore) GetRunner(ctx context.Context, id string) (*Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get runner %s: %w", id, err)
	}
	return &rec.Runner, nil
}

// getRunner reads one runner; ErrNotFound (unwrapped) when it is missing.
func (s *dynamoStore) getRunner(ctx context.Context, id string) (*runnerRecord, error) {
	if id == "" {
		return nil, ErrNotFound
	}
	it, err := s.getItem(ctx, partRunner, id)
	if err != nil {
		return nil, err
	}
	return decodeRunner(it)
}

func (s *dynamoStore) ListRunners(ctx context.Context, f RunnerFilter) ([]Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	q := query{pk: partRunner, e: &expr{}}
	var filters []string
	if f.Egg != "" {
		filters = append(filters, q.e.cond("egg", "=", avS(f.Egg)))
	}
	if f.Cloud != "" {
		filters = append(filters, q.e.cond("cloud", "=", avS(f.Cloud)))
	}
	if f.GitLabHost != "" {
		filters = append(filters, q.e.cond("gitlab_host", "=", avS(f.GitLabHost)))
	}
	if f.GitLabRunnerID != 0 {
		filters = append(filters, q.e.cond("gitlab_runner_id", "=", avN(f.GitLabRunnerID)))
	}
	if len(f.States) > 0 {
		var vals []string
		for _, st := range f.States {
			vals = append(vals, q.e.v(avS(string(st))))
		}
		filters = append(filters, q.e.n("state")+" IN ("+strings.Join(vals, ", ")+")")
	}
	if f.After != "" {
		q.skCond = q.e.cond("sk", ">", avS(f.After))
	}
	q.filter = strings.Join(filters, " AND ")
	if q.filter == "" {
		q.pageLimit = f.Limit
	}
	var out []Runner
	err := s.query(ctx, q, collect(&out, f.Limit, func(it *item) (Runner, error) {
		rec, err := decodeRunner(it)
		if err != nil {
			return Runner{}, err
		}
		return rec.Runner, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return out, nil
}

func (s *dynamoStore) UpdateRunner(ctx context.Context, r *Runner) error {
	if err := s.check(); err != nil {
		return err
	}
	if r.ID == "" {
		return fmt.Errorf("update runner: %w", ErrNotFound)
	}
	u := newUpdate()
	setRunnerFields(u, r, true)
	u.setv("updated_at", avTime(time.Now()))
	u.set = append(u.set, u.n("version")+" = "+u.n("version")+" + "+u.v(avN(1)))
	it, err := s.updateItem(ctx, partRunner, r.ID, u, u.cond("version", "=", avN(r.Version)))
	if isConditionFailed(err) {
		return fmt.Errorf("update runner %s: %w", r.ID, s.missingOrConflict(ctx, r.ID, r.Version))
	}
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	rec, err := decodeRunner(it)
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	*r = rec.Runner
	return nil
}

// missingOrConflict explains why a versioned update was refused.
func (s *dynamoStore) missingOrConflict(ctx context.Context, id string, readVersion int64) error {
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, readVersion, rec.Version)
}

func (s *dynamoStore) RecordHeartbeat(ctx context.Context, id string, at time.Time) error {
	if err := s.check(); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	u := newUpdate()
	u.setv("last_heartbeat", avTime(at))
	_, err := s.updateItem(ctx, partRunner, id, u, u.exists("pk"))
	if isConditionFailed(err) {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	}
	return nil
}

func (s *dynamoStore) Transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	r, err := s.transition(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("transition runner %s to %s: %w", req.RunnerID, req.To, err)
	}
	return r, nil
}

func (s *dynamoStore) transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	cur, err := s.getRunner(ctx, req.RunnerID)
	if err != nil {
		return nil, err
	}
	if req.Version != 0 && req.Version != cur.Version {
		return nil, fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, req.Version, cur.Version)
	}
	if req.To == cur.State {
		return &cur.Runner, nil
	}
	if !CanTransition(cur.State, req.To) {
		return nil, IllegalTransitionError(cur.State, req.To)
	}
	next := cur.Runner
	if req.Update != nil {
		req.Update(&next)
	}
	// Update may touch any field; the identity, the lifecycle and the
	// version stay under the store's control.
	next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
	next.State, next.Reason = req.To, req.Reason
	next.UpdatedAt = storedTime(time.Now())

	// The last transition leaves the runner's item below; copy it out
	// first. Writing the same record again is harmless.
	if cur.last != nil {
		m := transitionAttrs(*cur.last)
		m["pk"], m["sk"] = avS(partHistory+cur.ID), avS(seqKey(cur.seq))
		if err := s.putItem(ctx, m, nil, ""); err != nil {
			return nil, fmt.Errorf("record transition %d: %w", cur.seq, err)
		}
	}
	tr := Transition{RunnerID: cur.ID, From: cur.State, To: next.State, Reason: req.Reason, Actor: req.Actor, At: next.UpdatedAt}
	u := newUpdate()
	// A heartbeat recorded since the read must not be undone, so the last
	// heartbeat is written only when Update changed it.
	setRunnerFields(u, &next, !sameTimePtr(next.LastHeartbeat, cur.LastHeartbeat))
	u.setv("state", avS(string(next.State)))
	u.setv("updated_at", avTime(next.UpdatedAt))
	u.setv("version", avN(cur.Version+1))
	u.setv("transitions", avN(cur.seq+1))
	u.setv("last_transition", &types.AttributeValueMemberM{Value: transitionAttrs(tr)})
	it, err := s.updateItem(ctx, partRunner, cur.ID, u, u.cond("version", "=", avN(cur.Version)))
	if isConditionFailed(err) {
		// The SDK retries a write whose answer was lost; the retry then
		// finds the version its first attempt wrote. That is this
		// transition, not another writer's.
		if again, gerr := s.GetRunner(ctx, cur.ID); gerr == nil && again.Version == cur.Version+1 &&
			again.State == next.State && again.UpdatedAt.Equal(next.UpdatedAt) {
			return again, nil
		}
		return nil, fmt.Errorf("%w (read version %d)", ErrConflict, cur.Version)
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRunner(it)
	if err != nil {
		return nil, err
	}
	return &rec.Runner, nil
}

func sameTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return storedTime(*a).Equal(storedTime(*b))
}

func (s *dynamoStore) RunnerHistory(ctx context.Context, id string) ([]Transition, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	// The runner first: its last transition is the newest one this call
	// reports, and every earlier one was copied out before it was written.
	rec, err := s.getRunner(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	if rec.last == nil {
		return nil, nil
	}
	q := query{pk: partHistory + id, e: &expr{}}
	q.skCond = q.e.cond("sk", "<", avS(seqKey(rec.seq)))
	var out []Transition
	err = s.query(ctx, q, collect(&out, 0, func(it *item) (Transition, error) {
		t := decodeTransition(it, id)
		return t, it.err
	}))
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	return append(out, *rec.last), nil
}

func (s *dynamoStore) CountRunners(ctx context.Context) (map[string]map[RunnerState]int, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	out := map[string]map[RunnerState]int{}
	err := s.query(ctx, query{pk: partRunner, project: []string{"egg", "state"}}, func(it *item) (bool, error) {
		egg, state := it.str("egg"), RunnerState(it.str("state"))
		if it.err != nil {
			return false, it.err
		}
		if out[egg] == nil {
			out[egg] = map[RunnerState]int{}
		}
		out[egg][state]++
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	return out, nil
}
