package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

func (s *sqlStore) AppendAudit(ctx context.Context, a AuditRecord) (int64, error) {
	before, err := jsonArg("before", a.Before)
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	after, err := jsonArg("after", a.After)
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	var key any
	if a.Key != "" {
		key = a.Key
	}
	var id int64
	err = s.write.QueryRowContext(ctx, s.dialect.bind(`INSERT INTO audit_log
		(at, actor, action, egg, runner_id, policy, reason, before_json, after_json, dedupe_key)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING RETURNING id`),
		s.dialect.timeArg(at), a.Actor, a.Action, a.Egg, a.RunnerID, a.Policy, a.Reason, before, after, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) && a.Key != "" {
		// Written before under this key: that record stands.
		err = s.write.QueryRowContext(ctx, s.dialect.bind(`SELECT id FROM audit_log WHERE dedupe_key = ?`), a.Key).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("append audit %s by %s: %w", a.Action, a.Actor, err)
	}
	return id, nil
}

func (s *sqlStore) ExpireAudit(ctx context.Context, before time.Time) (int64, error) {
	if before.IsZero() {
		return 0, errors.New("expire audit: no cut-off time")
	}
	res, err := s.write.ExecContext(ctx, s.dialect.bind(`DELETE FROM audit_log WHERE at < ?`), s.dialect.timeArg(before))
	if err != nil {
		return 0, fmt.Errorf("expire audit before %s: %w", before.Format(time.RFC3339), err)
	}
	return res.RowsAffected()
}

func (s *sqlStore) ListAudit(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	var q filter
	q.add(f.Egg != "", "egg = ?", f.Egg)
	q.add(f.RunnerID != "", "runner_id = ?", f.RunnerID)
	q.add(!f.Since.IsZero(), "at >= ?", s.dialect.timeArg(f.Since))
	q.add(f.AfterID > 0, "id > ?", f.AfterID)
	query := `SELECT id, at, actor, action, egg, runner_id, policy, reason, before_json, after_json
		FROM audit_log` + q.where() + ` ORDER BY id` + q.limit(f.Limit)
	rows, err := s.read.QueryContext(ctx, s.dialect.bind(query), q.args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var (
			a             AuditRecord
			at            dbTime
			before, after sql.NullString
		)
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Action, &a.Egg, &a.RunnerID, &a.Policy, &a.Reason, &before, &after); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		a.At = at.time
		a.Before, a.After = jsonValue(before), jsonValue(after)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
