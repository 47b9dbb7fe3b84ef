package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

func (s *sqlStore) PruneOutbox(ctx context.Context, olderThan time.Time) (int64, error) {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?`), s.dialect.timeArg(olderThan))
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return res.RowsAffected()
}

func (s *sqlStore) EnqueueOutbox(ctx context.Context, e OutboxEntry) (int64, error) {
	if len(e.Payload) == 0 || !json.Valid(e.Payload) {
		return 0, fmt.Errorf("enqueue outbox %s %s: the payload is not valid JSON", e.Kind, e.Key)
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	next := e.NextAttemptAt
	if next.IsZero() {
		next = created
	}
	d := s.dialect
	var id int64
	err := s.write.QueryRowContext(ctx, d.bind(`INSERT INTO outbox
		(kind, entry_key, payload, created_at, attempts, last_error, next_attempt_at, delivered_at)
		VALUES (?, ?, ?, ?, 0, '', ?, NULL) RETURNING id`),
		e.Kind, e.Key, string(e.Payload), d.timeArg(created), d.timeArg(next)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("enqueue outbox %s %s: %w", e.Kind, e.Key, err)
	}
	return id, nil
}

func (s *sqlStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxEntry, error) {
	var q filter
	q.add(true, "delivered_at IS NULL AND next_attempt_at <= ?", s.dialect.timeArg(now))
	query := `SELECT id, kind, entry_key, payload, created_at, attempts, last_error, next_attempt_at, delivered_at
		FROM outbox` + q.where() + ` ORDER BY id` + q.limit(limit)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), q.args...)
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var (
			e                        OutboxEntry
			payload                  string
			created, next, delivered dbTime
		)
		if err := rows.Scan(&e.ID, &e.Kind, &e.Key, &payload, &created, &e.Attempts, &e.LastError, &next, &delivered); err != nil {
			return nil, fmt.Errorf("due outbox: %w", err)
		}
		e.Payload = json.RawMessage(payload)
		e.CreatedAt, e.NextAttemptAt, e.DeliveredAt = created.time, next.time, delivered.ptr()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return out, nil
}

// updateOutbox runs an UPDATE of one outbox entry; ErrNotFound when the ID
// names none.
func (s *sqlStore) updateOutbox(ctx context.Context, query string, args ...any) error {
	res, err := s.write.ExecContext(ctx, s.dialect.bind(query), args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

func (s *sqlStore) MarkOutboxDelivered(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		at = time.Now()
	}
	if err := s.updateOutbox(ctx, `UPDATE outbox SET delivered_at = ? WHERE id = ?`, s.dialect.timeArg(at), id); err != nil {
		return fmt.Errorf("mark outbox entry %d delivered: %w", id, err)
	}
	return nil
}

func (s *sqlStore) MarkOutboxFailed(ctx context.Context, id int64, errMsg string, next time.Time) error {
	err := s.updateOutbox(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?`,
		errMsg, s.dialect.timeArg(next), id)
	if err != nil {
		return fmt.Errorf("mark outbox entry %d failed: %w", id, err)
	}
	return nil
}

func (s *sqlStore) OutboxDepth(ctx context.Context) (int64, error) {
	var n int64
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox depth: %w", err)
	}
	return n, nil
}

func (s *sqlStore) OutboxPending(ctx context.Context, key string) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, s.dialect.bind(`SELECT 1 FROM outbox WHERE entry_key = ? AND delivered_at IS NULL LIMIT 1`), key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("outbox pending %s: %w", key, err)
	}
	return true, nil
}
