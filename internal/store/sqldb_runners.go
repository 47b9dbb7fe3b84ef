package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// runnerColumns is the column order scanRunner expects.
const runnerColumns = `id, egg, cloud, kind, state, gitlab_host, gitlab_runner_id, token_ref,
	workspace, workflow_id, job_id, reason, failures, last_heartbeat, last_job_at,
	created_at, updated_at, version, agent_ref`

func scanRunner(row rowScanner) (*Runner, error) {
	var (
		r                                      Runner
		lastHeartbeat, lastJobAt, created, upd dbTime
	)
	err := row.Scan(&r.ID, &r.Egg, &r.Cloud, &r.Kind, &r.State, &r.GitLabHost, &r.GitLabRunnerID,
		&r.TokenRef, &r.Workspace, &r.WorkflowID, &r.JobID, &r.Reason, &r.Failures,
		&lastHeartbeat, &lastJobAt, &created, &upd, &r.Version, &r.AgentRef)
	if err != nil {
		return nil, err
	}
	r.LastHeartbeat = lastHeartbeat.ptr()
	r.LastJobAt = lastJobAt.ptr()
	r.CreatedAt = created.time
	r.UpdatedAt = upd.time
	return &r, nil
}

func (s *sqlStore) CreateRunner(ctx context.Context, r *Runner) error {
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
	d := s.dialect
	res, err := s.write.ExecContext(ctx, d.bind(`INSERT INTO runners (`+runnerColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`),
		r.ID, r.Egg, r.Cloud, r.Kind, string(state), r.GitLabHost, r.GitLabRunnerID, r.TokenRef,
		r.Workspace, r.WorkflowID, r.JobID, r.Reason, r.Failures,
		d.nullableTimeArg(r.LastHeartbeat), d.nullableTimeArg(r.LastJobAt),
		d.timeArg(created), d.timeArg(updated), 1, r.AgentRef)
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("create runner %s: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("create runner %s: %w", r.ID, ErrExists)
	}
	r.State = state
	r.CreatedAt, r.UpdatedAt = created, updated
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version = 1
	return nil
}

func (s *sqlStore) GetRunner(ctx context.Context, id string) (*Runner, error) {
	r, err := s.getRunner(ctx, s.read, id, "")
	if err != nil {
		return nil, fmt.Errorf("get runner %s: %w", id, err)
	}
	return r, nil
}

// getRunner reads one runner; ErrNotFound (unwrapped) when it is missing.
func (s *sqlStore) getRunner(ctx context.Context, q querier, id, suffix string) (*Runner, error) {
	row := q.QueryRowContext(ctx, s.dialect.bind(`SELECT `+runnerColumns+` FROM runners WHERE id = ?`+suffix), id)
	r, err := scanRunner(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

func (s *sqlStore) ListRunners(ctx context.Context, f RunnerFilter) ([]Runner, error) {
	states := make([]any, len(f.States))
	for i, st := range f.States {
		states[i] = string(st)
	}
	var q filter
	q.add(f.Egg != "", "egg = ?", f.Egg)
	q.add(f.Cloud != "", "cloud = ?", f.Cloud)
	q.add(f.GitLabHost != "", "gitlab_host = ?", f.GitLabHost)
	q.add(f.GitLabRunnerID != 0, "gitlab_runner_id = ?", f.GitLabRunnerID)
	q.add(len(f.States) > 0, "state IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(f.States)), ", ")+")", states...)
	q.add(f.After != "", "id > ?", f.After)
	query := `SELECT ` + runnerColumns + ` FROM runners` + q.where() + ` ORDER BY id` + q.limit(f.Limit)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), q.args...)
	if err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	defer rows.Close()
	var out []Runner
	for rows.Next() {
		r, err := scanRunner(rows)
		if err != nil {
			return nil, fmt.Errorf("list runners: %w", err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runners: %w", err)
	}
	return out, nil
}

// runnerUpdateSet lists the columns UpdateRunner and Transition write; the
// arguments come from runnerUpdateArgs in the same order. State, ID and
// CreatedAt are absent: the lifecycle owns the first, the others never change.
const runnerUpdateSet = `egg = ?, cloud = ?, kind = ?, gitlab_host = ?, gitlab_runner_id = ?,
	token_ref = ?, workspace = ?, workflow_id = ?, job_id = ?, reason = ?, failures = ?,
	last_heartbeat = ?, last_job_at = ?, updated_at = ?, agent_ref = ?`

func (s *sqlStore) runnerUpdateArgs(r *Runner, updated time.Time) []any {
	d := s.dialect
	return []any{r.Egg, r.Cloud, r.Kind, r.GitLabHost, r.GitLabRunnerID,
		r.TokenRef, r.Workspace, r.WorkflowID, r.JobID, r.Reason, r.Failures,
		d.nullableTimeArg(r.LastHeartbeat), d.nullableTimeArg(r.LastJobAt), d.timeArg(updated), r.AgentRef}
}

func (s *sqlStore) UpdateRunner(ctx context.Context, r *Runner) error {
	now := storedTime(time.Now())
	args := append(s.runnerUpdateArgs(r, now), r.ID, r.Version)
	var (
		state   RunnerState
		created dbTime
	)
	// RETURNING hands back what UpdateRunner does not write, so r ends up
	// equal to the stored row even if the caller changed r.State.
	err := s.write.QueryRowContext(ctx, s.dialect.bind(`UPDATE runners
		SET `+runnerUpdateSet+`, version = version + 1
		WHERE id = ? AND version = ?
		RETURNING state, created_at`), args...).Scan(&state, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("update runner %s: %w", r.ID, s.missingOrConflict(ctx, r.ID, r.Version))
	}
	if err != nil {
		return fmt.Errorf("update runner %s: %w", r.ID, err)
	}
	r.State = state
	r.CreatedAt = created.time
	r.UpdatedAt = now
	r.LastHeartbeat = storedTimePtr(r.LastHeartbeat)
	r.LastJobAt = storedTimePtr(r.LastJobAt)
	r.Version++
	return nil
}

// missingOrConflict explains why a versioned update matched no row.
func (s *sqlStore) missingOrConflict(ctx context.Context, id string, readVersion int64) error {
	var stored int64
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT version FROM runners WHERE id = ?`), id).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrNotFound
	case err != nil:
		return err
	default:
		return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, readVersion, stored)
	}
}

func (s *sqlStore) Transition(ctx context.Context, req TransitionRequest) (*Runner, error) {
	var result *Runner
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.getRunner(ctx, tx, req.RunnerID, s.dialect.lockForUpdate)
		if err != nil {
			return err
		}
		if req.Version != 0 && req.Version != cur.Version {
			return fmt.Errorf("%w (read version %d, stored version %d)", ErrConflict, req.Version, cur.Version)
		}
		if req.To == cur.State {
			result = cur
			return nil
		}
		if !CanTransition(cur.State, req.To) {
			return IllegalTransitionError(cur.State, req.To)
		}
		next := *cur
		if req.Update != nil {
			req.Update(&next)
		}
		// Update may touch any field; the identity, the lifecycle and the
		// version stay under the store's control.
		next.ID, next.CreatedAt = cur.ID, cur.CreatedAt
		next.State, next.Reason = req.To, req.Reason
		next.UpdatedAt = storedTime(time.Now())
		next.LastHeartbeat = storedTimePtr(next.LastHeartbeat)
		next.LastJobAt = storedTimePtr(next.LastJobAt)
		next.Version = cur.Version + 1

		args := append(s.runnerUpdateArgs(&next, next.UpdatedAt), string(next.State), next.Version, cur.ID, cur.Version)
		res, err := tx.ExecContext(ctx, s.dialect.bind(`UPDATE runners
			SET `+runnerUpdateSet+`, state = ?, version = ?
			WHERE id = ? AND version = ?`), args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w (read version %d)", ErrConflict, cur.Version)
		}
		_, err = tx.ExecContext(ctx, s.dialect.bind(`INSERT INTO runner_transitions
			(runner_id, from_state, to_state, reason, actor, at) VALUES (?, ?, ?, ?, ?, ?)`),
			cur.ID, string(cur.State), string(next.State), req.Reason, req.Actor, s.dialect.timeArg(next.UpdatedAt))
		if err != nil {
			return fmt.Errorf("record transition: %w", err)
		}
		result = &next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("transition runner %s to %s: %w", req.RunnerID, req.To, err)
	}
	return result, nil
}

func (s *sqlStore) RunnerHistory(ctx context.Context, id string) ([]Transition, error) {
	var exists int
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT 1 FROM runners WHERE id = ?`), id).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("runner history %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(`SELECT runner_id, from_state, to_state, reason, actor, at
		FROM runner_transitions WHERE runner_id = ? ORDER BY id`), id)
	if err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	defer rows.Close()
	var out []Transition
	for rows.Next() {
		var (
			t  Transition
			at dbTime
		)
		if err := rows.Scan(&t.RunnerID, &t.From, &t.To, &t.Reason, &t.Actor, &at); err != nil {
			return nil, fmt.Errorf("runner history %s: %w", id, err)
		}
		t.At = at.time
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("runner history %s: %w", id, err)
	}
	return out, nil
}

func (s *sqlStore) RecordHeartbeat(ctx context.Context, id string, at time.Time) error {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`UPDATE runners SET last_heartbeat = ? WHERE id = ?`), s.dialect.timeArg(at), id)
	if err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("record heartbeat of runner %s: %w", id, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) CountRunners(ctx context.Context) (map[string]map[RunnerState]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT egg, state, COUNT(*) FROM runners GROUP BY egg, state`)
	if err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	defer rows.Close()
	out := map[string]map[RunnerState]int{}
	for rows.Next() {
		var (
			egg   string
			state RunnerState
			n     int
		)
		if err := rows.Scan(&egg, &state, &n); err != nil {
			return nil, fmt.Errorf("count runners: %w", err)
		}
		if out[egg] == nil {
			out[egg] = map[RunnerState]int{}
		}
		out[egg][state] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count runners: %w", err)
	}
	return out, nil
}
