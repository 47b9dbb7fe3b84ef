package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// jobColumns is the column order scanJob expects.
const jobColumns = `gitlab_host, job_id, project_id, egg, name, ref, pipeline_id, status,
	runner_id, queued_at, started_at, finished_at, updated_at,
	project_path, runner_started_at, queue_seconds, machine_seconds, cost, idle_cost`

func scanJob(row rowScanner) (*JobRecord, error) {
	var (
		j                                               JobRecord
		queued, started, finished, updated, runnerStart dbTime
	)
	err := row.Scan(&j.GitLabHost, &j.JobID, &j.ProjectID, &j.Egg, &j.Name, &j.Ref, &j.PipelineID,
		&j.Status, &j.RunnerID, &queued, &started, &finished, &updated,
		&j.ProjectPath, &runnerStart, &j.QueueSeconds, &j.MachineSeconds, &j.Cost, &j.IdleCost)
	if err != nil {
		return nil, err
	}
	j.QueuedAt, j.StartedAt, j.FinishedAt, j.RunnerStartedAt = queued.ptr(), started.ptr(), finished.ptr(), runnerStart.ptr()
	j.UpdatedAt = updated.time
	return &j, nil
}

func (s *sqlStore) RecordJob(ctx context.Context, j JobRecord) (JobRecord, error) {
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = time.Now()
	}
	// Read, merge and write in one transaction, the row locked (PostgreSQL)
	// or the database's one writer held (SQLite), so concurrent deliveries
	// about one job are merged one after the other. Two first records race
	// on the insert; the loser merges into the winner's row.
	for range 5 {
		var (
			out  JobRecord
			done bool
		)
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			cur, err := scanJob(tx.QueryRowContext(ctx, s.dialect.bind(`SELECT `+jobColumns+`
				FROM jobs WHERE gitlab_host = ? AND job_id = ?`+s.dialect.lockForUpdate), j.GitLabHost, j.JobID))
			if errors.Is(err, sql.ErrNoRows) {
				out = MergeJob(nil, j)
				done, err = s.insertJob(ctx, tx, out)
				return err
			}
			if err != nil {
				return err
			}
			out, done = MergeJob(cur, j), true
			if sameJobRecord(out, *cur) {
				return nil
			}
			return s.updateJob(ctx, tx, out)
		})
		if err != nil {
			return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, err)
		}
		if done {
			return out, nil
		}
	}
	return JobRecord{}, fmt.Errorf("record job %s#%d: %w", j.GitLabHost, j.JobID, ErrConflict)
}

// insertJob inserts a new job; false when another writer inserted it first.
func (s *sqlStore) insertJob(ctx context.Context, tx *sql.Tx, j JobRecord) (bool, error) {
	d := s.dialect
	res, err := tx.ExecContext(ctx, d.bind(`INSERT INTO jobs (`+jobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (gitlab_host, job_id) DO NOTHING`),
		j.GitLabHost, j.JobID, j.ProjectID, j.Egg, j.Name, j.Ref, j.PipelineID, j.Status, j.RunnerID,
		d.nullableTimeArg(j.QueuedAt), d.nullableTimeArg(j.StartedAt), d.nullableTimeArg(j.FinishedAt),
		d.timeArg(j.UpdatedAt), j.ProjectPath, d.nullableTimeArg(j.RunnerStartedAt), j.QueueSeconds, j.MachineSeconds, j.Cost, j.IdleCost)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *sqlStore) updateJob(ctx context.Context, tx *sql.Tx, j JobRecord) error {
	d := s.dialect
	_, err := tx.ExecContext(ctx, d.bind(`UPDATE jobs SET project_id = ?, egg = ?, name = ?, ref = ?,
		pipeline_id = ?, status = ?, runner_id = ?, queued_at = ?, started_at = ?, finished_at = ?, updated_at = ?,
		project_path = ?, runner_started_at = ?, queue_seconds = ?, machine_seconds = ?, cost = ?, idle_cost = ?
		WHERE gitlab_host = ? AND job_id = ?`),
		j.ProjectID, j.Egg, j.Name, j.Ref, j.PipelineID, j.Status, j.RunnerID,
		d.nullableTimeArg(j.QueuedAt), d.nullableTimeArg(j.StartedAt), d.nullableTimeArg(j.FinishedAt),
		d.timeArg(j.UpdatedAt), j.ProjectPath, d.nullableTimeArg(j.RunnerStartedAt), j.QueueSeconds, j.MachineSeconds, j.Cost, j.IdleCost,
		j.GitLabHost, j.JobID)
	return err
}

func (s *sqlStore) GetJob(ctx context.Context, host string, jobID int64) (*JobRecord, error) {
	j, err := scanJob(s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT `+jobColumns+`
		FROM jobs WHERE gitlab_host = ? AND job_id = ?`), host, jobID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s#%d: %w", host, jobID, err)
	}
	return j, nil
}

func (s *sqlStore) ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error) {
	var q filter
	q.add(f.Egg != "", "egg = ?", f.Egg)
	q.add(f.Status != "", "status = ?", f.Status)
	q.add(f.RunnerID != "", "runner_id = ?", f.RunnerID)
	q.add(!f.FinishedSince.IsZero(), "finished_at >= ?", s.dialect.timeArg(f.FinishedSince))
	q.add(f.BeforeJobID > 0, "job_id < ?", f.BeforeJobID)
	query := `SELECT ` + jobColumns + ` FROM jobs` + q.where() +
		` ORDER BY job_id DESC, gitlab_host` + q.limit(f.Limit)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), q.args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []JobRecord
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, *j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}
